"""What a generation call returns and reports: the result (images, the parameters each PNG
records, the optimisation's losses), the progress stream and cancellation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from gradop.metadata import save_png


class GenerationCancelled(Exception):
    """Raised by a progress callback to stop a generation (e.g. the app's Cancel button)."""


@dataclass
class Progress:
    """What a progress callback receives after each unit of work."""

    phase: str  # "sampling", "optimising" or "denoising"
    step: int  # 1-based, counts across all phases of the call
    total: int
    latents: torch.Tensor | None = None  # current scaled latents, when the phase has them


@dataclass
class GenerationResult:
    images: list[Image.Image]
    params: dict
    losses: list[float] = field(default_factory=list)  # painting loss per optimisation step
    attention_maps: Image.Image | None = None  # per-token cross-attention grid, when asked for

    def image_params(self, index: int) -> dict:
        return {**self.params, "image_index": index}

    def save(self, path: str | Path) -> list[Path]:
        """Save as PNGs with parameters; several images get _0, _1, ... suffixes."""
        path = Path(path)
        if len(self.images) == 1:
            return [save_png(self.images[0], path, self.image_params(0))]
        return [
            save_png(image, path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}"), self.image_params(i))
            for i, image in enumerate(self.images)
        ]


def seed_of(generator: torch.Generator) -> int | None:
    """The seed that reproduces a caller's generator, for the PNG: its initial seed while it is
    still unused; None (with a warning) once it has been drawn from."""
    seed = generator.initial_seed()
    if torch.equal(generator.get_state(), torch.Generator(generator.device).manual_seed(seed).get_state()):
        return seed
    warnings.warn("the generator passed in was already used, so no seed reproduces this call; the PNG records "
                  "seed null (pass seed= or a freshly seeded generator)", stacklevel=3)
    return None


class ProgressCounter:
    """Turns diffusers' per-step callback and the optimiser's steps into one progress stream."""

    def __init__(self, total: int, callback: Callable[[Progress], None] | None):
        self.total, self.callback, self.step = total, callback, 0

    def advance(self, phase: str, latents: torch.Tensor | None = None) -> None:
        self.step += 1
        if self.callback is not None:
            self.callback(Progress(phase, self.step, self.total, latents))
