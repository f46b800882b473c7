import pytest
from PIL import Image

from gradop.metadata import png_bytes, read_params, save_png


def test_round_trip_through_file_and_bytes(tmp_path):
    params = {"method": "gradop+", "prompt": "a fox, at dusk", "seed": 42, "strength": 0.8, "regions": [{"word": "lake"}]}
    image = Image.new("RGB", (8, 8), "red")
    path = save_png(image, tmp_path / "x.png", params)
    assert read_params(path) == params
    assert read_params(png_bytes(image, params)) == params
    assert Image.open(path).getpixel((0, 0)) == (255, 0, 0)


def test_png_without_parameters_is_reported(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no gradop parameters"):
        read_params(tmp_path / "plain.png")


def test_generation_result_saves_every_image_with_its_index(tiny_pipe, strokes, tmp_path):
    result = tiny_pipe.sdedit("a fox", strokes, steps=2, seed=1, num_images=2)
    paths = result.save(tmp_path / "pair.png")
    assert [p.name for p in paths] == ["pair_0.png", "pair_1.png"]
    assert [read_params(p)["image_index"] for p in paths] == [0, 1]
    assert read_params(paths[1])["seed"] == 1
