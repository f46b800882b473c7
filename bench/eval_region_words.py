"""Tune region-to-word control on colour-ambiguous paintings that no benchmark uses.

    .venv/bin/python bench/eval_region_words.py --cases 16 --strengths 0.5 2 8
    .venv/bin/python bench/eval_region_words.py --method gradop+ --cases 8 --steps 25
    .venv/bin/python bench/eval_region_words.py --method gradop+ --set guidance_latent=denoised strength=0.9 iterations=20 lr=0.03

The paintings are the quality benchmark's "ambiguous" kind (one colour that can mean two
classes; the caption names both) drawn from AMBIGUOUS_TUNING_SEED instead of the benchmark's
held-out range, so a choice made here is confirmed by `gradop bench quality`. Each painting runs
without control and with each of its two words assigned to the colour at every --strengths w'.
Printed per w': the mean share of the region's pixels that the judge labels as the assigned
word's class (all cases, then the natural and the swapped word), with a 95% bootstrap CI over
paintings, and the judge's realism.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from gradop.pipeline import GradopPipeline
from gradop.quality.metrics import bootstrap_ci, format_ci
from gradop.quality.runner import Context, RegionSection, Setting
from gradop.quality.scenes import AMBIGUOUS_TUNING_SEED, ambiguous_painting
from gradop.world import DEFAULT_WORLD, WORLDS
from gradop.world.judge import JUDGES, load_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16, help="tuning paintings (the 4 colour pairs cycle)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 2.0], help="region strengths w' > 0")
    parser.add_argument("--method", default="text", choices=["text", "sdedit", "gradop+", "gradop"])
    parser.add_argument("--set", nargs="+", default=[], metavar="KNOB=VALUE",
                        help="the method's knobs, e.g. strength=0.9 guidance_latent=denoised (numbers are parsed)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=2, help="images per painting and setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="gradop-demo")
    parser.add_argument("--world-version", type=int, choices=WORLDS, default=DEFAULT_WORLD)
    parser.add_argument("--judge", help="judge folder (default: the shipped judge of --world-version)")
    parser.add_argument("--out", default=None, help="JSON with every row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The quality benchmark's own region section, on paintings from the tuning range.
    ctx = Context(GradopPipeline.from_pretrained(args.model), load_judge(args.judge or JUDGES[args.world_version]),
                  seeds=args.seeds, steps=args.steps,
                  region_settings=(Setting(args.method, args.method, parse_knobs(args.set)),),
                  region_strengths=tuple(args.strengths), world_version=args.world_version)
    section, rows, started = RegionSection(), [], time.time()
    for index in range(args.cases):
        painting = ambiguous_painting(index, world_version=args.world_version, seed_base=AMBIGUOUS_TUNING_SEED)
        rows += section.run(ctx, painting)
        print(f"case {index + 1}/{args.cases}  {time.time() - started:.0f} s", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1)
    summarise(rows, args)


def parse_knobs(pairs: list[str]) -> tuple:
    """["strength=0.9", "guidance_latent=denoised"] -> (("strength", 0.9), ("guidance_latent", "denoised"))."""
    knobs = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KNOB=VALUE pairs, got {pair!r}")
        try:
            value = json.loads(value)
        except ValueError:
            pass  # a word, e.g. denoised
        knobs.append((name, value))
    return tuple(knobs)


def summarise(rows: list[dict], args) -> None:
    print(f"\n{args.cases} tuning ambiguous paintings (seeds from {AMBIGUOUS_TUNING_SEED}), {args.model}, "
          f"{args.method} {' '.join(args.set)}, {args.steps} steps, {args.seeds} seeds")
    print(f"{'w':>5} {'assigned [95% CI]':>24} {'natural':>8} {'swapped':>8} {'competing':>10} {'realism':>8}")
    for strength in [0.0, *args.strengths]:
        sel = [r for r in rows if r["region_strength"] == strength]
        ci = format_ci(bootstrap_ci([r["assigned_share"] for r in sel], [r["painting"] for r in sel]))
        natural = np.mean([r["assigned_share"] for r in sel if r["natural"]])
        swapped = np.mean([r["assigned_share"] for r in sel if not r["natural"]])
        print(f"{strength:5.2f} {ci:>24} {natural:8.3f} {swapped:8.3f} "
              f"{np.mean([r['competing_share'] for r in sel]):10.3f} {np.mean([r['realism_judge'] for r in sel]):8.3f}")


if __name__ == "__main__":
    main()
