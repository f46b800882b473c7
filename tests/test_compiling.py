"""gradop.compiling: a compiled guidance decoder is used only where its gradients are right.

Stand-in compilers (a real first compile takes minutes on this CPU): one that keeps the function
as it is, one whose backward is all zeros (as torch 2.13's Inductor did for the demo model's
decoder on the CPU), and one that fails."""

import warnings

import numpy as np
import pytest
import torch
from conftest import FAST

from gradop.compiling import CheckedCompile
from gradop.pipeline import GradopPipeline

PROMPT = "a photo of a fox beside a tree"


def faithful(fn, **_):
    def compiled(x):
        compiled.calls += 1
        return fn(x)
    compiled.calls = 0
    return compiled


def zero_backward(fn, **_):
    def compiled(x):
        compiled.calls += 1
        return fn(x.detach()) + 0 * x.sum()  # the forward's values, a zero gradient to x
    compiled.calls = 0
    return compiled


def failing(fn, **_):
    def compiled(x):
        compiled.calls += 1
        raise RuntimeError("the compiler gave up")
    compiled.calls = 0
    return compiled


def pixels(result):
    return np.stack([np.asarray(image) for image in result.images])


@pytest.mark.parametrize("compiler, trusted, warning", [(faithful, True, None), (zero_backward, False, "wrong gradients"),
                                                       (failing, False, "torch.compile failed")])
def test_a_compiled_decoder_runs_only_where_its_gradients_agree(tiny_pipe, strokes, monkeypatch, compiler, trusted,
                                                                warning):
    monkeypatch.setattr(torch, "compile", compiler)
    pipe = GradopPipeline(tiny_pipe.components, model_name="tiny-random", compile_decoder=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.gradop_plus(PROMPT, strokes, **FAST)
    warned = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert bool(warned) is not trusted
    if not trusted:
        assert warning in warned[0] and "'vae'" in warned[0] and "runs eager" in warned[0]
    # Either way the image is the eager decoder's: a wrong compile is caught before it guides.
    assert np.array_equal(pixels(result), pixels(tiny_pipe.gradop_plus(PROMPT, strokes, **FAST)))
    decode = pipe.guidance_decoders("vae").decode
    assert isinstance(decode, CheckedCompile) and list(decode.verdicts.values()) == [trusted]
    calls = decode.compiled.calls
    assert (calls > 1) is trusted  # after its one check, a wrong or failing compile is never called again


def test_each_latent_shape_is_checked_once():
    checks = []

    class Counted(CheckedCompile):
        def _agrees(self, latents):
            checks.append(tuple(latents.shape))
            return super()._agrees(latents)

    decode = Counted(lambda z: torch.sigmoid(z.repeat_interleave(2, -1).repeat_interleave(2, -2)), "test")
    decode.compiled = faithful(decode.eager)
    for shape in [(1, 4, 8, 8), (1, 4, 8, 8), (2, 4, 8, 8), (1, 4, 8, 8)]:
        z = torch.randn(shape, requires_grad=True)
        (gradient,) = torch.autograd.grad(decode(z).sum(), [z])
        assert gradient.abs().sum() > 0
    assert checks == [(1, 4, 8, 8), (2, 4, 8, 8)]
