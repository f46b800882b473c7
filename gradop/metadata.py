"""Generation parameters carried inside PNG text chunks, and read back."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, PngImagePlugin

KEY = "gradop"  # one JSON text chunk holds everything


def png_info(params: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps(params, sort_keys=True, default=str))
    return info


def save_png(image: Image.Image, path: str | Path, params: dict) -> Path:
    path = Path(path)
    image.save(path, format="PNG", pnginfo=png_info(params))
    return path


def png_bytes(image: Image.Image, params: dict) -> bytes:
    """The PNG file (with parameters) as bytes, e.g. for a download button."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(params))
    return buffer.getvalue()


def read_params(source: str | Path | bytes | Image.Image) -> dict:
    """The parameters stored in a gradop PNG; ValueError if it has none."""
    image = source if isinstance(source, Image.Image) else Image.open(
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    text = getattr(image, "text", None) or image.info
    if KEY not in text:
        raise ValueError("this PNG carries no gradop parameters (was it saved by gradop?)")
    return json.loads(text[KEY])
