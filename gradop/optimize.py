"""Latent optimisation through the VAE decoder: the heart of GradOP and GradOP+.

Pure given a decode function and a target: no schedulers, prompts or UNet here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from gradop.painting import PaintingFn

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # scaled latents -> images (B, 3, H, W) in [0, 1]


def painting_loss(images: torch.Tensor, target: torch.Tensor, painting: PaintingFn) -> torch.Tensor:
    """L(f(x), y): mean squared error between the painted output and the strokes."""
    painted = painting(images)
    return F.mse_loss(painted, target.to(painted).expand_as(painted))  # one target for the whole batch


def optimize_latents(
    latents: torch.Tensor,
    decode: DecodeFn,
    target: torch.Tensor,
    painting: PaintingFn,
    *,
    steps: int,
    lr: float,
    anchor: torch.Tensor | None = None,
    gamma: float = 0.0,
    on_step: Callable[[int, float], None] | None = None,
    early_stop: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """Adam on the latents for `steps` steps; returns (optimised latents, loss per step).

    loss = L(f(D(z)), y) + gamma * d(z, anchor) with d the mean squared distance (so gamma does
    not depend on the resolution): the anchor term is GradOP's pull towards the text-only sample z_tau; GradOP+ uses none.
    early_stop > 0 ends the loop once the loss changes by less than that fraction of itself over
    one step (converged); the remaining steps are skipped, so fewer losses come back.
    Only the latents are differentiated (torch.autograd.grad), so the decoder's weights
    collect no gradients and stay untouched.
    """
    if steps <= 0:
        raise ValueError(f"optimisation steps must be at least 1 (got {steps})")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive finite number (got {lr})")
    if anchor is not None:
        anchor = anchor.detach().float()
    z = latents.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    losses = []
    with torch.enable_grad():
        for step in range(steps):
            loss = painting_loss(decode(z.to(latents.dtype)).float(), target, painting)
            if anchor is not None and gamma > 0:
                loss = loss + gamma * F.mse_loss(z, anchor)
            (z.grad,) = torch.autograd.grad(loss, [z])
            optimizer.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
            if early_stop > 0 and step > 0 and abs(losses[-2] - losses[-1]) < early_stop * losses[-2]:
                break
    return z.detach().to(latents.dtype), losses
