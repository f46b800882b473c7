"""The GradOP+ guidance step as small pure functions (k-diffusion style), and the diffusers
step-end callback that only calls them.

The release's rule, reproduced exactly:
- the window: optimise right after sampling steps i in [start, start + iterations) with
  i < steps - 1, where start = int(steps * (1 - strength)) in floating point (1 - 0.8 is
  0.19999..., so 9 for 50 steps);
- at such a step the scheduler has just produced z at t_{i+1}: Adam on z itself through the
  decoder (loss against the raw strokes y), then re-noise the optimised z at that same t_{i+1}
  with scheduler.add_noise and noise from the call's seeded generator.
"""

from __future__ import annotations

from typing import Callable

import torch

from gradop.optimize import DecodeFn, optimize_latents
from gradop.painting import PaintingFn

# What the optimisation moves: "noisy" = the latents z_{t_{i+1}} themselves (the release);
# "x0" = the sampler's predicted clean latents of step i (METHOD.md's predicted-x0 variant: the
# decoder sees a clean image, not noise), re-noised to t_{i+1} with fresh noise afterwards.
GUIDANCE_LATENTS = ("noisy", "x0")


def guidance_window(steps: int, strength: float, iterations: int) -> range:
    """The 0-based sampling steps after which GradOP+ optimises (empty if none qualifies)."""
    start = int(steps * (1 - strength))  # no rounding: the release's float arithmetic (9 of 50 at 0.8)
    return range(start, max(start, min(start + iterations, steps - 1)))


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

    start = z_next
    if getattr(opts, "guidance_latent", "noisy") == "x0":
        start = getattr(scheduler, "last_x0", None)
        if start is None:
            raise RuntimeError("guidance_latent 'x0' needs the scheduler's latest predicted x0 "
                               "(gradop.models.ddim_scheduler records it)")
    optimized, losses = optimize_latents(start, decode, target, paint, steps=opts.grad_steps, lr=opts.lr,
                                         batch=getattr(opts, "guidance_batch", None), on_step=on_step,
                                         early_stop=getattr(opts, "guidance_early_stop", 0.0))
    noise = randn_tensor(z_next.shape, generator=generator, device=z_next.device, dtype=z_next.dtype)
    return scheduler.add_noise(optimized, noise, t_next.reshape(1)), losses


class GradopPlusCallback:
    """diffusers `callback_on_step_end` running GradOP+ inside a text-to-image sampling loop.

    on_sample(latents) is called after every scheduler step, on_optimise() after every Adam step
    (progress reporting); the losses of all guidance steps collect in `losses`.
    """

    def __init__(self, decode: DecodeFn, target: torch.Tensor, paint: PaintingFn, generator, opts, steps: int,
                 on_sample: Callable[[torch.Tensor], None] | None = None,
                 on_optimise: Callable[[], None] | None = None):
        self.decode, self.target, self.paint, self.generator, self.opts = decode, target, paint, generator, opts
        self.window = guidance_window(steps, opts.strength, opts.iterations)
        self.on_sample, self.on_optimise = on_sample, on_optimise
        self.losses: list[float] = []

    def __call__(self, pipe, i: int, t, tensors: dict) -> dict:
        if self.on_sample is not None:
            self.on_sample(tensors["latents"])
        if i in self.window:
            on_step = (lambda *_: self.on_optimise()) if self.on_optimise is not None else None
            tensors["latents"], losses = guide(tensors["latents"], pipe.scheduler.timesteps[i + 1], self.decode,
                                               self.target, self.paint, pipe.scheduler, self.generator, self.opts,
                                               on_step)
            self.losses.extend(losses)
            if self.on_optimise is not None:
                for _ in range(self.opts.grad_steps - len(losses)):  # steps an early stop skipped count as done
                    self.on_optimise()
        return tensors
