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
