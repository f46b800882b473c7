"""GradOP+ per image with the model eager, with its UNet compiled, and with the guidance decoder
compiled too (GradopPipeline's compile_unet / compile_decoder), on one machine in one run.

    python bench/bench_compile.py                       # the demo model on this CPU, 64 px, 50 steps
    python bench/bench_compile.py --model /srv/sd15 --device cuda --size 512

Each variant's first call (which compiles) is timed apart; then --runs rounds of one call per
variant, interleaved so that the machine's drift hits all alike; the median per variant, its ratio
to eager, and the mean and largest pixel difference of its last image to eager's (same seed; Adam
steps every latent element by about lr whatever its gradient's size, so rounding differences in
small gradients move some pixels far, as between fp32 and bf16).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from bench_methods import strokes, timed
from gradop.pipeline import GradopPipeline

VARIANTS = {"eager": {}, "unet": {"compile_unet": True}, "unet+decoder": {"compile_unet": True, "compile_decoder": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gradop-demo")
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipes = {name: GradopPipeline.from_pretrained(args.model, device=args.device, **flags)
             for name, flags in VARIANTS.items()}
    size = args.size or pipes["eager"].default_size
    image, prompt = strokes(size), "a photo of a lake beside a hut"
    call = dict(height=size, width=size, steps=args.steps, seed=1)

    def one_image(pipe) -> tuple[float, np.ndarray]:
        seconds, result = timed(lambda: pipe.gradop_plus(prompt, image, **call), pipe.device)
        return seconds, np.asarray(result.images[0], dtype=np.int16)

    print(f"{args.model} on {pipes['eager'].device}, {size} px, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}", flush=True)
    for name, pipe in pipes.items():
        print(f"{name:<14} first call {one_image(pipe)[0]:7.2f} s", flush=True)
    seconds, pixels = {name: [] for name in pipes}, {}
    for _ in range(args.runs):
        for name, pipe in pipes.items():
            spent, pixels[name] = one_image(pipe)
            seconds[name].append(spent)
    eager = statistics.median(seconds["eager"])
    print(f"\n{'variant':<14} {'median s':>9} {'vs eager':>9} {'runs':>28} {'pixel diff mean / max':>22}")
    for name, values in seconds.items():
        diff = np.abs(pixels[name] - pixels["eager"])
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<14} {statistics.median(values):9.2f} {statistics.median(values) / eager:8.2f}x {runs:>28} "
              f"{diff.mean():16.2f} / {diff.max()}")


if __name__ == "__main__":
    main()
