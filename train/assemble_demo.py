"""Assemble the shipped demo model from the training outputs.

    .venv/bin/python train/assemble_demo.py --pipeline build/demo --vae build/vae_dec \
        --out pretrained_models/gradop-demo

Takes the UNet, text encoder, tokenizer and scheduler of the trained pipeline folder and the
VAE with the sharpened decoder (train_vae.py --decoder-only keeps the encoder and scaling
factor the UNet was trained with), and writes one diffusers folder of safetensors. Other
files in --out (the judge, README.md) are left alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="build/demo")
    ap.add_argument("--vae", default="", help="AutoencoderKL folder replacing the pipeline's VAE (same encoder)")
    ap.add_argument("--out", default="pretrained_models/gradop-demo")
    args = ap.parse_args()
    from diffusers import AutoencoderKL

    from gradop.world.demo_model import demo_scheduler
    from train.common import load_pipeline_folder

    pipe = load_pipeline_folder(args.pipeline)
    if args.vae:
        vae = AutoencoderKL.from_pretrained(args.vae)
        old = pipe.vae.state_dict()
        for name, value in vae.state_dict().items():
            if name.startswith(("encoder.", "quant_conv.")) and not torch.equal(old[name], value):
                raise SystemExit(f"{args.vae} has a different encoder ({name}); the UNet was trained on other latents")
        if abs(vae.config.scaling_factor - pipe.vae.config.scaling_factor) > 1e-9:
            raise SystemExit("the VAE's scaling factor differs from the one the UNet was trained with")
        pipe.vae = vae
    pipe.scheduler = demo_scheduler()
    pipe.save_pretrained(args.out, safe_serialization=True)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"wrote {args.out}: {size / 2**20:.1f} MiB in all (judge and card included)")


if __name__ == "__main__":
    main()
