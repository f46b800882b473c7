"""What the benchmark measures on each image, and the statistics over paintings.

Images are (B, 3, H, W) float tensors in [0, 1]. The judge is used only through `Judge`
(segment + realism), so another judge with the same two methods drops in.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from gradop.painting import make_painting_fn

CANVAS_LEVEL = 0.94  # a stroke pixel with every channel above this is white canvas, not paint
FLAT_RANGE = 0.02  # a 3x3 window whose channels all vary less than this is flat paint


class Judge(Protocol):
    """The two things the benchmark asks of a judge (gradop.world.judge.Judge has both)."""

    def segment(self, images: torch.Tensor) -> torch.Tensor:  # (B, H, W) class ids
        ...

    def realism(self, images: torch.Tensor) -> torch.Tensor:  # (B,) P(target-domain photo)
        ...


# ----------------------------------------------------------------------------- realism signals

def texture_share(images: torch.Tensor) -> torch.Tensor:
    """The judge-free realism signal: the share of pixels whose 3x3 neighbourhood is NOT flat.

    A painting is flat colour (most windows vary by less than FLAT_RANGE); photos have texture,
    shading and grain everywhere. (B,) in [0, 1], higher = more photo-like."""
    high = F.max_pool2d(images, 3, 1, 1)
    low = -F.max_pool2d(-images, 3, 1, 1)
    flat = (high - low).amax(1) < FLAT_RANGE
    return 1 - flat.float().mean((1, 2))


def realism_signals(judge: Judge) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Every realism signal by name: the judge's P(photo), and one that does not use the judge."""
    return {"judge": lambda x: judge.realism(x).float(), "texture": texture_share}


# ----------------------------------------------------------------------------- faithfulness

def painted_mask(target: torch.Tensor) -> torch.Tensor:
    """(1, H, W) bool: the stroke pixels that carry paint (not white canvas)."""
    return ~(target > CANVAS_LEVEL).all(1)


def faithfulness(outputs: torch.Tensor, target: torch.Tensor, region_masks: list[np.ndarray]) -> dict[str, list[float]]:
    """Per-image faithfulness to the strokes `target` (1, 3, H, W):

    - blurred_l2: MSE(f(output), f(target)), f = METHOD.md's blur scaled to the image size;
    - painted_l2: the same squared error, averaged over painted pixels only (canvas gaps are
      not a colour the user asked for);
    - region_colour_error: mean over colour regions of the Euclidean RGB distance between the
      region's mean colour in the output and in the strokes (regions as gradop.regions finds them).
    """
    paint = make_painting_fn("blur", target.shape[-2], target.shape[-1])
    squared = (paint(outputs) - paint(target)).pow(2).mean(1)  # (B, H, W)
    painted = painted_mask(target)
    painted_l2 = squared[:, painted[0]].mean(1) if painted.any() else torch.full((len(outputs),), float("nan"))
    errors = []
    for mask in region_masks:
        m = torch.from_numpy(mask)
        errors.append((outputs[:, :, m].mean(2) - target[:, :, m].mean(2)).norm(dim=1))
    colour = torch.stack(errors, 1).mean(1) if errors else torch.full((len(outputs),), float("nan"))
    return {"blurred_l2": squared.mean((1, 2)).tolist(), "painted_l2": painted_l2.tolist(),
            "region_colour_error": colour.tolist()}


def region_shares(labels: torch.Tensor, mask: np.ndarray, assigned: int, competing: int) -> dict[str, list[float]]:
    """Share of a region's pixels the judge labels as the assigned word's class and as the
    competing class, per image (labels: (B, H, W) class ids)."""
    m = torch.from_numpy(mask)
    inside = labels[:, m]
    return {"assigned_share": (inside == assigned).float().mean(1).tolist(),
            "competing_share": (inside == competing).float().mean(1).tolist()}


# ----------------------------------------------------------------------------- statistics

def auc(positive, negative) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties count half."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def _per_group(values, groups) -> np.ndarray:
    """Mean value per group (paintings), in first-seen order: the unit the bootstrap resamples."""
    order: dict = {}
    for v, g in zip(values, groups):
        order.setdefault(g, []).append(v)
    return np.asarray([np.mean(vs) for vs in order.values()], float)


def bootstrap_ci(values, groups, *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of `values` with a percentile bootstrap CI that resamples groups (paintings), so
    images of one painting (its seeds) stay together. NaNs are dropped."""
    values, groups = np.asarray(values, float), list(groups)
    keep = ~np.isnan(values)
    per = _per_group(values[keep], [g for g, k in zip(groups, keep) if k])
    if len(per) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = per[rng.integers(0, len(per), (resamples, len(per)))].mean(1)
    tail = (1 - level) / 2 * 100
    return {"mean": float(per.mean()), "low": float(np.percentile(means, tail)),
            "high": float(np.percentile(means, 100 - tail)), "n": int(len(per))}


def format_ci(entry: dict, digits: int = 3) -> str:
    """'mean [low, high]' of a bootstrap_ci / paired entry."""
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def paired(rows_a: list[dict], rows_b: list[dict], key: str, **ci) -> dict:
    """A - B on `key` over images both have (matched by painting and image index): the
    bootstrap CI of the mean difference and the per-image win rate of A (A > B)."""
    b_by = {(r["painting"], r["image"]): r[key] for r in rows_b}
    diffs, groups, wins = [], [], []
    for r in rows_a:
        other = b_by.get((r["painting"], r["image"]))
        if other is None or np.isnan(r[key]) or np.isnan(other):
            continue
        diffs.append(r[key] - other)
        groups.append(r["painting"])
        wins.append(r[key] > other)
    return {**bootstrap_ci(diffs, groups, **ci), "win_rate": float(np.mean(wins)) if wins else float("nan")}
