"""Distil a small diffusers AutoencoderTiny (TAESD architecture) from the demo model's VAE.

    .venv/bin/python train/distill_guidance_decoder.py --out build/taesd-a --scenes 1500 --minutes 20 --steps 3000
    .venv/bin/python train/distill_guidance_decoder.py --out build/taesd-b --init build/taesd-a \
        --scenes 600 --minutes 14 --steps 1000 --lr 1e-3 --seed 1
(the shipped decoder: these two rounds on a shared 2-core CPU, see its README).

GradOP+ decodes *noisy* latents in the middle of sampling, so the decoder is taught on the VAE's
encodings of world photos (training seeds, below HELDOUT_SEED) mixed with Gaussian noise at a
random level s in [0, 0.97] (z = sqrt(1 - s^2) z0 + s eps), against the VAE's own decode of the
same latent (MSE in pixels). The encoder is taught to give the VAE's (scaled) latent mean, so
the folder is a complete AutoencoderTiny that `AutoencoderTiny.from_pretrained` loads.
Seeded; CPU, one thread; stops after --steps or --minutes.
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(DEMO / "vae").eval().requires_grad_(False)
    started = time.time()
    photos, clean, latents, decoded = dataset(vae, args.scenes, args.seed, args.world)
    print(f"dataset: {len(latents)} latents in {time.time() - started:.0f} s", flush=True)
    if args.init:
        from diffusers import AutoencoderTiny

        model = AutoencoderTiny.from_pretrained(args.init)
    else:
        model = tiny_autoencoder(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(args.seed + 1)
    log = Logger(Path(args.out) / "train_log.jsonl")
    deadline = time.time() + args.minutes * 60
    for step in range(args.steps):
        pick = torch.randint(0, len(latents), (args.batch,), generator=generator)
        decoder_loss = F.mse_loss(model.decode(latents[pick]).sample, decoded[pick])
        photo_pick = pick % len(photos)
        encoder_loss = F.mse_loss(model.encode(photos[photo_pick]).latents, clean[photo_pick])
        optimizer.zero_grad()
        (decoder_loss + encoder_loss).backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or time.time() > deadline:
            log(step=step, decoder_mse=decoder_loss.item(), encoder_mse=encoder_loss.item())
        if time.time() > deadline:
            break
    out = Path(args.out)
    model.save_pretrained(out, safe_serialization=True)
    (out / "distill_args.json").write_text(json.dumps(vars(args) | {"steps_done": step + 1}, indent=2) + "\n")
    print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()
