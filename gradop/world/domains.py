"""The non-photo domains of world v2 and one entry point for every rendering of a scene.

Stable Diffusion learnt photos and also paintings, drawings and clip-art, and the prompt picks
the domain; a flat scribble plus noise looks like a painting to it. The world reproduces that:
the same scene graph (scene.layers) is drawn as

- "photo": the target domain (render.render_photo);
- "painting": a flat-colour illustration: one flat colour per part (sky in posterised bands,
  lit and shaded sides of mountains and rocks, windows, sails), dark outlines, no texture;
- "crayon": a crayon / marker drawing on white paper: hatched strokes at a per-region angle
  with paper showing between them, wobbly darker outlines;
- "strokes": a person's scribble (render.render_strokes), the input of gradop's methods.

All are float32 (size, size, 3) in [0, 1], drawn at 2x and box-downsampled, seeded by the scene.
"""

from __future__ import annotations

import numpy as np

from gradop.world.render import SUPERSAMPLE, _c, pull_palette, render_photo, render_strokes, stroke_colour
from gradop.world.scene import CLASSES, layer_owner, layers, value_noise

# Domains a caption can name (the model learns all three; "photo" is the target).
DOMAINS = ("photo", "painting", "crayon")
OUTLINE = (0.12, 0.1, 0.1)


def render(scene: dict, domain: str = "photo", size: int = 64) -> np.ndarray:
    """Render `scene` in `domain` ("photo", "painting", "crayon" or "strokes")."""
    renderers = {"photo": render_photo, "painting": render_painting, "crayon": render_crayon, "strokes": render_strokes}
    if domain not in renderers:
        raise ValueError(f"unknown domain {domain!r}; use one of {', '.join(renderers)}")
    return renderers[domain](scene, size)


def _grid(big: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    return (yy + 0.5) / big, (xx + 0.5) / big


def _edges(owner: np.ndarray) -> np.ndarray:
    e = np.zeros(owner.shape, bool)
    e[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    e[1:, :] |= owner[1:, :] != owner[:-1, :]
    e[:, :-1] |= e[:, 1:].copy()
    return e


def _downsample(img: np.ndarray, size: int) -> np.ndarray:
    return np.clip(img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3)), 0, 1).astype(np.float32)


def _flat_part(name: str, scene: dict, extra: dict, base: np.ndarray, yy, xx, rng) -> np.ndarray:
    """The flat-colour fill of one layer, with the few parts an illustrator would draw."""
    big = yy.shape[0]
    col = np.broadcast_to(base, (big, big, 3)).copy()
    hz = scene["horizon"]
    if name == "sky":
        top = base * (0.75 if scene["sky"] != "sunset" else 0.6)
        band = np.floor(np.clip(yy / max(hz, 1e-3), 0, 0.999) * 3)[..., None] / 2
        col = top * (1 - band) + base * band
    elif name == "mountain":
        col = np.where((extra["side"][None, :] > 0)[..., None], base * 0.75, base)
        if scene["snowcaps"]:
            cap = ((yy - extra["ridge"][None, :]) < 0.06) & (extra["ridge"][None, :] < hz - 0.12)
            col = np.where(cap[..., None], _c(0.96, 0.96, 1.0), col)
    elif name == "water":
        ripple = np.sin(yy * big * 0.45 + value_noise(rng, big, 6) * 3) > 0.93
        col = np.where(ripple[..., None], np.minimum(base + 0.25, 1), col)
    elif name == "rock":
        col = np.where((xx > extra["x"])[..., None], base * 0.72, base)
    elif name == "tree":
        col = np.where(extra["crown"][..., None], col, _c(0.42, 0.26, 0.12))
    elif name == "boat":
        col = np.where(extra["hull"][..., None], col, np.where(extra["sail"][..., None], _c(0.97, 0.97, 0.95), _c(0.4, 0.25, 0.12)))
    elif name == "house":
        rx = (xx - extra["x"]) / (extra["w"] / 2)
        ry = (extra["base"] - yy) / extra["h"]
        window = (np.abs(np.abs(rx) - 0.5) < 0.17) & (np.abs(ry - 0.6) < 0.16)
        door = (np.abs(rx) < 0.14) & (ry < 0.55)
        col = np.where(window[..., None], _c(1.0, 0.85, 0.35) if scene["sky"] == "night" else _c(0.6, 0.8, 0.95), col)
        col = np.where(door[..., None], _c(0.3, 0.18, 0.1), col)
        roof = [(0.6, 0.15, 0.1), (0.35, 0.35, 0.4), (0.45, 0.28, 0.15)][extra["roof_tone"]]
        col = np.where(extra["roof"][..., None], _c(*roof), col)
    return col


def _night(name: str, scene: dict, col: np.ndarray) -> np.ndarray:
    if scene["sky"] == "night" and name not in ("sky", "moon", "sun", "house"):
        return col * 0.55
    return col


def render_painting(scene: dict, size: int = 64) -> np.ndarray:
    """A flat-colour painting / illustration of the scene: flat fills, dark outlines."""
    big = size * SUPERSAMPLE
    rng = np.random.default_rng(scene["style"] + 11)
    yy, xx = _grid(big)
    img = np.ones((big, big, 3), np.float32)
    owner = np.zeros((big, big), np.int32)
    for i, (cls, mask, extra) in enumerate(layers(scene, big)):
        name = CLASSES[cls]
        base = stroke_colour(name, scene, rng, extra)
        col = _night(name, scene, _flat_part(name, scene, extra, base, yy, xx, rng))
        img = np.where(mask[..., None], col, img)
        owner[mask] = i
    edges = _edges(owner)
    width = rng.uniform(0.6, 1.0)  # outline darkness
    img = np.where(edges[..., None], img * (1 - width) + _c(*OUTLINE) * width, img)
    return pull_palette(scene, _downsample(img, size))


def render_crayon(scene: dict, size: int = 64) -> np.ndarray:
    """A crayon / marker drawing on white paper: hatched fills, wobbly dark outlines."""
    big = size * SUPERSAMPLE
    rng = np.random.default_rng(scene["style"] + 13)
    yy, xx = _grid(big)
    lays = layers(scene, big)
    owner = layer_owner(lays, big)
    amp = rng.uniform(1.0, 3.5)  # a shaky hand, in 2x pixels
    py, px = np.mgrid[0:big, 0:big]
    sy = np.clip(np.round(py + value_noise(rng, big, 6) * amp), 0, big - 1).astype(int)
    sx = np.clip(np.round(px + value_noise(rng, big, 6) * amp), 0, big - 1).astype(int)
    owner = owner[sy, sx]
    paper = _c(0.97, 0.96, 0.92) + value_noise(rng, big, 40)[..., None] * 0.015
    img = paper.copy()
    pressure = 0.75 + 0.25 * value_noise(rng, big, 9)[..., None]
    for i, (cls, _, extra) in enumerate(lays):
        name = CLASSES[cls]
        sel = owner == i
        if not sel.any():
            continue
        col = _night(name, scene, stroke_colour(name, scene, rng, extra))
        if name == "house" and "roof" in extra:
            col = np.where(extra["roof"][sy, sx][..., None], _c(0.55, 0.15, 0.1), col)
        elif name == "tree" and "crown" in extra:
            col = np.where(extra["crown"][sy, sx][..., None], col, _c(0.45, 0.28, 0.12))
        elif name == "boat" and "sail" in extra:
            col = np.where(extra["sail"][sy, sx][..., None], _c(0.85, 0.85, 0.9), col)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 5.0)
        phase = value_noise(rng, big, 8) * 2.5
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (px * np.cos(angle) + py * np.sin(angle)) / period + phase)
        density = rng.uniform(0.3, 0.75) if name == "sky" else rng.uniform(0.55, 0.95)
        alpha = ((stripes > 1 - density) * pressure[..., 0])[..., None] * sel[..., None]
        img = img * (1 - alpha) + np.broadcast_to(col, img.shape) * alpha
    outline = _edges(owner) & (value_noise(rng, big, 12) > -0.6)
    line = np.broadcast_to(_c(0.2, 0.17, 0.15), img.shape) if rng.random() < 0.5 else img * 0.45
    img = np.where(outline[..., None], line, img)
    return pull_palette(scene, _downsample(img, size))
