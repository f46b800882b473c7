import io

import numpy as np
import pytest
from PIL import Image

from gradop import images
from gradop.images import load_image, pil_to_tensor, tensor_to_pil, to_rgb


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "LA", "RGBA"])
def test_common_modes_become_rgb(mode):
    image = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
    assert to_rgb(image).mode == "RGB"


def test_transparent_strokes_sit_on_white_or_on_a_photo():
    strokes = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    strokes.putpixel((0, 0), (255, 0, 0, 255))
    on_white = to_rgb(strokes)
    assert on_white.getpixel((0, 0)) == (255, 0, 0) and on_white.getpixel((3, 3)) == (255, 255, 255)
    photo = Image.new("RGB", (8, 8), (0, 0, 200))
    on_photo = to_rgb(strokes, photo)
    assert on_photo.getpixel((0, 0)) == (255, 0, 0) and on_photo.getpixel((3, 3)) == (0, 0, 200)


@pytest.mark.parametrize("mode", ["F", "I;16", "I"])
def test_ambiguous_high_bit_depth_modes_are_refused(mode):
    with pytest.raises(ValueError, match="8-bit RGB"):
        to_rgb(Image.new(mode, (4, 4)))


def test_bad_sources(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="could not read"):
        load_image(b"GIF89a but not really")
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="resize it first"):
        load_image(buffer.getvalue())


def test_truncated_file_is_reported(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ValueError):
        load_image(tmp_path / "cut.png")


def test_tensor_round_trip():
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    tensor = pil_to_tensor(image)
    assert tensor.shape == (1, 3, 4, 4) and 0 <= tensor.min() and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_pil(tensor)[0]), np.asarray(image))
