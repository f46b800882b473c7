"""Reading user images safely and converting between PIL and tensors.

Inside gradop images are float tensors in [0, 1] shaped (B, 3, H, W); at the API edges they
are PIL images. Every user-facing problem becomes a one-line ValueError.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MAX_PIXELS = 4096 * 4096  # refuse decompression bombs long before PIL's own warning level
# Modes PIL converts to RGB without losing meaning; 16-bit and float modes are refused
# because their value range is ambiguous (is 1.0 white, or 65535?).
CONVERTIBLE_MODES = {"RGB", "RGBA", "RGBa", "L", "LA", "La", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"}


def load_image(source: str | Path | bytes | Image.Image | np.ndarray, *, what: str = "image") -> Image.Image:
    """Open a path / bytes / array / PIL image as a loaded PIL image, with clear errors.

    Every problem with the file (missing, a folder, unreadable, not an image, truncated, too many
    pixels, a decompression bomb) is one ValueError line that names it and says what to do."""
    limit, subject = f"the {MAX_PIXELS // 10**6} MP limit", what
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise ValueError(f"{what} array must be uint8 HxW, HxWx3 or HxWx4 (got {source.dtype} {source.shape})")
        image = Image.fromarray(source)
    else:
        if isinstance(source, (str, Path)):
            data, name = read_file(source, what), f"'{source}'"
            subject = f"{what} {name}"
        elif isinstance(source, (bytes, bytearray)):
            if not source:
                raise ValueError(f"{what} is empty; upload a PNG or JPEG image")
            data, name = bytes(source), "the upload"
        else:
            raise ValueError(f"{what} must be a path, bytes, numpy array or PIL image (got {type(source).__name__})")
        try:
            with warnings.catch_warnings():  # the pixel limit below is stricter than PIL's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ValueError(f"{subject} has far more pixels than {limit}; resize it first") from None
        except Exception as error:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... per format
            raise ValueError(f"could not read {name} as an image ({error.__class__.__name__}); "
                             "use a PNG or JPEG file") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{subject} is {width}x{height} pixels, more than {limit}; resize it first")
    try:
        image.load()
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data, whichever decoder noticed
        raise ValueError(f"could not decode {subject} ({error.__class__.__name__}: {_first_line(error)}); "
                         "save it again as PNG or JPEG") from None
    return image


def read_file(source: str | Path, what: str) -> bytes:
    """The bytes of a user's file; ValueError naming it when it is missing, a folder, empty or unreadable."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise ValueError(f"{what} '{source}' is a folder; give an image file")
    if not path.is_file():
        raise ValueError(f"{what} file '{source}' does not exist; check the path")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {what} file '{source}': {error.strerror or error}") from None
    if not data:
        raise ValueError(f"{what} file '{source}' is empty; save the image again")
    return data


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else "no details"


def is_blank(image: Image.Image, tolerance: int = 8) -> bool:
    """True when an RGB stroke image has nothing painted: every pixel within `tolerance` of white
    (what an empty canvas, a white page or a fully transparent image becomes)."""
    return min(low for low, _ in image.convert("RGB").getextrema()) >= 255 - tolerance


def has_alpha(image: Image.Image) -> bool:
    """Whether the image carries transparency (an alpha channel or a transparent palette entry)."""
    return image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image: Image.Image, background: Image.Image | tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB version of a stroke image: transparency is composited over `background` (white canvas
    by default, or a photo for real-image editing)."""
    if image.mode not in CONVERTIBLE_MODES:
        raise ValueError(f"image mode '{image.mode}' is not supported; save the image as 8-bit RGB or RGBA PNG")
    if not has_alpha(image):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    if isinstance(background, Image.Image):
        base = background.convert("RGB").resize(rgba.size, Image.Resampling.LANCZOS).convert("RGBA")
    else:
        base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (1, 3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float tensor (B, 3, H, W) in [0, 1] -> list of PIL RGB images."""
    array = (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in array]
