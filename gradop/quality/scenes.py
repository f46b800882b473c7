"""Held-out paintings for the quality benchmark.

Three kinds, all from world scenes whose seeds training never used (train/ renders from 0,
evaluations from gradop.world.scene.HELDOUT_SEED = 1,000,000; this module uses its own ranges
above both):

- "world": the world's own stroke renderer (gradop.world.render_strokes).
- "app": drawn the way people paint in the app, with PIL, from the scene's geometry: flat fills
  from the app's palette, rectangles, ellipses and polygons, brush strokes, white canvas gaps and
  sloppy edges. This renderer shares nothing with the world's stroke renderer but the scene.
- "ambiguous": app-style paintings in which one colour can mean two classes (blue = lake or
  sky, red = hut or sun, green = trees or grass, grey = mountain or clouds); the caption names
  both, and the benchmark runs each with each word assigned to that colour.
- "edit": a held-out world photo (the background) with one blob painted on its ground, a red
  blob for "hut" or a green one for "tree" (the world's stroke colours), and the prompt
  "<the photo's caption> with a red hut" / "... with a green tree" (the editing section).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from gradop.world import CLASSES, DEFAULT_WORLD, caption, render_photo, render_strokes, sample_scene, scene_classes, to_pil
from gradop.world.captions import phrases
from gradop.world.scene import HELDOUT_SEED, layers

WORLD_SEED = HELDOUT_SEED + 300_000  # world-renderer paintings
APP_SEED = 2_000_000  # app-style paintings
AMBIGUOUS_SEED = 2_100_000  # colour-ambiguous app-style paintings
REFERENCE_SEED = 2_200_000  # photos and paintings that validate the realism signals
MOVED_SEED = 2_300_000  # photos whose class regions are moved to validate the segmenter (1000 seeds per reference)
EDIT_SEED = HELDOUT_SEED + 30_000  # photos edited by the editing section
DRAW_SIZE = 256  # app paintings are drawn at the app's smallest canvas size, then resized
# Tuning scenes (bench/eval_guidance_quality.py, train/lab_oracle.py): apart from training and
# from every range above, so a choice tuned on them is confirmed on held-out paintings.
TUNING_SEED = HELDOUT_SEED + 500_000
# Colour-ambiguous tuning paintings (bench/eval_region_words.py), 1000 seeds apart like the benchmark's.
AMBIGUOUS_TUNING_SEED = 7_100_000

# The app's palette (app.py PALETTE; tests/test_quality.py checks that the two agree).
APP_PALETTE = {"#8fc9f0": "sky", "#2f6fd0": "water", "#4caf50": "grass", "#1e5a2a": "trees",
               "#8c8c8c": "rock", "#8b5a2b": "earth", "#e8c860": "sand", "#f08a24": "orange",
               "#d83a3a": "red", "#303030": "dark"}
# Which palette colour a person picks for each class (None: left as white canvas).
CLASS_PAINT = {"cloud": "#8c8c8c", "sun": "#f08a24", "moon": "#e8c860", "mountain": "#8c8c8c", "hill": "#4caf50",
               "water": "#2f6fd0", "grass": "#4caf50", "sand": "#e8c860", "snow": None, "tree": "#1e5a2a",
               "house": "#d83a3a", "boat": "#8b5a2b", "rock": "#8c8c8c"}  # boat, rock: world v2 only
SKY_PAINT = {"day": "#8fc9f0", "sunset": "#f08a24", "night": "#303030"}
TRUNK, ROOF = "#8b5a2b", "#303030"

# (colour, (class, word), (class, word), caption phrase naming both).
AMBIGUOUS_PAIRS = (
    ("#2f6fd0", ("water", "lake"), ("sky", "sky"), "a lake under a blue sky"),
    ("#d83a3a", ("house", "hut"), ("sun", "sun"), "a red hut and a red sun"),
    ("#4caf50", ("tree", "trees"), ("grass", "grass"), "green trees and green grass"),
    ("#8c8c8c", ("mountain", "mountain"), ("cloud", "clouds"), "a grey mountain and grey clouds"),
)
# A different colour for a class whose usual colour is the ambiguous one (None: leave it white).
AVOID = {"water": None, "sky": "#8fc9f0", "house": "#8b5a2b", "sun": "#e8c860", "tree": "#1e5a2a", "grass": None,
         "hill": "#8b5a2b", "mountain": "#8b5a2b", "cloud": None}


@dataclass
class Painting:
    """One benchmark painting: the 64 px stroke image the methods get, and what it shows."""

    name: str
    kind: str  # "world", "app" or "ambiguous"
    seed: int  # the world scene's seed
    caption: str
    image: Image.Image  # RGB at the model's size
    drawing: Image.Image | None = None  # the full-size app drawing (contact sheet)
    # Ambiguous paintings: the colour and the two (class, word) meanings; `source` is the class
    # whose geometry the colour region has.
    colour: str | None = None
    meanings: tuple = ()
    source: str | None = None
    classes: list[str] = field(default_factory=list)
    background: Image.Image | None = None  # edit paintings: the photo painted over (image is RGBA strokes)


def _hex_rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _jitter_points(points, rng, amount: float) -> list[tuple[float, float]]:
    return [(x + rng.uniform(-amount, amount), y + rng.uniform(-amount, amount)) for x, y in points]


def _mask_box(mask: np.ndarray, scale: float) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return xs.min() * scale, ys.min() * scale, (xs.max() + 1) * scale, (ys.max() + 1) * scale


def _brush_fill(draw: ImageDraw.ImageDraw, box, colour, rng, size: int) -> None:
    """Fill a box with horizontal brush strokes that leave white gaps (the app's freedraw brush)."""
    x0, y0, x1, y1 = box
    width = int(rng.integers(size // 14, size // 8))
    y = y0 + width / 2
    while y < y1 + width / 3:
        n = 6
        xs = np.linspace(x0 + rng.uniform(-4, 10), x1 - rng.uniform(-4, 10), n)
        ys = y + np.cumsum(rng.normal(0, size / 200, n))
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=width, joint="curve")
        y += width * rng.uniform(0.75, 1.05)  # > 1 x width leaves a canvas gap


def _polygon_below(ridge: np.ndarray, bottom: float, scale: float, rng, samples: int) -> list[tuple[float, float]]:
    """A polygon under a ridge line (mountains, hills), sampled coarsely like a hand would."""
    xs = np.linspace(0, len(ridge) - 1, samples).round().astype(int)
    top = [(x * scale, min(ridge[x], bottom) * scale * len(ridge)) for x in xs if ridge[x] < bottom]
    if len(top) < 2:
        return []
    top = _jitter_points(top, rng, scale * 1.5)
    return top + [(top[-1][0], bottom * scale * len(ridge) + 2), (top[0][0], bottom * scale * len(ridge) + 2)]


def render_app_painting(scene: dict, paint: dict | None = None, size: int = DRAW_SIZE) -> Image.Image:
    """An app-style painting of `scene` at size x size (RGB, white canvas).

    `paint` maps class names to palette colours (None = leave unpainted); it defaults to
    CLASS_PAINT with the sky colour of the scene's sky kind."""
    rng = np.random.default_rng(scene["seed"] + 17)
    paint = {**CLASS_PAINT, "sky": SKY_PAINT[scene["sky"]], **(paint or {})}
    grid = 64  # geometry is read from the scene's layers on a coarse grid
    scale = size / grid
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    hz = scene["horizon"]
    sloppy = rng.uniform(1.0, 4.0)  # how far a vertex may miss, in pixels

    def colour(name):
        return paint.get(name)

    if colour("sky"):
        if rng.random() < 0.5:
            _brush_fill(draw, (0, 0, size, hz * size), colour("sky"), rng, size)
        else:  # one sloppy flat polygon, its lower edge wavy
            edge = [(x, hz * size + rng.uniform(-6, 4)) for x in np.linspace(size, 0, 6)]
            draw.polygon(_jitter_points([(0, rng.uniform(0, 8)), (size, rng.uniform(0, 8))] + edge, rng, sloppy),
                         fill=colour("sky"))
    ground = scene["ground"]
    for cls, mask, extra in layers(scene, grid):
        name = CLASSES[cls]
        fill = colour(name)
        if name == "sky" or fill is None:
            continue
        if name in ("grass", "sand", "snow"):
            box = (0, hz * size + rng.uniform(-3, 3), size, size)
            if rng.random() < 0.5:
                _brush_fill(draw, box, fill, rng, size)
            else:
                draw.rectangle(box, fill=fill)
        elif name in ("sun", "moon"):
            obj = scene[name]
            cx, cy, r = obj["x"] * size, obj["y"] * size, obj["r"] * size * rng.uniform(1.0, 1.3)
            draw.ellipse((cx - r, cy - r * rng.uniform(0.85, 1.1), cx + r, cy + r), fill=fill)
        elif name == "cloud":
            box = _mask_box(mask, scale)
            if box:
                x0, y0, x1, y1 = box
                for _ in range(3):
                    w = (x1 - x0) * rng.uniform(0.4, 0.6)
                    cx = rng.uniform(x0 + w / 2, max(x0 + w / 2, x1 - w / 2))
                    draw.ellipse((cx - w / 2, y0 + rng.uniform(-3, 3), cx + w / 2, y1 + rng.uniform(-3, 3)), fill=fill)
        elif name in ("mountain", "hill"):
            ridge = extra["ridge"]
            polygon = _polygon_below(ridge, hz + 0.02, scale, rng, samples=int(rng.integers(7, 14)))
            if polygon:
                draw.polygon(polygon, fill=fill)
        elif name == "water":
            w = scene["water"]
            if w["kind"] == "lake":
                cx, cy = w["x"] * size, w["y"] * size
                rx, ry = w["rx"] * size * rng.uniform(0.95, 1.1), w["ry"] * size * rng.uniform(0.95, 1.2)
                draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
            elif w["kind"] == "sea":
                draw.rectangle((0, hz * size, size, w["bottom"] * size + rng.uniform(-3, 3)), fill=fill)
            else:  # a river: one wide brush stroke down its centre line, widening towards the viewer
                ys = np.linspace(hz, 1.0, 8)
                for a, b in zip(ys[:-1], ys[1:]):
                    xa = w["x"] + w["a"] * np.sin(w["f"] * a * 6.28 + w["p"])
                    xb = w["x"] + w["a"] * np.sin(w["f"] * b * 6.28 + w["p"])
                    width = max(size // 20, int(w["w"] * (0.15 + (b - hz) / (1 - hz)) * size))
                    draw.line([(xa * size, a * size), (xb * size, b * size)], fill=fill, width=width, joint="curve")
        elif name == "tree":
            x, top, hgt = extra["x"] * size, extra["top"] * size, extra["hgt"] * size
            base = top + hgt
            draw.rectangle((x - hgt * 0.06, base - hgt * 0.4, x + hgt * 0.06, base), fill=TRUNK)
            if scene["pine"]:
                points = [(x, top), (x - hgt * 0.3, base - hgt * 0.2), (x + hgt * 0.3, base - hgt * 0.2)]
                draw.polygon(_jitter_points(points, rng, sloppy), fill=fill)
            else:
                r = hgt * 0.4
                cy = top + hgt * 0.38
                draw.ellipse((x - r, cy - r * 1.1, x + r, cy + r * 1.1), fill=fill)
        elif name == "house":
            x, base, w, h = extra["x"] * size, extra["base"] * size, extra["w"] * size, extra["h"] * size
            body = fill if not scene["wooden"] or fill != CLASS_PAINT["house"] else TRUNK
            draw.rectangle(_flat(_jitter_points([(x - w / 2, base - h), (x + w / 2, base)], rng, sloppy)), fill=body)
            roof = ROOF if paint.get("roof", True) else body
            draw.polygon(_jitter_points([(x - w / 2 - 4, base - h), (x + w / 2 + 4, base - h), (x, base - h * 1.7)],
                                        rng, sloppy), fill=roof)
        elif name in ("boat", "rock"):  # world v2: a sloppy ellipse over the object's extent
            box = _mask_box(mask, scale)
            if box:
                draw.ellipse(_flat(_jitter_points([box[:2], box[2:]], rng, sloppy)), fill=fill)
    if ground == "snow" and rng.random() < 0.3:  # a few blue shadow strokes on white snow
        draw.line([(rng.uniform(0, size), rng.uniform(hz * size, size)) for _ in range(3)], fill="#8fc9f0", width=6)
    return image


def _flat(points) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = points
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _to_model_size(drawing: Image.Image, size: int) -> Image.Image:
    # The pipeline resizes strokes with LANCZOS too; resizing here keeps metrics on what it sees.
    return drawing.resize((size, size), Image.Resampling.LANCZOS)


def world_painting(index: int, size: int = 64, world_version: int = DEFAULT_WORLD) -> Painting:
    scene = sample_scene(WORLD_SEED + index, world_version)
    strokes = to_pil(render_strokes(scene, size))
    return Painting(f"world-{index:03d}", "world", scene["seed"], caption(scene), strokes,
                    classes=sorted(scene_classes(scene)))


def app_painting(index: int, size: int = 64, world_version: int = DEFAULT_WORLD) -> Painting:
    scene = sample_scene(APP_SEED + index, world_version)
    drawing = render_app_painting(scene)
    return Painting(f"app-{index:03d}", "app", scene["seed"], caption(scene), _to_model_size(drawing, size), drawing,
                    classes=sorted(scene_classes(scene)))


def tuning_painting(index: int, world_version: int = DEFAULT_WORLD, size: int = 64) -> tuple[dict, Image.Image]:
    """(scene, strokes) of tuning scene `index`: drawn by the world's stroke renderer for even
    indices and by the app-style renderer for odd ones."""
    scene = sample_scene(TUNING_SEED + index, world_version)
    if index % 2 == 0:
        return scene, to_pil(render_strokes(scene, size))
    return scene, _to_model_size(render_app_painting(scene), size)


def ambiguous_painting(index: int, size: int = 64, world_version: int = DEFAULT_WORLD, *,
                       seed_base: int = AMBIGUOUS_SEED) -> Painting:
    """Pair index % 4; the colour region has the geometry of the pair's first class for even
    index // 4 and of the second for odd, so each word is sometimes the 'natural' one.
    seed_base: AMBIGUOUS_SEED (held out for the benchmark) or AMBIGUOUS_TUNING_SEED (tuning)."""
    colour, first, second, both = AMBIGUOUS_PAIRS[index % len(AMBIGUOUS_PAIRS)]
    source, other = (first, second) if (index // len(AMBIGUOUS_PAIRS)) % 2 == 0 else (second, first)
    seed = seed_base + 1000 * index
    while True:  # the first scene in this painting's own seed block whose painting has the region
        scene = sample_scene(seed, world_version)
        if source[0] in scene_classes(scene) and (source[0] != "sky" or scene["sky"] == "day"):
            # Only the source class wears the ambiguous colour: any other class that would (the
            # competing one included) gets another palette colour or stays white canvas.
            paint = {name: AVOID.get(name) for name, usual in CLASS_PAINT.items() if usual == colour}
            if SKY_PAINT[scene["sky"]] == colour:
                paint["sky"] = AVOID["sky"]
            paint[source[0]] = colour
            paint["roof"] = source[0] != "house"  # a red hut is all red: one region for the word
            drawing = render_app_painting(scene, paint)
            image = _to_model_size(drawing, size)
            if _has_region(image, colour):
                break
        seed += 1
    rng = np.random.default_rng(seed)
    rest = [p for cls, p in phrases(scene, rng).items() if cls not in (first[0], second[0])]
    text = f"a photo of {both}" + (f" with {rest[0]}" if rest else "")
    return Painting(f"ambiguous-{index:03d}", "ambiguous", seed, text, image, drawing,
                    colour=colour, meanings=(first, second), source=source[0], classes=sorted(scene_classes(scene)))


def _has_region(image: Image.Image, colour: str, min_area_fraction: float = 0.01) -> bool:
    """Whether gradop.regions finds a region of this colour (what region control will use)."""
    from gradop.regions import find_regions, nearest_region

    try:
        return nearest_region(find_regions(image), colour).area_fraction >= min_area_fraction
    except ValueError:
        return False


# (class, word, caption phrase, stroke colour, blob size as a fraction of the side (w, h)).
EDIT_OBJECTS = (
    ("house", "hut", "a red hut", "#cc3326", (0.26, 0.2)),
    ("tree", "tree", "a green tree", "#0d661a", (0.16, 0.26)),
)


def edit_painting(index: int, size: int = 64, world_version: int = DEFAULT_WORLD) -> Painting:
    """A held-out photo with one object blob painted on its ground (RGBA strokes over it)."""
    seed = EDIT_SEED + index
    scene = sample_scene(seed, world_version)
    cls, word, phrase, colour, (bw, bh) = EDIT_OBJECTS[index % len(EDIT_OBJECTS)]
    rng = np.random.default_rng(seed)
    cx = rng.uniform(0.2, 0.8) * size
    cy = rng.uniform(min(scene["horizon"] + 0.15, 0.8), 0.82) * size
    strokes = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(strokes).ellipse((cx - bw * size / 2, cy - bh * size / 2, cx + bw * size / 2, cy + bh * size / 2),
                                    fill=(*_hex_rgb(colour), 255))
    return Painting(name=f"edit-{index:03d}", kind="edit", seed=seed, caption=f"{caption(scene)} with {phrase}",
                    image=strokes, colour=colour, meanings=((cls, word),), source=cls,
                    classes=sorted(scene_classes(scene) | {cls}), background=to_pil(render_photo(scene, size)))


def benchmark_paintings(world: int, app: int, ambiguous: int, edit: int = 0, size: int = 64,
                        world_version: int = DEFAULT_WORLD) -> list[Painting]:
    """The benchmark's paintings in a fixed order that interleaves the kinds (so a shard, or a
    run stopped early, still covers every kind); scenes of world `world_version` (default: the demo model's)."""
    make = (world_painting, app_painting, ambiguous_painting, edit_painting)
    kinds = [[f(i, size, world_version) for i in range(n)] for f, n in zip(make, (world, app, ambiguous, edit))]
    return [kind[i] for i in range(max(world, app, ambiguous, edit, 0)) for kind in kinds if i < len(kind)]
