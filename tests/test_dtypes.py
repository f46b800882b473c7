"""The half-precision and v-prediction paths on the CPU, end to end on tiny models."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from test_pipeline import PROMPT, blurred_l2, pixels

from gradop.pipeline import GradopPipeline
from gradop.tiny import tiny_components


def tiny_in(dtype, **scheduler_changes):
    components = tiny_components(seed=0)
    components["scheduler"] = DDIMScheduler.from_config(components["scheduler"].config, **scheduler_changes)
    for name in ("vae", "unet", "text_encoder"):
        components[name].to(dtype)
    return GradopPipeline(components, model_name=f"tiny-{dtype}", dtype=dtype)


@pytest.fixture(scope="module")
def bf16_pipe():
    return tiny_in(torch.bfloat16)


def test_gradop_plus_in_bf16_follows_the_strokes_as_well_as_in_fp32(tiny_pipe, bf16_pipe, strokes):
    for seed in (0, 1):
        fp32 = tiny_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=seed)
        bf16 = bf16_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=seed)
        text_only = bf16_pipe.text2img(PROMPT, steps=6, seed=seed)
        guided, baseline = blurred_l2(bf16.images[0], strokes), blurred_l2(text_only.images[0], strokes)
        assert guided < baseline
        assert guided <= 1.1 * blurred_l2(fp32.images[0], strokes), seed
        assert bf16.losses[-1] < bf16.losses[0]
    assert next(bf16_pipe.vae.decoder.parameters()).dtype == torch.bfloat16  # restored after the fp32 decode


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_method_runs_in_half_precision(dtype, strokes):
    pipe = tiny_in(dtype)
    for method in ("text", "sdedit", "gradop", "gradop+"):
        result = pipe.generate(method, PROMPT, strokes, steps=3, grad_steps=2, opt_steps=2, seed=0)
        image = pixels(result)
        assert image.std() > 0 and result.params["method"] == method, (dtype, method)
        assert all(np.isfinite(loss) for loss in result.losses), (dtype, method)


def test_v_prediction_model_end_to_end(tiny_pipe, strokes):
    v_pipe = tiny_in(torch.float32, prediction_type="v_prediction")
    assert v_pipe.scheduler_config["prediction_type"] == "v_prediction"
    guided = v_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=0)
    text_only = v_pipe.text2img(PROMPT, steps=6, seed=0)
    # Same weights and seed as the epsilon model: only the prediction type differs, and it is used.
    assert not np.array_equal(pixels(guided), pixels(tiny_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=0)))
    assert blurred_l2(guided.images[0], strokes) < blurred_l2(text_only.images[0], strokes)
    for method in ("sdedit", "gradop"):
        assert len(v_pipe.generate(method, PROMPT, strokes, steps=3, opt_steps=2, seed=0).images) == 1


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_the_png_records_the_guidance_precision_that_ran(tiny_pipe, strokes, monkeypatch, fast_bf16):
    from gradop import precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)  # "auto" picks bf16 on such CPUs
    auto = tiny_pipe.gradop_plus(PROMPT, strokes, steps=4, seed=0)
    assert auto.params["guidance_precision"] == ("bf16" if fast_bf16 else "native")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: not fast_bf16)  # another machine
    again = tiny_pipe.gradop_plus(PROMPT, strokes, steps=4, seed=0, guidance_precision=auto.params["guidance_precision"])
    assert np.array_equal(pixels(again), pixels(auto))  # what the PNG says reproduces the image there
    assert not np.array_equal(pixels(tiny_pipe.gradop_plus(PROMPT, strokes, steps=4, seed=0)), pixels(auto))
