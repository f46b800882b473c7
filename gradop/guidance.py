"""The GradOP+ guidance step as small pure functions (k-diffusion style), and the diffusers
step-end callback that only calls them.

The release's rule, reproduced exactly:
- the window: optimise right after sampling steps i in [start, start + iterations) with
  i < steps - 1, where start = int(steps * (1 - strength)) in floating point (1 - 0.8 is
  0.19999..., so 9 for 50 steps);
- at such a step the scheduler has just produced z at t_{i+1}: Adam on z itself through the
  decoder (loss against the raw strokes y), then re-noise the optimised z at that same t_{i+1}
  with scheduler.add_noise and noise from the call's seeded generator.

guidance_latent "denoised" (not the release's): the same loss on the decode of the UNet's own
prediction of the clean latents from z, differentiated through the UNet, and a small step of z
along that gradient (no re-noise); the sample stays on the model's trajectory.
"denoised-fast": the same step with the sampler's own prediction of this step held fixed, so
the gradient skips the UNet (no extra UNet pass: about half the cost on the demo model).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from gradop.optimize import DecodeFn, converged, latent_gradient, optimize_latents
from gradop.painting import PaintingFn

# What the optimisation moves: "noisy" = the latents z_{t_{i+1}} themselves (the release);
# "x0" = the sampler's predicted clean latents of step i (METHOD.md's predicted-x0 variant: the
# decoder sees a clean image, not noise), re-noised to t_{i+1} with fresh noise afterwards;
# "denoised" = z_{t_{i+1}}, with the loss on the decode of the UNet's predicted x0 of z (through
# the UNet), stepped along the normalised gradient, not re-noised; "denoised-fast" = the same with
# the UNet's output held at the sampler's own prediction (SampledX0).
GUIDANCE_LATENTS = ("noisy", "x0", "denoised", "denoised-fast")
DENOISED_LATENTS = ("denoised", "denoised-fast")  # stepped by lr in RMS, never re-noised


def guidance_window(steps: int, strength: float, iterations: int) -> range:
    """The 0-based sampling steps after which GradOP+ optimises (empty if none qualifies)."""
    start = int(steps * (1 - strength))  # no rounding: the release's float arithmetic (9 of 50 at 0.8)
    return range(start, max(start, min(start + iterations, steps - 1)))


def shared_prefix(window: range, guidance_latent: str) -> int:
    """How many leading steps of a shared text-only trajectory (gradop.sharing) a GradOP+ call can
    skip: up to and including its window's first step, except that the x0 and denoised latents
    need that step's own pass of the sampling loop (its predicted x0; the prompts' embeddings)."""
    return window.start + (guidance_latent not in ("x0", *DENOISED_LATENTS))


def sampler_x0(scheduler, latent: str) -> torch.Tensor:
    """The scheduler's prediction of the clean latents at its latest step, which the x0 and
    denoised-fast latents start from."""
    x0 = getattr(scheduler, "last_x0", None)
    if x0 is None:
        raise RuntimeError(f"guidance_latent '{latent}' needs the scheduler's latest predicted x0 "
                           "(gradop.models.ddim_scheduler records it)")
    return x0


def guide(
    z_next: torch.Tensor,
    t_next: torch.Tensor,
    decode: DecodeFn,
    target: torch.Tensor,
    paint: PaintingFn,
    scheduler,
    generator: torch.Generator | list[torch.Generator] | None,
    opts,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """One GradOP+ guidance step: (re-noised optimised latents, loss per Adam step).

    z_next: the latents the scheduler produced at t_next = t_{i+1} (noisy; decoded as they are,
    as the release does, unless opts.guidance_latent is "x0": then the scheduler's predicted x0
    of step i is optimised instead). decode: the differentiable decoder (a gradop.precision.GuidanceDecode
    carries its precision handling). opts: anything with `grad_steps` and `lr`
    (GradopPlusOptions), and optionally `guidance_batch` (images optimised at a time) and
    `guidance_early_stop`.
    """
    from diffusers.utils.torch_utils import randn_tensor

    start = sampler_x0(scheduler, "x0") if getattr(opts, "guidance_latent", "noisy") == "x0" else z_next
    optimized, losses = optimize_latents(start, decode, target, paint, steps=opts.grad_steps, lr=opts.lr,
                                         batch=getattr(opts, "guidance_batch", None), on_step=on_step,
                                         early_stop=getattr(opts, "guidance_early_stop", 0.0))
    noise = randn_tensor(z_next.shape, generator=generator, device=z_next.device, dtype=z_next.dtype)
    return scheduler.add_noise(optimized, noise, t_next.reshape(1)), losses


class Denoiser:
    """The sampler's prediction of the clean latents from noisy latents at timestep t, differentiable
    in the latents: the UNet with classifier-free guidance (prompt_embeds as diffusers passes them:
    the negative prompts' rows first, then the prompts'), epsilon or v prediction turned into x0."""

    def __init__(self, unet, scheduler, prompt_embeds: torch.Tensor, guidance_scale: float):
        self.unet, self.prompt_embeds, self.guidance_scale = unet, prompt_embeds, guidance_scale
        self.alphas_cumprod = scheduler.alphas_cumprod
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"guidance_latent 'denoised' supports epsilon and v prediction, not '{self.prediction_type}'")

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, rows: slice) -> torch.Tensor:
        """x0 for the images `rows` of the batch (latents holds just those rows), in float32."""
        embeds = self.prompt_embeds
        guided = self.guidance_scale > 1  # diffusers' rule for classifier-free guidance
        if guided:  # [negative rows; prompt rows]: take this chunk's rows from both halves
            negative, positive = embeds.chunk(2)
            embeds = torch.cat([negative[rows], positive[rows]])
        else:
            embeds = embeds[rows]
        model_input = torch.cat([latents] * (2 if guided else 1)).to(self.unet.dtype)
        out = self.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0].float()
        if guided:
            uncond, cond = out.chunk(2)
            out = uncond + self.guidance_scale * (cond - uncond)
        alpha = self.alphas_cumprod[int(t)].to(latents.device, torch.float32)
        z = latents.float()
        if self.prediction_type == "v_prediction":
            return alpha.sqrt() * z - (1 - alpha).sqrt() * out
        return (z - (1 - alpha).sqrt() * out) / alpha.sqrt()


class SampledX0:
    """The clean latents as a function of z_t with the UNet's output held at the sampler's own
    prediction of this step: x0(z) = x0_sampled + (z - z_sampled) * dx0/dz, where dx0/dz is
    1/sqrt(abar_t) for epsilon and sqrt(abar_t) for v prediction (exact at z_sampled for DDIM
    with eta 0). A Denoiser without the UNet: its gradient skips the UNet's Jacobian."""

    def __init__(self, x0: torch.Tensor, latents: torch.Tensor, scheduler, t: torch.Tensor):
        prediction = scheduler.config.prediction_type
        if prediction not in ("epsilon", "v_prediction"):  # "sample": x0 would not depend on z at all
            raise ValueError(f"guidance_latent 'denoised-fast' supports epsilon and v prediction, not '{prediction}'")
        self.x0, self.start = x0.detach().float(), latents.detach().float()
        alpha = scheduler.alphas_cumprod[int(t)].to(latents.device, torch.float32)
        self.slope = alpha.sqrt() if prediction == "v_prediction" else alpha.rsqrt()

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, rows: slice) -> torch.Tensor:
        return self.x0[rows] + (latents.float() - self.start[rows]) * self.slope


def guide_denoised(
    z_next: torch.Tensor,
    t_next: torch.Tensor,
    denoiser: Denoiser | SampledX0,
    decode: DecodeFn,
    target: torch.Tensor,
    paint: PaintingFn,
    opts,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """GradOP+ with guidance_latent "denoised": `opts.grad_steps` steps of z_next against the gradient
    of L(f(D(x0(z))), y), each moving every image's latents by `opts.lr` in RMS (the gradient
    normalised per image, as a fresh Adam's first step moves every element by lr). No re-noise:
    z stays at t_next. Chunks of `opts.guidance_batch` images (memory; same result)."""
    total = z_next.shape[0]
    size = max(1, min(getattr(opts, "guidance_batch", None) or total, total))
    chunks = [slice(a, min(a + size, total)) for a in range(0, total, size)]
    z = z_next.detach().float()
    losses: list[float] = []
    with getattr(decode, "prepared", contextlib.nullcontext)():
        for step in range(opts.grad_steps):
            loss, grads = 0.0, []
            for rows in chunks:
                chunk_loss, grad = latent_gradient(
                    z[rows], lambda latents, rows=rows: decode(denoiser(latents, t_next, rows)), target, paint,
                    batch_size=total, loss_scale=getattr(decode, "loss_scale", None))
                loss, grads = loss + chunk_loss, grads + [grad]
            grad = torch.cat(grads)
            rms = grad.pow(2).mean(dim=tuple(range(1, grad.ndim)), keepdim=True).sqrt()
            z = z - opts.lr * grad / rms.clamp_min(torch.finfo(torch.float32).tiny)
            losses.append(loss)
            if on_step is not None:
                on_step(step, loss)
            if converged(losses, getattr(opts, "guidance_early_stop", 0.0)):
                break
    return z.to(z_next.dtype), losses


class GradopPlusCallback:
    """diffusers `callback_on_step_end` running GradOP+ inside a text-to-image sampling loop.

    on_sample(latents) is called after every scheduler step, on_optimise() after every Adam step
    (progress reporting); the losses of all guidance steps collect in `losses`.
    """

    def __init__(self, decode: DecodeFn, target: torch.Tensor, paint: PaintingFn, generator, opts, steps: int,
                 on_sample: Callable[[torch.Tensor], None] | None = None,
                 on_optimise: Callable[[], None] | None = None, unet=None, guidance_scale: float = 7.5):
        self.decode, self.target, self.paint, self.generator, self.opts = decode, target, paint, generator, opts
        # guidance_latent "denoised" differentiates through this (eager) UNet with the call's prompts.
        self.unet, self.guidance_scale = unet, guidance_scale
        latent = getattr(opts, "guidance_latent", "noisy")
        self.denoised, self.through_unet = latent in DENOISED_LATENTS, latent == "denoised"
        if self.through_unet and unet is None:
            raise ValueError("guidance_latent 'denoised' needs the UNet (GradopPlusCallback(unet=...))")
        # What the sampling loop must hand the callback (diffusers' callback_on_step_end_tensor_inputs).
        self.tensor_inputs = ["latents", "prompt_embeds"] if self.through_unet else ["latents"]
        self.window = guidance_window(steps, opts.strength, opts.iterations)
        self.on_sample, self.on_optimise = on_sample, on_optimise
        self.losses: list[float] = []

    def __call__(self, pipe, i: int, t, tensors: dict) -> dict:
        if self.on_sample is not None:
            self.on_sample(tensors["latents"])
        if i in self.window:
            on_step = (lambda *_: self.on_optimise()) if self.on_optimise is not None else None
            t_next = pipe.scheduler.timesteps[i + 1]
            if self.denoised:
                denoiser = self._denoiser(pipe, t_next, tensors)
                tensors["latents"], losses = guide_denoised(tensors["latents"], t_next, denoiser, self.decode,
                                                            self.target, self.paint, self.opts, on_step)
            else:
                tensors["latents"], losses = guide(tensors["latents"], t_next, self.decode, self.target, self.paint,
                                                   pipe.scheduler, self.generator, self.opts, on_step)
            self.losses.extend(losses)
            if self.on_optimise is not None:
                for _ in range(self.opts.grad_steps - len(losses)):  # steps an early stop skipped count as done
                    self.on_optimise()
        return tensors

    def _denoiser(self, pipe, t_next, tensors: dict):
        if not self.through_unet:
            return SampledX0(sampler_x0(pipe.scheduler, "denoised-fast"), tensors["latents"], pipe.scheduler, t_next)
        if "prompt_embeds" not in tensors:
            raise RuntimeError("guidance_latent 'denoised' needs the prompt embeddings in the callback's "
                               "tensors (callback_on_step_end_tensor_inputs=callback.tensor_inputs)")
        return Denoiser(self.unet, pipe.scheduler, tensors["prompt_embeds"], self.guidance_scale)
