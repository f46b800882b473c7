"""Tune GradOP+ on a tuning range of world scenes that no benchmark uses: cheap guidance paths
against the full VAE, and method variants against SDEdit.

    .venv/bin/python bench/eval_guidance_quality.py --scenes 20 --options vae linear conv tiny
    .venv/bin/python bench/eval_guidance_quality.py --options vae "vae-half guidance_early_stop=0.02" "linear lr=0.05"
    .venv/bin/python bench/eval_guidance_quality.py --model build/demo2c_final --world-version 2 \
        --judge pretrained_models/gradop-demo/judge2 --sdedit 0.5 0.7 0.9 --steps 25 \
        --options vae-half "vae-half guidance_latent=x0"

Each option is a guidance decoder followed by GradOP+ knobs as name=value. For each scene (seeds
from TUNING_SEED; the quality benchmark, which confirms a choice, draws its own held-out ranges):
its stroke painting (the world's renderer for even scenes, the app-style renderer of the
quality benchmark for odd ones) and photo caption, text2img, SDEdit at each --sdedit strength,
and GradOP+ with the release's defaults plus each option, all with the same seed. Faithfulness:
blurred L2 = MSE(f(output), f(strokes)), f = the release's blur scaled to 64 px (lower is
better). Realism: the judge's photo probability (gradop/world/judge.py; higher is better), with
a 95% bootstrap CI over scenes. Cost: the mean number of Adam steps (decode + backward passes).
Prints one row per setting with its relative difference to "vae" (the exact path) and whether
it is within --tolerance (5%) on both; with --sdedit, each option's realism difference to each
SDEdit strength (paired, CI) where its blurred L2 is not worse.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from gradop.images import pil_to_tensor
from gradop.painting import make_painting_fn
from gradop.pipeline import GradopPipeline
from gradop.sharing import SharedPasses
from gradop.quality.metrics import bootstrap_ci, format_ci
from gradop.quality.scenes import TUNING_SEED, tuning_painting
from gradop.world import DEFAULT_WORLD, WORLDS, caption
from gradop.world.judge import JUDGES, load_judge


def parse_option(text: str) -> dict:
    """"vae-half guidance_early_stop=0.02" -> {"guidance_decoder": "vae-half", "guidance_early_stop": 0.02}."""
    decoder, *knobs = text.split()
    options = {"guidance_decoder": decoder}
    for knob in knobs:
        name, _, value = knob.partition("=")
        options[name] = int(value) if value.isdigit() else _number_or_text(value)
    return options


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value  # a choice, e.g. guidance_latent=x0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--options", nargs="+", default=["vae", "linear", "conv", "tiny"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=64,
                        help="generation side; images are scored at 64 px, the judge's size (default 64)")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON with every row")
    parser.add_argument("--model", default="gradop-demo")
    parser.add_argument("--world-version", type=int, choices=WORLDS, default=DEFAULT_WORLD)
    parser.add_argument("--judge", help="judge folder (default: the shipped judge of --world-version)")
    parser.add_argument("--sdedit", type=float, nargs="*", default=[], help="SDEdit strengths to compare with")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = GradopPipeline.from_pretrained(args.model)
    judge = load_judge(args.judge or JUDGES[args.world_version])
    paint = make_painting_fn("blur", 64, 64)
    options = args.options
    rows = []
    started = time.time()
    for index in range(args.scenes):
        scene, strokes = tuning_painting(index, args.world_version)
        text = caption(scene)
        shared = SharedPasses()  # every decoder's GradOP+ starts with the same text-only steps
        common = dict(seed=index, steps=args.steps, shared=shared, height=args.size, width=args.size)
        images = {"text": pipe.generate("text", text, **common).images[0]}
        for strength in args.sdedit:
            images[f"sdedit {strength}"] = pipe.generate("sdedit", text, strokes, strength=strength,
                                                         **common).images[0]
        adam = {}
        for name in options:
            result = pipe.generate("gradop+", text, strokes, **parse_option(name), **common)
            images[name], adam[name] = result.images[0], len(result.losses)
        target = paint(pil_to_tensor(strokes))
        batch = torch.cat([pil_to_tensor(image.resize((64, 64), Image.Resampling.BOX)) for image in images.values()])
        l2 = ((paint(batch) - target) ** 2).flatten(1).mean(1).tolist()
        real = judge.realism(batch).tolist()
        rows.append({"seed": TUNING_SEED + index, **{f"l2_{k}": v for k, v in zip(images, l2)},
                     **{f"real_{k}": v for k, v in zip(images, real)}, **{f"adam_{k}": v for k, v in adam.items()}})
        print(f"scene {index + 1}/{args.scenes}  {time.time() - started:.0f} s  load {os.getloadavg()[0]:.1f}",
              flush=True)
        if args.out:  # after every scene: a long run can be read before it ends
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1)
    summarise(rows, options, args)


def summarise(rows: list[dict], options: list[str], args) -> None:
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "seed"}
    groups = [row["seed"] for row in rows]
    baselines = [f"sdedit {s}" for s in args.sdedit]
    print(f"\n{len(rows)} tuning scenes, {args.model}, world {args.world_version}, GradOP+ defaults plus the "
          f"option, {args.steps} steps, {args.size} px")
    print(f"{'setting':<44} {'blurred L2':>10} {'vs vae':>8} {'realism [95% CI]':>22} {'vs vae':>8} {'Adam':>5}  "
          f"within {args.tolerance:.0%}")
    for name in ["text", *baselines, *options]:
        l2, real = mean[f"l2_{name}"], mean[f"real_{name}"]
        dl2 = l2 / mean["l2_vae"] - 1 if "vae" in options else float("nan")
        dreal = real / mean["real_vae"] - 1 if "vae" in options else float("nan")
        ok = name in options and dl2 <= args.tolerance and dreal >= -args.tolerance
        ci = format_ci(bootstrap_ci([row[f"real_{name}"] for row in rows], groups))
        print(f"{name:<44} {l2:10.4f} {dl2:+8.1%} {ci:>22} {dreal:+8.1%} {mean.get(f'adam_{name}', 0):5.1f}  "
              f"{'yes' if ok else 'no'}", flush=True)
    for base in baselines:
        for name in options:
            if mean[f"l2_{name}"] > mean[f"l2_{base}"]:
                continue  # less faithful than this SDEdit: no comparison at equal faithfulness
            diff = bootstrap_ci([row[f"real_{name}"] - row[f"real_{base}"] for row in rows], groups)
            print(f"  {name} - {base}: realism {format_ci(diff)}, blurred L2 "
                  f"{mean[f'l2_{name}'] - mean[f'l2_{base}']:+.4f}{'  WIN' if diff['low'] > 0 else ''}")


if __name__ == "__main__":
    main()
