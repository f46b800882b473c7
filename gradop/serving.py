"""What the web app needs besides widgets: server configuration, jobs, messages, estimates.

Nothing here imports Streamlit, so all of it is unit-tested directly (tests/test_serving.py).

- Which models a server offers is the operator's choice (command line, environment, config
  file); web users only pick from that allow-list, never type a path, and pickles are never
  loaded (`load_components` refuses them unless `allow_pickle`, which is never passed here).
- Generation jobs, estimates and messages live in gradop.jobs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gradop import models


log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- configuration

# The model a server offers when the operator names none: the library's embedded default.
DEFAULT_MODEL = models.DEFAULT_MODEL
# Models whose outputs are meaningless: the page shows a banner while one is in use.
TEST_MODELS = frozenset({"tiny-random"})

MODEL_ENV, ALLOWED_ENV, CONFIG_ENV = "GRADOP_MODEL", "GRADOP_ALLOWED_MODELS", "GRADOP_CONFIG"
DEVICE_ENV, DTYPE_ENV, THREADS_ENV = "GRADOP_DEVICE", "GRADOP_DTYPE", "GRADOP_THREADS"
COMPILE_ENV = "GRADOP_COMPILE"
DEFAULT_CONFIG_FILE = "gradop-app.toml"  # read from the working directory when present
CONFIG_KEYS = {"model": str, "allowed_models": list, "device": str, "dtype": str, "threads": int, "compile": bool}


@dataclass(frozen=True)
class AppConfig:
    """The server operator's choices. `allowed_models` always starts with `model`."""

    model: str = DEFAULT_MODEL
    allowed_models: tuple[str, ...] = (DEFAULT_MODEL,)
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None  # torch CPU threads for generation (None: cpu_threads's default)
    compile: bool = False  # torch.compile the UNet and the guidance decoder (GradopPipeline's compile_*)


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamlit run app.py --", allow_abbrev=False, add_help=False,
        description="Server options of the gradop web app (after `--` on the streamlit command line).",
    )
    parser.add_argument("--model", help="model served by default (built-in name, hub id, diffusers folder "
                                        "or .safetensors file)")
    parser.add_argument("--allowed-models", help="comma-separated models the sidebar offers")
    parser.add_argument("--config", help=f"TOML config file (default: ./{DEFAULT_CONFIG_FILE} if present)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--dtype", help="float16, bfloat16 or float32 (default: fp16 on CUDA, else fp32)")
    parser.add_argument("--threads", help="torch CPU threads for a generation (default: every core but one, "
                                          "left to the browser and the server)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the UNet (CUDA graphs on a GPU) and the guidance decoder: faster "
                             "generations after a slow first one per image size")
    return parser


def _split_models(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def read_config_file(path: str | Path) -> dict:
    """The operator's TOML file as a dict of known keys; ValueError with one line otherwise."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ValueError("app config files need Python >= 3.11; use GRADOP_MODEL / --model instead") from None
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the app config file {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the app config file {path} is not valid TOML: {error}") from None
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            raise ValueError(f"unknown key '{key}' in {path}; use {', '.join(CONFIG_KEYS)}")
        if not isinstance(value, CONFIG_KEYS[key]):
            raise ValueError(f"'{key}' in {path} must be a {CONFIG_KEYS[key].__name__}")
    if not all(isinstance(m, str) and m.strip() for m in data.get("allowed_models", [])):
        raise ValueError(f"'allowed_models' in {path} must be a list of model names")
    return data


def resolve_config(argv: list[str] | None = None, environ: dict | None = None) -> AppConfig:
    """Command line (after `--`) > environment > config file > built-in default.

    Unknown arguments are ignored (under pytest, sys.argv holds pytest's own)."""
    environ = os.environ if environ is None else environ
    args, _ = _argument_parser().parse_known_args(argv or [])
    config_path = args.config or environ.get(CONFIG_ENV)
    if config_path:
        file = read_config_file(config_path)
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        file = read_config_file(DEFAULT_CONFIG_FILE)
    else:
        file = {}

    def pick(flag, env_name, key):
        value = flag or environ.get(env_name) or file.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    model = pick(args.model, MODEL_ENV, "model") or DEFAULT_MODEL
    if args.allowed_models is not None:
        allowed = _split_models(args.allowed_models)
    elif environ.get(ALLOWED_ENV):
        allowed = _split_models(environ[ALLOWED_ENV])
    else:
        allowed = [m.strip() for m in file.get("allowed_models", [])]
    return AppConfig(
        model=model,
        allowed_models=tuple(dict.fromkeys([model, *allowed])),
        device=pick(args.device, DEVICE_ENV, "device"),
        dtype=pick(args.dtype, DTYPE_ENV, "dtype"),
        threads=_threads(args.threads or environ.get(THREADS_ENV) or file.get("threads")),
        compile=True if args.compile else _flag(environ.get(COMPILE_ENV), COMPILE_ENV, file.get("compile", False)),
    )


def _flag(value: str | None, name: str, default: bool) -> bool:
    text = (value or "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off (got {value!r})")


def _threads(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        threads = int(value)
    except (TypeError, ValueError):
        threads = 0
    if isinstance(value, bool) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1 (got {value!r}); it sets torch's CPU threads")
    return threads


def cpu_threads(configured: int | None) -> int:
    """torch CPU threads for a generation: the operator's number, else every core but one. On a
    2-core machine the browser and the server's own loop share the cores with the generation, and
    a second torch thread made Compare all slower (bench/bench_app.py; README "The app")."""
    if configured is not None:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def log_to_server_output() -> None:
    """Send gradop's log (INFO and above: one line per generation, failures with their
    traceback) to the server's stderr, once per process (app.py runs on every rerun)."""
    logger = logging.getLogger("gradop")
    if not any(getattr(h, "gradop_server", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.gradop_server = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def choose_model(requested: str | None, config: AppConfig) -> str:
    """The model to use for a web user's request: only allow-listed names, else the default."""
    return requested if requested in config.allowed_models else config.model


def model_label(name: str) -> str:
    """What the sidebar shows for a model: server paths are reduced to their last part."""
    looks_like_path = name.startswith(("/", ".", "~")) or "\\" in name or name.endswith(".safetensors") \
        or name.count("/") > 1
    label = Path(name).name or name if looks_like_path else name
    return f"{label} (test model)" if name in TEST_MODELS else label


# ----------------------------------------------------------------------------- images

def strokes_from_canvas(image_data: np.ndarray | None) -> Image.Image | None:
    """The canvas's RGBA strokes as PIL, or None when nothing is painted."""
    if image_data is None:
        return None
    array = np.asarray(image_data)
    if array.ndim != 3 or array.shape[2] != 4 or array.dtype != np.uint8 or not (array[..., 3] > 0).any():
        return None
    return Image.fromarray(array, "RGBA")


def text_color(background: str) -> str:
    """Black or white, whichever reads better on the colour `background` (#rrggbb)."""
    from PIL import ImageColor

    r, g, b = ImageColor.getrgb(background)[:3]
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def generation_side(model_side: int, canvas_side: int) -> int:
    """Output side: small models keep their native size, real ones follow the (square) canvas."""
    fitted = models.small_model_size(model_side, (canvas_side, canvas_side))
    return canvas_side if fitted is None else fitted[0]


def for_display(image: Image.Image, min_side: int = 256) -> Image.Image:
    """Small outputs enlarged (pixel-exact) so they are visible; others unchanged."""
    side = min(image.size)
    if side >= min_side:
        return image
    factor = math.ceil(min_side / side)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def scale_drawing(drawing: dict | None, factor: float) -> dict | None:
    """A canvas drawing (Fabric JSON) scaled about the top-left corner, for a new canvas size."""
    if not drawing:
        return drawing
    objects = []
    for obj in drawing.get("objects", []):
        obj = dict(obj)
        for key in ("left", "top", "scaleX", "scaleY"):
            obj[key] = obj.get(key, 1 if key.startswith("scale") else 0) * factor
        objects.append(obj)
    return {**drawing, "objects": objects}


def fit_background(image: Image.Image, side: int) -> Image.Image:
    """A photo or an earlier output as a square RGB canvas background (centre crop, resized)."""
    image = image.convert("RGB")
    crop = min(image.size)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return image.crop((left, top, left + crop, top + crop)).resize((side, side), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- prompts and words

STYLE_PRESETS = {
    "photo": "a photograph, highly detailed, natural light",
    "watercolour painting": "watercolour painting, soft washes of colour",
    "oil painting": "oil painting, visible brush strokes",
    "fantasy concept art": "fantasy concept art, dramatic lighting, highly detailed",
}
STOPWORDS = frozenset(
    "a an the of in on at with and or to from by for under over beside behind near into onto "
    "is are its it this that very some".split()
)


def apply_style(prompt: str, style: str | None) -> str:
    """The prompt with its style suffix replaced by `style`'s (or removed when None)."""
    text = prompt.strip()
    for suffix in STYLE_PRESETS.values():
        if text.endswith(suffix):
            text = text[: -len(suffix)].rstrip().rstrip(",").rstrip()
            break
    if style is None:
        return text
    suffix = STYLE_PRESETS[style]
    return f"{text}, {suffix}" if text else suffix


def prompt_words(prompt: str) -> list[str]:
    """The prompt's content words in order, once each (choices for region words)."""
    words = re.findall(r"[^\W\d_][\w'-]*", prompt.lower())
    style_words = set(re.findall(r"\w+", " ".join(STYLE_PRESETS.values()).lower()))
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS and w not in style_words))


def missing_words(prompt: str, words) -> list[str]:
    """The region words that do not occur in the prompt (whole words, any case)."""
    from gradop.region_words import word_occurrences

    missing = []
    for word in words:
        try:
            if word_occurrences(prompt, word) == 0:
                missing.append(word)
        except ValueError:  # no letters at all: it can never be found
            missing.append(word)
    return list(dict.fromkeys(missing))


def add_words(prompt: str, words) -> str:
    """The prompt with `words` appended (", word"), e.g. the missing region words."""
    text = prompt.strip()
    for word in words:
        text = f"{text}, {word}" if text else word
    return text


def detect_regions(strokes: Image.Image | None) -> list:
    """Colour regions of the strokes alone (over white, never the background photo)."""
    if strokes is None:
        return []
    from gradop.regions import find_regions

    return find_regions(strokes)


def region_spec(regions: list, assignments: dict[str, str]) -> list:
    """RegionWords for the regions the user gave a word ({region hex: word}; blanks skipped)."""
    from gradop.region_words import RegionWord

    return [RegionWord(r.mask, assignments[r.hex].strip()) for r in regions
            if (assignments.get(r.hex) or "").strip()]


def region_swatch(region, side: int = 56) -> Image.Image:
    """A thumbnail of where the region is, painted in its colour on light grey."""
    mask = Image.fromarray(region.mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.BOX)
    swatch = Image.new("RGB", (side, side), (236, 236, 236))
    swatch.paste(Image.new("RGB", (side, side), region.color), mask=mask)
    return swatch


def new_seed() -> int:
    return secrets.randbelow(2**32)


def repaired_settings(values: dict[str, Any], defaults: dict[str, Any], choices: dict[str, tuple],
                      ranges: dict[str, tuple]) -> dict[str, Any]:
    """{key: default} for each value that its widget could not have produced: not among the
    `choices`, outside the `ranges` (or not a number there), or not of the default's type.
    What a page applies before drawing, so that a tampered message never reaches its code."""
    fixes = {}
    for key, default in defaults.items():
        value = values.get(key)
        if key in choices:
            ok = any(value is choice or type(value) is type(choice) and value == choice for choice in choices[key])
        elif key in ranges:
            low, high = ranges[key]
            ok = (type(value) is type(low) or isinstance(low, float) and type(value) is int) \
                and math.isfinite(value) and low <= value <= high
        else:
            ok = type(value) is type(default)
        if not ok:
            fixes[key] = default
    return fixes


def settings_for_widgets(settings: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The stored settings that still name a widget of the page (older entries may lack some)."""
    return {key: value for key, value in settings.items() if key in known}
