"""Shared helpers for the demo model's training scripts (CPU-friendly, seeded)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch


def load_cache(path: str) -> dict:
    data = np.load(path)
    return {k: data[k] for k in data.files}


def load_pipeline_folder(path):
    """A diffusers StableDiffusionPipeline from a local folder (training outputs: no hub, no safety checker)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)


def to_tensor(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1)


class Logger:
    """Prints a line per log step and appends it as JSON to a file (wall time included)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()

    def __call__(self, **row) -> None:
        row = {"wall_s": round(time.time() - self.t0, 1), **row}
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def paste_regions(x: torch.Tensor, labels: torch.Tensor, groups, p: float, rng,
                  allowed: list[set[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability p per item of a batch, copy one class region of another item of the same
    group (domain) into it at a random circular shift, shape and values kept, and relabel those
    positions. x: (B, C, H, W) images or latents; labels: (B, H, W) class ids at x's resolution;
    allowed: per item, the classes that may be pasted into it (e.g. those its caption names).
    Classes are drawn uniformly among the donor's, so small objects count as much as the sky.

    World scenes always put a class in the same places (sky on top, huts on the ground), so what
    is trained on them alone ties a class to its place; region words ask for classes elsewhere."""
    x, labels = x.clone(), labels.clone()
    groups = list(groups)
    h, w = labels.shape[-2:]
    for i in np.nonzero(rng.random(len(groups)) < p)[0]:
        donors = [j for j in range(len(groups)) if j != i and groups[j] == groups[i]]
        if not donors:
            continue
        j = donors[rng.integers(len(donors))]
        min_size = max(2, h * w * 6 // 4096)  # 6 pixels at 64x64
        classes = [c for c in labels[j].unique().tolist() if (labels[j] == c).sum() >= min_size
                   and (allowed is None or c in allowed[i])]
        if not classes:
            continue
        c = classes[rng.integers(len(classes))]
        shift = (int(rng.integers(h)), int(rng.integers(w)))
        mask = torch.roll(labels[j] == c, shift, (0, 1))
        x[i][:, mask] = torch.roll(x[j], shift, (1, 2))[:, mask]
        labels[i][mask] = c
    return x, labels
