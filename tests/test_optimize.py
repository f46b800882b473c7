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
