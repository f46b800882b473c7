"""torch.compile for the sampling UNet and the guidance decoders (both off by default: each image
size's first call waits for the compiler).

A compiled guidance decoder is checked before it is trusted: once per latent shape, dtype and
autocast state, its latent gradient is compared with the eager decoder's. torch 2.13's Inductor on
the CPU computed the demo model's decoder forward right and its backward as all zeros (a ResNet
block followed by diffusers' Upsample2D), which would silently turn GradOP+ into text2img. Where
the two disagree, that decoder stays eager and a warning says so.
"""

from __future__ import annotations

import threading
import warnings
from typing import Callable

import torch
import torch.nn.functional as F

AGREEMENT = 0.99  # the least cosine between the compiled and the eager latent gradient


def compile_unet(unet, device) -> torch.nn.Module:
    """The UNet under torch.compile: on CUDA with CUDA graphs (mode "reduce-overhead"), because on a
    fast GPU the sampling loop waits on Python launching kernels, not on the kernels (measured on an
    H100 at SD 1.5's size: 50 steps took 1.5-2.5 s eager with the GPU busy 0.64 s of it, 0.50 s
    graphed); elsewhere Inductor's default. It compiles on the first call (about 70 s there) and
    again for each new image size or batch."""
    return torch.compile(unet, mode="reduce-overhead" if torch.device(device).type == "cuda" else None)


class CheckedCompile:
    """`decode` under torch.compile, used only where its gradient agrees with the eager one."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], name: str):
        self.eager, self.name = decode, name
        self.compiled = torch.compile(decode)
        self.verdicts: dict[tuple, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        device = latents.device.type
        key = (tuple(latents.shape), latents.dtype, device, torch.is_autocast_enabled(device))
        with self._lock:
            if key not in self.verdicts:
                self.verdicts[key] = self._agrees(latents)
        return (self.compiled if self.verdicts[key] else self.eager)(latents)

    def _agrees(self, latents: torch.Tensor) -> bool:
        eager = probe_gradient(self.eager, latents)
        try:
            compiled = probe_gradient(self.compiled, latents)
        except Exception as error:  # noqa: BLE001 - a compiler failure costs speed, not the image
            warnings.warn(f"torch.compile failed for the '{self.name}' guidance decoder ({type(error).__name__}); "
                          "it runs eager", RuntimeWarning, stacklevel=2)
            return False
        cosine = F.cosine_similarity(eager, compiled, dim=0).item()
        if cosine >= AGREEMENT:  # False for NaN too
            return True
        warnings.warn(f"torch.compile gave the '{self.name}' guidance decoder wrong gradients on this machine "
                      f"(cosine {cosine:.2f} to the eager decoder's); it runs eager", RuntimeWarning, stacklevel=2)
        return False


def probe_gradient(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
    """d <decode(latents), W> / d latents for a fixed random W, flattened (the check's probe)."""
    probe = latents.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        images = decode(probe).float()
        weights = torch.randn(images.shape, generator=torch.Generator().manual_seed(0)).to(images.device)
        (gradient,) = torch.autograd.grad((images * weights).sum(), [probe])
    return gradient.float().flatten()
