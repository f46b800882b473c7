"""One line per GradOP+ guidance option: seconds per image and the ratio to text2img at the same steps.

Stable Diffusion 1.5's architecture with random weights (timing does not depend on the weights;
bench_methods.sd15_components), one run of each, on one machine:

    python bench/bench_guidance.py                     # CPU: 256 px, 50 steps
    python bench/bench_guidance.py --device cuda --dtype float16 --size 512 --steps 50
    python bench/bench_guidance.py --options vae --precisions auto bf16 --guidance-only   # bf16 autocast
    python bench/bench_guidance.py --device cuda --size 512 --options vae --guidance-only --compile-unet --compile-decoder

text2img is timed first and last; the ratios use the mean of the two (the machine's load may
drift during the run). SDEdit (strength 0.8) and GradOP (two passes) get a line each too, so one
run gives every method's seconds per image. On CUDA each line runs once untimed first (kernel
selection, allocator) and reports its own peak GPU memory. "tiny" is diffusers'
AutoencoderTiny with TAESD's default architecture and random weights. A fitted map ("linear", "conv") is fitted once per model, when first used:
that one-time cost is printed separately and not counted per image. "(default)" marks the
option GradopPlusOptions uses when none is given.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench_methods import peak_memory, sd15_components, strokes, timed
from gradop.models import pick_device, pick_dtype
from gradop.options import GradopPlusOptions
from gradop.pipeline import GradopPipeline
from gradop.precision import PRECISION_MODES

OPTIONS = ("linear", "conv", "tiny", "vae-half", "vae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on cuda, float32 on cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated guidance decoders")
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISION_MODES,
                        help="guidance_precision for each decoder line (bf16: autocast, e.g. on CPUs with AMX)")
    parser.add_argument("--early-stop", type=float, default=0.0, help="guidance_early_stop for every line")
    parser.add_argument("--channels-last", action="store_true", help="UNet and VAE in channels_last memory format")
    parser.add_argument("--compile-decoder", action="store_true", help="torch.compile the guidance decoders")
    parser.add_argument("--compile-unet", action="store_true", help="torch.compile the UNet (CUDA graphs on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--guidance-only", action="store_true", help="skip the SDEdit and GradOP lines")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    components = sd15_components(device, dtype)
    if args.channels_last:
        for name in ("unet", "vae"):
            components[name].to(memory_format=torch.channels_last)
    from diffusers import AutoencoderTiny

    torch.manual_seed(1)
    tiny = AutoencoderTiny().to(device=device, dtype=dtype)  # TAESD's architecture, random weights
    pipe = GradopPipeline(components, model_name="sd15-architecture-random", device=device, dtype=dtype,
                          tiny_decoder=tiny, compile_decoder=args.compile_decoder, compile_unet=args.compile_unet)
    image, prompt = strokes(args.size), "a photo of a fox beside a tree"
    common = dict(height=args.size, width=args.size, steps=args.steps, seed=0)
    default = GradopPlusOptions().guidance_decoder
    print(f"device {device}, {dtype}, {args.size}x{args.size}, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}, channels_last {args.channels_last}, compile decoder {args.compile_decoder}, "
          f"compile UNet {args.compile_unet}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    pipe.text2img(prompt, **common | {"steps": 1})  # warm-up (allocator, kernels)
    cuda = device.type == "cuda"

    def measure(fn):
        """Seconds of one call (after an untimed one on CUDA) and its peak GPU memory in GiB."""
        if cuda:
            fn()
            torch.cuda.reset_peak_memory_stats()
        seconds, result = timed(fn, device)
        return seconds, result, torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")

    text_first, _, text_peak = measure(lambda: pipe.text2img(prompt, **common))
    print(f"{'text2img':<22} {text_first:8.2f} s   (first)", flush=True)
    rows = []
    methods = (("sdedit 0.8", lambda: pipe.sdedit(prompt, image, strength=0.8, **common)),
               ("gradop (two passes)", lambda: pipe.gradop(prompt, image, **common)))
    for name, call in methods[: 0 if args.guidance_only else None]:
        seconds, _, peak = measure(call)
        rows.append((name, seconds, 0.0, peak))
        print(f"{name:<22} {seconds:8.2f} s   {seconds / text_first:5.2f}x of the first text2img", flush=True)
    for name, precision in [(n, p) for n in args.options.split(",") for p in args.precisions]:
        began = time.perf_counter()
        pipe.guidance_decoders(name)  # build or fit it once per model (not per image)
        setup = time.perf_counter() - began
        seconds, result, peak = measure(lambda: pipe.gradop_plus(
            prompt, image, guidance_decoder=name, guidance_precision=precision, guidance_early_stop=args.early_stop,
            **common))
        label = name + ("" if precision == "auto" else f" {precision}")
        mark = " (default)" if name == default and precision == "auto" else ""
        rows.append((f"gradop+ {label}{mark}", seconds, setup, peak))
        print(f"gradop+ {label + mark:<14} {seconds:8.2f} s   {seconds / text_first:5.2f}x of the first text2img; "
              f"setup {setup:.1f} s; {len(result.losses)} Adam steps; load {os.getloadavg()[0]:.1f}", flush=True)
    text_last, _, _ = measure(lambda: pipe.text2img(prompt, **common))
    text = (text_first + text_last) / 2
    print(f"{'text2img':<22} {text_last:8.2f} s   (last); mean {text:.2f} s", flush=True)
    print("\nsummary (ratio to the mean text2img at the same steps):")
    print(f"{'method':<28} {'s/image':>8} {'ratio':>6} {'setup s':>8}" + (f" {'peak GiB':>9}" if cuda else ""))
    for name, seconds, setup, peak in [("text2img", text, 0.0, text_peak)] + rows:
        print(f"{name:<28} {seconds:8.2f} {seconds / text:6.2f} {setup:8.1f}" + (f" {peak:9.2f}" if cuda else ""))
    print(peak_memory(device))


if __name__ == "__main__":
    main()
