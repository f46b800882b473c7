"""Compare all without repeated work: calls sharing a SharedPasses compute the text-only steps
they have in common once, and give the same pixels as separate calls."""

import numpy as np
import pytest
import torch
from conftest import FAST

from gradop.sharing import SharedPasses

PROMPT = "a red hut beside a lake"
APP_ORDER = ("gradop+", "gradop", "sdedit", "text")  # the app's Compare all: GradOP+ runs first


def count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def pixels(result):
    return [np.asarray(image) for image in result.images]


@pytest.mark.parametrize("order, eta", [(APP_ORDER, 0.0), (("text", "sdedit", "gradop", "gradop+"), 0.5)])
def test_shared_calls_give_the_pixels_of_separate_calls_with_fewer_unet_steps(tiny_pipe, strokes, order, eta):
    knobs = dict(FAST, eta=eta, iterations=2, grad_steps=2, opt_steps=2, guidance_decoder="linear")
    calls, handle = count_unet_calls(tiny_pipe)
    try:
        alone = {m: tiny_pipe.generate(m, PROMPT, strokes, **knobs) for m in order}
        separate = len(calls)
        calls.clear()
        shared = SharedPasses()
        together = {m: tiny_pipe.generate(m, PROMPT, strokes, shared=shared, **knobs) for m in order}
    finally:
        handle.remove()
    for method in order:
        for a, b in zip(pixels(alone[method]), pixels(together[method])):
            np.testing.assert_array_equal(a, b, err_msg=method)
        assert alone[method].losses == together[method].losses
    steps, start = FAST["steps"], int(FAST["steps"] * (1 - 0.8))
    # 6 steps: text 6, GradOP 6 + 4, SDEdit 4, GradOP+ 6 -> GradOP's first pass and GradOP+'s
    # first start + 1 steps are text2img's.
    assert separate == 26
    assert len(calls) == separate - steps - (start + 1)


def test_compare_returns_every_method_with_one_seed_and_refuses_a_generator(tiny_pipe, strokes):
    seen = []
    results = tiny_pipe.compare(PROMPT, strokes, **FAST | dict(iterations=1, grad_steps=1, opt_steps=1),
                                callback=lambda method, progress: seen.append((method, progress.step, progress.total)))
    assert list(results) == ["text", "sdedit", "gradop", "gradop+"]
    assert {r.params["seed"] for r in results.values()} == {FAST["seed"]}
    for method in results:  # every method's progress reaches its total, skipped steps included
        last = [s for s in seen if s[0] == method][-1]
        assert last[1] == last[2], (method, last)
    with pytest.raises(ValueError, match="compare takes a seed, not a generator"):
        tiny_pipe.compare(PROMPT, strokes, generator=torch.Generator().manual_seed(0))
