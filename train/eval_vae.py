"""Reconstruction L1 (pixels in [-1, 1]) of VAEs on held-out world-2 scenes (world=2), per domain.

    .venv/bin/python train/eval_vae.py pretrained_models/gradop-demo/vae build/vae2_dec --n 200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world import render, sample_scene  # noqa: E402
from gradop.world.scene import HELDOUT_SEED  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("vaes", nargs="+")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from diffusers import AutoencoderKL

    scenes = [sample_scene(HELDOUT_SEED + 20_000 + i, world=2) for i in range(args.n)]
    images = {d: torch.from_numpy(np.stack([render(s, d) for s in scenes])).permute(0, 3, 1, 2) * 2 - 1
              for d in ("photo", "painting", "crayon", "strokes")}
    for folder in args.vaes:
        vae = AutoencoderKL.from_pretrained(folder).eval()
        row = {}
        with torch.no_grad():
            for d, x in images.items():
                recon = torch.cat([vae(x[i : i + 50]).sample.clamp(-1, 1) for i in range(0, len(x), 50)])
                row[d] = round(float((recon - x).abs().mean()), 4)
        print(json.dumps({"vae": folder, "n": args.n, "l1": row}))


if __name__ == "__main__":
    main()
