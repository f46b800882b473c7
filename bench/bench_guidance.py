"""One line per GradOP+ guidance option: seconds per image and the ratio to text2img at the same steps.

Stable Diffusion 1.5's architecture with random weights (timing does not depend on the weights;
bench_methods.sd15_components), one run of each, on one machine:

    python bench/bench_guidance.py                     # CPU: 256 px, 50 steps
    python bench/bench_guidance.py --device cuda --dtype float16 --size 512 --steps 50
    python bench/bench_guidance.py --options vae --precisions auto bf16 --guidance-only   # bf16 autocast
    python bench/bench_guidance.py --device cuda --size 512 --options vae --guidance-only --compile-unet --compile-decoder
    python bench/bench_guidance.py --options vae --guidance-only --denoised --threads 2   # the denoised steps

text2img is timed first and last, and the ratios use the mean of the two; with --interleave it is
timed between every two lines too, and each line's ratio uses the text2img runs just before and
after it (this shared CPU's speed drifted by a third within one run). SDEdit (strength 0.8) and GradOP (two passes) get a line each too, so one
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
from gradop.options import GradopPlusOptions, denoised_knobs
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
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="steps of the untimed text2img run first (default 1: kernels and allocator only)")
    parser.add_argument("--interleave", action="store_true",
                        help="time text2img before and after every line (a machine whose speed drifts)")
    parser.add_argument("--adam", nargs="+", default=[], metavar="STEPSxLR",
                        help="Adam schedules per iteration, e.g. 12x0.1 (the release) 1x1.2 (default: the options')")
    parser.add_argument("--channels-last", action="store_true", help="UNet and VAE in channels_last memory format")
    parser.add_argument("--compile-decoder", action="store_true", help="torch.compile the guidance decoders")
    parser.add_argument("--compile-unet", action="store_true", help="torch.compile the UNet (CUDA graphs on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--guidance-only", action="store_true", help="skip the SDEdit and GradOP lines")
    parser.add_argument("--denoised", action="store_true",
                        help="add lines for guidance_latent 'denoised' and 'denoised-fast' with their tuned "
                             "schedule (denoised_knobs)")
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

    pipe.text2img(prompt, **common | {"steps": args.warmup_steps})  # warm-up (allocator, kernels), untimed
    cuda = device.type == "cuda"

    def measure(fn):
        """Seconds of one call (after an untimed one on CUDA) and its peak GPU memory in GiB."""
        if cuda:
            fn()
            torch.cuda.reset_peak_memory_stats()
        seconds, result = timed(fn, device)
        return seconds, result, torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")

    lines = []  # (label, call, setup seconds)
    if not args.guidance_only:
        lines += [("sdedit 0.8", lambda: pipe.sdedit(prompt, image, strength=0.8, **common), 0.0),
                  ("gradop (two passes)", lambda: pipe.gradop(prompt, image, **common), 0.0)]
    schedules = [tuple(float(v) for v in text.split("x")) for text in args.adam] or [(None, None)]
    for name, precision, (grad_steps, lr) in [(n, p, a) for n in args.options.split(",") for p in args.precisions
                                              for a in schedules]:
        began = time.perf_counter()
        pipe.guidance_decoders(name)  # build or fit it once per model (not per image)
        setup = time.perf_counter() - began
        knobs = dict(guidance_decoder=name, guidance_precision=precision, guidance_early_stop=args.early_stop)
        if grad_steps is not None:
            knobs |= {"grad_steps": int(grad_steps), "lr": lr}
        label = name + ("" if precision == "auto" else f" {precision}") + \
            (f" {int(grad_steps)}x{lr:g}" if grad_steps is not None else "")
        mark = " (default)" if name == default and precision == "auto" and grad_steps is None else ""
        lines.append((f"gradop+ {label}{mark}", lambda knobs=knobs: pipe.gradop_plus(prompt, image, **knobs, **common),
                      setup))

    if args.denoised:  # through the UNet: a UNet forward + backward per pull on top of the decoder's;
        for latent in ("denoised", "denoised-fast"):  # fast: the decoder's alone
            knobs = denoised_knobs(args.steps, latent)
            lines.append((f"gradop+ vae {latent} {knobs['iterations']}x{knobs['lr']:g}",
                          lambda knobs=knobs: pipe.gradop_plus(prompt, image, **knobs, **common), 0.0))

    def time_text():
        seconds, _, peak = measure(lambda: pipe.text2img(prompt, **common))
        print(f"{'text2img':<28} {seconds:8.2f} s", flush=True)
        return seconds, peak

    texts = [time_text()]
    rows = []  # (label, seconds, setup, peak, the text2img seconds it is compared with)
    for label, call, setup in lines:
        seconds, result, peak = measure(call)
        adam = f"; {len(result.losses)} Adam steps" if label.startswith("gradop+") else ""
        print(f"{label:<28} {seconds:8.2f} s   setup {setup:.1f} s{adam}; load {os.getloadavg()[0]:.1f}", flush=True)
        if args.interleave:
            texts.append(time_text())
        rows.append([label, seconds, setup, peak, len(texts) - 2 if args.interleave else None])
    if not args.interleave:
        texts.append(time_text())
    mean = sum(t for t, _ in texts) / len(texts)
    against = "the mean of the runs just before and after each line" if args.interleave else \
        "the mean of the first and last runs"
    print(f"\nsummary (ratio to text2img at the same steps: {against}; "
          f"text2img {min(t for t, _ in texts):.2f}-{max(t for t, _ in texts):.2f} s over {len(texts)} runs):")
    print(f"{'method':<28} {'s/image':>8} {'ratio':>6} {'setup s':>8}" + (f" {'peak GiB':>9}" if cuda else ""))
    print(f"{'text2img':<28} {mean:8.2f} {1:6.2f} {0:8.1f}" + (f" {texts[0][1]:9.2f}" if cuda else ""))
    for label, seconds, setup, peak, before in rows:
        text = mean if before is None else (texts[before][0] + texts[before + 1][0]) / 2
        print(f"{label:<28} {seconds:8.2f} {seconds / text:6.2f} {setup:8.1f}" + (f" {peak:9.2f}" if cuda else ""))
    print(peak_memory(device))


if __name__ == "__main__":
    main()
