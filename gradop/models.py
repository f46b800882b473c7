"""Finding and loading Stable Diffusion weights: a hub id, a diffusers folder or one file.

Knows nothing about methods or UI. Every failure a user can cause becomes a ModelLoadError
with one line that says what to do, instead of a huggingface_hub traceback.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import torch

# The embedded default: gradop's own small model (pretrained_models/gradop-demo), offline on a CPU.
# Real Stable Diffusion is one setting away: --model / GRADOP_MODEL = STABLE_DIFFUSION.
DEFAULT_MODEL = "gradop-demo"
STABLE_DIFFUSION = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# DDIM as in the official GradOP+ release (SD 1.x/2.x training betas; eta is a call argument).
DDIM_SETTINGS = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
    clip_sample=False, set_alpha_to_one=False,
)


# Models that ship with gradop, by name: name -> function returning diffusers components.
def _tiny_random() -> dict:
    from gradop.tiny import tiny_components

    return tiny_components(seed=0)


def _gradop_demo() -> dict:
    # gradop's own small model, trained on the procedural world (pretrained_models/gradop-demo).
    from diffusers import StableDiffusionPipeline

    folder = Path(__file__).resolve().parents[1] / "pretrained_models" / "gradop-demo"
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"the demo model is missing ({folder}); reinstall gradop from its repository")
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                   safety_checker=None, requires_safety_checker=False)
    return {name: module for name, module in pipe.components.items()}


BUILTIN_MODELS = {"tiny-random": _tiny_random, "gradop-demo": _gradop_demo}  # tiny-random: mechanics only, outputs are noise


class ModelLoadError(ValueError):
    """The model could not be loaded; the message says what to change."""


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ModelLoadError(f"unknown device '{device}'; use cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is visible; use --device cpu")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere (CPU half precision is slow and inaccurate), unless asked."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype:
        names = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}
        if dtype not in names:
            raise ModelLoadError(f"unknown dtype '{dtype}'; use float16, bfloat16 or float32")
        return names[dtype]
    return torch.float16 if device.type == "cuda" else torch.float32


def ddim_scheduler(config: dict):
    """A fresh DDIM scheduler with the release's settings, keeping the model's prediction type.

    It records `last_x0`, the latest step's predicted clean latents (GradOP+'s predicted-x0
    variant optimises them; gradop.guidance).
    """
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config, **DDIM_SETTINGS)
    step = scheduler.step

    # wraps: diffusers passes `eta` and `generator` only to a step whose signature names them
    # (prepare_extra_step_kwargs); a bare (*args, **kwargs) made every sampler deterministic DDIM.
    @functools.wraps(step)
    def recording_step(*args, **kwargs):  # on the instance: the class and its saved config stay diffusers'
        output = step(*args, **kwargs)
        scheduler.last_x0 = output[1]  # pred_original_sample (tuple or output dataclass)
        return output

    scheduler.step, scheduler.last_x0 = recording_step, None
    return scheduler


# Models whose native side is below this (the demo model: 64 px) only work near their native size:
# far above it they lose the layout and run ~(side / native)^2 times slower. The app and the CLI
# generate at the native size for them unless the user asks for a size.
SMALL_MODEL_SIDE = 256


def small_model_size(native_side: int, image_size: tuple[int, int]) -> tuple[int, int] | None:
    """(height, width) for a small model: its native side on the longer edge, the image's aspect
    ratio, multiples of 8. None for models of real size (they follow the image)."""
    if native_side >= SMALL_MODEL_SIDE:
        return None
    width, height = image_size
    scale = native_side / max(width, height)
    return max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8)


def _looks_like_path(model: str) -> bool:
    # Hub ids look like "owner/name"; anything else that does not exist on disk is a bad path.
    return (
        model.startswith(("/", ".", "~", "\\")) or model.endswith(SAFE_SUFFIXES + PICKLE_SUFFIXES)
        or model.count("/") != 1 or "\\" in model
    )


def load_components(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    allow_pickle: bool = False,
    config: str | None = None,
    local_files_only: bool | None = None,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    cpu_offload: bool = False,
) -> tuple[dict, torch.device, torch.dtype]:
    """Load the Stable Diffusion components of `model` on the chosen device and dtype.

    `model` is a built-in name (BUILTIN_MODELS), a hub repo id (downloaded once, then read from the local cache), a diffusers
    folder, or one checkpoint file (`.safetensors`; pickled `.ckpt` only with allow_pickle,
    since unpickling runs code from the file). A single file needs its architecture config:
    `config` (a diffusers folder or repo id), else diffusers infers and fetches it.

    Memory (results unchanged unless noted): `vae_slicing` decodes a batch one image at a time;
    `vae_tiling` decodes large images in overlapping tiles (blended seams; it also tiles the
    guidance decode above the VAE's tile size, 512 px on SD); `cpu_offload` keeps the models in
    CPU memory and moves each to `device` while it runs (diffusers' enable_model_cpu_offload,
    via accelerate), for GPUs too small to hold them all.
    """
    from diffusers import StableDiffusionPipeline

    chosen_device = pick_device(device)
    chosen_dtype = pick_dtype(chosen_device, dtype)
    model = str(model)
    path = Path(model).expanduser()
    common = dict(dtype=chosen_dtype, safety_checker=None, requires_safety_checker=False)
    try:
        if model in BUILTIN_MODELS:
            pipe = StableDiffusionPipeline(**BUILTIN_MODELS[model](), requires_safety_checker=False)
            if chosen_dtype != torch.float32:
                pipe.to(dtype=chosen_dtype)
        elif path.is_dir():
            if not (path / "model_index.json").is_file():
                raise ModelLoadError(f"'{model}' is a folder but not a diffusers model (no model_index.json)")
            has_safetensors = any(path.glob("*/*.safetensors"))
            if not has_safetensors and not allow_pickle:
                raise ModelLoadError(
                    f"'{model}' holds only pickled weights; convert them to safetensors or pass --allow-pickle if you trust the file"
                )
            pipe = StableDiffusionPipeline.from_pretrained(
                path, local_files_only=True, use_safetensors=has_safetensors, **common
            )
        elif path.is_file():
            if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
                raise ModelLoadError(
                    f"'{model}' is a pickle checkpoint, which can run code when loaded; use a .safetensors file "
                    "or pass --allow-pickle if you trust it"
                )
            if path.suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
                raise ModelLoadError(f"'{model}' is not a checkpoint file; expected .safetensors")
            offline = local_files_only if local_files_only is not None else _hub_offline()
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=config, local_files_only=offline, **common
            )
        elif _looks_like_path(model):
            raise ModelLoadError(f"model path '{model}' does not exist; pass an existing folder, .safetensors file or hub id")
        else:
            pipe = _from_hub(model, common, local_files_only)
    except ModelLoadError:
        raise
    except Exception as error:  # hub, file-format and config errors: one line, with what to do
        raise ModelLoadError(_explain(model, error)) from error
    pipe.scheduler = ddim_scheduler(pipe.scheduler.config)
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=chosen_device)
    else:
        pipe.to(chosen_device)
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    components = {name: component for name, component in pipe.components.items() if component is not None}
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False).eval()
    return components, chosen_device, chosen_dtype


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _from_hub(repo_id: str, common: dict, local_files_only: bool | None):
    from diffusers import StableDiffusionPipeline

    # The local cache first: no network round trip, and it works offline.
    try:
        return StableDiffusionPipeline.from_pretrained(repo_id, local_files_only=True, **common)
    except Exception:
        if local_files_only or _hub_offline():
            raise ModelLoadError(
                f"model '{repo_id}' is not in the local Hugging Face cache and offline mode is on; "
                "download it once with network access or pass a local folder / .safetensors file"
            ) from None
    return StableDiffusionPipeline.from_pretrained(repo_id, **common)


def offline_message(model: str) -> str:
    return (
        f"model '{model}' is not in the local Hugging Face cache and the hub cannot be reached (no network); "
        f"pass a local diffusers folder or .safetensors file, download it where there is network "
        f"(`hf download {model}`) and copy the cache (HF_HOME), or set HF_HUB_OFFLINE=1 to use only cached models"
    )


def _network_failure(error: BaseException | None) -> bool:
    """True when a connection problem caused `error`, anywhere in its chain: diffusers re-raises
    it as an OSError that tells the user to pass local_files_only=False, which does not help."""
    import requests
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import httpx

    network = (OfflineModeIsEnabled, requests.ConnectionError, requests.Timeout, httpx.TransportError,
               ConnectionError, TimeoutError, socket.gaierror)
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, network):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _explain(model: str, error: Exception) -> str:
    if _network_failure(error):
        return offline_message(model)
    text = f"{error.__class__.__name__}: {error}".lower()
    if any(word in text for word in ("connect", "offline", "resolve", "timed out", "network", "local cache", "localentrynotfound")):
        return offline_message(model)
    if any(word in text for word in ("401", "403", "gated", "unauthorized", "repositorynotfound", "404")):
        return f"model '{model}' was not found or needs access rights; check the id, or log in with `hf auth login`"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
    return f"could not load model '{model}': {first_line[:300]}"
