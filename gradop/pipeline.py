"""GradopPipeline: the four guided-synthesis methods over one set of diffusers components.

Thin orchestration: text2img and sdedit are diffusers' own pipelines; GradOP+ is diffusers'
text-to-image loop with a step-end callback that optimises the latent; GradOP chains a
text-only sample, a latent optimisation and diffusers' img2img. Shared components are never
mutated persistently: each call gets a fresh scheduler, and region control installs its
attention processors for that call only. A lock serialises calls (one model, many app tabs).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from gradop import __version__
from gradop.attention import AttentionRecorder, attention_grid, region_control
from gradop.editing import LatentBlend, encode_image, fit_size, prepare_edit
from gradop.images import load_image, pil_to_tensor, to_rgb
from gradop.metadata import save_png
from gradop.models import ddim_scheduler, load_components
from gradop.optimize import optimize_latents
from gradop.painting import make_painting_fn
from gradop.regions import resolve_spec, spec_from_colors

METHODS = ("gradop+", "gradop", "sdedit", "text")
EDIT_STARTS = ("noise", "painting")  # where GradOP+ edits start sampling


class GenerationCancelled(Exception):
    """Raised by a progress callback to stop a generation (e.g. the app's Cancel button)."""


@dataclass
class Progress:
    """What a progress callback receives after each unit of work."""

    phase: str  # "sampling", "optimising" or "denoising"
    step: int  # 1-based, counts across all phases of the call
    total: int
    latents: torch.Tensor | None = None  # current scaled latents, when the phase has them


@dataclass
class GenerationResult:
    images: list[Image.Image]
    params: dict
    losses: list[float] = field(default_factory=list)  # painting loss per optimisation step
    attention_maps: Image.Image | None = None  # per-token cross-attention grid, when asked for

    def image_params(self, index: int) -> dict:
        return {**self.params, "image_index": index}

    def save(self, path: str | Path) -> list[Path]:
        """Save as PNGs with parameters; several images get _0, _1, ... suffixes."""
        path = Path(path)
        if len(self.images) == 1:
            return [save_png(self.images[0], path, self.image_params(0))]
        return [
            save_png(image, path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}"), self.image_params(i))
            for i, image in enumerate(self.images)
        ]


class _Counter:
    """Turns diffusers' per-step callback and the optimiser's steps into one progress stream."""

    def __init__(self, total: int, callback: Callable[[Progress], None] | None):
        self.total, self.callback, self.step = total, callback, 0

    def advance(self, phase: str, latents: torch.Tensor | None = None) -> None:
        self.step += 1
        if self.callback is not None:
            self.callback(Progress(phase, self.step, self.total, latents))


class GradopPipeline:
    def __init__(self, components: dict, *, model_name: str = "in-memory", device=None, dtype=None):
        self.components = {k: v for k, v in components.items() if k not in ("safety_checker", "feature_extractor")}
        self.vae, self.unet, self.tokenizer = components["vae"], components["unet"], components["tokenizer"]
        self.text_encoder = components["text_encoder"]
        self.scheduler_config = dict(components["scheduler"].config)
        self.model_name = model_name
        self.device = device or self.unet.device
        self.dtype = dtype or self.unet.dtype
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.default_size = self.unet.config.sample_size * self.vae_scale_factor
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(cls, model: str, **load_kwargs) -> "GradopPipeline":
        """Load any SD 1.x/2.x hub id, diffusers folder or .safetensors file (see models.load_components)."""
        components, device, dtype = load_components(model, **load_kwargs)
        return cls(components, model_name=str(model), device=device, dtype=dtype)

    # ---- the four methods -------------------------------------------------------------

    def text2img(self, prompt: str, strokes=None, **options) -> GenerationResult:
        """Text-only samples: the target domain S_tau (strokes only serve colour-to-word regions)."""
        return self.generate("text", prompt, strokes, **options)

    def sdedit(self, prompt: str, strokes, *, strength: float = 0.8, **options) -> GenerationResult:
        """SDEdit baseline: noise the strokes to t0 = strength and denoise (diffusers img2img)."""
        return self.generate("sdedit", prompt, strokes, strength=strength, **options)

    def gradop_plus(self, prompt: str, strokes, **options) -> GenerationResult:
        """GradOP+ (the official release's single pass): see METHOD.md for every default."""
        return self.generate("gradop+", prompt, strokes, **options)

    def gradop(self, prompt: str, strokes, **options) -> GenerationResult:
        """GradOP (the paper's two passes): sample, optimise towards the strokes, re-denoise."""
        return self.generate("gradop", prompt, strokes, **options)

    def generate(
        self,
        method: str,
        prompt: str,
        strokes=None,
        *,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        steps: int = 50,
        guidance_scale: float = 7.5,
        eta: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_images: int = 1,
        strength: float = 0.8,
        iterations: int = 3,
        grad_steps: int = 12,
        lr: float = 0.1,
        painting: str = "blur",
        opt_steps: int = 50,
        gamma: float = 1e-3,
        regions=None,
        region_strength: float = 0.5,
        append_missing_words: bool = False,
        attention_maps: bool = False,
        background=None,
        edit: bool | None = None,
        mask=None,
        edit_dilate: int | None = None,
        edit_feather: int | None = None,
        edit_start: str = "noise",
        callback: Callable[[Progress], None] | None = None,
    ) -> GenerationResult:
        """Run `method` ("gradop+", "gradop", "sdedit" or "text"); the named methods above are
        shortcuts. Knobs that a method does not use are ignored (and not recorded).

        With a `background` (a photo or an earlier result) the default is an edit (see
        gradop.editing): only the painted area (or `mask`, white = change), grown by
        `edit_dilate` and feathered over `edit_feather` pixels, is synthesised; every other
        pixel is the background's. edit=False re-imagines the whole image from the strokes over
        the background. The output keeps the background's aspect ratio at about the model's
        native area unless height/width are given. GradOP+'s edits sample from pure noise
        (edit_start="noise", the release's start) or from the painting over the photo noised to
        the step where optimisation starts (edit_start="painting")."""
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty; describe the image you want")
        guided = method != "text"
        edit = background is not None if edit is None else bool(edit)
        if edit and background is None:
            raise ValueError("edit mode needs a background to keep: pass background= (a photo or an earlier result), "
                             "or edit=False")
        if mask is not None and not edit:
            raise ValueError("a mask marks what an edit changes: pass a background and leave edit on, or drop the mask")
        if edit_start not in EDIT_STARTS:
            raise ValueError(f"unknown edit start '{edit_start}'; choose one of {', '.join(EDIT_STARTS)}")
        if guided and strokes is None and background is None:
            raise ValueError(f"method '{method}' needs a stroke image; pass strokes or use method 'text'")
        stroke_source = load_image(strokes, what="stroke image") if strokes is not None else None
        edit_setup = region_source = None
        if background is not None:
            background = load_image(background, what="background photo")
            height, width = self._background_size(height, width, background)
            edit_setup = prepare_edit(stroke_source, background, (width, height), mask=mask, dilate_px=edit_dilate,
                                      feather_px=edit_feather, edit=edit)
            stroke_image, region_source = edit_setup.composite, edit_setup.strokes_on_white
        else:
            stroke_image = to_rgb(stroke_source) if stroke_source is not None else None
            height, width = self._size(height, width, stroke_image)
        validate_options(steps=steps, guidance_scale=guidance_scale, eta=eta, num_images=num_images,
                         strength=strength, iterations=iterations, grad_steps=grad_steps, lr=lr,
                         opt_steps=opt_steps, gamma=gamma, region_strength=region_strength, painting=painting)
        if seed is None and generator is None:
            seed = secrets.randbelow(2**32)
        generator = generator or torch.Generator("cpu").manual_seed(int(seed))
        if stroke_image is not None and stroke_image.size != (width, height):
            stroke_image = stroke_image.resize((width, height), Image.Resampling.LANCZOS)

        # What the PNG records: everything that decides the pixels, and only what this method uses.
        params = dict(method=method, prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
                      guidance_scale=guidance_scale, eta=eta, height=height, width=width, num_images=num_images,
                      model=self.model_name, gradop_version=__version__)
        method_knobs = {
            "text": {}, "sdedit": dict(strength=strength),
            "gradop+": dict(strength=strength, iterations=iterations, grad_steps=grad_steps, lr=lr, painting=painting),
            "gradop": dict(strength=strength, opt_steps=opt_steps, gamma=gamma, lr=lr, painting=painting),
        }
        params.update(method_knobs[method])
        if stroke_image is not None:
            params["strokes_sha256"] = hashlib.sha256(stroke_image.tobytes()).hexdigest()[:16]
        if edit_setup is not None:
            params.update(edit_setup.params())
            if edit and method == "gradop+":
                params["edit_start"] = edit_start

        with self._lock:
            prompt, region_context, recorder, region_params = self._region_control(
                prompt, regions, region_strength, region_source or stroke_image, (height, width), guidance_scale,
                append_missing_words, attention_maps,
            )
            params.update(region_params, prompt=prompt)
            call = dict(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=steps,
                        guidance_scale=guidance_scale, eta=eta, generator=generator, num_images_per_prompt=num_images)
            blend = self._latent_blend(edit_setup, num_images, height, width, generator) if edit else None
            with region_context:
                if method == "text":
                    images, losses = self._text2img(call, height, width, callback, blend=blend), []
                elif method == "sdedit":
                    images, losses = self._sdedit(call, stroke_image, strength, callback, blend=blend), []
                else:
                    target = pil_to_tensor(stroke_image).to(self.device)
                    paint = make_painting_fn(painting, height, width, stroke_image)
                    if edit:  # the pull towards the strokes counts the painted pixels only
                        paint, target = edit_setup.guidance(paint, target)
                    if method == "gradop+":
                        start_image = stroke_image if edit and edit_start == "painting" else None
                        images, losses = self._gradop_plus(call, height, width, target, paint, strength,
                                                           iterations, grad_steps, lr, callback, blend=blend,
                                                           start_image=start_image)
                    else:
                        images, losses = self._gradop(call, height, width, target, paint, strength,
                                                      opt_steps, gamma, lr, callback, blend=blend)
            if edit:
                images = edit_setup.paste_back(images)
            grid = attention_grid(recorder, self.tokenizer, prompt) if recorder is not None else None
        return GenerationResult(images, params, losses, grid)

    # ---- helpers shared by the methods ---------------------------------------------------

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1], differentiable (the D in L(f(D(z)), y))."""
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        return ((images.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def preview(self, latents: torch.Tensor) -> Image.Image:
        """The first image of a latent batch, decoded (for live previews)."""
        from gradop.images import tensor_to_pil

        return tensor_to_pil(self.decode(latents[:1]))[0]

    def _diffusers(self, cls):
        # A per-call diffusers pipeline over the shared modules, with its own scheduler state.
        pipe = cls(**self.components | {"scheduler": ddim_scheduler(self.scheduler_config)},
                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _text2img(self, call, height, width, callback, output_type="pil", counter=None, blend=None):
        from diffusers import StableDiffusionPipeline

        counter = counter or _Counter(call["num_inference_steps"], callback)

        def on_step(pipe, i, t, tensors):
            if blend is not None:
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            counter.advance("sampling", tensors["latents"])
            return tensors

        start = {"latents": blend.noise} if blend is not None else {}  # one noise for sampling and blending
        return self._diffusers(StableDiffusionPipeline)(
            **call, **start, height=height, width=width, output_type=output_type, callback_on_step_end=on_step
        ).images

    def _sdedit(self, call, image, strength, callback, counter=None, blend=None):
        from diffusers import StableDiffusionImg2ImgPipeline

        steps = call["num_inference_steps"]
        counter = counter or _Counter(min(int(steps * strength), steps), callback)

        def on_step(pipe, i, t, tensors):
            if blend is not None:
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            counter.advance("denoising", tensors["latents"])
            return tensors

        return self._diffusers(StableDiffusionImg2ImgPipeline)(
            **call, image=image, strength=strength, callback_on_step_end=on_step
        ).images

    def _gradop_plus(self, call, height, width, target, paint, strength, iterations, grad_steps, lr, callback,
                     blend=None, start_image=None):
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
        from diffusers.utils.torch_utils import randn_tensor

        steps = call["num_inference_steps"]
        # int(steps * (1 - strength)) as in the release, rounded first so that float error in
        # 1 - 0.8 = 0.19999... does not move the window one step early (10, not 9, of 50).
        start = int(round(steps * (1 - strength), 6))
        # From pure noise (the release), or from `start_image` noised to the same step (img2img):
        # then sampling starts where the optimisation does. `offset` is img2img's first step.
        offset = steps - min(int(steps * strength), steps) if start_image is not None else 0
        window = range(max(start, offset), min(start + iterations, steps - 1))  # never after the last step
        counter = _Counter(steps - offset + len(window) * grad_steps, callback)
        losses: list[float] = []

        def on_step(pipe, i, t, tensors):
            i += offset
            if blend is not None:
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            latents = tensors["latents"]
            counter.advance("sampling", latents)
            if i in window:
                # The scheduler step i has produced z at t_{i+1}: pull it towards the strokes,
                # then re-noise at that same timestep and continue sampling (as the release does).
                optimized, step_losses = optimize_latents(
                    latents, self.decode, target, paint, steps=grad_steps, lr=lr,
                    on_step=lambda *_: counter.advance("optimising"),
                )
                losses.extend(step_losses)
                noise = randn_tensor(latents.shape, generator=call["generator"], device=latents.device, dtype=latents.dtype)
                next_t = pipe.scheduler.timesteps[i + 1].reshape(1)  # the full schedule, also in img2img
                tensors["latents"] = pipe.scheduler.add_noise(optimized, noise, next_t)
                if blend is not None:  # the re-noising must not move the background either
                    tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            return tensors

        if start_image is not None:
            images = self._diffusers(StableDiffusionImg2ImgPipeline)(
                **call, image=start_image, strength=strength, callback_on_step_end=on_step).images
            return images, losses
        start = {"latents": blend.noise} if blend is not None else {}
        images = self._diffusers(StableDiffusionPipeline)(
            **call, **start, height=height, width=width, callback_on_step_end=on_step
        ).images
        return images, losses

    def _gradop(self, call, height, width, target, paint, strength, opt_steps, gamma, lr, callback, blend=None):
        steps = call["num_inference_steps"]
        counter = _Counter(steps + opt_steps + min(int(steps * strength), steps), callback)
        sample = self._text2img(call, height, width, None, output_type="latent", counter=counter, blend=blend)
        optimized, losses = optimize_latents(
            sample, self.decode, target, paint, steps=opt_steps, lr=lr, anchor=sample, gamma=gamma,
            on_step=lambda *_: counter.advance("optimising"),
        )
        # img2img takes a 4-channel tensor as ready latents: forward-diffuse z* to t0, denoise.
        batch = sample.shape[0]  # one prompt per latent: img2img does not repeat ready latents
        per_image = dict(call, prompt=[call["prompt"]] * batch, negative_prompt=[call["negative_prompt"]] * batch,
                         num_images_per_prompt=1)
        return self._sdedit(per_image, optimized, strength, None, counter=counter, blend=blend), losses

    def _latent_blend(self, setup, num_images, height, width, generator) -> LatentBlend:
        """Blended latent diffusion for one edit: the background's latents, the latent mask, and
        the noise that both starts the sampling and noises the background at every step."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (num_images, self.vae.config.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        background = encode_image(self.vae, setup.background, self.device, self.dtype)
        return LatentBlend(background, setup.latent_mask(self.vae_scale_factor).to(self.device), noise)

    def _background_size(self, height, width, background: Image.Image) -> tuple[int, int]:
        """The background's shape at about the model's native area (or the given height/width)."""
        fitted_width, fitted_height = fit_size(background.size, self.default_size)
        if height is None and width is None:
            height, width = fitted_height, fitted_width
        elif height is None:
            height = max(8, round(width * background.height / background.width / 8) * 8)
        elif width is None:
            width = max(8, round(height * background.width / background.height / 8) * 8)
        validate_options(height=height, width=width)
        return height, width

    def _size(self, height, width, strokes: Image.Image | None) -> tuple[int, int]:
        if height is None and width is None and strokes is not None and strokes.size[0] % 8 == 0 and strokes.size[1] % 8 == 0:
            width, height = strokes.size
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        validate_options(height=height, width=width)
        return height, width

    def _region_control(self, prompt, regions, strength, strokes, size, guidance_scale, append_missing,
                        record_attention):
        """(prompt, context manager, recorder, params) for region-to-word control and attention
        recording; a no-op context without either."""
        if not regions and not record_attention:
            return prompt, contextlib.nullcontext(), None, {}
        if isinstance(regions, dict):
            if strokes is None:
                raise ValueError("colour-to-word regions need a stroke image; pass strokes or explicit masks")
            regions = spec_from_colors(strokes, regions)
        token_masks, params = [], {}
        if regions:
            prompt, token_masks = resolve_spec(regions, prompt, self.tokenizer, size=size, append_missing=append_missing)
            words = [{"word": m.word, "tokens": m.token_indices, "area": int(m.mask.sum())} for m in token_masks]
            params = {"regions": words, "region_strength": strength}
        recorder = AttentionRecorder() if record_attention else None
        alphas_cumprod = ddim_scheduler(self.scheduler_config).alphas_cumprod
        context = region_control(self.unet, token_masks, strength, alphas_cumprod, do_cfg=guidance_scale > 1,
                                 record=recorder, image_size=size)
        return prompt, context, recorder, params


def validate_options(*, steps=50, guidance_scale=7.5, eta=0.0, num_images=1, strength=0.8, iterations=3,
                     grad_steps=12, lr=0.1, opt_steps=50, gamma=1e-3, region_strength=0.5, painting="blur",
                     height=None, width=None) -> None:
    """One clear ValueError for the first knob out of range (cheap: front-ends call it before
    loading a model)."""
    import math

    from gradop.painting import PAINTING_FUNCTIONS

    def finite(x):
        return isinstance(x, (int, float)) and math.isfinite(x)

    checks = [
        (isinstance(steps, int) and steps >= 1, f"steps must be a whole number >= 1 (got {steps})"),
        (finite(guidance_scale) and guidance_scale >= 0, f"guidance scale must be >= 0 (got {guidance_scale})"),
        (finite(eta) and 0 <= eta <= 1, f"eta must be in [0, 1] (got {eta})"),
        (isinstance(num_images, int) and 1 <= num_images <= 16, f"number of images must be 1-16 (got {num_images})"),
        (finite(strength) and 0 <= strength <= 1, f"strength must be in [0, 1] (got {strength})"),
        (isinstance(iterations, int) and iterations >= 1, f"iterations must be a whole number >= 1 (got {iterations})"),
        (isinstance(grad_steps, int) and grad_steps >= 1, f"gradient steps must be a whole number >= 1 (got {grad_steps})"),
        (finite(lr) and lr > 0, f"learning rate must be a positive finite number (got {lr})"),
        (isinstance(opt_steps, int) and opt_steps >= 1, f"optimisation steps must be a whole number >= 1 (got {opt_steps})"),
        (finite(gamma) and gamma >= 0, f"gamma must be >= 0 (got {gamma})"),
        (finite(region_strength) and region_strength >= 0, f"region strength must be >= 0 (got {region_strength})"),
        (painting in PAINTING_FUNCTIONS, f"unknown painting function '{painting}'; choose one of {', '.join(PAINTING_FUNCTIONS)}"),
    ] + [
        (value is None or (isinstance(value, int) and value > 0 and value % 8 == 0),
         f"{name} must be a positive multiple of 8 (got {value}); resize the strokes or pass height/width")
        for name, value in (("height", height), ("width", width))
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
