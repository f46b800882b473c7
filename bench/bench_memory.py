"""Peak memory of the GradOP optimisation step (decode + backward through Stable Diffusion's VAE
decoder, random weights) at 512/768 px x 1/4 images, with and without chunking and VAE
gradient checkpointing.

Each case runs in a fresh subprocess so its peak is its own: torch.cuda.max_memory_allocated on
a GPU, the process's peak RSS (ru_maxrss) on the CPU. Cases whose predicted CPU peak exceeds
--limit-gib are skipped with the reason (the prediction scales the measured 1-image peak by
pixel count and by the images decoded at once).

    python bench/bench_memory.py                                  # CPU, fp32, every case
    python bench/bench_memory.py --channels 32 --sizes 512        # quicker: SD's structure, 1/4 width
    python bench/bench_memory.py --device cuda --dtype float16    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = [  # (size, images, guidance_batch or None for the whole batch, checkpointing)
    (512, 1, None, False), (512, 1, None, True), (512, 4, 1, False), (512, 4, 1, True), (512, 4, None, False),
    (768, 1, None, False), (768, 1, None, True), (768, 4, 1, True), (768, 4, None, True),
]


def run_case(size: int, images: int, batch: int | None, checkpointing: bool, device: str, dtype: str,
             threads: int | None, channels: int = 128) -> dict:
    """One optimisation step of `images` latents at `size` px; returns seconds and peak memory."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_guidance_precision import sd_vae, stroke_target

    from gradop.optimize import optimize_latents
    from gradop.painting import make_painting_fn
    from gradop.precision import guidance_decode

    vae = sd_vae(channels).to(device=device, dtype=getattr(torch, dtype))
    latents = torch.randn(images, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(device)
    decode = guidance_decode(vae, "auto", checkpointing=checkpointing)
    start = time.perf_counter()
    optimize_latents(latents, decode, stroke_target(size).to(device), make_painting_fn("blur", size, size),
                     steps=1, lr=0.1, batch=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return dict(seconds=time.perf_counter() - start, peak_gib=peak / 2**30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels", type=int, default=128, help="first decoder block's width (SD: 128)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--limit-gib", type=float, default=10.0, help="skip CPU cases predicted above this")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        size, images, batch, checkpointing = json.loads(args.case)
        print(json.dumps(run_case(size, images, batch, checkpointing, args.device, args.dtype, args.threads,
                                  args.channels)))
        return
    kind = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "peak RSS of the process"
    print(f"SD VAE decoder structure, channels {args.channels} (SD: 128), {args.dtype}, {args.device}; peak = {kind}; one Adam step (decode + backward per chunk)")
    print("| size | images | decoded at once | checkpointing | peak GiB | seconds |")
    print("|---|---|---|---|---|---|")
    one_image: dict[tuple[int, bool], float] = {}  # measured 1-image peaks, for predictions
    for size, images, batch, checkpointing in [case for case in CASES if case[0] in args.sizes]:
        at_once = images if batch is None else min(batch, images)
        known = one_image.get((512, checkpointing))
        predicted = None if known is None else known * (size / 512) ** 2 * at_once
        label = f"| {size} | {images} | {at_once} | {'yes' if checkpointing else 'no'} |"
        if not args.device.startswith("cuda") and predicted is not None and predicted > args.limit_gib:
            print(f"{label} skipped: predicted {predicted:.1f} GiB > {args.limit_gib:g} GiB limit | |", flush=True)
            continue
        command = [sys.executable, __file__, "--device", args.device, "--dtype", args.dtype, "--channels", str(args.channels),
                   "--case", json.dumps([size, images, batch, checkpointing])]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{label} failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]} | |", flush=True)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if images == 1 and size == 512:
            one_image[(512, checkpointing)] = result["peak_gib"]
        print(f"{label} {result['peak_gib']:.2f} | {result['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
