"""Correct painting-loss gradients when the VAE runs in fp16 or bf16, and the decoder's
memory switches during the optimisation.

The loss is a mean over every pixel value (786k at 512 px), so its gradient per pixel is about
1e-6: below fp16's smallest normal number (6e-5), and bf16 keeps only 8 bits of it. Modes:
- "native": decode and backpropagate in the VAE's own dtype (right for fp32 only);
- "scaled": multiply the loss by the number of pixel values before the backward pass (the
  mean's gradient becomes a sum's, O(1) per pixel), divide the latent gradient in fp32;
  halve the scale and retry on overflow. Fixes fp16's underflow; bf16's rounding remains;
- "fp32": run the decoder in fp32 while optimising (weights cast for the optimisation and cast
  back, bit-exactly, afterwards; costs fp32 activations and ~200 MB of weights on SD);
- "bf16": decode and backpropagate an fp32 VAE under bfloat16 autocast: fp32's exponent range
  (no underflow) at bf16's speed where the hardware has it (GPUs; CPUs with AMX or AVX512-BF16:
  bench/bench_guidance.py --precisions native bf16); on other CPUs it is slower;
- "auto": native for fp32 and bf16, scaled for fp16: what bench/bench_guidance_precision.py
  measured as correct (see AUTO); bf16 for fp32 on a CPU with native bf16.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

PRECISION_MODES = ("auto", "fp32", "scaled", "native", "bf16")
# Chosen from bench/bench_guidance_precision.py (cosine to the fp32 gradient, SD-size decoder).
# fp16 underflows (cosine 0.90 at 768 px natively, 1.000 scaled); bf16 keeps fp32's exponent range and
# measured 0.9999 natively at SD size, 512 px, so it needs neither scaling nor an fp32 decoder.
# One exception: an fp32 decoder on a CPU with native bf16 runs under bf16 autocast, which the
# quality benchmark measured at parity with fp32 (README "guidance_precision").
AUTO = {torch.float32: "native", torch.float16: "scaled", torch.bfloat16: "native"}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), so that bf16 autocast is
    faster than fp32; elsewhere bf16 is emulated, and slower."""
    try:  # torch.cpu's feature checks are private: no answer means no
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(mode: str, dtype: torch.dtype, device_type: str | None = None) -> str:
    """The mode that runs for `mode` on a decoder of `dtype` on `device_type` ("cpu", "cuda", ...)."""
    if mode not in PRECISION_MODES:
        raise ValueError(f"unknown guidance precision '{mode}'; choose one of {', '.join(PRECISION_MODES)}")
    if mode == "auto":
        if dtype == torch.float32 and device_type == "cpu" and cpu_has_fast_bf16():
            return "bf16"
        return AUTO.get(dtype, "fp32")
    if mode == "bf16":
        if dtype == torch.float16:  # autocast cannot mix bf16 activations with fp16 norm weights
            raise ValueError("guidance precision 'bf16' is for fp32 or bf16 models; with an fp16 model use "
                             "'auto' (a scaled loss) or 'fp32'")
        return "native" if dtype == torch.bfloat16 else mode
    return "native" if dtype == torch.float32 else mode


def decoder_modules(vae) -> list[torch.nn.Module]:
    return [m for m in (getattr(vae, "post_quant_conv", None), vae.decoder) if m is not None]


def decoder_dtype(vae) -> torch.dtype:
    return next(vae.decoder.parameters()).dtype


@contextlib.contextmanager
def decoder_in_fp32(vae):
    """The VAE's decoder in fp32 inside the block, back in its own dtype afterwards (exact: every
    fp16/bf16 value is an fp32 value)."""
    dtype = decoder_dtype(vae)
    if dtype == torch.float32:
        yield
        return
    for module in decoder_modules(vae):
        module.to(torch.float32)
    try:
        yield
    finally:
        for module in decoder_modules(vae):
            module.to(dtype)


@contextlib.contextmanager
def gradient_checkpointing(vae, enabled: bool):
    """diffusers' VAE gradient checkpointing inside the block (recompute activations in the
    backward pass instead of keeping them), restored afterwards."""
    before = vae.is_gradient_checkpointing if hasattr(vae, "is_gradient_checkpointing") else False
    if not enabled or before or not getattr(vae, "_supports_gradient_checkpointing", False):
        yield
        return
    vae.enable_gradient_checkpointing()
    try:
        yield
    finally:
        vae.disable_gradient_checkpointing()


class GuidanceDecode:
    """A decode function (scaled latents -> images in [0, 1]) with the precision and memory
    handling the optimisation loop needs: `loss_scale` ("dynamic" or None) and `prepared()`, a
    context that optimize_latents holds around its loop."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], vae, precision: str = "auto",
                 checkpointing: bool = False):
        self.decode, self.vae, self.checkpointing = decode, vae, checkpointing
        self.mode = resolve_precision(precision, decoder_dtype(vae), next(vae.decoder.parameters()).device.type)
        self.loss_scale = "dynamic" if self.mode == "scaled" else None

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.mode == "bf16":  # the backward pass runs in the dtypes autocast chose here
            with torch.autocast(latents.device.type, dtype=torch.bfloat16):
                return self.decode(latents).float()
        return self.decode(latents)

    @contextlib.contextmanager
    def prepared(self):
        upcast = decoder_in_fp32(self.vae) if self.mode == "fp32" else contextlib.nullcontext()
        with upcast, gradient_checkpointing(self.vae, self.checkpointing):
            yield


def guidance_decode(vae, precision: str = "auto", checkpointing: bool = False) -> GuidanceDecode:
    """The full VAE decoder as a GuidanceDecode (what bench/ and tests use without a pipeline)."""
    return GuidanceDecode(lambda latents: vae_decode(vae, latents), vae, precision, checkpointing)


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images in [0, 1] (float32), differentiable, in the decoder's current dtype."""
    images = vae.decode(latents.to(decoder_dtype(vae)) / vae.config.scaling_factor, return_dict=False)[0]
    return ((images.float() + 1) / 2).clamp(0, 1)
