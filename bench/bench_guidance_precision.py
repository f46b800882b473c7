"""How well the GradOP painting-loss gradient survives fp16/bf16: cosine to the fp32 gradient
and the fraction of exactly-zero entries, for each guidance precision mode.

Random weights (the effect comes from the image size: the loss is a mean over every pixel
value). The reference is the same decoder in fp32. Default: Stable Diffusion's VAE decoder
(block_out_channels 128-256-512-512); --channels 32 gives the same depth at a quarter width.

    python bench/bench_guidance_precision.py --sizes 512 768 --dtypes float16 bfloat16
    python bench/bench_guidance_precision.py --channels 32 --sizes 512 768     # the test's decoder
    python bench/bench_guidance_precision.py --dtypes float32 --modes native bf16  # bf16 autocast on fp32
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from gradop.optimize import latent_gradient
from gradop.painting import make_painting_fn
from gradop.precision import PRECISION_MODES, guidance_decode


def sd_vae(channels: int = 128):
    """AutoencoderKL with SD's structure; `channels` is the first block's width (SD: 128)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    widths = (channels, 2 * channels, 4 * channels, 4 * channels)
    return AutoencoderKL(block_out_channels=widths, layers_per_block=2, latent_channels=4, norm_num_groups=32,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         ).eval().requires_grad_(False)


def stroke_target(size: int) -> torch.Tensor:
    target = torch.ones(1, 3, size, size)
    target[:, :, size // 8 : size // 2, size // 8 : size // 2] = torch.tensor([0.15, 0.35, 0.85]).view(1, 3, 1, 1)
    target[:, :, size // 2 :, size // 2 :] = torch.tensor([0.8, 0.2, 0.15]).view(1, 3, 1, 1)
    return target


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--modes", nargs="+", default=list(PRECISION_MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"decoder channels {args.channels} (SD: 128), device {device}")
    print("| size | dtype | mode | cosine to fp32 | zero grads | seconds |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        target = stroke_target(size).to(device)
        paint = make_painting_fn("blur", size, size)
        latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(device)
        reference_vae = sd_vae(args.channels).to(device)
        _, reference = latent_gradient(latents, guidance_decode(reference_vae, "native"), target, paint)
        print(f"| {size} | float32 | reference | 1 | {(reference == 0).float().mean().item():.1%} | |", flush=True)
        for dtype_name in args.dtypes:
            vae = sd_vae(args.channels).to(device=device, dtype=getattr(torch, dtype_name))
            for mode in args.modes:
                start = time.perf_counter()
                try:
                    decode = guidance_decode(vae, mode)
                except ValueError:  # a mode this dtype refuses (bf16 autocast on an fp16 decoder)
                    print(f"| {size} | {dtype_name} | {mode} | refused | | |", flush=True)
                    continue
                with decode.prepared():  # the fp32 mode casts the decoder here (as optimize_latents does)
                    _, grad = latent_gradient(latents, decode, target, paint, loss_scale=decode.loss_scale)
                seconds = time.perf_counter() - start
                zeros = (grad == 0).float().mean().item()
                print(f"| {size} | {dtype_name} | {mode} | {cosine(grad, reference):.4f} | {zeros:.1%} | {seconds:.1f} |",
                      flush=True)
            del vae
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(f"peak memory {peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
