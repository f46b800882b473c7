"""What the web app needs besides widgets: server configuration, jobs, messages, estimates.

Nothing here imports Streamlit, so all of it is unit-tested directly (tests/test_serving.py).

- Which models a server offers is the operator's choice (command line, environment, config
  file); web users only pick from that allow-list, never type a path, and pickles are never
  loaded (`load_components` refuses them unless `allow_pickle`, which is never passed here).
- A `GenerationJob` runs one or more `GradopPipeline.generate` calls on a worker thread, so the
  page stays responsive: it keeps progress and a live preview for the page to poll, and stops
  at the next step when cancelled. The pipeline's own lock serialises jobs of different tabs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gradop.metadata import png_bytes
from gradop.pipeline import GenerationCancelled, Progress

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- configuration

# The model a server offers when the operator names none. Change this one constant when the
# trained offline demo model ships.
DEFAULT_MODEL = "tiny-random"
# Models whose outputs are meaningless: the page shows a banner while one is in use.
TEST_MODELS = frozenset({"tiny-random"})

MODEL_ENV, ALLOWED_ENV, CONFIG_ENV = "GRADOP_MODEL", "GRADOP_ALLOWED_MODELS", "GRADOP_CONFIG"
DEVICE_ENV, DTYPE_ENV = "GRADOP_DEVICE", "GRADOP_DTYPE"
DEFAULT_CONFIG_FILE = "gradop-app.toml"  # read from the working directory when present
CONFIG_KEYS = {"model": str, "allowed_models": list, "device": str, "dtype": str}


@dataclass(frozen=True)
class AppConfig:
    """The server operator's choices. `allowed_models` always starts with `model`."""

    model: str = DEFAULT_MODEL
    allowed_models: tuple[str, ...] = (DEFAULT_MODEL,)
    device: str | None = None
    dtype: str | None = None


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
    )


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
    """Output side: toy models (native < 256 px) keep their native size, real ones follow the canvas."""
    return model_side if model_side < 256 else canvas_side


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
    from gradop.regions import word_occurrences

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
    from gradop.regions import RegionWord

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


# ----------------------------------------------------------------------------- messages and estimates

def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    if isinstance(error, oom_types):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def user_message(error: BaseException) -> str:
    """One line for the page about a failure; unexpected ones are logged with their traceback."""
    if isinstance(error, GenerationCancelled):
        return "Generation cancelled."
    if is_out_of_memory(error):
        return ("Out of memory: choose a smaller canvas size (256 px), fewer images, or fewer gradient "
                "steps in the advanced settings, then try again.")
    if isinstance(error, ValueError):  # gradop's user errors, ModelLoadError included
        text = str(error).strip().splitlines()
        return text[0] if text else error.__class__.__name__
    log.error("generation failed", exc_info=error)
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"Generation failed ({error.__class__.__name__}: {first}); try again or lower the settings."


# Measured on a 2-core CPU with Stable Diffusion 1.5 at 512 px, fp32 (see shared/STACK.md):
# seconds for one UNet forward of a CFG batch of 2, one VAE decode, one decode + backward.
_SD_UNET_PARAMS, _SD_DECODER_PARAMS = 860e6, 49.5e6
_CPU_UNET_S, _CPU_DECODE_S, _CPU_DECODE_BACKWARD_S = 7.25, 8.8, 21.4
_calibration: dict[str, float] = {}  # model name -> measured / estimated, learnt from finished jobs
_param_counts: dict[int, tuple[int, int]] = {}


def _model_size(pipeline) -> tuple[int, int]:
    key = id(pipeline)
    if key not in _param_counts:
        unet = sum(p.numel() for p in pipeline.unet.parameters())
        decoder = sum(p.numel() for p in pipeline.vae.decoder.parameters())
        _param_counts[key] = (unet, decoder)
    return _param_counts[key]


def estimate_seconds(pipeline, method: str, settings: dict) -> float:
    """Expected CPU seconds for one generate call (rough; corrected by earlier jobs' timings)."""
    unet_params, decoder_params = _model_size(pipeline)
    side = settings.get("height") or pipeline.default_size
    area = (side / 512) ** 2 * settings.get("num_images", 1)
    cfg = 1.0 if settings.get("guidance_scale", 7.5) > 1 else 0.5
    # Small models are bound by per-operation overhead, not arithmetic: hence the floors.
    unet = max(_CPU_UNET_S * area * cfg * unet_params / _SD_UNET_PARAMS, 0.02)
    decode = max(_CPU_DECODE_S * area * decoder_params / _SD_DECODER_PARAMS, 0.02)
    backward = max(_CPU_DECODE_BACKWARD_S * area * decoder_params / _SD_DECODER_PARAMS, 0.05)
    steps, strength = settings.get("steps", 50), settings.get("strength", 0.8)
    denoise = min(int(steps * strength), steps)
    if method == "text":
        total = steps * unet + decode
    elif method == "sdedit":
        total = denoise * unet + 2 * decode  # encode ~ decode
    elif method == "gradop+":
        start = int(steps * (1 - strength))
        window = max(0, min(start + settings.get("iterations", 3), steps - 1) - start)
        total = steps * unet + window * settings.get("grad_steps", 12) * backward + decode
    else:  # gradop: text sample, optimisation, img2img
        total = (steps + denoise) * unet + settings.get("opt_steps", 50) * backward + 3 * decode
    return total * 1.1 * _calibration.get(pipeline.model_name, 1.0)  # + live previews


def record_timing(model_name: str, estimated: float, measured: float) -> None:
    """Learn how this machine compares with the table (a running geometric mean)."""
    if estimated <= 0 or measured <= 0:
        return
    ratio = measured / estimated * _calibration.get(model_name, 1.0)
    previous = _calibration.get(model_name)
    _calibration[model_name] = ratio if previous is None else math.sqrt(previous * ratio)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------- jobs and history

@dataclass
class Output:
    """One generated image with its parameters and its PNG file (parameters in metadata)."""

    caption: str
    image: Image.Image
    params: dict
    png: bytes

    @classmethod
    def from_result(cls, label: str, result, index: int) -> "Output":
        params = result.image_params(index)
        caption = f"{label} · seed {params.get('seed')}"
        if params.get("num_images", 1) > 1:
            caption += f" · #{index + 1}"
        return cls(caption, result.images[index], params, png_bytes(result.images[index], params))

    @property
    def file_name(self) -> str:
        return f"gradop_{self.params.get('method', 'image').replace('+', 'plus')}_{self.params.get('seed')}" \
               f"_{self.params.get('image_index', 0)}.png"


@dataclass
class Run:
    """One `generate` call of a job: the label shown, the method and its keyword arguments."""

    label: str
    method: str
    kwargs: dict


class GenerationJob:
    """Runs `pipeline.generate` for each run on a worker thread; the page polls its state."""

    PREVIEW_SHARE = 0.2  # at most this fraction of the time goes into decoding live previews

    def __init__(self, pipeline, runs: list[Run], *, estimate: float | None = None, meta: dict | None = None):
        self.pipeline, self.runs, self.estimate = pipeline, runs, estimate
        self.meta = meta or {}  # whatever the caller wants back with the results (page settings)
        self.status = "waiting"  # waiting -> running -> done | cancelled | failed
        self.message: str | None = None
        self.outputs: list[Output] = []
        self.losses: list[float] = []
        self.preview: Image.Image | None = None
        self.run_index, self.step, self.total, self.phase = 0, 0, 1, ""
        self.started = time.monotonic()
        self.elapsed: float | None = None
        self._preview_seconds = 0.0
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name="gradop-job", daemon=True)

    def start(self) -> "GenerationJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set() and not self.finished

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled", "failed")

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.finished

    @property
    def fraction(self) -> float:
        return min(1.0, (self.run_index + self.step / max(self.total, 1)) / max(len(self.runs), 1))

    def describe(self) -> str:
        if self.status == "waiting":
            return "Waiting for the model: another generation is running."
        run = self.runs[min(self.run_index, len(self.runs) - 1)]
        where = f" ({self.run_index + 1}/{len(self.runs)})" if len(self.runs) > 1 else ""
        return f"{run.label}{where}: {self.phase} step {self.step}/{self.total}"

    def _on_progress(self, progress: Progress) -> None:
        if self._cancel.is_set():
            raise GenerationCancelled()
        self.status = "running"
        self.step, self.total, self.phase = progress.step, progress.total, progress.phase
        elapsed = time.monotonic() - self.started
        if progress.latents is not None and self._preview_seconds <= self.PREVIEW_SHARE * elapsed:
            began = time.monotonic()
            self.preview = self.pipeline.preview(progress.latents)
            self._preview_seconds += time.monotonic() - began

    def _work(self) -> None:
        try:
            for index, run in enumerate(self.runs):
                self.run_index, self.step = index, 0
                if self._cancel.is_set():
                    raise GenerationCancelled()
                result = self.pipeline.generate(run.method, callback=self._on_progress, **run.kwargs)
                self.outputs += [Output.from_result(run.label, result, i) for i in range(len(result.images))]
                self.losses += result.losses
            self.status = "done"
        except GenerationCancelled as error:
            self.message, self.status = user_message(error), "cancelled"
        except BaseException as error:  # noqa: BLE001 - every failure becomes a message on the page
            self.message, self.status = user_message(error), "failed"
        finally:
            self.elapsed = time.monotonic() - self.started
            if self.status == "done" and self.estimate:
                record_timing(self.pipeline.model_name, self.estimate, self.elapsed)


@dataclass
class HistoryEntry:
    """One finished job of this browser tab: its outputs and the page settings that made it."""

    number: int
    settings: dict
    outputs: list[Output]
    drawing: dict | None = None  # the canvas's Fabric JSON, to restore the strokes on the canvas
    strokes: Image.Image | None = None  # their pixels, until the restored canvas reports its own
    background: Image.Image | None = None  # the photo or result they were painted over
    created: float = field(default_factory=time.time)

    @property
    def title(self) -> str:
        prompt = self.settings.get("prompt", "")
        short = prompt if len(prompt) <= 48 else prompt[:47] + "…"
        return f"#{self.number} · {self.settings.get('method', '?')} · seed {self.settings.get('seed')} · {short}"


def add_to_history(history: list[HistoryEntry], entry: HistoryEntry, limit: int = 12) -> list[HistoryEntry]:
    """Newest first, at most `limit` entries (each holds images in the tab's memory)."""
    return [entry, *history][:limit]


def settings_for_widgets(settings: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The stored settings that still name a widget of the page (older entries may lack some)."""
    return {key: value for key, value in settings.items() if key in known}
