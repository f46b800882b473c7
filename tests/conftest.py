"""Shared fixtures: a tiny random-weight Stable Diffusion, built in code, never downloaded."""

import os

# No test may touch the network: huggingface_hub and transformers read these at call time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from gradop.pipeline import GradopPipeline  # noqa: E402
from gradop.tiny import save_tiny_model, tiny_components  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
FAST = dict(steps=6, seed=3)  # few DDIM steps keep the suite quick; mechanics are the same


@pytest.fixture(scope="session")
def tiny_pipe() -> GradopPipeline:
    return GradopPipeline(tiny_components(seed=0), model_name="tiny-random")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model saved as a diffusers folder, for the real from_pretrained path."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


def draw_strokes(size: int = 64) -> Image.Image:
    """A two-colour scribble on white: a blue blob (top left) and a red block (bottom right)."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    s = size / 64
    draw.ellipse((6 * s, 6 * s, 38 * s, 36 * s), fill=(40, 90, 220))
    draw.rectangle((30 * s, 38 * s, 60 * s, 60 * s), fill=(200, 50, 40))
    return image


@pytest.fixture
def strokes() -> Image.Image:
    return draw_strokes()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring width x height pixels, with a few bytes of image data: PIL
    refuses it as a decompression bomb on open, as it would a real one (no GB written to disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
