"""Encode rendered world images with a VAE's (frozen) encoder, once, for UNet and judge training.

    .venv/bin/python train/encode_latents.py --data build/world2/train.npz --vae pretrained_models/gradop-demo/vae \
        --key paintings --out build/world2/latents_paintings.pt

Writes (posterior mean, posterior std) as a tuple of float tensors (N, 4, 16, 16), unscaled.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.common import to_tensor  # noqa: E402


@torch.no_grad()
def encode_all(vae, images: np.ndarray, batch: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(images), batch):
        dist = vae.encode(to_tensor(images[i : i + batch]).to(vae.device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/world2/train.npz")
    ap.add_argument("--vae", default="pretrained_models/gradop-demo/vae")
    ap.add_argument("--key", default="photos", help="photos, paintings or crayons")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cuda on a GPU (the latents come back to the CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.vae).eval().to(args.device)
    images = np.load(args.data)[args.key]
    t0 = time.time()
    mean, std = encode_all(vae, images)
    torch.save((mean, std), args.out)
    print(f"encoded {len(mean)} {args.key} in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
