"""Does a scribble's low-frequency content say "painting" rather than "photo" in world v2?

The paper's problem (SDEdit's outputs keep a painted look) needs a world where the colours that
survive SDEdit's noise, roughly a blurred image, tell the domains apart and put a scribble on
the painting side. For held-out world-v2 scenes (a range no training or benchmark uses), this
blurs every domain's render and prints, per blur sigma: the mean squared distance of the
blurred strokes to each blurred domain, the mean chroma (max - min channel) of each domain, and
judge v2's photo probability of each blurred domain.

    .venv/bin/python train/domain_lowfreq.py --scenes 120
"""

from __future__ import annotations

import argparse

import torch

from gradop.painting import gaussian_blur
from gradop.world import sample_scene
from gradop.world.domains import render
from gradop.world.judge import load_judge
from gradop.world.scene import HELDOUT_SEED

DIAGNOSTIC_SEED = HELDOUT_SEED + 600_000
DOMAINS = ("photo", "painting", "crayon", "strokes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--judge", default="pretrained_models/gradop-demo/judge2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    judge = load_judge(args.judge)
    renders = {d: [] for d in DOMAINS}
    for index in range(args.scenes):
        scene = sample_scene(DIAGNOSTIC_SEED + index, 2)
        for domain in DOMAINS:
            renders[domain].append(torch.from_numpy(render(scene, domain)).permute(2, 0, 1))  # float32 in [0, 1]
    images = {d: torch.stack(v) for d, v in renders.items()}
    print(f"{args.scenes} world-v2 scenes from seed {DIAGNOSTIC_SEED}, 64 px")
    print("| sigma | " + " | ".join(f"MSE(strokes, {d})" for d in DOMAINS[:3]) + " | chroma " + " / ".join(DOMAINS)
          + " | judge P(photo) " + " / ".join(DOMAINS) + " |")
    for sigma in args.sigmas:
        blurred = {d: gaussian_blur(x, 2 * int(3 * sigma) + 1, sigma) if sigma > 0 else x for d, x in images.items()}
        mse = [float(((blurred["strokes"] - blurred[d]) ** 2).mean()) for d in DOMAINS[:3]]
        chroma = [float((blurred[d].amax(1) - blurred[d].amin(1)).mean()) for d in DOMAINS]
        real = [float(judge.realism(blurred[d]).mean()) for d in DOMAINS]
        print(f"| {sigma:g} | " + " | ".join(f"{v:.4f}" for v in mse) + " | " + " / ".join(f"{v:.3f}" for v in chroma)
              + " | " + " / ".join(f"{v:.2f}" for v in real) + " |")


if __name__ == "__main__":
    main()
