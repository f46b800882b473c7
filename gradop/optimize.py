"""Latent optimisation through the VAE decoder: the heart of GradOP and GradOP+.

Pure given a decode function and a target: no schedulers, prompts or UNet here. The decode
function may carry `loss_scale` ("dynamic" for fp16) and a `prepared()` context (see
gradop.precision.GuidanceDecode); a plain function works too.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F

from gradop.painting import PaintingFn

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # scaled latents (fp32) -> images (B, 3, H, W) in [0, 1]
SCALE_BACKOFF, MAX_SCALE_BACKOFFS = 16.0, 6  # on overflow: retry with the scale / 16, at most 6 times


def painting_loss(images: torch.Tensor, target: torch.Tensor, painting: PaintingFn, batch_size: int | None = None):
    """L(f(x), y): mean squared error between the painted output and the strokes.

    With `batch_size` (the whole batch, of which `images` is a chunk): the chunk's share of the
    whole batch's mean, so the shares of all chunks add up to it and their gradients match it.
    """
    painted = painting(images)
    loss = F.mse_loss(painted, target.to(painted).expand_as(painted))  # one target for the whole batch
    return loss if batch_size is None else loss * (images.shape[0] / batch_size)


def latent_gradient(
    latents: torch.Tensor,
    decode: DecodeFn,
    target: torch.Tensor,
    painting: PaintingFn,
    *,
    batch_size: int | None = None,
    anchor: torch.Tensor | None = None,
    gamma: float = 0.0,
    anchor_numel: int | None = None,
    loss_scale: str | float | None = None,
    create_graph: bool = False,
) -> tuple[float, torch.Tensor]:
    """(loss, d loss / d latents in fp32) for one chunk of latents.

    create_graph: keep the gradient differentiable with respect to the decoder's weights (for
    teaching a stand-in decoder the VAE's gradient, train/distill_guidance_decoder.py).

    loss_scale "dynamic": the loss is multiplied by its pixel-value count before the backward
    pass (so a low-precision decoder's gradients do not underflow) and the gradient divided
    again in fp32; on overflow the pass is repeated with a smaller scale.
    """
    z = latents.detach().float().requires_grad_(True)
    scale = float(target.shape[-1] * target.shape[-2] * 3 * (batch_size or latents.shape[0])) \
        if loss_scale == "dynamic" else float(loss_scale or 1.0)
    for _ in range(MAX_SCALE_BACKOFFS + 1):
        with torch.enable_grad():
            loss = painting_loss(decode(z).float(), target, painting, batch_size)
            if anchor is not None and gamma > 0:
                # gamma * mean over the whole batch's latents, this chunk's share of it.
                loss = loss + gamma * (z - anchor.float()).pow(2).sum() / (anchor_numel or z.numel())
            (grad,) = torch.autograd.grad(loss * scale, [z], create_graph=create_graph)
        grad = grad.float() / scale
        if scale <= 1 or bool(torch.isfinite(grad).all()):
            return loss.item(), grad
        scale = max(1.0, scale / SCALE_BACKOFF)
    return loss.item(), grad


def converged(losses: list[float], early_stop: float) -> bool:
    """Whether the last step changed the loss by less than `early_stop` of itself (0: never)."""
    return early_stop > 0 and len(losses) > 1 and abs(losses[-2] - losses[-1]) < early_stop * losses[-2]


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
    batch: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    early_stop: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """Adam on the latents for `steps` steps; returns (optimised latents, loss per step).

    loss = L(f(D(z)), y) + gamma * d(z, anchor) with d the mean squared distance (so gamma does
    not depend on the resolution): the anchor term is GradOP's pull towards the text-only sample
    z_tau; GradOP+ uses none. `batch` images are decoded and differentiated at a time (memory);
    the result is the same as for the whole batch at once, because each chunk's loss is its share
    of the whole batch's mean and Adam works per element. Only the latents are differentiated
    (torch.autograd.grad), so the decoder's weights collect no gradients and stay untouched.
    early_stop > 0 ends the loop once the loss changes by less than that fraction of itself over
    one step (converged); the remaining steps are skipped, so fewer losses come back.
    """
    if steps <= 0:
        raise ValueError(f"optimisation steps must be at least 1 (got {steps})")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive finite number (got {lr})")
    total = latents.shape[0]
    size = total if batch is None else max(1, min(batch, total))
    chunks = [chunk.detach().float().clone().requires_grad_(True) for chunk in latents.split(size)]
    anchors = [None] * len(chunks) if anchor is None else list(anchor.detach().float().split(size))
    optimizer = torch.optim.Adam(chunks, lr=lr)
    loss_scale = getattr(decode, "loss_scale", None)
    losses = []
    with getattr(decode, "prepared", contextlib.nullcontext)():
        for step in range(steps):
            step_loss = 0.0
            for z, z_anchor in zip(chunks, anchors):
                chunk_loss, z.grad = latent_gradient(z, decode, target, painting, batch_size=total, anchor=z_anchor,
                                                     gamma=gamma, anchor_numel=latents.numel(), loss_scale=loss_scale)
                step_loss += chunk_loss
            optimizer.step()
            losses.append(step_loss)
            if on_step is not None:
                on_step(step, losses[-1])
            if converged(losses, early_stop):
                break
    return torch.cat([z.detach() for z in chunks]).to(latents.dtype), losses
