"""Region specs and word -> token resolution (gradop.region_words)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from test_regions import BLUE, BROWN, iou, paint

from gradop.region_words import RegionWord, TokenMask, load_spec_json, resolve_spec, spec_from_colors, \
    word_token_indices
from gradop.tiny import tiny_tokenizer


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
