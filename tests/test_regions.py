"""Colour regions of stroke paintings, region specs and word -> token resolution."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gradop.regions import (
    Region, RegionWord, TokenMask, find_regions, load_spec_json, nearest_region, parse_color, resolve_spec,
    spec_from_colors, word_token_indices,
)
from gradop.tiny import tiny_tokenizer

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


# ----------------------------------------------------------------------------- specs

def test_spec_from_colors_and_json(tmp_path):
    image, masks = paint(128, [("rectangle", (0, 0, 60, 60), BLUE), ("rectangle", (70, 70, 127, 127), BROWN)])
    spec = spec_from_colors(image, {"#3a7bd5": "lake", (139, 90, 43): {"word": "hut", "occurrence": 1}})
    assert [(s.word, s.occurrence) for s in spec] == [("lake", 0), ("hut", 1)]
    assert iou(spec[0].mask, masks[0]) >= 0.95 and iou(spec[1].mask, masks[1]) >= 0.95

    as_dict = tmp_path / "dict.json"
    as_dict.write_text(json.dumps({"#3a7bd5": "lake", "#8b5a2b": {"word": "hut", "occurrence": 1}}))
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([{"color": "#3a7bd5", "word": "lake"},
                                   {"colour": "#8b5a2b", "word": "hut", "occurrence": 1}]))
    for path in (as_dict, as_list):
        loaded = load_spec_json(path, image)
        assert [(s.word, s.occurrence) for s in loaded] == [("lake", 0), ("hut", 1)]
        assert np.array_equal(loaded[1].mask, spec[1].mask)


def test_spec_errors(tmp_path):
    image, _ = paint(64, [("rectangle", (0, 0, 30, 30), BLUE)])
    with pytest.raises(ValueError, match="both match region"):
        spec_from_colors(image, {"#3a7bd5": "lake", "#3a7bd0": "river"})
    with pytest.raises(ValueError, match="no region has colour #ff0000"):
        spec_from_colors(image, {"#ff0000": "fox"})
    with pytest.raises(ValueError, match="non-empty"):
        spec_from_colors(image, {"#3a7bd5": " "})
    cases = {
        "missing.json": None,
        "broken.json": "{not json",
        "number.json": "3",
        "empty.json": "{}",
        "item.json": json.dumps([{"word": "lake"}]),
        "occurrence.json": json.dumps({"#3a7bd5": {"word": "lake", "occurrence": -1}}),
        "unknown.json": json.dumps({"#00ff00": "tree"}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ValueError, match=name):
            load_spec_json(path, image)


# ----------------------------------------------------------------------------- tokens

@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def tokens_at(tokenizer, prompt, indices):
    ids = tokenizer(prompt)["input_ids"]
    return "".join(tokenizer.convert_ids_to_tokens([ids[i] for i in indices])).replace("</w>", " ").strip()


def test_single_and_multi_token_words(tokenizer):
    prompt = "a photo of a forest lake"
    assert word_token_indices(prompt, "lake", tokenizer) == [9]  # BOS a photo of a fo re s t lake
    forest = word_token_indices(prompt, "forest", tokenizer)
    assert forest == [5, 6, 7, 8]
    assert tokens_at(tokenizer, prompt, forest) == "forest"


@pytest.mark.parametrize("prompt, word, expected", [
    ("A Photo of a LAKE.", "lake", "lake"),
    ("a lake, a hut; and a fox!", "Hut", "hut"),
    ("a forest-lake beside the hut", "lake", "lake"),
    ("a forest-lake beside the hut", "forest", "forest"),
    ("a photo of a red  fox", "red fox", "red fox"),
    ("a photo of a red, fox", "red fox", "red , fox"),
    ("a lake's edge", "lake", "lake"),
    ("a lake", "lake,", "lake"),
])
def test_case_punctuation_and_phrases(tokenizer, prompt, word, expected):
    assert tokens_at(tokenizer, prompt, word_token_indices(prompt, word, tokenizer)) == expected


def test_repeated_word_by_occurrence(tokenizer):
    prompt = "a hut beside a lake and a hut"
    first = word_token_indices(prompt, "hut", tokenizer, occurrence=0)
    second = word_token_indices(prompt, "hut", tokenizer, occurrence=1)
    assert first == [2] and second == [8]
    with pytest.raises(ValueError, match=r"occurs 2 time\(s\).*use 0\.\.1"):
        word_token_indices(prompt, "hut", tokenizer, occurrence=2)


def test_missing_word_and_partial_words(tokenizer):
    with pytest.raises(ValueError, match="word 'lake' is not in the prompt.*append_missing=True"):
        word_token_indices("a photo of lakes", "lake", tokenizer)  # 'lakes' is another word
    with pytest.raises(ValueError, match="no letters"):
        word_token_indices("a lake", "!!", tokenizer)


# ----------------------------------------------------------------------------- resolve_spec

def half_mask(size=64):
    mask = np.zeros((size, size), bool)
    mask[:, : size // 2] = True
    return mask


def test_resolve_spec(tokenizer):
    spec = [RegionWord(half_mask(), "lake"), RegionWord(Image.fromarray(~half_mask()), "hut", occurrence=1)]
    prompt, token_masks = resolve_spec(spec, "a hut by a lake, a hut", tokenizer, size=(64, 64))
    assert prompt == "a hut by a lake, a hut"
    assert all(isinstance(t, TokenMask) for t in token_masks)
    lake, hut = token_masks
    assert lake.word == "lake" and tokens_at(tokenizer, prompt, lake.token_indices) == "lake"
    assert hut.token_indices == [len(tokenizer(prompt)["input_ids"]) - 2]  # the second hut, before EOS
    assert lake.mask.dtype == torch.float32 and lake.mask.shape == (64, 64)
    assert set(lake.mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(hut.mask, 1 - lake.mask)


def test_resolve_spec_missing_word_and_append(tokenizer):
    spec = [RegionWord(half_mask(), "lake"), RegionWord(~half_mask(), "forest")]
    with pytest.raises(ValueError, match="word 'forest' is not in the prompt.*append_missing=True"):
        resolve_spec(spec, "a lake", tokenizer, size=(64, 64))
    prompt, token_masks = resolve_spec(spec, "a lake", tokenizer, size=(64, 64), append_missing=True)
    assert prompt == "a lake, forest"
    assert tokens_at(tokenizer, prompt, token_masks[1].token_indices) == "forest"
    assert resolve_spec(spec[:1], "", tokenizer, size=(64, 64), append_missing=True)[0] == "lake"


def test_resolve_spec_resizes_same_aspect_masks(tokenizer):
    _, (token_mask,) = resolve_spec([RegionWord(half_mask(32), "lake")], "a lake", tokenizer, size=(64, 64))
    assert torch.equal(token_mask.mask, torch.from_numpy(half_mask(64).astype(np.float32)))


@pytest.mark.parametrize("spec, match", [
    ([RegionWord(np.zeros((64, 64), bool), "lake")], "'lake' has an empty mask"),
    ([RegionWord(np.ones((64, 32), bool), "lake")], "mask is 32x64 but the image is 64x64"),
    ([RegionWord(np.ones((64, 64, 3), bool), "lake")], "must be 2-D"),
    ([RegionWord(half_mask(), "lake")] * 17, "17 regions given; at most 16"),
])
def test_resolve_spec_bad_input(tokenizer, spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_spec(spec, "a lake", tokenizer, size=(64, 64))


def test_resolve_spec_over_length_prompt(tokenizer):
    long_prompt = "a lake " + "and the tree " * 30
    with pytest.raises(ValueError, match="tokens long; the text encoder takes 77.*shorten"):
        resolve_spec([RegionWord(half_mask(), "lake")], long_prompt, tokenizer, size=(64, 64))
    with pytest.raises(ValueError, match="beyond the text encoder's 77-token limit"):
        word_token_indices("tree " * 80 + "lake", "lake", tokenizer)
