"""Region-to-word control through the UNet's cross-attention (paint-with-words form).

In every cross-attention layer (diffusers `attn2`) the text-conditioned half of the CFG batch
gets  scores = QK^T/sqrt(d) + w_t * W,  W[p, j] = 1 where pixel p lies in region r's mask
(max-pooled to the layer's resolution) and token j is one of r's word tokens, and
w_t = w' * log(1 + sigma_t) * max(QK^T/sqrt(d)): strong at high noise, fading at the end.

`region_control` installs this for one block of code (one pipeline call) and restores the UNet
exactly afterwards; `AttentionRecorder` captures the per-token attention maps for debugging and
measurement, and `attention_grid` renders them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gradop.grid import labelled_grid
from gradop.region_words import TokenMask


# ----------------------------------------------------------------------------- geometry

def layer_shape(num_pixels: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a layer with `num_pixels` queries: the factor pair closest to the image's aspect.

    The UNet halves odd sizes by rounding up, so h/w is only approximately H/W."""
    height, width = image_size
    target = math.log(height / width)
    best = None
    for h in range(1, int(math.isqrt(num_pixels)) + 1):
        if num_pixels % h:
            continue
        for pair in ((h, num_pixels // h), (num_pixels // h, h)):
            error = abs(math.log(pair[0] / pair[1]) - target)
            if best is None or error < best[0]:
                best = (error, pair)
    return best[1]


def layer_coverage(masks: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Masks (..., H, W) resized to a layer's (h, w) by max-pooling: a layer pixel that a region
    touches at all counts fully.

    Max-pooling rather than area resizing because the coarse layers decide layout: a small region
    (a hut, the sun) keeps whole pixels there instead of fractions, and the word's bias reaches the
    region's edges. Held out on model v3c it raised every method's region share and cut text2img's
    realism cost at w' = 0.5 from 0.060 to 0.032 (README, "Quality benchmark"). Training under control
    (train.grounding) resizes class maps the same way."""
    lead = masks.shape[:-2]
    pooled = F.adaptive_max_pool2d(masks.float().reshape(-1, 1, *masks.shape[-2:]), shape)
    return pooled.reshape(*lead, *shape)


def region_weights(token_masks: list[TokenMask], shape: tuple[int, int], num_tokens: int) -> torch.Tensor:
    """W as an (h*w, num_tokens) float tensor: 1 where a word's region touches a layer pixel
    (layer_coverage), on the word's tokens."""
    h, w = shape
    weights = torch.zeros(h * w, num_tokens)
    for tm in token_masks:
        if max(tm.token_indices) >= num_tokens:
            raise ValueError(f"word {tm.word!r} maps to token {max(tm.token_indices)} but the text encoder gives "
                             f"{num_tokens} tokens")
        coverage = layer_coverage(tm.mask, (h, w)).reshape(-1, 1)
        columns = weights[:, tm.token_indices]
        weights[:, tm.token_indices] = torch.maximum(columns, coverage.expand_as(columns))  # overlaps: max
    return weights


def sigma_at(timestep, alphas_cumprod: torch.Tensor) -> float:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for a (possibly tensor, possibly batched) timestep."""
    if isinstance(timestep, torch.Tensor):
        timestep = timestep.flatten()[0].item()
    index = min(max(int(round(float(timestep))), 0), len(alphas_cumprod) - 1)
    abar = float(alphas_cumprod[index])
    return math.sqrt(max(1.0 - abar, 0.0) / abar)


# ----------------------------------------------------------------------------- recording

class AttentionRecorder:
    """Accumulates conditional cross-attention probabilities: per token, averaged over heads,
    images of the batch, layers (brought to the largest layer's resolution) and steps."""

    def __init__(self):
        self._sums: dict[tuple[int, int], torch.Tensor] = {}  # (h, w) -> (tokens, h, w) sum
        self.calls = 0

    def add(self, probs: torch.Tensor, shape: tuple[int, int]) -> None:
        """probs: (batch, heads, h*w, tokens) attention probabilities of one layer call."""
        h, w = shape
        mean = probs.detach().float().mean(dim=(0, 1)).transpose(0, 1).reshape(-1, h, w)
        self._sums[shape] = self._sums[shape] + mean if shape in self._sums else mean.clone()
        self.calls += 1

    def maps(self) -> torch.Tensor:
        """(num_tokens, H, W) mean attention; H x W is the largest layer resolution seen."""
        if not self._sums:
            raise ValueError("no attention was recorded: pass the recorder to region_control and run the pipeline "
                             "inside it")
        size = max(self._sums, key=lambda s: s[0] * s[1])
        # Nearest upsampling keeps coarse layers' cells sharp, so region shares measure exactly.
        total = sum(F.interpolate(s[None].cpu(), size=size, mode="nearest")[0] for s in self._sums.values())
        return total / self.calls

    def reset(self) -> None:
        self._sums.clear()
        self.calls = 0


def token_share(maps: torch.Tensor, token_indices: list[int], mask) -> tuple[float, float]:
    """Mean attention probability the tokens get inside and outside `mask` (any H x W bool/float
    mask, area-resized to the maps). A region-control measurement."""
    mask = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    mask = F.interpolate(mask[None, None], size=maps.shape[1:], mode="area")[0, 0] >= 0.5
    share = maps[token_indices].sum(0)
    inside = share[mask].mean().item() if mask.any() else float("nan")
    outside = share[~mask].mean().item() if (~mask).any() else float("nan")
    return inside, outside


# ----------------------------------------------------------------------------- the processor

@dataclass
class _ControlState:
    """What all the processors of one region_control block share."""

    token_masks: list[TokenMask]
    strength: float
    alphas_cumprod: torch.Tensor
    do_cfg: bool
    image_size: tuple[int, int]
    recorder: AttentionRecorder | None
    sigma: float | None = None
    latent_size: tuple[int, int] | None = None
    _weights: dict = field(default_factory=dict)

    @property
    def biased(self) -> bool:
        return self.strength > 0 and bool(self.token_masks)

    def capture_step(self, module, args, kwargs) -> None:
        # UNet2DConditionModel.forward(sample, timestep, encoder_hidden_states, ...)
        timestep = kwargs["timestep"] if "timestep" in kwargs else (args[1] if len(args) > 1 else None)
        if timestep is None:
            raise ValueError("region control needs the UNet to be called with a timestep")
        self.sigma = sigma_at(timestep, self.alphas_cumprod)
        sample = kwargs["sample"] if "sample" in kwargs else (args[0] if args else None)
        if isinstance(sample, torch.Tensor) and sample.ndim == 4:
            self.latent_size = tuple(sample.shape[-2:])

    def layer_shape(self, num_pixels: int) -> tuple[int, int]:
        """(h, w) of an attention layer: the latent halved (rounding up) until it has num_pixels,
        else the factor pair nearest the image's aspect."""
        if self.latent_size is not None:
            h, w = self.latent_size
            for _ in range(8):
                if h * w == num_pixels:
                    return h, w
                h, w = -(-h // 2), -(-w // 2)
        return layer_shape(num_pixels, self.latent_size or self.image_size)

    def weights(self, shape, num_tokens, device, dtype) -> torch.Tensor:
        key = (shape, num_tokens, device, dtype)
        if key not in self._weights:  # once per layer resolution and call
            self._weights[key] = region_weights(self.token_masks, shape, num_tokens).to(device, dtype)
        return self._weights[key]

    def conditional(self, batch: int) -> slice:
        # The pipeline batches [uncond, cond] under CFG; without CFG everything is conditional.
        return slice(batch // 2 if self.do_cfg else 0, batch)


class RegionAttnProcessor:
    """Cross-attention processor adding the region bias; calls without a bias go to the layer's
    original processor, so the output is then exactly the uncontrolled one."""

    def __init__(self, state: _ControlState, original):
        self.state = state
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        cross = encoder_hidden_states is not None
        if not cross or not self.state.biased:
            out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
            if cross and self.state.recorder is not None:
                with torch.no_grad():
                    self._attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb, bias=False)
            return out
        return self._attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb, bias=True)

    def _attend(self, attn, hidden_states, context, attention_mask, temb, bias: bool):
        # The steps of diffusers' AttnProcessor2_0, with the scores computed explicitly.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, num_tokens = context.shape[:2]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, num_tokens, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        num_pixels = query.shape[2]
        shape = (height, width) if input_ndim == 4 else self.state.layer_shape(num_pixels)
        # Same scale as scaled_dot_product_attention's default (what the plain path uses).
        scores = (query.float() @ key.float().transpose(-1, -2)) * head_dim ** -0.5
        if attention_mask is not None:
            scores = scores + attention_mask.float()
        cond = self.state.conditional(batch)
        if bias:
            scores[cond] = scores[cond] + self._bias(scores[cond], shape, num_tokens, query.device)
        probs = scores.softmax(dim=-1)
        if self.state.recorder is not None:
            self.state.recorder.add(probs[cond], shape)
        if not bias:
            return None
        hidden_states = (probs.to(value.dtype) @ value).transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.to(query.dtype)))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _bias(self, cond_scores, shape, num_tokens, device) -> torch.Tensor:
        """w_t * W for the conditional samples, shape (batch_cond, 1, pixels, tokens)."""
        if self.state.sigma is None:
            raise ValueError("region control saw no timestep: call the UNet inside region_control's block")
        scale = self.state.strength * math.log1p(self.state.sigma)
        return region_bias(cond_scores, scale, self.state.weights(shape, num_tokens, device, torch.float32))


def region_bias(scores: torch.Tensor, scale, weights: torch.Tensor) -> torch.Tensor:
    """scale * max(QK^T) * W, to add to attention scores (batch, heads, pixels, tokens): scale is
    w' log(1 + sigma_t), one number or one per sample; weights W is (pixels, tokens) or per sample
    (batch, pixels, tokens). Inference and training under control (train.grounding) both use it.

    max(QK^T) is taken per sample and never negative, so the bias only pulls attention towards the
    word; it is detached, so the bias acts as a constant on the scores."""
    peak = scores.detach().amax(dim=(1, 2, 3)).clamp(min=0)
    strength = torch.as_tensor(scale, dtype=peak.dtype, device=peak.device) * peak  # (batch,)
    if weights.ndim == 2:
        weights = weights[None]
    return strength[:, None, None, None] * weights[:, None]


# ----------------------------------------------------------------------------- installing

def cross_attention_layers(unet) -> list:
    """The UNet's cross-attention layers (diffusers `attn2`), whose processors region control swaps."""
    return [m for m in unet.modules() if hasattr(m, "set_processor") and getattr(m, "is_cross_attention", False)]


@contextmanager
def region_control(unet, token_masks: list[TokenMask], strength: float, alphas_cumprod, *, do_cfg: bool = True,
                   record: AttentionRecorder | None = None, image_size: tuple[int, int] | None = None):
    """Region-to-word control on `unet` for the duration of the block.

    strength is w' (0 = off; ~0.1-1 usual). do_cfg: the UNet batch is [uncond, cond] (guidance > 1).
    record: an AttentionRecorder to fill (works with or without control). Layer resolutions come
    from the latent's size; image_size (height, width) is only a fallback for UNets called with
    something else (default: the masks' size, else square).
    On exit, even by an exception, the previous processors are back and the hook is gone."""
    strength = float(strength)
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"region strength must be a finite number >= 0 (got {strength})")
    if token_masks and len({tuple(tm.mask.shape) for tm in token_masks}) > 1:
        raise ValueError("all region masks must have the image's size; resolve the spec with resolve_spec")
    if not (strength > 0 and token_masks) and record is None:
        yield  # nothing to change: the UNet runs exactly as without control
        return
    size = tuple(token_masks[0].mask.shape) if token_masks else (image_size or (1, 1))
    state = _ControlState(list(token_masks), strength, torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu(),
                          do_cfg, size, record)
    layers = cross_attention_layers(unet)
    if not layers:
        raise ValueError("the UNet has no cross-attention layers; region control needs a text-conditioned UNet")
    previous = [(layer, layer.processor) for layer in layers]
    hook = unet.register_forward_pre_hook(state.capture_step, with_kwargs=True)
    try:
        for layer, original in previous:
            layer.set_processor(RegionAttnProcessor(state, original))
        yield
    finally:
        hook.remove()
        for layer, original in previous:
            layer.set_processor(original)


# ----------------------------------------------------------------------------- debug output

def attention_grid(recorder: AttentionRecorder, tokenizer, prompt: str, token_indices: list[int] | None = None,
                   *, cell: int = 96, columns: int = 8) -> Image.Image:
    """The recorded per-token maps as a labelled grid (each map scaled to its own maximum; the
    label gives the token, its position and its mean share)."""
    maps = recorder.maps()
    ids = tokenizer(prompt)["input_ids"][: maps.shape[0]]
    if token_indices is None:
        token_indices = list(range(1, max(len(ids) - 1, 1)))  # the prompt's tokens, without BOS/EOS
    bad = [i for i in token_indices if not 0 <= i < maps.shape[0]]
    if bad:
        raise ValueError(f"token indices {bad} are outside the recorded 0..{maps.shape[0] - 1}")
    names = tokenizer.convert_ids_to_tokens(ids)
    tiles, labels = [], []
    for index in token_indices:
        heat = maps[index]
        scaled = (heat / heat.max().clamp(min=1e-12) * 255).round().byte().numpy()
        tiles.append(Image.fromarray(scaled, "L").resize((cell, cell), Image.Resampling.BILINEAR))
        name = names[index].replace("</w>", "") if index < len(names) else "?"
        labels.append(f"{index}:{name} {heat.mean().item():.2f}")
    return labelled_grid(tiles, labels, columns=max(1, min(columns, len(token_indices))), cell=cell)
