import pytest
import torch
from conftest import draw_strokes

from gradop.images import pil_to_tensor

from gradop.optimize import optimize_latents
from gradop.painting import make_painting_fn
from gradop.tiny import tiny_components
from gradop.pipeline import GradopPipeline


@pytest.fixture(scope="module")
def decode():
    return GradopPipeline(tiny_components(seed=1)).decode


def test_optimisation_lowers_the_painting_loss(decode):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    target = pil_to_tensor(draw_strokes())
    optimized, losses = optimize_latents(latents, decode, target, make_painting_fn("blur", 64, 64), steps=15, lr=0.1)
    assert len(losses) == 15
    assert losses[-1] < 0.95 * losses[0]  # a random decoder is a weak lever; a trained one moves far more
    decreasing = sum(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert decreasing >= 0.8 * (len(losses) - 1)
    assert optimized.shape == latents.shape and not torch.equal(optimized, latents)


def test_anchor_term_keeps_latents_near_the_anchor(decode):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    target = torch.ones(1, 3, 64, 64)
    paint = make_painting_fn("blur", 64, 64)
    free, _ = optimize_latents(latents, decode, target, paint, steps=10, lr=0.1)
    held, _ = optimize_latents(latents, decode, target, paint, steps=10, lr=0.1, anchor=latents, gamma=50.0)
    assert (held - latents).norm() < 0.5 * (free - latents).norm()


@pytest.mark.parametrize("kwargs", [dict(steps=0, lr=0.1), dict(steps=2, lr=float("nan")), dict(steps=2, lr=-1.0)])
def test_bad_settings_are_refused(decode, kwargs):
    with pytest.raises(ValueError):
        optimize_latents(torch.zeros(1, 4, 8, 8), decode, torch.zeros(1, 3, 64, 64),
                         make_painting_fn("blur", 64, 64), **kwargs)


def test_early_stop_ends_the_optimisation_once_the_loss_has_converged():
    # A decoder whose loss converges fast: the latent's first three channels are the colours.
    def decode(z):
        return torch.sigmoid(z[:, :3])

    target = torch.full((1, 3, 8, 8), 0.3)
    paint = make_painting_fn("blur", 8, 8)
    latents = torch.zeros(1, 4, 8, 8)
    _, every = optimize_latents(latents, decode, target, paint, steps=200, lr=0.1)
    _, stopped = optimize_latents(latents, decode, target, paint, steps=200, lr=0.1, early_stop=0.01)
    assert len(every) == 200
    assert 2 <= len(stopped) < 200
    assert stopped == every[: len(stopped)]  # the same path, cut short
    assert abs(stopped[-1] - stopped[-2]) < 0.01 * stopped[-2]  # ...where it had converged


def test_chunked_optimisation_equals_the_whole_batch(decode):
    # Adam works per element and each chunk's loss is its share of the batch mean: same result.
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    anchor = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    target, paint = pil_to_tensor(draw_strokes()), make_painting_fn("blur", 64, 64)
    kwargs = dict(steps=4, lr=0.1, anchor=anchor, gamma=0.5)
    whole, whole_losses = optimize_latents(latents, decode, target, paint, **kwargs)
    for batch in (1, 2):
        chunked, chunked_losses = optimize_latents(latents, decode, target, paint, batch=batch, **kwargs)
        assert torch.allclose(chunked, whole, atol=1e-5, rtol=0)
        assert chunked_losses == pytest.approx(whole_losses, rel=1e-5)
    assert not torch.allclose(whole, latents, atol=1e-3)


def test_loss_scaling_gives_the_same_gradient_in_fp32(decode):
    from gradop.optimize import latent_gradient

    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    target, paint = pil_to_tensor(draw_strokes()), make_painting_fn("blur", 64, 64)
    loss, plain = latent_gradient(latents, decode, target, paint)
    scaled_loss, scaled = latent_gradient(latents, decode, target, paint, loss_scale="dynamic")
    assert scaled_loss == loss and torch.allclose(scaled, plain, rtol=1e-3, atol=1e-9)


def test_overflowing_loss_scale_backs_off():
    from gradop.optimize import latent_gradient

    calls = []

    def overflowing_decode(z):
        # A decoder whose backward overflows fp16 unless the incoming gradient is small.
        calls.append(1)
        return torch.sigmoid(torch.nn.functional.interpolate(z[:, :3], scale_factor=8)).half().float()

    target = torch.full((1, 3, 64, 64), 0.9)
    _, grad = latent_gradient(torch.zeros(1, 4, 8, 8), overflowing_decode, target, lambda x: x * 1e4,
                              loss_scale="dynamic")
    assert torch.isfinite(grad).all() and len(calls) > 1
