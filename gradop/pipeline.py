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
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from PIL import Image

from gradop import __version__
from gradop.attention import AttentionRecorder, attention_grid, region_control
from gradop.compiling import compile_unet as compile_unet_module
from gradop.decoders import GuidanceDecoders, resize_target
from gradop.editing import EditOptions, LatentBlend, encode_image, fit_size, prepare_edit
from gradop.images import load_image, pil_to_tensor, to_rgb
from gradop.models import ddim_scheduler, load_components
from gradop.optimize import optimize_latents
from gradop.guidance import GradopPlusCallback, guidance_window, shared_prefix
from gradop.options import METHODS, normalise_seed, parse_options, validate_options
from gradop.painting import make_painting_fn
from gradop.precision import GuidanceDecode, vae_decode
from gradop.region_words import resolve_spec, spec_from_colors
from gradop.results import GenerationCancelled, GenerationResult, Progress, ProgressCounter, seed_of
from gradop.sharing import SharedPasses, skipping

__all__ = ["GradopPipeline", "GenerationResult", "GenerationCancelled", "Progress", "METHODS", "validate_options"]


class GradopPipeline:
    def __init__(self, components: dict, *, model_name: str = "in-memory", device=None, dtype=None,
                 tiny_decoder=None, compile_decoder: bool = False, compile_unet: bool = False):
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
        # The decoders of the optimisation (options' guidance_decoder), built on first use.
        self.guidance_decoders = GuidanceDecoders(self.vae, model_name=model_name, tiny_source=tiny_decoder,
                                                  compile=compile_decoder)
        # The UNet the sampling loops call (compile_unet: see gradop.compiling); calls with region
        # words or attention maps swap its attention processors, so they run the eager one.
        self.compiled_unet = compile_unet_module(self.unet, self.device) if compile_unet else None
        self._sampling_unet = self.unet

    @classmethod
    def from_pretrained(cls, model: str, *, tiny_decoder=None, compile_decoder: bool = False,
                        compile_unet: bool = False, **load_kwargs) -> "GradopPipeline":
        """Load any SD 1.x/2.x hub id, diffusers folder or .safetensors file (see models.load_components).

        tiny_decoder: an AutoencoderTiny (folder, hub id or object) for guidance_decoder="tiny";
        compile_decoder: torch.compile the guidance decoders; compile_unet: torch.compile the UNet
        (CUDA graphs on CUDA; gradop.compiling)."""
        components, device, dtype = load_components(model, **load_kwargs)
        return cls(components, model_name=str(model), device=device, dtype=dtype, tiny_decoder=tiny_decoder,
                   compile_decoder=compile_decoder, compile_unet=compile_unet)

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

    def compare(self, prompt: str, strokes=None, *, methods=("text", "sdedit", "gradop", "gradop+"),
                callback: Callable[[str, Progress], None] | None = None, **options) -> dict[str, GenerationResult]:
        """Every method in `methods` with the same seed and options, {method: result}. The calls
        share the text-only steps they have in common (gradop.sharing): with the defaults, 60 of
        the 230 UNet steps of the four methods are not run again. callback(method, progress)."""
        if options.get("generator") is not None:
            raise ValueError("compare takes a seed, not a generator: every method starts from the same seed")
        if options.get("seed") is None:
            options["seed"] = secrets.randbelow(2**32)  # one seed for all, recorded in each PNG
        shared = SharedPasses()
        results = {}
        for method in methods:
            report = (lambda progress, method=method: callback(method, progress)) if callback is not None else None
            results[method] = self.generate(method, prompt, strokes, callback=report, shared=shared, **options)
        return results

    def generate(
        self,
        method: str,
        prompt: str,
        strokes=None,
        *,
        negative_prompt: str = "",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        regions=None,
        append_missing_words: bool = False,
        attention_maps: bool = False,
        background=None,
        edit: bool | None = None,
        mask=None,
        edit_dilate: int | None = None,
        edit_feather: int | None = None,
        edit_start: str = "noise",
        callback: Callable[[Progress], None] | None = None,
        shared: SharedPasses | None = None,
        **knobs,
    ) -> GenerationResult:
        """Run `method` ("gradop+", "gradop", "sdedit" or "text"); the named methods above are
        shortcuts. `knobs` are the fields of options.SamplingOptions and of the method's options
        class (defaults there); knobs that a method does not use are validated, then ignored
        (and not recorded). `shared`: a SharedPasses given to several calls with the same prompt,
        seed and sampling knobs, so that they compute the text-only steps they share once (not
        used by edits).

        With a `background` (a photo or an earlier result) the default is an edit (see
        gradop.editing): only the painted area (or `mask`, white = change), grown by
        `edit_dilate` and feathered over `edit_feather` pixels, is synthesised; every other
        pixel is the background's. edit=False re-imagines the whole image from the strokes over
        the background. The output keeps the background's aspect ratio at about the model's
        native area unless height/width are given. GradOP+'s edits sample from pure noise
        (edit_start="noise", the release's start) or from the painting over the photo noised to
        the step where optimisation starts (edit_start="painting")."""
        sampling, opts = parse_options(method, knobs)
        edit_opts = EditOptions(edit_dilate=edit_dilate, edit_feather=edit_feather, edit_start=edit_start)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty; describe the image you want")
        if not isinstance(negative_prompt, str):
            raise TypeError(f"negative prompt must be text (got {negative_prompt!r})")
        guided = method != "text"
        edit = background is not None if edit is None else bool(edit)
        if edit and background is None:
            raise ValueError("edit mode needs a background to keep: pass background= (a photo or an earlier result), "
                             "or edit=False")
        if mask is not None and not edit:
            raise ValueError("a mask marks what an edit changes: pass a background and leave edit on, or drop the mask")
        if guided and strokes is None and background is None:
            raise ValueError(f"method '{method}' needs a stroke image; pass strokes or use method 'text'")
        stroke_source = load_image(strokes, what="stroke image") if strokes is not None else None
        edit_setup = region_source = None
        if background is not None:
            background = load_image(background, what="background photo")
            height, width = self._background_size(sampling.height, sampling.width, background)
            edit_setup = prepare_edit(stroke_source, background, (width, height), mask=mask,
                                      dilate_px=edit_opts.edit_dilate, feather_px=edit_opts.edit_feather, edit=edit)
            stroke_image, region_source = edit_setup.composite, edit_setup.strokes_on_white
        else:
            stroke_image = to_rgb(stroke_source) if stroke_source is not None else None
            if guided and np.asarray(stroke_image).min() == 255:
                raise ValueError(f"the stroke image is blank (all white or transparent), so '{method}' has nothing to "
                                 "follow; paint some strokes, add a background photo, or use method 'text'")
            height, width = self._size(sampling.height, sampling.width, stroke_image)
        sampling = replace(sampling, height=height, width=width)
        seed = normalise_seed(seed)
        if generator is not None:
            if seed is not None:
                raise ValueError("pass seed or generator, not both (the generator decides the noise)")
            seed = seed_of(generator)
        else:
            seed = secrets.randbelow(2**32) if seed is None else seed
            generator = torch.Generator("cpu").manual_seed(seed)
        if stroke_image is not None and stroke_image.size != (width, height):
            stroke_image = stroke_image.resize((width, height), Image.Resampling.LANCZOS)

        # What the PNG records: everything that decides the pixels, and only what this method uses.
        params = dict(method=method, prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=sampling.steps,
                      guidance_scale=sampling.guidance_scale, eta=sampling.eta, height=height, width=width,
                      num_images=sampling.num_images, model=self.model_name, gradop_version=__version__)
        params.update(opts.recorded())
        if stroke_image is not None:
            params["strokes_sha256"] = hashlib.sha256(stroke_image.tobytes()).hexdigest()[:16]
        if edit_setup is not None:
            params.update(edit_setup.params())
            if edit and method == "gradop+":
                params["edit_start"] = edit_opts.edit_start

        with self._lock:
            prompt, region_context, recorder, region_params = self._region_control(
                prompt, regions, sampling.region_strength, region_source or stroke_image, (height, width),
                sampling.guidance_scale,
                append_missing_words, attention_maps,
            )
            params.update(region_params, prompt=prompt)
            controls_attention = bool(regions) or attention_maps  # _region_control's processors are on
            self._sampling_unet = self.compiled_unet if self.compiled_unet is not None and not controls_attention \
                else self.unet
            call = dict(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=sampling.steps,
                        guidance_scale=sampling.guidance_scale, eta=sampling.eta, generator=generator,
                        num_images_per_prompt=sampling.num_images)
            # The text-only trajectory several calls share (not with attention maps: they average
            # every step; not in edits: blending changes every step).
            trajectory = None if shared is None or recorder is not None or edit else shared.trajectory(
                self.model_name, str(self.device), str(self.dtype), prompt, negative_prompt, sampling.steps,
                sampling.guidance_scale, sampling.eta, height, width, sampling.num_images, region_params,
                hashlib.sha256(generator.get_state().numpy().tobytes()).hexdigest())
            blend = self._latent_blend(edit_setup, sampling.num_images, height, width, generator) if edit else None
            with region_context:
                if method == "text":
                    images, losses = self._text2img(call, height, width, callback, trajectory=trajectory,
                                                    blend=blend), []
                elif method == "sdedit":
                    images, losses = self._sdedit(call, stroke_image, opts.strength, callback, blend=blend), []
                else:
                    decoder = self.guidance_decoders(opts.guidance_decoder)
                    size = decoder.output_size(height // self.vae_scale_factor, width // self.vae_scale_factor)
                    guide_strokes = resize_target(stroke_image, size)  # the loss is computed at the decoder's size
                    target = pil_to_tensor(guide_strokes).to(self.device)
                    paint = make_painting_fn(opts.painting, *size, guide_strokes)
                    if edit:  # the pull towards the strokes counts the painted pixels only
                        paint, target = edit_setup.guidance(paint, target)
                    decode = self.guidance_decode(opts)
                    params["guidance_precision"] = decode.mode  # what "auto" chose here (it depends on the CPU)
                    if method == "gradop+":
                        start_image = stroke_image if edit and edit_opts.edit_start == "painting" else None
                        images, losses = self._gradop_plus(call, height, width, decode, target, paint, opts, callback,
                                                           trajectory, blend=blend, start_image=start_image)
                    else:
                        images, losses = self._gradop(call, height, width, decode, target, paint, opts, callback,
                                                      trajectory, blend=blend)
            if edit:
                images = edit_setup.paste_back(images)
            grid = attention_grid(recorder, self.tokenizer, prompt) if recorder is not None else None
        return GenerationResult(images, params, losses, grid)

    # ---- helpers shared by the methods ---------------------------------------------------

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1], differentiable (the D in L(f(D(z)), y))."""
        return vae_decode(self.vae, latents)

    def guidance_decode(self, opts) -> GuidanceDecode:
        """The decoder the optimisation differentiates (the options' guidance_decoder), with the
        options' precision and memory handling."""
        decoder = self.guidance_decoders(opts.guidance_decoder)
        return GuidanceDecode(decoder, self.vae, opts.guidance_precision, opts.guidance_checkpointing)

    @torch.no_grad()
    def preview(self, latents: torch.Tensor) -> Image.Image:
        """The first image of a latent batch, decoded (for live previews)."""
        from gradop.images import tensor_to_pil

        return tensor_to_pil(self.decode(latents[:1]))[0]

    def _diffusers(self, cls):
        # A per-call diffusers pipeline over the shared modules, with its own scheduler state.
        modules = self.components | {"unet": self._sampling_unet, "scheduler": ddim_scheduler(self.scheduler_config)}
        pipe = cls(**modules, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _text2img(self, call, height, width, callback, output_type="pil", counter=None, trajectory=None,
                  blend=None):
        from diffusers import StableDiffusionPipeline

        steps = call["num_inference_steps"]
        counter = counter or ProgressCounter(steps, callback)

        def on_step(pipe, i, t, tensors):
            if trajectory is not None:
                trajectory.record(i, tensors["latents"], call["generator"])
            if blend is not None:
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            counter.advance("sampling", tensors["latents"])
            return tensors

        pipe, step, latents = self._resume(StableDiffusionPipeline, trajectory, steps - 1, call["generator"])
        for _ in range(step + 1):  # the steps it starts after count as done
            counter.advance("sampling")
        start = {} if latents is None else {"latents": latents}
        if blend is not None:
            start = {"latents": blend.noise}  # one noise for sampling and blending (edits share no trajectory)
        return pipe(**call, height=height, width=width, output_type=output_type, callback_on_step_end=on_step,
                    **start).images

    def _resume(self, cls, trajectory, up_to: int, generator):
        """(diffusers pipeline, step, latents): a pipeline of `cls` that starts after the furthest
        step of `trajectory` recorded at or before `up_to`, that step and its latents (the
        generator is put back to its state there); or a plain one, -1 and None."""
        snapshot = trajectory.latest(up_to) if trajectory is not None else None
        if snapshot is None:
            return self._diffusers(cls), -1, None
        pipe = self._diffusers(skipping(cls))
        pipe.skip_steps = snapshot.step + 1
        return pipe, snapshot.step, trajectory.resume(snapshot, generator)


    def _sdedit(self, call, image, strength, callback, counter=None, blend=None):
        from diffusers import StableDiffusionImg2ImgPipeline

        steps = call["num_inference_steps"]
        counter = counter or ProgressCounter(min(int(steps * strength), steps), callback)

        def on_step(pipe, i, t, tensors):
            if blend is not None:
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
            counter.advance("denoising", tensors["latents"])
            return tensors

        return self._diffusers(StableDiffusionImg2ImgPipeline)(
            **call, image=image, strength=strength, callback_on_step_end=on_step
        ).images

    def _gradop_plus(self, call, height, width, decode, target, paint, opts, callback, trajectory=None,
                     blend=None, start_image=None):
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        steps = call["num_inference_steps"]
        window = guidance_window(steps, opts.strength, opts.iterations)
        # From pure noise (the release), or from `start_image` noised to the window's first step
        # (img2img; `offset` is its first step, strength chosen so that int(steps * s) is exact).
        offset = window.start if start_image is not None else 0
        counter = ProgressCounter(steps - offset + len(window) * opts.grad_steps, callback)
        guidance = GradopPlusCallback(decode, target, paint, call["generator"], opts, steps,
                                      on_sample=lambda latents: counter.advance("sampling", latents),
                                      on_optimise=lambda: counter.advance("optimising"),
                                      unet=self.unet, guidance_scale=call["guidance_scale"])
        tensor_inputs = {"callback_on_step_end_tensor_inputs": guidance.tensor_inputs}

        if blend is not None or start_image is not None:  # edits (no shared trajectory)
            def on_edit_step(pipe, i, t, tensors):
                if blend is None:
                    return guidance(pipe, i + offset, t, tensors)
                # Blend before the guidance sees the latents and again after its re-noising, so that
                # neither moves the background (blending is idempotent).
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
                tensors = guidance(pipe, i + offset, t, tensors)
                tensors["latents"] = blend(pipe.scheduler, t, tensors["latents"])
                return tensors

            if start_image is not None:
                strength = (steps - offset + 0.5) / steps
                images = self._diffusers(StableDiffusionImg2ImgPipeline)(
                    **call, image=start_image, strength=strength, callback_on_step_end=on_edit_step,
                    **tensor_inputs).images
                return images, guidance.losses
            images = self._diffusers(StableDiffusionPipeline)(  # one noise for sampling and blending
                **call, latents=blend.noise, height=height, width=width, callback_on_step_end=on_edit_step,
                **tensor_inputs).images
            return images, guidance.losses

        def on_step(pipe, i, t, tensors):
            if trajectory is not None and i <= window.start:  # text-only up to here (before guidance)
                trajectory.record(i, tensors["latents"], call["generator"])
            return guidance(pipe, i, t, tensors)

        # With a shared trajectory: start from its furthest step up to the window's first; that
        # step's own callback (guidance, when it is the window's first) runs here, then sampling goes on.
        resume_at = shared_prefix(window, opts.guidance_latent) - 1
        pipe, step, latents = self._resume(StableDiffusionPipeline, trajectory, resume_at, call["generator"])
        start = {}
        if latents is not None:
            for _ in range(step):
                counter.advance("sampling")
            pipe.scheduler.set_timesteps(steps, device=self.device)
            start["latents"] = on_step(pipe, step, pipe.scheduler.timesteps[step], {"latents": latents})["latents"]
        images = pipe(**call, height=height, width=width, callback_on_step_end=on_step, **tensor_inputs,
                      **start).images
        return images, guidance.losses

    def _gradop(self, call, height, width, decode, target, paint, opts, callback, trajectory=None, blend=None):
        steps = call["num_inference_steps"]
        counter = ProgressCounter(steps + opts.opt_steps + min(int(steps * opts.strength), steps), callback)
        sample = self._text2img(call, height, width, None, output_type="latent", counter=counter,
                                trajectory=trajectory, blend=blend)
        optimized, losses = optimize_latents(
            sample, decode, target, paint, steps=opts.opt_steps, lr=opts.opt_lr, anchor=sample, gamma=opts.gamma,
            batch=opts.guidance_batch, early_stop=opts.guidance_early_stop,
            on_step=lambda *_: counter.advance("optimising"),
        )
        # img2img takes a 4-channel tensor as ready latents: forward-diffuse z* to t0, denoise.
        batch = sample.shape[0]  # one prompt per latent: img2img does not repeat ready latents
        per_image = dict(call, prompt=[call["prompt"]] * batch, negative_prompt=[call["negative_prompt"]] * batch,
                         num_images_per_prompt=1)
        return self._sdedit(per_image, optimized, opts.strength, None, counter=counter, blend=blend), losses

    def _latent_blend(self, setup, num_images, height, width, generator) -> LatentBlend:
        """Blended latent diffusion for one edit: the background's latents, the latent mask, and
        the noise that both starts the sampling and noises the background at every step."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (num_images, self.vae.config.latent_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        background = encode_image(self.vae, setup.background, self.device, self.dtype)
        return LatentBlend(background, setup.latent_mask(self.vae_scale_factor).to(self.device), noise)

    def _background_size(self, height, width, background: Image.Image) -> tuple[int, int]:
        """(height, width) of an edit: the background's aspect ratio at about the model's native
        area; a given side is kept and the other follows the background's aspect ratio."""
        if height is None and width is None:
            width, height = fit_size(background.size, self.default_size)
            return height, width
        return self._size(height, width, background)

    def _size(self, height, width, strokes: Image.Image | None) -> tuple[int, int]:
        """(height, width): as given; a missing side follows the strokes' aspect ratio; with
        neither, the strokes' size when it is a multiple of 8, else the model's native pixel
        count at the strokes' aspect ratio. Derived sides are rounded to multiples of 8."""
        def snap(side: float) -> int:
            return max(8, round(side / 8) * 8)

        if strokes is not None:
            stroke_w, stroke_h = strokes.size
            if height is None and width is None:
                if stroke_w % 8 == 0 and stroke_h % 8 == 0:
                    return stroke_h, stroke_w
                scale = self.default_size / (stroke_w * stroke_h) ** 0.5
                return snap(stroke_h * scale), snap(stroke_w * scale)
            if height is None:
                height = snap(width * stroke_h / stroke_w)
            elif width is None:
                width = snap(height * stroke_w / stroke_h)
        return (self.default_size if height is None else height), (self.default_size if width is None else width)

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
