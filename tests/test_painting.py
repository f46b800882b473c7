import pytest
import torch
from PIL import Image

from gradop.painting import (gaussian_blur, make_painting_fn, median_filter, palette_of, quantize_to_palette,
                             scaled_kernel)


def test_kernel_scales_from_the_release_size():
    assert scaled_kernel(35, 512) == 35
    assert scaled_kernel(35, 256) == 19  # 17.5 rounds to 18, made odd
    assert scaled_kernel(35, 64) == 5
    assert scaled_kernel(35, 8) == 3


def test_blur_keeps_flat_colour_and_spreads_an_impulse_symmetrically():
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(gaussian_blur(flat, 9, 2.0), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 33, 33)
    impulse[..., 16, 16] = 1.0
    blurred = gaussian_blur(impulse, 9, 2.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(blurred, blurred.flip(-1)) and torch.allclose(blurred, blurred.transpose(-1, -2))
    assert blurred[..., 16, 16] < 0.1 and blurred[..., 16, 16] == blurred.max()


def test_median_removes_salt_noise_but_keeps_edges():
    image = torch.zeros(1, 3, 32, 32)
    image[..., :, 16:] = 1.0
    noisy = image.clone()
    noisy[..., 5, 5] = 1.0
    noisy[..., 20, 25] = 0.0
    assert torch.equal(median_filter(noisy, 3), image)


def test_palette_quantisation_snaps_and_passes_gradients():
    strokes = Image.new("RGB", (16, 16), (255, 255, 255))
    strokes.paste((0, 0, 255), (0, 0, 8, 16))
    palette = palette_of(strokes)
    assert {tuple((c * 255).round().int().tolist()) for c in palette} == {(255, 255, 255), (0, 0, 255)}
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    snapped = quantize_to_palette(x, palette)
    colors = {tuple(v.tolist()) for v in snapped.detach().permute(0, 2, 3, 1).reshape(-1, 3)}
    assert colors <= {tuple(c.tolist()) for c in palette}
    snapped.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("name", ["blur", "median-palette"])
def test_painting_functions_are_differentiable_and_shape_preserving(name):
    strokes = Image.new("RGB", (64, 64), "white")
    strokes.paste((200, 30, 30), (10, 10, 40, 40))
    paint = make_painting_fn(name, 64, 64, strokes)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = paint(x)
    assert out.shape == x.shape
    out.mean().backward()
    assert x.grad.abs().sum() > 0


def test_unknown_painting_function_is_an_error():
    with pytest.raises(ValueError, match="unknown painting function"):
        make_painting_fn("crayon", 64, 64)
