"""Guidance decoders: what turns a latent into colours inside the GradOP / GradOP+ optimisation.

The optimisation compares *blurred* colours with the strokes (sigma 7 px at 512 px, under one
latent pixel), so a decoder much cheaper than the VAE can stand in for it there. The final
image is always decoded by the full VAE. Every option has one interface, `GuidanceDecoder`
(scaled latents -> images in [0, 1], differentiable, at `pixels_per_latent` times the latent
side), so the optimisation loop does not know which one it has. Chosen by name:

- "vae": the model's full VAE decoder (exact; the release's path and the default).
- "vae-half": the VAE decoding a latent downsampled by 2 (a quarter of the work; the output
  is half the size, and the loss is computed at that size); latents with fewer than 16 cells
  on a side are decoded whole (`half_size`).
- "linear": a 1x1 latent-to-RGB map; "conv": a 3x3 one. Both are fitted by least squares on
  the model's own VAE decodes (`fit_latent_to_rgb`) the first time they are used; no download,
  so they work for every model. The output is at latent resolution.
- "tiny": a diffusers `AutoencoderTiny` (TAESD family) decoder: the one the user supplies
  (`GradopPipeline.from_pretrained(..., tiny_decoder=...)`), or the small decoder distilled
  from the demo model's VAE that ships in pretrained_models/gradop-demo-taesd.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from gradop.compiling import CheckedCompile

GUIDANCE_DECODERS = ("vae", "vae-half", "linear", "conv", "tiny")
HALF_MIN_CELLS = 8  # "vae-half" halves a latent only if its short side keeps this many cells
DEMO_TINY_DECODER = Path(__file__).resolve().parents[1] / "pretrained_models" / "gradop-demo-taesd"
# Models whose shipped distilled decoder "tiny" uses when the user supplies none.
SHIPPED_TINY_DECODERS = {"gradop-demo": DEMO_TINY_DECODER}

DecodeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GuidanceDecoder:
    """Scaled latents (B, C, h, w) -> images (B, 3, h * k, w * k) in [0, 1] with k =
    `pixels_per_latent`; differentiable with respect to the latents."""

    name: str
    decode: DecodeFn
    pixels_per_latent: float
    reduced: Callable[[int, int], tuple[int, int]] | None = None  # latent (h, w) -> the (h, w) decoded

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode(latents)

    def output_size(self, latent_height: int, latent_width: int) -> tuple[int, int]:
        if self.reduced is not None:
            latent_height, latent_width = self.reduced(latent_height, latent_width)
        return round(latent_height * self.pixels_per_latent), round(latent_width * self.pixels_per_latent)


def resize_target(strokes: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The strokes at the decoder's output size (height, width): area-averaged, like the blur."""
    height, width = size
    if strokes.size == (width, height):
        return strokes
    return strokes.resize((width, height), Image.Resampling.BOX)


# ----------------------------------------------------------------------------- the VAE, full or reduced

def vae_decoder(vae, *, reduced: Callable[[int, int], tuple[int, int]] | None = None,
                name: str = "vae") -> GuidanceDecoder:
    """The VAE decoder, optionally on a smaller latent: `reduced` maps the latent's (h, w) to the
    size it is area-averaged to first."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)

    from gradop.precision import vae_decode

    def decode(latents: torch.Tensor) -> torch.Tensor:
        size = reduced(*latents.shape[-2:]) if reduced is not None else tuple(latents.shape[-2:])
        if size != tuple(latents.shape[-2:]):  # a latent too small to reduce is decoded as it is
            latents = F.interpolate(latents, size=size, mode="area")
        return vae_decode(vae, latents)

    return GuidanceDecoder(name, decode, float(factor), reduced)


def half_size(height: int, width: int) -> tuple[int, int]:
    """The latent size "vae-half" decodes: half of each side (odd sides round down, as the area
    average does), unless that leaves fewer than HALF_MIN_CELLS on the short side; then all of
    it. Measured: halving 8 cells to 4 (a 64 px image of an 8x VAE) loses most of the pull; halving
    16 cells to 8 kept GradOP+ within 5% of the exact path on demo model v1 but costs a quarter of
    its realism on v3 (README, guidance_decoder)."""
    if min(height, width) // 2 < HALF_MIN_CELLS:
        return height, width
    return height // 2, width // 2


# ----------------------------------------------------------------------------- fitted latent-to-RGB maps

def _fitting_images(count: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random colour fields with a few flat patches, in [0, 1]: colours of every kind at
    low frequencies (what the blurred loss looks at). (count, 3, side, side)."""
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    images = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    for index in range(count):
        for _ in range(3):
            x0, y0 = (torch.randint(0, side * 3 // 4, (2,), generator=generator)).tolist()
            w, h = (torch.randint(side // 8, side // 2, (2,), generator=generator)).tolist()
            images[index, :, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=generator)
    return images.clamp(0, 1)


def fit_latent_to_rgb(vae, *, kernel_size: int = 1, count: int = 6, latent_side: int = 12,
                      noise_levels=(0.0, 0.5, 0.8, 0.95), seed: int = 0) -> torch.nn.Conv2d:
    """A conv (latent channels -> RGB, `kernel_size` x `kernel_size`) fitted by least squares so
    that it predicts the model's own VAE decode, area-averaged to latent resolution.

    The samples are the VAE's encodings of smooth random colour fields, clean and mixed with
    Gaussian noise (z = sqrt(1 - s^2) z0 + s eps for each s in noise_levels): GradOP+ decodes
    noisy latents in the middle of sampling, so the map is fitted where it is used.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    device, dtype = vae.device, vae.dtype
    images = _fitting_images(count, latent_side * factor, generator)
    with torch.no_grad():
        clean = vae.encode((images * 2 - 1).to(device, dtype)).latent_dist.mean.float() * vae.config.scaling_factor
        latents = []
        for level in noise_levels:
            noise = torch.randn(clean.shape, generator=generator).to(clean)
            latents.append((1 - level**2) ** 0.5 * clean + level * noise)
        latents = torch.cat(latents)
        decoded = torch.cat([
            vae.decode(chunk.to(dtype) / vae.config.scaling_factor, return_dict=False)[0].float()
            for chunk in latents.split(count)
        ])
    targets = F.avg_pool2d((decoded + 1) / 2, factor)  # colours at latent resolution (not clamped)
    pad = kernel_size // 2
    # Each output pixel is a linear function of the k x k latent patch around it, plus a bias.
    patches = F.unfold(F.pad(latents, (pad,) * 4, mode="replicate"), kernel_size)  # (N, C*k*k, h*w)
    design = patches.permute(0, 2, 1).reshape(-1, patches.shape[1])
    design = torch.cat([design, torch.ones(design.shape[0], 1, device=design.device)], dim=1)
    wanted = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    solution = torch.linalg.lstsq(design.double().cpu(), wanted.double().cpu()).solution.float()
    conv = torch.nn.Conv2d(latents.shape[1], 3, kernel_size, padding=pad, padding_mode="replicate")
    with torch.no_grad():
        conv.weight.copy_(solution[:-1].T.reshape(3, latents.shape[1], kernel_size, kernel_size))
        conv.bias.copy_(solution[-1])
    return conv.requires_grad_(False).to(device)


def latent_map_decoder(conv: torch.nn.Conv2d, name: str) -> GuidanceDecoder:
    """A fitted latent-to-RGB conv as a guidance decoder (output at latent resolution; not
    clamped, so every pixel keeps its gradient)."""

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return conv(latents.to(conv.weight.dtype)).float()

    return GuidanceDecoder(name, decode, 1.0)


# ----------------------------------------------------------------------------- AutoencoderTiny

def load_tiny_autoencoder(source, *, device=None, dtype=None):
    """A diffusers AutoencoderTiny from a folder or hub id (offline unless cached), or one given."""
    from diffusers import AutoencoderTiny

    if isinstance(source, AutoencoderTiny):
        model = source
    else:
        try:
            model = AutoencoderTiny.from_pretrained(str(source), use_safetensors=True)
        except (OSError, ValueError) as error:
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise ValueError(f"could not load the tiny decoder '{source}' (an AutoencoderTiny folder or hub id, "
                             f"e.g. madebyollin/taesd for SD 1.x): {first}") from None
    return model.to(device=device, dtype=dtype).requires_grad_(False).eval()


def tiny_decoder(autoencoder) -> GuidanceDecoder:
    """An AutoencoderTiny decoder (its scaling factor is 1: it reads the scaled latents as they are)."""
    factor = autoencoder.config.upsampling_scaling_factor ** (len(autoencoder.config.decoder_block_out_channels) - 1)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        scaled = latents.to(autoencoder.dtype) / autoencoder.config.scaling_factor
        images = autoencoder.decode(scaled, return_dict=False)[0]  # differentiable (forward() is not)
        return ((images.float() + 1) / 2).clamp(0, 1)

    return GuidanceDecoder("tiny", decode, float(factor))


# ----------------------------------------------------------------------------- choosing by name

class GuidanceDecoders:
    """The guidance decoders of one loaded model, built on first use and kept (thread-safe).

    `tiny_source`: an AutoencoderTiny, a folder or a hub id for "tiny"; default: the distilled
    decoder shipped for `model_name`, if any. `compile=True` wraps each decoder in torch.compile,
    checked against the eager decoder before use (gradop.compiling.CheckedCompile).
    """

    def __init__(self, vae, *, model_name: str = "", tiny_source=None, compile: bool = False):
        self.vae, self.compile = vae, compile
        self.tiny_source = tiny_source if tiny_source is not None else SHIPPED_TINY_DECODERS.get(model_name)
        self._built: dict[str, GuidanceDecoder] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> GuidanceDecoder:
        check_decoder_name(name)
        with self._lock:
            if name not in self._built:
                decoder = self._build(name)
                if self.compile:
                    decoder = replace(decoder, decode=CheckedCompile(decoder.decode, name))
                self._built[name] = decoder
            return self._built[name]

    @contextlib.contextmanager
    def recording(self, name: str):
        """Inside the block, a copy of every latent the `name` decoder is asked to decode is
        appended to the list it yields: the latents the guidance optimises, to teach or check a
        stand-in decoder where it is used."""
        decoder, seen = self(name), []

        def decode(latents: torch.Tensor) -> torch.Tensor:
            seen.append(latents.detach().float().clone())
            return decoder.decode(latents)

        with self._lock:
            self._built[name] = replace(decoder, decode=decode)
        try:
            yield seen
        finally:
            with self._lock:
                self._built[name] = decoder

    def _build(self, name: str) -> GuidanceDecoder:
        if name == "vae":
            return vae_decoder(self.vae)
        if name == "vae-half":
            return vae_decoder(self.vae, reduced=half_size, name=name)
        if name in ("linear", "conv"):
            return latent_map_decoder(fit_latent_to_rgb(self.vae, kernel_size=1 if name == "linear" else 3), name)
        if self.tiny_source is None:
            raise ValueError("the 'tiny' guidance decoder needs an AutoencoderTiny for this model: pass "
                             "tiny_decoder='madebyollin/taesd' (SD 1.x) or a folder to from_pretrained, "
                             "or choose 'linear'")
        autoencoder = load_tiny_autoencoder(self.tiny_source, device=self.vae.device, dtype=self.vae.dtype)
        latent_channels = self.vae.config.latent_channels
        if autoencoder.config.latent_channels != latent_channels:
            raise ValueError(f"the tiny decoder reads {autoencoder.config.latent_channels}-channel latents but this "
                             f"model's are {latent_channels}-channel; use the TAESD made for this model family")
        return tiny_decoder(autoencoder)


def exact_guidance_latents(pipe, paintings) -> tuple[torch.Tensor, torch.Tensor]:
    """(every latent GradOP+ asks the exact VAE decoder to decode, the strokes each is pulled to)
    for `paintings`, each (prompt, strokes image, seed, steps): what a stand-in decoder is taught
    and checked on (train/distill_guidance_decoder.py, tests/test_decoders.py). In fp32 and with
    the release's Adam schedule, with which the shipped tiny decoder was taught (session 9): 12
    latents per iteration, most already moved by Adam; the default's single step would record only
    the sampler's own latents."""
    from gradop.images import pil_to_tensor
    from gradop.options import RELEASE_ADAM  # gradop.options imports this module

    strokes = []
    with pipe.guidance_decoders.recording("vae") as seen:
        for prompt, painted, seed, steps in paintings:
            before = len(seen)
            pipe.generate("gradop+", prompt, painted, seed=seed, steps=steps, guidance_decoder="vae",
                          guidance_precision="native", **RELEASE_ADAM)
            strokes += [pil_to_tensor(painted)] * (len(seen) - before)
    return torch.cat(seen), torch.cat(strokes)


def check_decoder_name(name) -> None:
    if name not in GUIDANCE_DECODERS:
        raise ValueError(f"unknown guidance decoder '{name}'; choose one of {', '.join(GUIDANCE_DECODERS)}")
