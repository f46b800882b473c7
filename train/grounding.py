"""Training the demo UNet for region-to-word control: class words tied to their pixels.

Region-to-word control (gradop.attention) steers where a word is drawn by biasing the word's
cross-attention towards a region. That works only if the model draws a class where its word is
attended, which nothing in the plain denoising loss asks for: a tiny model can place the sun from
global context alone. The world gives every training image's class map, so two things can ask:

- the grounding loss (after TokenCompose, Wang et al., CVPR 2024): each cross-attention layer
  should put a class word's attention on that class's pixels,
      L = mean over (layer, sample, class token) of (1 - sum_p A[p] M[p] / sum_p A[p])^2,
  A the token's attention over the layer's pixels (mean over heads), M the class mask
  resized to the layer as inference resizes region masks (gradop.attention.layer_coverage);
- training under the control itself: for a share of samples, the same bias that inference adds
  (w' log(1 + sigma_t) max(QK^T) on a word's tokens inside its class's mask) is added during the
  denoising step, with w' drawn per sample, so the model learns that a biased word is drawn there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gradop.attention import cross_attention_layers, layer_coverage, region_bias


class CrossAttentionTraining:
    """What the processors of one UNet share during a training step: the class of each token, the
    class map, the per-sample bias scale, and the captured attention (for the grounding loss)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.maps: list[torch.Tensor] = []
        self.token_class = self.labels = self.bias_scale = None
        self.biased = False
        self._masks: dict = {}

    def begin(self, token_class: torch.Tensor, labels: torch.Tensor, bias_scale: torch.Tensor | None = None):
        """Before each forward: token_class (batch, tokens) class ids or -1, labels (batch, H, W),
        bias_scale (batch,) w' log(1 + sigma) per sample (0: no bias) or None."""
        self.token_class, self.labels, self.bias_scale = token_class, labels, bias_scale
        self.biased = bias_scale is not None and bool((bias_scale > 0).any())  # one device sync per step, not per layer
        self.maps.clear()
        self._masks.clear()

    def token_masks(self, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, tokens, side*side) each token's class coverage at a square layer, and (batch,
        tokens) whether the token has a class with pixels there."""
        if side not in self._masks:
            onehot = F.one_hot(self.labels.long(), self.num_classes).permute(0, 3, 1, 2).float()
            masks = layer_coverage(onehot, (side, side)).flatten(2)  # (batch, classes, pixels), as inference
            cls = self.token_class.clamp(min=0)
            per_token = torch.gather(masks, 1, cls[:, :, None].expand(-1, -1, masks.shape[-1]))
            valid = (self.token_class >= 0) & (torch.gather(masks.sum(-1), 1, cls) > 0)
            self._masks[side] = (per_token * valid[..., None], valid)
        return self._masks[side]


def _side(num_pixels: int) -> int:
    side = math.isqrt(num_pixels)
    if side * side != num_pixels:
        raise ValueError(f"a layer of {num_pixels} pixels is not square")
    return side


class TrainingAttnProcessor:
    """Cross-attention with explicit scores (the steps of diffusers' AttnProcessor, for the demo
    UNet's layers: no masks, no norms); adds the region bias where the state asks for it and keeps
    each call's head-averaged probabilities, with their gradients, in state.maps."""

    def __init__(self, state: CrossAttentionTraining):
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if encoder_hidden_states is None or attention_mask is not None or attn.group_norm is not None \
                or attn.spatial_norm is not None or attn.norm_cross or hidden_states.ndim != 3:
            raise ValueError("TrainingAttnProcessor handles only plain cross-attention on (batch, pixels, "
                             "channels) hidden states, as the demo UNet's transformer blocks call it")
        residual = hidden_states
        batch, pixels = hidden_states.shape[:2]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        scores = (query @ key.transpose(-1, -2) * attn.scale).view(batch, attn.heads, pixels, -1)
        scale = self.state.bias_scale
        if self.state.biased:
            weights = self.state.token_masks(_side(pixels))[0].transpose(1, 2)  # (batch, pixels, tokens)
            scores = scores + region_bias(scores, scale, weights)
        probs = scores.softmax(dim=-1)
        self.state.maps.append(probs.mean(1))
        out = attn.batch_to_head_dim(probs.flatten(0, 1) @ value)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def train_cross_attention(unet, num_classes: int) -> CrossAttentionTraining:
    """Install TrainingAttnProcessor on every cross-attention layer; returns the shared state
    (call state.begin before each forward)."""
    state = CrossAttentionTraining(num_classes)
    layers = cross_attention_layers(unet)
    if not layers:
        raise ValueError("the UNet has no cross-attention layers to train")
    for layer in layers:
        layer.set_processor(TrainingAttnProcessor(state))
    return state


def token_classes(tokenizer, word_classes: dict[str, str], classes: tuple[str, ...]) -> torch.Tensor:
    """(vocab,) long: the class id of each single-token class word, -1 for every other token."""
    table = torch.full((len(tokenizer),), -1, dtype=torch.long)
    for word, cls in word_classes.items():
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            table[ids[0]] = classes.index(cls)
    return table


def grounding_loss(state: CrossAttentionTraining) -> torch.Tensor:
    """The grounding loss over the maps of the last forward; tokens whose class has no pixel at a
    layer's resolution are skipped; 0 when nothing counts."""
    total, count = state.maps[0].new_zeros(()), 0
    for attention in state.maps:
        masks, valid = state.token_masks(_side(attention.shape[1]))
        by_token = attention.transpose(1, 2)  # (batch, tokens, pixels)
        inside = (by_token * masks).sum(-1) / by_token.sum(-1).clamp(min=1e-8)
        total = total + ((1 - inside) ** 2)[valid].sum()
        count += int(valid.sum())
    return total / max(count, 1)


def bias_scale(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, share: float, max_strength: float,
               generator: torch.Generator) -> torch.Tensor:
    """(batch,) w' log(1 + sigma_t): w' uniform in [0, max_strength] for a `share` of samples, else 0."""
    abar = alphas_cumprod[timesteps].double()
    sigma = ((1 - abar) / abar).sqrt()
    chosen = torch.rand(len(timesteps), generator=generator) < share
    strength = torch.rand(len(timesteps), generator=generator) * max_strength * chosen
    return (strength * torch.log1p(sigma)).float()
