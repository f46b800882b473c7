"""Colour regions of stroke paintings (gradop.regions)."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gradop.regions import Region, find_regions, nearest_region, parse_color

BLUE, BROWN, GREEN, RED = (58, 123, 213), (139, 90, 43), (60, 160, 60), (220, 40, 40)
SUPERSAMPLE = 4  # shapes drawn at 4x and box-downsampled: area-true anti-aliased edges


def paint(size, shapes, *, noise=0.0, specks=0, seed=0, transparent=False):
    """A synthetic stroke painting and the true mask of each shape (later shapes cover earlier).

    shapes: (ImageDraw method, coordinates at `size`, colour[, extra keyword arguments])."""
    big = size * SUPERSAMPLE
    canvas = Image.new("RGBA", (big, big), (0, 0, 0, 0) if transparent else (255, 255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    covers = []
    for kind, coords, color, *extra in shapes:
        kwargs = dict(extra[0]) if extra else {}
        scaled = [c * SUPERSAMPLE for c in coords]
        if "width" in kwargs:
            kwargs["width"] *= SUPERSAMPLE
        layer = Image.new("L", (big, big), 0)
        key = "fill"
        getattr(draw, kind)(scaled, **{key: color + (255,)}, **kwargs)
        getattr(ImageDraw.Draw(layer), kind)(scaled, **{key: 255}, **kwargs)
        covers.append(np.asarray(layer.resize((size, size), Image.Resampling.BOX)) >= 128)
    image = canvas.resize((size, size), Image.Resampling.BOX)
    masks = []
    for i, cover in enumerate(covers):
        for later in covers[i + 1:]:
            cover = cover & ~later
        masks.append(cover)
    array = np.asarray(image).astype(np.float64)
    rng = np.random.default_rng(seed)
    if noise:
        array[..., :3] += rng.normal(0.0, noise, array[..., :3].shape)
    array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    for _ in range(specks):  # stray 2x2 dots of random colours
        y, x = rng.integers(0, size - 2, 2)
        array[y:y + 2, x:x + 2, :3] = rng.integers(0, 256, 3)
        array[y:y + 2, x:x + 2, 3] = 255
    return (Image.fromarray(array) if transparent else array[..., :3]), masks


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def assert_matches(regions, masks, colors):
    """Each drawn shape is found once, with its colour and IoU >= 0.95."""
    assert len(regions) == len(masks)
    for mask, color in zip(masks, colors):
        best = max(regions, key=lambda r: iou(r.mask, mask))
        assert iou(best.mask, mask) >= 0.95, (best.hex, iou(best.mask, mask))
        assert np.linalg.norm(np.subtract(best.color, color)) < 12


SCENE = [
    ("rectangle", (0, 170, 256, 256), BLUE),  # a lake along the bottom
    ("ellipse", (30, 30, 130, 120), BROWN),
    ("ellipse", (120, 110, 200, 190), GREEN),  # overlaps the lake: blue/green blend edge
    ("polygon", (200, 15, 240, 90, 160, 90), RED),
]


# ----------------------------------------------------------------------------- find_regions

@pytest.mark.parametrize("noise", [0.0, 8.0])
def test_regions_of_soft_edged_noisy_painting(noise):
    image, masks = paint(256, SCENE, noise=noise, specks=30)
    regions = find_regions(image)
    assert_matches(regions, masks, [s[2] for s in SCENE])
    assert [r.area for r in regions] == sorted((r.area for r in regions), reverse=True)


def test_region_fields():
    image, masks = paint(128, [("rectangle", (10, 20, 50, 40), RED)])
    (region,) = find_regions(image)
    assert isinstance(region, Region)
    assert region.mask.dtype == bool and region.mask.shape == (128, 128)
    assert region.bbox == (10, 20, 50, 40)
    assert region.area == int(region.mask.sum()) == 40 * 20
    assert region.area_fraction == pytest.approx(40 * 20 / 128 ** 2)
    assert region.hex == "#dc2828"


def test_transparent_canvas_is_background_and_pil_input():
    image, masks = paint(128, [("ellipse", (10, 10, 70, 60), BLUE), ("line", (20, 100, 120, 90), BROWN,
                                                                        {"width": 9})], transparent=True)
    assert image.mode == "RGBA"
    regions = find_regions(image)
    assert_matches(regions, masks, [BLUE, BROWN])
    from_array = find_regions(np.asarray(image))  # H x W x 4 arrays: the same as the PIL image
    assert [r.color for r in from_array] == [r.color for r in regions]


def test_brush_strokes_and_jpeg():
    shapes = [("line", (10, 30, 240, 60), GREEN, {"width": 14}), ("line", (40, 200, 220, 120), BLUE, {"width": 18}),
              ("ellipse", (150, 170, 230, 240), RED)]
    image, masks = paint(256, shapes)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=70)
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))
    assert_matches(find_regions(jpeg), masks, [s[2] for s in shapes])


def test_specks_and_small_regions_are_ignored():
    # 11x11 = 121 px is 0.74 % of 128x128: kept at the default 0.5 %, dropped at 1 %.
    image, masks = paint(128, [("rectangle", (60, 60, 71, 71), RED)], specks=25, seed=3)
    (region,) = find_regions(image)
    assert iou(region.mask, masks[0]) >= 0.95
    assert find_regions(image, min_area_fraction=0.01) == []


def test_blank_canvas_and_custom_background():
    assert find_regions(np.full((64, 64, 3), 255, np.uint8)) == []
    gray = np.full((64, 64, 3), 128, np.uint8)
    gray[10:40, 10:40] = RED
    (region,) = find_regions(gray, background="#808080")
    assert region.area == 900


def test_find_regions_is_deterministic():
    image, _ = paint(128, SCENE[:3], noise=6.0, seed=1)
    first, second = find_regions(image), find_regions(image)
    assert [r.color for r in first] == [r.color for r in second]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first, second))


def test_bad_image_array():
    with pytest.raises(ValueError, match="uint8"):
        find_regions(np.zeros((8, 8), np.float32))


# ----------------------------------------------------------------------------- colours

@pytest.mark.parametrize("value", ["#3a7bd5", "3a7bd5", " #3A7BD5 ", (58, 123, 213), [58, 123, 213]])
def test_parse_color(value):
    assert parse_color(value) == (58, 123, 213)


def test_parse_color_short_form():
    assert parse_color("#fa0") == (255, 170, 0)


@pytest.mark.parametrize("value", ["#3a7bd", "blue", "#gg0000", (1, 2), (0, 0, 256), (1.5, 2, 3), None])
def test_parse_color_errors(value):
    with pytest.raises(ValueError, match="colour"):
        parse_color(value)


def test_nearest_region_and_unknown_colour():
    image, _ = paint(128, [("rectangle", (0, 0, 60, 60), BLUE), ("rectangle", (70, 70, 127, 127), RED)])
    regions = find_regions(image)
    assert nearest_region(regions, "#3a7bd0").hex == "#3a7bd5"
    with pytest.raises(ValueError, match="no region has colour #00ff00.*use one of: #3a7bd5, #dc2828"):
        nearest_region(regions, "#00ff00")
    with pytest.raises(ValueError, match="no painted regions"):
        nearest_region([], "#00ff00")
