"""Colour regions of a stroke painting.

A painting is a few flat colours on a white (or transparent) canvas. `find_regions` clusters the
painted colours into regions (tolerating anti-aliased edges, ignoring specks); `nearest_region`
picks the region a user's colour means. gradop.region_words ties regions to words of the prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Color = tuple[int, int, int]

DEFAULT_TOLERANCE = 40.0  # Euclidean RGB distance under which two colours count as one
MAX_COLOR_DISTANCE = 60.0  # how far a user's colour may be from a detected region's colour
_BIN_SHIFT = 3  # colour histogram bins of 8 levels per channel (32^3 bins)
_MAX_SEED_BINS = 4096  # the histogram tail beyond this is noise; nearest-colour assignment covers it
_CORE_RADIUS = 1  # a colour needs solid 3x3 patches to count (anti-aliased edge blends have none)


@dataclass(frozen=True, eq=False)  # eq=False: numpy masks make value equality ambiguous
class Region:
    color: Color
    mask: np.ndarray  # bool, H x W
    area: int  # pixels
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)

    @property
    def hex(self) -> str:
        return color_hex(self.color)

    @property
    def area_fraction(self) -> float:
        return self.area / self.mask.size


# ----------------------------------------------------------------------------- colours

def color_hex(color: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def parse_color(value) -> Color:
    """'#3a7bd5', '3a7bd5', '#abc' or an (r, g, b) sequence of 0-255 ints -> (r, g, b)."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("#")
        if len(text) == 3:
            text = "".join(c * 2 for c in text)
        if len(text) == 6 and all(c in "0123456789abcdef" for c in text):
            return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
        raise ValueError(f"bad colour {value!r}: write it as #rrggbb, e.g. #3a7bd5")
    if isinstance(value, (tuple, list, np.ndarray)) and len(value) == 3:
        try:
            channels = [int(c) for c in value]
        except (TypeError, ValueError):
            channels = None
        if channels is not None and all(0 <= c <= 255 and c == v for c, v in zip(channels, value)):
            return tuple(channels)
    raise ValueError(f"bad colour {value!r}: give #rrggbb or three integers 0-255")


def _color_distance(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


# ----------------------------------------------------------------------------- images

def _to_rgb_array(image, background: Color) -> np.ndarray:
    """H x W x 3 uint8; transparency is composited over the background colour."""
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
        elif image.mode != "RGB":
            image = image.convert("RGB")
        array = np.asarray(image)
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
            raise ValueError(f"image must be PIL or an H x W x 3/4 uint8 array (got {array.dtype} {array.shape})")
    if array.shape[2] == 4:
        alpha = array[..., 3:].astype(np.float32) / 255.0
        blended = array[..., :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
        array = np.rint(blended).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


def _box_count(mask: np.ndarray, radius: int) -> np.ndarray:
    """Number of True pixels in the (2r+1)^2 window around each pixel (zero padding)."""
    size = 2 * radius + 1
    padded = np.pad(mask.astype(np.int32), radius + 1)[:-1, :-1]  # leading zero row/col for the integral
    integral = padded.cumsum(0).cumsum(1)
    h, w = mask.shape
    return (integral[size:size + h, size:size + w] - integral[:h, size:size + w]
            - integral[size:size + h, :w] + integral[:h, :w])


def _sq_distance(pixels: np.ndarray, color) -> np.ndarray:
    """Squared RGB distance of N x 3 int32 pixels to one colour (per channel: fast, int32-safe)."""
    return sum((pixels[:, c] - int(color[c])) ** 2 for c in range(3))


def _nearest(pixels: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest centre for each pixel (N x 3 int32)."""
    best = np.full(len(pixels), np.iinfo(np.int32).max, np.int32)
    label = np.zeros(len(pixels), np.int32)
    for k, center in enumerate(centers):  # a loop over centres (few) keeps memory at O(pixels)
        d = _sq_distance(pixels, center)
        closer = d < best
        best[closer], label[closer] = d[closer], k
    return label, best


def _local_range(image: np.ndarray) -> np.ndarray:
    """Largest channel range (max - min) in each pixel's 3x3 window (edges replicated)."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    rows_max = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    rows_min = np.minimum(np.minimum(padded[:-2], padded[1:-1]), padded[2:])
    high = np.maximum(np.maximum(rows_max[:, :-2], rows_max[:, 1:-1]), rows_max[:, 2:])
    low = np.minimum(np.minimum(rows_min[:, :-2], rows_min[:, 1:-1]), rows_min[:, 2:])
    return (high - low).max(2)[:h, :w]


def _seed_colors(pixels: np.ndarray, radius: float) -> np.ndarray:
    """Dominant colours of N x 3 pixels: histogram bins, greedily merged from the most common."""
    if len(pixels) == 0:
        return np.zeros((0, 3), np.int32)
    q = pixels >> _BIN_SHIFT
    keys = (q[:, 0] << 10) | (q[:, 1] << 5) | q[:, 2]
    counts = np.bincount(keys, minlength=1 << 15)
    sums = np.stack([np.bincount(keys, weights=pixels[:, c], minlength=1 << 15) for c in range(3)], 1)
    order = np.argsort(-counts, kind="stable")[:_MAX_SEED_BINS]
    order = order[counts[order] > 0]
    seeds, members = [], []  # seed colour decides membership; the members' mean is the centre
    for key in order:
        mean = sums[key] / counts[key]
        if seeds:
            d = np.linalg.norm(np.asarray(seeds) - mean, axis=1)
            k = int(d.argmin())
            if d[k] <= radius:
                members[k][0] += sums[key]
                members[k][1] += counts[key]
                continue
        seeds.append(mean)
        members.append([sums[key].copy(), int(counts[key])])
    # Members can pull a centre towards a neighbour (e.g. a band of overshoot next to its colour):
    # fold centres that ended up within the radius of a more common one into it.
    merged: list[list] = []
    for total, count in members:
        near = [m for m in merged if np.linalg.norm(m[0] / m[1] - total / count) <= radius]
        if near:
            near[0][0] += total
            near[0][1] += count
        else:
            merged.append([total.copy(), count])
    return np.rint(np.array([t / n for t, n in merged])).astype(np.int32)


def find_regions(image, *, min_area_fraction: float = 0.005, background=(255, 255, 255),
                 tolerance: float = DEFAULT_TOLERANCE) -> list[Region]:
    """Painted colour regions of a stroke image, largest first.

    Colours are found on the locally flat pixels (region interiors), so anti-aliased edges and
    noise do not create colours of their own; edge pixels then go to the nearest of the colours
    found around them (a blend of blue and white becomes blue or background, never a third
    colour). Colours within `tolerance` of each other merge; regions smaller than
    `min_area_fraction` of the image are dropped; the background colour (and anything within
    `tolerance` of it) is never a region. Meant for hard or anti-aliased brushes: strokes narrower
    than ~6 px (outlines) and heavily feathered edges are not reliable regions.
    """
    if not 0 <= min_area_fraction < 1:
        raise ValueError(f"min_area_fraction must be in [0, 1) (got {min_area_fraction})")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0 (got {tolerance})")
    background = parse_color(background)
    rgb = _to_rgb_array(image, background)
    height, width = rgb.shape[:2]
    pil = Image.fromarray(rgb)
    smooth_u8 = np.asarray(pil.filter(ImageFilter.MedianFilter(3)))  # drops specks and noise, keeps edges
    smooth = smooth_u8.astype(np.int32)
    flat = _local_range(smooth_u8) <= tolerance / 2
    bg = np.asarray(background, np.int32)
    not_bg = _sq_distance(smooth.reshape(-1, 3), bg).reshape(flat.shape) > tolerance ** 2

    centers = _seed_colors(smooth[flat & not_bg], tolerance)
    min_area = max(1, math.ceil(min_area_fraction * height * width))
    # A real painted region has a solid interior; blend rings along edges do not.
    centers = _centers_with_core(smooth, flat, bg, centers, min_core=max(1, math.ceil(0.05 * min_area)))
    palette = np.concatenate([bg[None], centers])  # label 0 is background
    labels = _label_pixels(smooth, rgb.astype(np.int32), flat, palette, tolerance)

    regions = []
    for k in range(1, len(palette)):
        mask = labels == k
        area = int(mask.sum())
        if area < min_area:
            continue
        ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        core = mask & flat
        color = tuple(int(v) for v in np.rint(smooth[core if core.any() else mask].mean(0)))
        regions.append(Region(color, mask, area, (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)))
    regions.sort(key=lambda r: (-r.area, r.color))
    return regions


def _centers_with_core(smooth, flat, bg, centers, min_core: int) -> np.ndarray:
    """The centres owning at least min_core flat pixels whose whole 3x3 window is theirs."""
    if len(centers) == 0:
        return centers
    palette = np.concatenate([bg[None], centers])
    label, _ = _nearest(smooth[flat], palette)
    flat_label = np.full(flat.shape, -1, np.int32)
    flat_label[flat] = label
    full = (2 * _CORE_RADIUS + 1) ** 2
    keep = [k for k in range(1, len(palette)) if (_box_count(flat_label == k, _CORE_RADIUS) == full).sum() >= min_core]
    return palette[keep]


def _label_pixels(smooth, rgb, flat, palette, tolerance) -> np.ndarray:
    """Label map (0 = background). Flat pixels take the nearest palette colour of the denoised
    image. Edge pixels (their own colour: the median filter rounds corners) take the nearest
    colour if it is within tolerance; otherwise they are blends and take the nearest of the
    colours present among the flat pixels around them (a window widening until one is found)."""
    labels = np.zeros(flat.shape, np.int32)
    labels[flat], _ = _nearest(smooth[flat], palette)
    pending = ~flat
    nearest, distance = _nearest(rgb[pending], palette)
    clear = distance <= tolerance ** 2
    rows, cols = np.nonzero(pending)
    labels[rows[clear], cols[clear]] = nearest[clear]
    pending[rows[clear], cols[clear]] = False
    for radius in (2, 6):
        if not pending.any():
            break
        pixels = rgb[pending]
        best = np.full(len(pixels), np.iinfo(np.int32).max, np.int32)
        choice = np.full(len(pixels), -1, np.int32)
        for k, color in enumerate(palette):
            present = _box_count(flat & (labels == k), radius)[pending] > 0
            d = _sq_distance(pixels, color)
            closer = present & (d < best)
            best[closer], choice[closer] = d[closer], k
        done = choice >= 0
        rows, cols = np.nonzero(pending)
        labels[rows[done], cols[done]] = choice[done]
        pending[rows[done], cols[done]] = False
    if pending.any():
        labels[pending], _ = _nearest(rgb[pending], palette)
    return labels


def nearest_region(regions: list[Region], color, max_distance: float = MAX_COLOR_DISTANCE) -> Region:
    """The region whose colour is nearest to `color`; ValueError if none is within max_distance."""
    color = parse_color(color)
    if not regions:
        raise ValueError(f"no painted regions were found for colour {color_hex(color)}: paint some strokes first")
    distances = [_color_distance(r.color, color) for r in regions]
    best = int(np.argmin(distances))
    if distances[best] > max_distance:
        available = ", ".join(r.hex for r in regions)
        raise ValueError(f"no region has colour {color_hex(color)} (nearest is {regions[best].hex}, "
                         f"distance {distances[best]:.0f}); use one of: {available}")
    return regions[best]
