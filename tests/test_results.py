"""What a generation returns and reports (gradop.results), without a model."""

import warnings

import pytest
import torch
from PIL import Image

from gradop.metadata import read_params
from gradop.results import GenerationResult, ProgressCounter, seed_of


def test_seed_of_a_fresh_generator_and_of_a_used_one():
    fresh = torch.Generator().manual_seed(1234)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh generator must not warn
        assert seed_of(fresh) == 1234
    torch.randn(3, generator=fresh)
    with pytest.warns(UserWarning, match="already used"):
        assert seed_of(fresh) is None


def test_progress_counter_numbers_every_unit_of_work_across_phases():
    seen = []
    counter = ProgressCounter(3, seen.append)
    latents = torch.zeros(1, 4, 2, 2)
    counter.advance("sampling", latents)
    counter.advance("optimising")
    counter.advance("denoising")
    assert [(p.phase, p.step, p.total) for p in seen] == [("sampling", 1, 3), ("optimising", 2, 3), ("denoising", 3, 3)]
    assert seen[0].latents is latents and seen[1].latents is None
    ProgressCounter(1, None).advance("sampling")  # no callback: counting alone works


def test_result_saves_one_image_under_its_name_and_several_numbered(tmp_path):
    images = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    single = GenerationResult(images[:1], {"method": "text", "seed": 7})
    assert [p.name for p in single.save(tmp_path / "one.png")] == ["one.png"]
    assert read_params(tmp_path / "one.png")["image_index"] == 0

    pair = GenerationResult(images, {"method": "text", "seed": 7})
    paths = pair.save(tmp_path / "two.png")
    assert [p.name for p in paths] == ["two_0.png", "two_1.png"]
    assert [read_params(p)["image_index"] for p in paths] == [0, 1]
    assert Image.open(paths[1]).getpixel((0, 0)) == (0, 0, 255)
