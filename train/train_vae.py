"""Train the demo model's VAE (AutoencoderKL, 4x downsampling) on world photos and strokes.

    .venv/bin/python train/train_vae.py --data build/world/train.npz --out build/vae \
        --minutes 16 --batch 16 --seed 0

Loss: L1 + MSE on pixels + a small KL term (latent mean/var regulariser), posterior samples
during training. 85% photos, 15% stroke paintings (SDEdit encodes strokes). Writes a diffusers
AutoencoderKL folder every --save-every steps and at the end, with scaling_factor set to
1 / std of the training latents (as SD does). Stops after --steps or --minutes, whichever first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world.demo_model import demo_vae  # noqa: E402
from train.common import Logger, load_cache, to_tensor  # noqa: E402


def latent_std(vae, images: torch.Tensor) -> float:
    with torch.no_grad():
        z = torch.cat([vae.encode(images[i : i + 64]).latent_dist.sample() for i in range(0, len(images), 64)])
    return float(z.std())


def save(vae, images_for_scale: torch.Tensor, out: Path, keep_scale: bool = False) -> float:
    vae.eval()
    std = 1.0 / vae.config.scaling_factor if keep_scale else latent_std(vae, images_for_scale)
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(out, safe_serialization=True)
    vae.train()
    return std


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/world/train.npz")
    ap.add_argument("--out", default="build/vae")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--init", default="", help="continue from this AutoencoderKL folder")
    ap.add_argument("--logvar-bias", type=float, default=None,
                    help="set the posterior log-variance to this constant (zero weights, this bias) before training: "
                         "small posterior noise from the start makes the short CPU training converge much faster")
    ap.add_argument("--decoder-only", action="store_true",
                    help="freeze the encoder (and so the latent space and scaling factor): sharpen the decoder of a "
                         "VAE whose latents a UNet is already training on")
    ap.add_argument("--mix", default="", help="v2: domain:weight list of the training images, e.g. "
                    "photos:0.4,paintings:0.2,crayons:0.2,strokes:0.2 (default: 85%% photos, 15%% strokes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_cache(args.data)
    photos, strokes = data["photos"], data["strokes"]
    mix = [item.split(":")[0] for item in args.mix.split(",")] if args.mix else []
    mix_p = np.array([float(item.split(":")[1]) for item in args.mix.split(",")]) if args.mix else None
    if mix:
        mix_p = mix_p / mix_p.sum()
    out = Path(args.out)
    if args.init:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.init).train()
    else:
        vae = demo_vae(seed=args.seed).train()
    if args.logvar_bias is not None:
        with torch.no_grad():
            c = vae.config.latent_channels
            vae.quant_conv.weight[c:].zero_()
            vae.quant_conv.bias[c:].fill_(args.logvar_bias)
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters()) if args.decoder_only \
        else list(vae.parameters())
    if args.decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    log = Logger(out / "log.jsonl")
    scale_images = to_tensor(photos[:256])
    t0, step = time.time(), 0
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        idx = rng.integers(0, len(photos), args.batch)
        if mix:
            which = rng.choice(len(mix), args.batch, p=mix_p)
            batch = np.stack([data[mix[k]][i] for k, i in zip(which, idx)])
        else:
            use_strokes = rng.random(args.batch) < 0.15
            batch = np.where(use_strokes[:, None, None, None], strokes[idx], photos[idx])
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        x = to_tensor(np.ascontiguousarray(batch))
        # Cosine decay to 10% over the planned time.
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))
        with torch.set_grad_enabled(not args.decoder_only):
            post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        l1 = (recon - x).abs().mean()
        mse = (recon - x).pow(2).mean()
        kl = post.kl().mean() / np.prod(post.mean.shape[1:])
        loss = l1 + mse + (0.0 if args.decoder_only else args.kl) * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log(step=step, l1=float(l1), mse=float(mse), kl=float(kl), lr=opt.param_groups[0]["lr"])
        if step % args.save_every == 0:
            save(vae, scale_images, out, keep_scale=args.decoder_only)
    std = save(vae, scale_images, out, keep_scale=args.decoder_only)
    log(step=step, done=True, latent_std=std, minutes=(time.time() - t0) / 60)


if __name__ == "__main__":
    main()
