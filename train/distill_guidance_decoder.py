"""Distil a small diffusers AutoencoderTiny (TAESD architecture) from the demo model's VAE.

    .venv/bin/python train/distill_guidance_decoder.py --out build/taesd-a --scenes 1500 --minutes 20 --steps 3000
    .venv/bin/python train/distill_guidance_decoder.py --out build/taesd-b --init build/taesd-a \
        --scenes 600 --minutes 14 --steps 1000 --lr 1e-3 --seed 1
(the first shipped decoder: these two rounds on a shared 2-core CPU; the shipped one continues
it with --gradient-weight, see its README).

GradOP+ decodes *noisy* latents in the middle of sampling, so the decoder is taught on the VAE's
encodings of world photos (training seeds, below HELDOUT_SEED) mixed with Gaussian noise at a
random level s in [0, 0.97] (z = sqrt(1 - s^2) z0 + s eps), against the VAE's own decode of the
same latent (MSE in pixels). The encoder is taught to give the VAE's (scaled) latent mean, so
the folder is a complete AutoencoderTiny that `AutoencoderTiny.from_pretrained` loads.
Seeded; CPU, one thread; stops after --steps or --minutes.

With --gradient-weight w (> 0), the decoder also learns the VAE's *slope* where GradOP+ uses it:
the guidance's Adam moves every latent element by about its learning rate in the direction of
its gradient's sign, so a stand-in decoder must give the painting loss's latent gradient the
direction the VAE gives it, not only the VAE's colours (on scenes it was not distilled on, the
decoder distilled on colours alone gave a gradient at cosine 0.61 to the VAE's and lost 24% of
GradOP+'s realism on the quality benchmark; continued with --gradient-weight 1: 0.74 and 8%).
The data for it are the latents GradOP+ optimises on --trajectories training scenes (every latent the guidance
decodes, recorded from the demo pipeline with the exact decoder, at --trajectory-steps sampling
steps), each with its scene's strokes; the loss adds w * (1 - cosine) between the blurred
painting loss's latent gradient through the tiny decoder and through the VAE.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world import DEFAULT_WORLD, WORLDS, render_photo, sample_scene  # noqa: E402
from gradop.world.scene import HELDOUT_SEED  # noqa: E402
from train.common import Logger  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "pretrained_models" / "gradop-demo"
CHANNELS = (24, 24, 24)  # three blocks: 4x up/down sampling, as the demo VAE


def tiny_autoencoder(seed: int):
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(encoder_block_out_channels=CHANNELS, decoder_block_out_channels=CHANNELS,
                           num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1), latent_channels=4)


def dataset(vae, scenes: int, seed: int, world: int = DEFAULT_WORLD) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(photos in [-1, 1], clean scaled latents, noise levels' latents and their VAE decodes)."""
    assert scenes < HELDOUT_SEED
    photos = torch.from_numpy(np.stack([render_photo(sample_scene(s, world)) for s in range(scenes)]))
    photos = photos.permute(0, 3, 1, 2).float()
    photos = photos / 255 if photos.max() > 1.5 else photos
    photos = photos * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    sf = vae.config.scaling_factor
    with torch.no_grad():
        clean = torch.cat([vae.encode(photos[i:i + 64]).latent_dist.mean for i in range(0, scenes, 64)]) * sf
        # Each photo appears clean and at two random noise levels.
        levels = torch.cat([torch.zeros(scenes), torch.rand(2 * scenes, generator=generator) * 0.97])
        base = clean.repeat(3, 1, 1, 1)
        noise = torch.randn(base.shape, generator=generator)
        s = levels.view(-1, 1, 1, 1)
        latents = (1 - s**2).sqrt() * base + s * noise
        decoded = torch.cat([vae.decode(latents[i:i + 64] / sf).sample for i in range(0, len(latents), 64)])
    return photos, clean, latents, decoded


def trajectory_latents(scenes: int, step_counts: list[int], world: int = DEFAULT_WORLD):
    """(latents the exact guidance decoder was asked to decode, the strokes each was pulled to),
    from GradOP+ runs of the demo pipeline on training scenes 0 .. scenes - 1."""
    from gradop.decoders import exact_guidance_latents
    from gradop.pipeline import GradopPipeline
    from gradop.world import caption, render_strokes, to_pil

    assert scenes < HELDOUT_SEED
    pipe = GradopPipeline.from_pretrained(str(DEMO))
    paintings = []
    for seed in range(scenes):
        scene = sample_scene(seed, world)
        paintings.append((caption(scene), to_pil(render_strokes(scene)), seed, step_counts[seed % len(step_counts)]))
    return exact_guidance_latents(pipe, paintings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/gradop-demo-taesd")
    parser.add_argument("--scenes", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="continue from this AutoencoderTiny folder (e.g. an earlier --out)")
    parser.add_argument("--world", type=int, choices=WORLDS, default=DEFAULT_WORLD, help="world version of the photos")
    parser.add_argument("--freeze-encoder", action="store_true", help="train the decoder only (guidance uses no encoder)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gradient-weight", type=float, default=0.0, help="weight of the gradient-direction loss")
    parser.add_argument("--trajectories", type=int, default=300, help="training scenes whose GradOP+ latents to use")
    parser.add_argument("--trajectory-steps", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--trajectory-cache", help="a .pt file: load the trajectory latents from it, or save them there")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(DEMO / "vae").eval().requires_grad_(False)
    started = time.time()
    photos, clean, latents, decoded = dataset(vae, args.scenes, args.seed, args.world)
    print(f"dataset: {len(latents)} latents in {time.time() - started:.0f} s", flush=True)
    if args.gradient_weight > 0:
        from gradop.decoders import tiny_decoder, vae_decoder
        from gradop.optimize import latent_gradient
        from gradop.painting import make_painting_fn

        cache = Path(args.trajectory_cache) if args.trajectory_cache else None
        if cache is not None and cache.exists():
            guided, strokes = torch.load(cache)
        else:
            guided, strokes = trajectory_latents(args.trajectories, args.trajectory_steps, args.world)
            if cache is not None:
                torch.save((guided, strokes), cache)
        exact, paint = vae_decoder(vae), make_painting_fn("blur", *strokes.shape[-2:])
        wanted = torch.cat([latent_gradient(guided[i:i + 64], exact, strokes[i:i + 64], paint)[1]
                            for i in range(0, len(guided), 64)])
        with torch.no_grad():
            guided_decoded = torch.cat([exact(guided[i:i + 64]) for i in range(0, len(guided), 64)])
        print(f"gradients: {len(guided)} guided latents, {time.time() - started:.0f} s", flush=True)
    if args.init:
        from diffusers import AutoencoderTiny

        model = AutoencoderTiny.from_pretrained(args.init)
    else:
        model = tiny_autoencoder(args.seed)
    trained = model.decoder if args.freeze_encoder else model
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(args.seed + 1)
    log = Logger(Path(args.out) / "train_log.jsonl")
    deadline = time.time() + args.minutes * 60
    for step in range(args.steps):
        pick = torch.randint(0, len(latents), (args.batch,), generator=generator)
        decoder_loss = F.mse_loss(model.decode(latents[pick]).sample, decoded[pick])
        photo_pick = pick % len(photos)
        encoder_loss = (torch.zeros(()) if args.freeze_encoder
                        else F.mse_loss(model.encode(photos[photo_pick]).latents, clean[photo_pick]))
        loss = decoder_loss + encoder_loss
        if args.gradient_weight > 0:
            g_pick = torch.randint(0, len(guided), (args.batch,), generator=generator)
            student = tiny_decoder(model)
            slope = latent_gradient(guided[g_pick], student, strokes[g_pick], paint, create_graph=True)[1]
            cosine = F.cosine_similarity(slope.flatten(1), wanted[g_pick].flatten(1), dim=1).mean()
            guided_mse = F.mse_loss(student(guided[g_pick]), guided_decoded[g_pick])
            loss = loss + guided_mse + args.gradient_weight * (1 - cosine)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or time.time() > deadline:
            extra = {"cosine": cosine.item(), "guided_mse": guided_mse.item()} if args.gradient_weight > 0 else {}
            log(step=step, decoder_mse=decoder_loss.item(), encoder_mse=encoder_loss.item(), **extra)
        if time.time() > deadline:
            break
    out = Path(args.out)
    model.save_pretrained(out, safe_serialization=True)
    (out / "distill_args.json").write_text(json.dumps(vars(args) | {"steps_done": step + 1}, indent=2) + "\n")
    print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()
