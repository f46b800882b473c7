"""Region-to-word cross-attention control on a tiny random-weight Stable Diffusion."""

import math

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import Attention

from gradop.attention import (
    AttentionRecorder, RegionAttnProcessor, attention_grid, layer_coverage, layer_shape, region_bias, region_control,
    region_weights, sigma_at, token_share,
)
from gradop.region_words import RegionWord, TokenMask, resolve_spec
from gradop.tiny import tiny_components

PROMPT = "a photo of a lake beside a hut"
STEPS = 4


@pytest.fixture(scope="module")
def pipe():
    pipe = StableDiffusionPipeline(**tiny_components(0), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def plain(pipe):
    """The first plain (uncontrolled) call: every later plain call must equal it."""
    return generate(pipe)


def generate(pipe, prompt=PROMPT, height=64, width=64, **kwargs):
    return pipe(prompt, num_inference_steps=STEPS, height=height, width=width, output_type="np",
                generator=torch.Generator().manual_seed(7), **kwargs).images


def left_half(height=64, width=64):
    mask = np.zeros((height, width), bool)
    mask[:, : width // 2] = True
    return mask


def lake_masks(pipe, mask, prompt=PROMPT):
    _, token_masks = resolve_spec([RegionWord(mask, "lake")], prompt, pipe.tokenizer, size=mask.shape)
    return token_masks


def record(pipe, token_masks, strength, mask, *, do_cfg=True, **kwargs):
    """(recorder, image) of one call under region control with recording."""
    recorder = AttentionRecorder()
    with region_control(pipe.unet, token_masks, strength, pipe.scheduler.alphas_cumprod, do_cfg=do_cfg,
                        record=recorder):
        image = generate(pipe, height=mask.shape[0], width=mask.shape[1], **kwargs)
    return recorder, image


def share(recorder, token_masks, mask):
    return token_share(recorder.maps(), token_masks[0].token_indices, mask)


# Recordings shared by several tests (each pipeline call costs seconds on a loaded CPU).
@pytest.fixture(scope="module")
def recording_off(pipe):
    return record(pipe, lake_masks(pipe, left_half()), 0.0, left_half())


@pytest.fixture(scope="module")
def recording_on(pipe):
    return record(pipe, lake_masks(pipe, left_half()), 1.0, left_half())


# ----------------------------------------------------------------------------- pure pieces

@pytest.mark.parametrize("pixels, size, expected", [
    (4096, (512, 512), (64, 64)), (96, (64, 96), (8, 12)), (24, (64, 96), (4, 6)), (24, (96, 64), (6, 4)),
    (45, (40, 72), (5, 9)), (15, (40, 72), (3, 5)),  # odd latent 5x9 halves to 3x5 (not the exact aspect)
])
def test_layer_shape(pixels, size, expected):
    assert layer_shape(pixels, size) == expected


def test_region_weights_cover_tokens_at_layer_resolution():
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    mask[0, 4] = 1  # touches the coarse cell (0, 2) at 4x4: max-pooling counts it fully
    weights = region_weights([TokenMask(mask, [2, 3], "forest")], (4, 4), num_tokens=6)
    grid = weights.reshape(4, 4, 6)
    assert torch.equal(grid[:, :2, 2:4], torch.ones(4, 2, 2))
    assert torch.equal(grid[0, 2, 2:4], torch.ones(2)) and grid[1:, 2:].sum() == 0 and grid[0, 3].sum() == 0
    assert weights[:, [0, 1, 4, 5]].sum() == 0
    with pytest.raises(ValueError, match="token 9"):
        region_weights([TokenMask(mask, [9], "lake")], (4, 4), num_tokens=6)


def test_layer_coverage_max_pools_any_batch_shape_and_odd_layers():
    masks = torch.zeros(2, 3, 8, 8)
    masks[1, 2, 5, 6] = 1  # one image pixel of one class
    coarse = layer_coverage(masks, (2, 2))
    assert coarse.shape == (2, 3, 2, 2) and coarse.sum() == 1 and coarse[1, 2, 1, 1] == 1
    # a layer size that does not divide the mask (the UNet rounds odd sizes up): still only 0/1, never lost
    odd = layer_coverage(masks[1, 2], (3, 5))
    assert odd.shape == (3, 5) and set(odd.unique().tolist()) == {0.0, 1.0} and odd[2, 3:].sum() >= 1


def test_region_bias_is_scale_times_each_samples_peak_on_its_weights():
    scores = torch.randn(2, 3, 4, 5, requires_grad=True)  # (batch, heads, pixels, tokens)
    weights = torch.zeros(4, 5)
    weights[1:3, 2] = 1
    shared = region_bias(scores, 0.5, weights)
    peaks = scores.detach().amax(dim=(1, 2, 3)).clamp(min=0)
    assert shared.shape == (2, 1, 4, 5) and not shared.requires_grad  # a constant on the scores
    assert torch.allclose(shared[:, 0], 0.5 * peaks[:, None, None] * weights)
    per_sample = region_bias(scores, torch.tensor([0.0, 2.0]), torch.stack([weights, weights.flip(0)]))
    assert per_sample[0].abs().sum() == 0  # strength 0: untouched
    assert torch.allclose(per_sample[1, 0], 2.0 * peaks[1] * weights.flip(0))
    assert region_bias(-scores.detach().abs(), 1.0, weights).abs().sum() == 0  # never pushes a word away


def test_sigma_schedule(pipe):
    abar = pipe.scheduler.alphas_cumprod
    assert sigma_at(torch.tensor([999, 999]), abar) == pytest.approx(math.sqrt((1 - abar[999]) / abar[999]))
    assert sigma_at(999, abar) > sigma_at(500, abar) > sigma_at(1, abar) > 0


class OneLayer(torch.nn.Module):
    """A single cross-attention layer called like a UNet (sample, timestep, encoder_hidden_states)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.attn(sample, encoder_hidden_states)


def one_layer_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 16, 16, generator=g), torch.randn(2, 5, 8, generator=g)  # [uncond, cond], 4x4


def test_explicit_scores_match_default_attention_when_weight_is_zero():
    layer, (x, ctx) = OneLayer(), one_layer_inputs()
    baseline = layer(x, 10, ctx)
    mask = torch.ones(4, 4)
    # abar = 1 gives sigma = 0, so w_t = 0: the explicit-score path must equal SDPA.
    with region_control(layer, [TokenMask(mask, [1], "lake")], 1.0, torch.ones(1000)):
        assert isinstance(layer.attn.processor, RegionAttnProcessor)
        out = layer(x, 10, ctx)
    torch.testing.assert_close(out, baseline, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("do_cfg", [True, False])
def test_bias_applies_to_the_conditional_half_only(do_cfg):
    layer, (x, ctx) = OneLayer(), one_layer_inputs()
    baseline = layer(x, 900, ctx)
    mask = torch.zeros(4, 4)
    mask[:2] = 1
    abar = torch.linspace(0.999, 0.005, 1000)
    with region_control(layer, [TokenMask(mask, [1], "lake")], 1.0, abar, do_cfg=do_cfg):
        out = layer(x, 900, ctx)
    if do_cfg:
        torch.testing.assert_close(out[0], baseline[0], atol=1e-5, rtol=1e-5)  # unconditional: untouched
    else:
        assert not torch.allclose(out[0], baseline[0], atol=1e-4)
    assert not torch.allclose(out[1], baseline[1], atol=1e-4)


# ----------------------------------------------------------------------------- with the pipeline

def test_control_raises_the_words_attention_inside_its_region_only(pipe, recording_off, recording_on):
    mask = left_half()
    token_masks = lake_masks(pipe, mask)
    inside_off, outside_off = share(recording_off[0], token_masks, mask)
    inside_on, outside_on = share(recording_on[0], token_masks, mask)
    assert inside_on > 2 * inside_off
    assert outside_on <= outside_off * 1.01


def test_control_without_cfg_on_a_non_square_image(pipe):
    mask = np.zeros((64, 96), bool)
    mask[:32, 48:] = True  # top right quarter: aligned with both attention resolutions (8x12, 4x6)
    token_masks = lake_masks(pipe, mask)
    inside_off, outside_off = share(record(pipe, token_masks, 0.0, mask, do_cfg=False, guidance_scale=1.0)[0],
                                    token_masks, mask)
    inside_on, outside_on = share(record(pipe, token_masks, 1.0, mask, do_cfg=False, guidance_scale=1.0)[0],
                                  token_masks, mask)
    assert inside_on > 2 * inside_off
    assert outside_on <= outside_off * 1.01


def test_recording_without_masks_takes_layer_shapes_from_the_latent(pipe):
    # 64x192: latent 8x24, then 4x12; the factor pairs nearest a square would be 12x16 and 6x8.
    recorder = AttentionRecorder()
    with region_control(pipe.unet, [], 0.0, pipe.scheduler.alphas_cumprod, record=recorder):
        generate(pipe, height=64, width=192)
    assert recorder.maps().shape == (77, 8, 24)
    assert recorder.calls == STEPS * 7


def test_zero_strength_and_no_regions_are_pixel_identical(pipe, plain, recording_off, recording_on):
    token_masks = lake_masks(pipe, left_half())
    abar = pipe.scheduler.alphas_cumprod
    with region_control(pipe.unet, token_masks, 0.0, abar):
        assert np.array_equal(generate(pipe), plain)
    with region_control(pipe.unet, [], 1.0, abar):
        assert np.array_equal(generate(pipe), plain)
    # Recording only: the processors are installed, yet the output is still exact.
    recorder, image = recording_off
    assert np.array_equal(image, plain)
    assert recorder.calls == STEPS * 7  # 7 cross-attention layers in the tiny UNet, every step
    assert not np.array_equal(recording_on[1], plain)  # the comparison can fail: control changes pixels


def test_processors_and_hooks_are_restored(pipe, plain):
    before = dict(pipe.unet.attn_processors)
    hooks = len(pipe.unet._forward_pre_hooks)
    with region_control(pipe.unet, lake_masks(pipe, left_half()), 1.0, pipe.scheduler.alphas_cumprod):
        during = pipe.unet.attn_processors
        for name, processor in during.items():
            if ".attn2." in name:
                assert isinstance(processor, RegionAttnProcessor) and processor.original is before[name]
            else:
                assert processor is before[name]  # self-attention keeps its processor
        assert len(pipe.unet._forward_pre_hooks) == hooks + 1
        generate(pipe)
    after = pipe.unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert len(pipe.unet._forward_pre_hooks) == hooks
    assert np.array_equal(generate(pipe), plain)


def test_processors_restored_when_the_call_raises(pipe):
    before = dict(pipe.unet.attn_processors)
    hooks = len(pipe.unet._forward_pre_hooks)

    def fail(pipeline, step, timestep, callback_kwargs):
        raise KeyboardInterrupt("stopped by the user")

    with pytest.raises(KeyboardInterrupt):
        with region_control(pipe.unet, lake_masks(pipe, left_half()), 1.0, pipe.scheduler.alphas_cumprod,
                            record=AttentionRecorder()):
            generate(pipe, callback_on_step_end=fail)
    after = pipe.unet.attn_processors
    assert all(after[k] is before[k] for k in before)
    assert len(pipe.unet._forward_pre_hooks) == hooks


def test_attention_grid(pipe, recording_on):
    recorder = recording_on[0]
    maps = recorder.maps()
    assert maps.shape == (77, 8, 8)
    torch.testing.assert_close(maps.sum(0), torch.ones(8, 8))  # probabilities over the tokens
    grid = attention_grid(recorder, pipe.tokenizer, PROMPT, cell=32)
    assert grid.size == (8 * 32, 16 + 32)  # 8 prompt tokens, one row, labels above
    tiles = np.asarray(grid.convert("L"))[16:].reshape(32, 8, 32).transpose(1, 0, 2)
    lake = 4  # prompt token 5 ('lake') is the fifth tile
    assert tiles[lake][:, :16].mean() > tiles[lake][:, 16:].mean() + 100  # bright on its (left) region
    assert attention_grid(recorder, pipe.tokenizer, PROMPT, token_indices=[5], cell=16).size == (16, 32)
    with pytest.raises(ValueError, match="outside the recorded"):
        attention_grid(recorder, pipe.tokenizer, PROMPT, token_indices=[77])


def test_bad_strength_and_empty_recorder(pipe):
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        with region_control(pipe.unet, [], -0.5, pipe.scheduler.alphas_cumprod):
            pass
    with pytest.raises(ValueError, match="no attention was recorded"):
        AttentionRecorder().maps()
