"""Blend two fine-tunings of one model in weight space (WiSE-FT, Wortsman et al., CVPR 2022).

    .venv/bin/python train/blend_models.py --base pretrained_models/gradop-demo \
        --tuned build/demo7_a --alpha 0.5 --out build/blend

The UNet and text encoder of --out are (1 - alpha) * base + alpha * tuned, tensor by tensor;
everything else (VAE, tokenizer, scheduler) is the base's. Both must share an architecture and
should come from one starting point (--tuned trained on from --base), so that the straight line
between them stays in a low-loss basin. Why: training v3c on under region control raised the
region share but lowered text2img's realism without control; the blend keeps most of the first
and little of the second (model card, "Session 18"). Other files in --out are left alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BLENDED = ("unet", "text_encoder")


def blend_state(base: dict, tuned: dict, alpha: float) -> dict:
    """(1 - alpha) * base + alpha * tuned for floating-point tensors (computed in fp32, stored in
    the base's dtype); other tensors (integer buffers) must be equal and are kept."""
    if base.keys() != tuned.keys():
        missing = sorted(set(base) ^ set(tuned))[:3]
        raise ValueError(f"the two models differ in their tensors (e.g. {missing}); blend only fine-tunings of one model")
    out = {}
    for name, b in base.items():
        t = tuned[name]
        if b.shape != t.shape:
            raise ValueError(f"{name}: shape {tuple(b.shape)} against {tuple(t.shape)}; blend only one architecture")
        if b.is_floating_point():
            out[name] = torch.lerp(b.float(), t.float(), alpha).to(b.dtype)
        elif torch.equal(b, t):
            out[name] = b
        else:
            raise ValueError(f"{name}: non-float tensors differ and cannot be blended")
    return out


def blend_pipelines(base, tuned, alpha: float):
    """`base` with its UNet and text encoder replaced by the blend (in place; returned)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (got {alpha})")
    for name in BLENDED:
        module = getattr(base, name)
        module.load_state_dict(blend_state(module.state_dict(), getattr(tuned, name).state_dict(), alpha))
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="diffusers pipeline folder (alpha 0)")
    ap.add_argument("--tuned", required=True, help="the same model trained on (alpha 1)")
    ap.add_argument("--alpha", type=float, required=True, help="weight of --tuned, in [0, 1]")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from train.common import load_pipeline_folder

    pipe = blend_pipelines(load_pipeline_folder(args.base), load_pipeline_folder(args.tuned), args.alpha)
    pipe.save_pretrained(args.out, safe_serialization=True)
    print(f"wrote {args.out}: {1 - args.alpha:g} x {args.base} + {args.alpha:g} x {args.tuned}")


if __name__ == "__main__":
    main()
