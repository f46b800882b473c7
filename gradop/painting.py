"""Painting functions f: image -> coarse painting, on (B, 3, H, W) tensors in [0, 1].

GradOP compares f(output) with the user's strokes, so f decides what "follows the scribble"
means. Sizes are given for 512 px (the release's numbers) and scaled with the image side.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

PaintingFn = Callable[[torch.Tensor], torch.Tensor]
PAINTING_FUNCTIONS = ("blur", "median-palette")
BLUR_KERNEL_512, BLUR_SIGMA_512 = 35, 7.0  # the official release's Gaussian blur at 512 px
MEDIAN_KERNEL_512 = 15


def scaled_kernel(kernel_at_512: int, side: int) -> int:
    """An odd kernel size scaled from 512 px to `side` px (at least 3)."""
    k = max(3, round(kernel_at_512 * side / 512))
    return k if k % 2 == 1 else k + 1


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (depthwise conv, one kernel per channel)."""
    half = kernel_size // 2
    coords = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    # Reflect padding needs the pad to be smaller than the side; replicate handles tiny images.
    mode = "reflect" if half < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (half, half, half, half), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, kernel_size), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, kernel_size, 1), groups=channels)


def median_filter(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-channel median over a k x k window (gradient flows to the median pixel)."""
    b, c, h, w = x.shape
    half = kernel_size // 2
    mode = "reflect" if half < min(h, w) else "replicate"
    padded = F.pad(x, (half, half, half, half), mode=mode)
    windows = F.unfold(padded.reshape(b * c, 1, h + 2 * half, w + 2 * half), kernel_size)
    return windows.median(dim=1).values.reshape(b, c, h, w)


def palette_of(image: Image.Image, max_colors: int = 16, min_share: float = 0.002) -> torch.Tensor:
    """The stroke image's dominant colours as a (K, 3) tensor in [0, 1] (PIL median cut)."""
    quantized = image.convert("RGB").quantize(colors=max_colors, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette()
    total = image.size[0] * image.size[1]
    colors = [palette[3 * index : 3 * index + 3] for count, index in quantized.getcolors() if count >= min_share * total]
    return torch.tensor(colors, dtype=torch.float32) / 255.0


def quantize_to_palette(x: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Snap every pixel to its nearest palette colour; straight-through gradient (identity)."""
    flat = x.permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(flat, palette.to(flat)).argmin(dim=1)
    snapped = palette.to(flat)[nearest].reshape(x.shape[0], x.shape[2], x.shape[3], 3).permute(0, 3, 1, 2)
    return x + (snapped - x).detach()


def make_painting_fn(name: str, height: int, width: int, strokes: Image.Image | None = None) -> PaintingFn:
    """The painting function `name` for images of this size.

    "blur": Gaussian blur (the release's default). "median-palette": median filter then
    quantisation to the strokes' palette (the authors' "more faithful but slower" variant).
    """
    side = min(height, width)
    if name == "blur":
        kernel, sigma = scaled_kernel(BLUR_KERNEL_512, side), BLUR_SIGMA_512 * side / 512
        return lambda x: gaussian_blur(x, kernel, sigma)
    if name == "median-palette":
        if strokes is None:
            raise ValueError("the median-palette painting function needs the stroke image for its palette")
        kernel, palette = scaled_kernel(MEDIAN_KERNEL_512, side), palette_of(strokes)
        return lambda x: quantize_to_palette(median_filter(x, kernel), palette)
    raise ValueError(f"unknown painting function '{name}'; choose one of {', '.join(PAINTING_FUNCTIONS)}")
