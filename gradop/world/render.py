"""Renderers over one scene: "photo" (the target domain), "strokes" (a person's scribble of it)
and class masks. All numpy, seeded by the scene, about a few milliseconds per 64 px image.

The photo is drawn at 2x and box-downsampled (anti-aliased edges); masks come from the same
layers, sampled at the output size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gradop.world.scene import CLASS_ID, CLASSES, HOUSE_COLOURS, label_map, layer_owner, layers, value_noise

SUPERSAMPLE = 2


def _c(*rgb) -> np.ndarray:
    return np.asarray(rgb, np.float32)


def _jitter(rng, colour, amount=0.06) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 1)


def _sky_colours(kind: str, rng) -> tuple[np.ndarray, np.ndarray]:
    if kind == "day":
        return _jitter(rng, (0.18, 0.42, 0.85)), _jitter(rng, (0.68, 0.84, 0.96), 0.04)
    if kind == "sunset":
        return _jitter(rng, (0.28, 0.2, 0.5)), _jitter(rng, (0.98, 0.55, 0.25))
    return _jitter(rng, (0.02, 0.03, 0.12), 0.02), _jitter(rng, (0.1, 0.13, 0.3), 0.04)


def render_photo(scene: dict, size: int = 64) -> np.ndarray:
    """The 'photo' rendering: float32 (size, size, 3) in [0, 1]."""
    big = size * SUPERSAMPLE
    rng = np.random.default_rng(scene["style"])
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    yy, xx = (yy + 0.5) / big, (xx + 0.5) / big
    hz = scene["horizon"]
    top, bottom = _sky_colours(scene["sky"], rng)
    img = np.zeros((big, big, 3), np.float32)
    sun = scene["sun"]
    for cls, mask, extra in layers(scene, big):
        name = CLASSES[cls]
        if name == "sky":
            t = np.clip(yy / max(hz, 1e-3), 0, 1)[..., None] ** 1.3
            col = top * (1 - t) + bottom * t
            if sun:  # glow around the sun
                d = np.sqrt((xx - sun["x"]) ** 2 + (yy - sun["y"]) ** 2)[..., None]
                glow = (_c(1.0, 0.9, 0.6) if scene["sky"] == "day" else _c(1.0, 0.6, 0.3))
                col = col + np.exp(-d / 0.12) * 0.35 * (glow - col)
            if scene["sky"] == "night":
                stars = rng.random((big, big)) < 0.004
                col = np.where(stars[..., None], _c(0.9, 0.9, 0.8) * rng.uniform(0.6, 1.0, (big, big, 1)), col)
            col = col + value_noise(rng, big, 5)[..., None] * 0.02
        elif name == "sun":
            d = np.sqrt((xx - sun["x"]) ** 2 + (yy - sun["y"]) ** 2) / sun["r"]
            core = _c(1.0, 0.97, 0.75) if scene["sky"] == "day" else _jitter(rng, (1.0, 0.45, 0.15), 0.05)
            col = core[None, None] * (1 - 0.15 * d[..., None] ** 2) + 0.1 * _c(1, 1, 1)
        elif name == "moon":
            m = scene["moon"]
            col = np.broadcast_to(_c(0.88, 0.88, 0.8), (big, big, 3)).copy()
            crater = value_noise(rng, big, int(1 / m["r"]) * 3)
            col -= (crater > 0.35)[..., None] * 0.12
            d = np.sqrt((xx - m["x"]) ** 2 + (yy - m["y"]) ** 2) / m["r"]
            col *= (1 - 0.2 * d**2)[..., None]
        elif name == "cloud":
            base = {"day": (0.97, 0.97, 0.98), "sunset": (0.98, 0.7, 0.6), "night": (0.35, 0.37, 0.45)}[scene["sky"]]
            shade = np.clip((yy - (extra["y"] - extra["h"])) / (1.5 * extra["h"]), 0, 1)[..., None]
            col = _c(*base) * (1.02 - 0.3 * shade) + value_noise(rng, big, 14)[..., None] * 0.04
        elif name == "mountain":
            tone = [(0.45, 0.43, 0.42), (0.42, 0.36, 0.3), (0.36, 0.42, 0.55)][scene["mountain_tone"]]
            base = _jitter(rng, tone, 0.05)
            if scene["sky"] == "night":
                base = base * 0.45
            lit = np.where(extra["side"][None, :] < 0, 1.12, 0.78)[..., None]
            rough = value_noise(rng, big, 24)[..., None] * 0.07 + value_noise(rng, big, 8)[..., None] * 0.05
            col = base * lit + rough
            haze = np.clip((yy - extra["ridge"][None, :]) / 0.25, 0, 1)[..., None]
            col = col * (1 - 0.25 * haze) + 0.25 * haze * bottom
            if scene["snowcaps"]:
                cap = (yy - extra["ridge"][None, :]) < 0.05 + 0.03 * value_noise(rng, big, 16)
                cap &= extra["ridge"][None, :] < hz - 0.12
                snow = _c(0.95, 0.96, 1.0) * lit * (0.6 if scene["sky"] == "night" else 1.0)
                col = np.where(cap[..., None], snow, col)
        elif name == "hill":
            base = _jitter(rng, (0.3, 0.55, 0.22) if scene["ground"] != "snow" else (0.85, 0.88, 0.92), 0.05)
            t = np.clip((yy - extra["ridge"][None, :]) / 0.12, 0, 1)[..., None]
            col = base * (1.1 - 0.3 * t) + value_noise(rng, big, 20)[..., None] * 0.05
            if scene["sky"] == "night":
                col = col * 0.45
        elif name in ("grass", "sand", "snow"):
            depth = np.clip((yy - hz) / (1 - hz), 0, 1)[..., None]
            if name == "grass":
                base = _jitter(rng, (0.28, 0.58, 0.18), 0.06)
                blades = value_noise(rng, big, 0, shape=(int(big / 3), int(big * 0.6)))
                col = base * (0.85 + 0.3 * depth) + blades[..., None] * _c(0.05, 0.1, 0.03) + \
                    value_noise(rng, big, 6)[..., None] * 0.06
            elif name == "sand":
                base = _jitter(rng, (0.87, 0.76, 0.5), 0.05)
                ripple = np.sin((yy * 90 + value_noise(rng, big, 5) * 6) * (1.5 - depth[..., 0]))[..., None]
                col = base * (0.9 + 0.12 * depth) + ripple * 0.04 + value_noise(rng, big, 30)[..., None] * 0.03
            else:
                base = _jitter(rng, (0.9, 0.93, 0.98), 0.03)
                col = base * (0.88 + 0.12 * depth) + value_noise(rng, big, 7)[..., None] * _c(0.05, 0.05, 0.03)
                col = col + (rng.random((big, big, 1)) < 0.01) * 0.1
            if scene["sky"] == "night":
                col = col * 0.4
            elif scene["sky"] == "sunset":
                col = col * _c(1.05, 0.85, 0.75)
        elif name == "water":
            depth = np.clip((yy - hz) / (1 - hz), 0, 1)[..., None]
            refl = top * 0.5 + bottom * 0.5
            col = 0.55 * refl + 0.45 * _jitter(rng, (0.1, 0.3, 0.5), 0.05)
            col = col * (1.05 - 0.3 * depth)
            ripples = np.sin(yy * 2 * big * 0.35 + value_noise(rng, big, 10) * 4)[..., None]
            col = col + ripples * 0.05 * (1 + depth)
            if sun:  # the sun's reflection, a broken vertical streak
                streak = np.exp(-((xx - sun["x"]) / 0.04) ** 2)[..., None] * (ripples > 0)
                col = col + streak * 0.35 * (_c(1, 0.9, 0.6) - col)
            if scene["moon"]:
                streak = np.exp(-((xx - scene["moon"]["x"]) / 0.03) ** 2)[..., None] * (ripples > 0.3)
                col = col + streak * 0.3
        elif name == "tree":
            dark = scene["sky"] == "night"
            leaf = _jitter(rng, (0.1, 0.32, 0.12) if scene["pine"] else (0.2, 0.45, 0.12), 0.05)
            side = np.clip((xx - extra["x"]) / (extra["hgt"] * 0.4), -1, 1)[..., None]
            texture = value_noise(rng, big, 40)[..., None] * 0.08
            col = leaf * (1 - 0.3 * side) + texture
            if scene["ground"] == "snow" and scene["pine"]:
                col = np.where((value_noise(rng, big, 50) > 0.5)[..., None], _c(0.85, 0.88, 0.92), col)
            col = np.where(extra["crown"][..., None], col, _c(0.36, 0.22, 0.1))
            if dark:
                col = col * 0.45
        elif name == "rock":
            base = _jitter(rng, (0.5, 0.48, 0.45), 0.06)
            side = np.clip((xx - extra["x"]) / extra["rw"], -1, 1)[..., None]
            top = np.clip((extra["y"] - yy) / extra["rh"], 0, 1)[..., None]
            col = base * (1.05 - 0.3 * side + 0.15 * top) + value_noise(rng, big, 30)[..., None] * 0.07
            if scene["ground"] == "snow":
                col = np.where((top > 0.75) & (value_noise(rng, big, 20)[..., None] > -0.2), _c(0.92, 0.94, 0.98), col)
            if scene["sky"] == "night":
                col = col * 0.45
        elif name == "boat":
            hull = _jitter(rng, HOUSE_COLOURS[scene["boat_colour"]], 0.04)
            sail = _c(0.95, 0.93, 0.86) * (0.85 + 0.15 * np.clip((yy - yy.min()) * 3, 0, 1))[..., None]
            col = np.where(extra["hull"][..., None], hull * (0.8 + 0.2 * (xx < extra["x"]))[..., None],
                           np.where(extra["sail"][..., None], sail, _c(0.35, 0.22, 0.1)))
            if scene["sky"] == "night":
                col = col * 0.45
        else:  # house
            body = _jitter(rng, (0.55, 0.37, 0.2) if scene["wooden"] else HOUSE_COLOURS[extra["colour"]], 0.04)
            roof = [(0.45, 0.12, 0.08), (0.3, 0.3, 0.32), (0.35, 0.22, 0.12)][extra["roof_tone"]]
            col = np.broadcast_to(body, (big, big, 3)).copy()
            if scene["wooden"]:
                col *= (0.9 + 0.1 * np.sin(yy * big * 1.2))[..., None]
            rx = (xx - extra["x"]) / (extra["w"] / 2)
            ry = (extra["base"] - yy) / extra["h"]
            col = np.where((rx > 0)[..., None], col * 0.8, col)  # shaded side wall
            win_col = _c(1.0, 0.85, 0.35) if scene["sky"] != "day" else _c(0.55, 0.7, 0.85)
            window = (np.abs(np.abs(rx) - 0.5) < 0.17) & (np.abs(ry - 0.6) < 0.16)
            door = (np.abs(rx) < 0.14) & (ry < 0.55)
            col = np.where(window[..., None], win_col, col)
            col = np.where(door[..., None], _c(0.25, 0.15, 0.08), col)
            col = np.where(extra["roof"][..., None], _c(*roof) * (1 - 0.2 * (rx > 0))[..., None], col)
            if scene["sky"] == "night":
                col = np.where(window[..., None], col, col * 0.45)
        img = np.where(mask[..., None], col, img)
    img = img + rng.normal(0, 0.012, img.shape).astype(np.float32)  # sensor grain
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return pull_palette(scene, np.clip(img, 0, 1).astype(np.float32))


# Flat colours a person would pick for each class (per sky kind where it matters).
STROKE_COLOURS = {
    "sky": {"day": (0.35, 0.6, 0.95), "sunset": (0.98, 0.55, 0.3), "night": (0.08, 0.1, 0.35)},
    "cloud": (0.85, 0.85, 0.88), "sun": (1.0, 0.85, 0.1), "moon": (0.95, 0.95, 0.7),
    "mountain": (0.5, 0.45, 0.45), "hill": (0.35, 0.7, 0.3), "water": (0.15, 0.35, 0.85),
    "grass": (0.25, 0.7, 0.2), "sand": (0.93, 0.8, 0.5), "snow": (0.92, 0.95, 1.0),
    "tree": (0.05, 0.4, 0.1), "house": (0.8, 0.2, 0.15), "boat": (0.85, 0.85, 0.8), "rock": (0.45, 0.43, 0.42),
}


def stroke_base(name: str, scene: dict, extra: dict | None = None) -> tuple[float, float, float]:
    """The colour a person paints class `name` with in this scene (before their hand's jitter)."""
    if name == "sky":
        return STROKE_COLOURS["sky"][scene["sky"]]
    if name == "house" and extra is not None:
        return (0.55, 0.35, 0.2) if scene["wooden"] else HOUSE_COLOURS[extra["colour"]]
    if name == "boat":
        return HOUSE_COLOURS[scene["boat_colour"]]
    return STROKE_COLOURS[name]


def stroke_colour(name: str, scene: dict, rng, extra: dict | None = None) -> np.ndarray:
    return _jitter(rng, stroke_base(name, scene, extra), 0.07)


def pull_palette(scene: dict, image: np.ndarray) -> np.ndarray:
    """World 3: move each object's mean colour the scene's fraction palette_pull[class] of the
    way to its painted colour (stroke_base), keeping its texture and shading. Other worlds:
    unchanged. Used by every domain's renderer, so photos, paintings and crayon drawings of a
    scene share one palette."""
    pull = scene.get("palette_pull")
    if not pull:
        return image
    size = image.shape[0]
    out = image.copy()
    lays = layers(scene, size)
    owner = layer_owner(lays, size)
    for i, (c, _, extra) in enumerate(lays):
        region = owner == i
        if region.any():
            shift = pull[CLASSES[c]] * (np.asarray(stroke_base(CLASSES[c], scene, extra), np.float32)
                                        - image[region].mean(0))
            out[region] += shift
    return np.clip(out, 0, 1).astype(np.float32)


def render_strokes(scene: dict, size: int = 64) -> np.ndarray:
    """The 'strokes' rendering: flat colours, wobbly outlines, gaps of white canvas. (size, size, 3)."""
    rng = np.random.default_rng(scene["style"] + 7)
    lays = layers(scene, size)
    labels = label_map(scene, size, lays)
    owner = layer_owner(lays, size)  # per object, for per-object colours (e.g. houses)
    colours = np.stack([stroke_colour(CLASSES[c], scene, rng, e) for c, _, e in lays])
    # Wobble: sample through a smooth random displacement field (shaky hand).
    amp = rng.uniform(0.6, 2.2)
    dy = value_noise(rng, size, 5) * amp + value_noise(rng, size, 12) * amp * 0.4
    dx = value_noise(rng, size, 5) * amp + value_noise(rng, size, 12) * amp * 0.4
    yy, xx = np.mgrid[0:size, 0:size]
    sy = np.clip(np.round(yy + dy), 0, size - 1).astype(int)
    sx = np.clip(np.round(xx + dx), 0, size - 1).astype(int)
    warped_owner = owner[sy, sx]
    img = colours[warped_owner]
    # Small objects get painted as slightly fatter blobs (brush width).
    for i, (c, mask, _) in enumerate(lays):
        if CLASSES[c] in ("tree", "house", "sun", "moon", "boat", "rock") and rng.random() < 0.6:
            grown = _dilate(warped_owner == i)
            img[grown] = colours[i]
    # Sloppiness: white canvas in gaps between regions and patches left unpainted.
    edges = np.zeros((size, size), bool)
    edges[:, 1:] |= warped_owner[:, 1:] != warped_owner[:, :-1]
    edges[1:, :] |= warped_owner[1:, :] != warped_owner[:-1, :]
    gap_noise = value_noise(rng, size, 10)
    white = edges & (gap_noise > rng.uniform(0.0, 0.6))
    big = np.isin(labels[sy, sx], [CLASS_ID[n] for n in ("sky", "grass", "sand", "snow", "water", "mountain")])
    white |= big & (value_noise(rng, size, 7) > rng.uniform(0.45, 1.2))
    img[white] = 1.0
    # Brush texture: faint streaks of lighter and darker paint.
    streak = value_noise(rng, size, 0, shape=(3, 16)) * rng.uniform(0.0, 0.05)
    img = img + streak[..., None] * (~white)[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def render_masks(scene: dict, size: int = 64) -> np.ndarray:
    """Per-pixel class ids (uint8, (size, size)) matching render_photo's pixels."""
    big = label_map(scene, size * SUPERSAMPLE)
    return big[SUPERSAMPLE // 2 :: SUPERSAMPLE, SUPERSAMPLE // 2 :: SUPERSAMPLE].copy()


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
