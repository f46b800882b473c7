"""Time text2img, sdedit and GradOP+ at Stable Diffusion 1.5 size with random weights.

Timing does not depend on weight values, so no download is needed. Prints each method's
seconds, the measured ratio gradop+/text2img at the steps used, and the per-operation costs
with the ratio they imply for the release's 50-step defaults.

    python bench/bench_methods.py                      # CPU: 256x256, 4 steps
    python bench/bench_methods.py --device cuda --dtype float16 --size 512 --steps 50
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image, ImageDraw

from gradop.models import ddim_scheduler, pick_device, pick_dtype
from gradop.pipeline import GradopPipeline
from gradop.tiny import tiny_tokenizer


def sd15_components(device: torch.device, dtype: torch.dtype) -> dict:
    """SD 1.5's architecture (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M), random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    tokenizer = tiny_tokenizer()  # token ids only index the embedding; its size does not matter for timing
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    ))
    from diffusers import DDIMScheduler

    scheduler = ddim_scheduler(DDIMScheduler().config)
    modules = dict(unet=unet, vae=vae, text_encoder=text_encoder)
    for module in modules.values():
        module.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return dict(modules, tokenizer=tokenizer, scheduler=scheduler)


def strokes(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.1, size * 0.1, size * 0.6, size * 0.55), fill=(40, 90, 220))
    draw.rectangle((size * 0.45, size * 0.6, size * 0.95, size * 0.95), fill=(200, 50, 40))
    return image


def timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def peak_memory(device: torch.device) -> str:
    """The peak memory of this process so far: the GPU's allocator on CUDA, else the RSS."""
    if device.type == "cuda":
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    import resource

    return f"peak process memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on cuda, float32 on cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--grad-steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    pipe = GradopPipeline(sd15_components(device, dtype), model_name="sd15-architecture-random", device=device, dtype=dtype)
    image, prompt = strokes(args.size), "a photo of a fox beside a tree"
    common = dict(height=args.size, width=args.size, steps=args.steps, seed=0)
    print(f"device {device}, {dtype}, {args.size}x{args.size}, {args.steps} steps, torch threads {torch.get_num_threads()}")

    # Warm-up (allocator, kernels), then one timed run each.
    pipe.text2img(prompt, **common | {"steps": 1})
    seconds = {}
    seconds["text2img"], _ = timed(lambda: pipe.text2img(prompt, **common), device)
    seconds["sdedit"], _ = timed(lambda: pipe.sdedit(prompt, image, **common), device)
    seconds["gradop_plus"], result = timed(
        lambda: pipe.gradop_plus(prompt, image, iterations=args.iterations, grad_steps=args.grad_steps, **common), device)
    for name, value in seconds.items():
        print(f"{name:<12} {value:8.2f} s")
    print(f"ratio gradop_plus / text2img at {args.steps} steps: {seconds['gradop_plus'] / seconds['text2img']:.2f}x")
    print(f"GradOP+ optimisation steps run: {len(result.losses)}")

    # Per-operation costs, to project the release's 50-step defaults.
    latent = torch.randn(1, 4, args.size // 8, args.size // 8, device=device, dtype=dtype)
    embeds = torch.randn(2, 77, 768, device=device, dtype=dtype)
    with torch.no_grad():
        unet_s, _ = timed(lambda: pipe.unet(torch.cat([latent] * 2), 500, encoder_hidden_states=embeds), device)
        decode_s, _ = timed(lambda: pipe.decode(latent), device)

    def decode_backward():
        z = latent.clone().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(pipe.decode(z).mean(), [z])

    grad_s, _ = timed(decode_backward, device)
    per_opt = args.iterations * args.grad_steps
    plain, guided = 50 * unet_s + decode_s, 50 * unet_s + decode_s + per_opt * grad_s
    print(f"UNet forward (CFG batch 2) {unet_s:.3f} s, VAE decode {decode_s:.3f} s, decode+backward {grad_s:.3f} s")
    print(f"projected ratio at 50 steps with {per_opt} decode+backward passes: {guided / plain:.2f}x")
    print(peak_memory(device))


if __name__ == "__main__":
    main()
