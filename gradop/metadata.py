"""Generation parameters carried inside PNG text chunks, and read back."""

from __future__ import annotations

import io
import json
import os
import secrets
import warnings
from pathlib import Path

from PIL import Image, PngImagePlugin

KEY = "gradop"  # one JSON text chunk holds everything
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_info(params: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps(params, sort_keys=True, default=str))
    return info


def save_png(image: Image.Image, path: str | Path, params: dict) -> Path:
    """Write the PNG with its parameters. The file appears whole or not at all: it is written
    beside the target and renamed, so a failed write never leaves half a file or destroys the
    file it was replacing."""
    path = Path(path)
    data = png_bytes(image, params)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        with open(partial, "xb") as file:  # "x": never follows or clobbers something already there
            file.write(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def image_paths(path: str | Path, count: int) -> list[Path]:
    """Where `count` images asked to go to `path` are saved: the path itself for one image,
    else path_0.png, path_1.png, ... (what GenerationResult.save writes)."""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}") for i in range(count)]


def png_bytes(image: Image.Image, params: dict) -> bytes:
    """The PNG file (with parameters) as bytes, e.g. for a download button."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(params))
    return buffer.getvalue()


def read_params(source: str | Path | bytes | Image.Image) -> dict:
    """The parameters stored in a gradop PNG; one-line ValueError for anything else (a missing
    file, a folder, text, a truncated or oversized image, a PNG without gradop parameters)."""
    from gradop.images import read_file

    name = f"'{source}'" if isinstance(source, (str, Path)) else "the image data"
    if isinstance(source, Image.Image):
        image = source
    else:
        data = read_file(source, "image") if isinstance(source, (str, Path)) else bytes(source)
        try:
            with warnings.catch_warnings():  # only the text chunks are read, never the pixels
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ValueError(f"{name} has far too many pixels to be a gradop image") from None
        except Exception:  # noqa: BLE001 - PIL's per-format errors: not an image we can read
            if data.startswith(PNG_SIGNATURE):
                raise ValueError(f"{name} is a damaged or truncated PNG; copy or save it again") from None
            raise ValueError(f"{name} is not an image; give a PNG saved by gradop") from None
    damaged = False
    try:
        text = getattr(image, "text", None) or image.info  # .text reads chunks after the pixels too
    except Exception:  # noqa: BLE001 - truncated or corrupt data after the header
        text, damaged = image.info, True  # the chunks before the pixels still count
    if KEY not in text:
        if damaged:
            raise ValueError(f"{name} is a damaged or truncated PNG; copy or save it again")
        raise ValueError(f"{name} carries no gradop parameters (was it saved by gradop?)")
    try:
        return json.loads(text[KEY])
    except (json.JSONDecodeError, TypeError):
        raise ValueError(f"the gradop parameters in {name} are damaged (not valid JSON)") from None
