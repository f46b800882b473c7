"""Guidance decoders: the interface, the fitted latent-to-RGB maps, reduced-resolution VAE
decoding, AutoencoderTiny (user-supplied and the demo model's shipped one), and their use in
GradOP+ (recorded in the PNG)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradop.decoders import (DEMO_TINY_DECODER, GUIDANCE_DECODERS, GuidanceDecoders, exact_guidance_latents,
                             fit_latent_to_rgb, half_size, latent_map_decoder, vae_decoder)
from gradop.metadata import png_bytes, read_params
from gradop.world import render_photo, sample_scene
from gradop.world.scene import HELDOUT_SEED


def small_tiny_autoencoder(factor_blocks: int):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    channels = (8,) * factor_blocks
    return AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels,
                           num_encoder_blocks=(1,) * factor_blocks, num_decoder_blocks=(1,) * factor_blocks)


@pytest.fixture(scope="module")
def demo_vae():
    from diffusers import AutoencoderKL

    folder = DEMO_TINY_DECODER.parent / "gradop-demo" / "vae"
    return AutoencoderKL.from_pretrained(folder).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def heldout_latents(demo_vae):
    """Scaled latents of 12 held-out world photos: clean and mixed with noise (as GradOP+ sees them)."""
    photos = np.stack([render_photo(sample_scene(HELDOUT_SEED + i)) for i in range(12)])
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float()
    x = x / 255 if x.max() > 1.5 else x
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        clean = demo_vae.encode(x * 2 - 1).latent_dist.mean * demo_vae.config.scaling_factor
    noisy = 0.6 * clean + 0.8 * torch.randn(clean.shape, generator=generator)
    return clean, noisy


def explained(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """Share of the reference's variance that the prediction explains (R^2)."""
    return 1 - F.mse_loss(prediction, reference).item() / reference.var().item()


@pytest.mark.parametrize("name", GUIDANCE_DECODERS)
def test_every_decoder_gives_images_in_range_with_gradients_at_its_size(tiny_pipe, name):
    decoders = GuidanceDecoders(tiny_pipe.vae, tiny_source=small_tiny_autoencoder(4))
    decoder = decoders(name)
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    images = decoder(latents)
    assert images.shape == (2, 3, *decoder.output_size(8, 8))
    # 8 latent cells are too few to halve (vae-half then decodes them all); see the next tests.
    assert images.shape[-1] == {"vae": 64, "vae-half": 64, "linear": 8, "conv": 8, "tiny": 64}[name]
    if name not in ("linear", "conv"):  # the fitted maps are not clamped (every pixel keeps a gradient)
        assert 0 <= images.min() and images.max() <= 1
    (grad,) = torch.autograd.grad(images.mean(), [latents])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert decoders(name) is decoder  # built once per model


def test_bad_names_and_a_missing_tiny_decoder_are_clear_errors(tiny_pipe):
    decoders = GuidanceDecoders(tiny_pipe.vae, model_name="tiny-random")
    with pytest.raises(ValueError, match="unknown guidance decoder 'taesd'; choose one of vae, vae-half"):
        decoders("taesd")
    with pytest.raises(ValueError, match="needs an AutoencoderTiny for this model.*or choose 'linear'"):
        decoders("tiny")
    with pytest.raises(ValueError, match="could not load the tiny decoder"):
        GuidanceDecoders(tiny_pipe.vae, tiny_source="/nonexistent/taesd")("tiny")


def test_fitted_maps_predict_the_vaes_colours_on_held_out_world_latents(demo_vae, heldout_latents):
    full = vae_decoder(demo_vae)
    # Measured: 1x1 explains 0.85 (clean) / 0.73 (noisy), 3x3 0.87 / 0.84.
    for kernel, needs in ((1, (0.8, 0.65)), (3, (0.8, 0.78))):
        fitted = latent_map_decoder(fit_latent_to_rgb(demo_vae, kernel_size=kernel), "fit")
        for latents, need in zip(heldout_latents, needs):
            with torch.no_grad():
                reference = F.avg_pool2d(full(latents), 4)  # the VAE's colours at latent resolution
                prediction = fitted(latents).clamp(0, 1)
                mean_colour = reference.mean((0, 2, 3), keepdim=True).expand_as(reference)
            assert explained(prediction, reference) > need, kernel
            assert explained(mean_colour, reference) < 0.05  # the bar means something


def test_half_resolution_vae_keeps_the_colours(demo_vae, heldout_latents):
    full, half = vae_decoder(demo_vae), vae_decoder(demo_vae, reduced=half_size, name="vae-half")
    clean, _ = heldout_latents
    with torch.no_grad():
        reference = F.avg_pool2d(full(clean), 8)
        prediction = F.avg_pool2d(half(clean), 4)
    assert explained(prediction, reference) > 0.8


def test_half_decoder_halves_only_latents_that_keep_eight_cells():
    assert half_size(16, 16) == (8, 8)  # the 64 px demo model (4x VAE)
    assert half_size(64, 96) == (32, 48)  # SD at 512x768
    assert half_size(74, 55) == (37, 27)  # SD's 592x440 for a 4:3 photo: odd sides round down
    assert half_size(8, 8) == (8, 8) and half_size(15, 40) == (15, 40)  # too coarse to halve


def test_half_decoder_reports_the_size_it_decodes_for_odd_latents(tiny_pipe):
    # The loss is computed at the decoded size, so output_size must match it exactly.
    decoder = GuidanceDecoders(tiny_pipe.vae)("vae-half")
    for latent_size in ((19, 17), (74, 55)):
        with torch.no_grad():
            images = decoder(torch.randn(1, 4, *latent_size))
        assert tuple(images.shape[-2:]) == decoder.output_size(*latent_size)


@pytest.mark.skipif(not (DEMO_TINY_DECODER / "config.json").is_file(), reason="distilled decoder not shipped")
def test_shipped_tiny_decoder_matches_the_demo_vae(demo_vae, heldout_latents):
    decoders = GuidanceDecoders(demo_vae, model_name="gradop-demo")
    tiny, full = decoders("tiny"), decoders("vae")
    # Measured on 48 held-out photos: explains 0.97 of the VAE's pixel variance on clean latents, 0.90 on
    # noisy ones; the decoder distilled from model v1's VAE gave 0.92 / 0.62 on this VAE (it is stale).
    for latents, need in zip(heldout_latents, (0.93, 0.8)):
        with torch.no_grad():
            assert explained(tiny(latents), full(latents)) > need
    size = sum(p.stat().st_size for p in DEMO_TINY_DECODER.iterdir())
    assert size < 2 * 2**20  # small enough to ship


@pytest.fixture(scope="module")
def demo_pipe():
    from gradop.pipeline import GradopPipeline

    return GradopPipeline.from_pretrained("gradop-demo")


@pytest.fixture(scope="module")
def guided_latents(demo_pipe):
    """What GradOP+ asks its exact decoder to decode (every Adam step's latent, at the release's
    Adam schedule: see exact_guidance_latents) on two held-out scenes, each with the strokes it is
    pulled to. At the default's single step the tiny decoder's cosine is 0.58 on those latents."""
    from gradop.world import caption, render_strokes, to_pil

    exact = demo_pipe.guidance_decoders("vae")
    scenes = {seed: sample_scene(seed) for seed in (HELDOUT_SEED + 21, HELDOUT_SEED + 22)}
    recorded = exact_guidance_latents(demo_pipe, [(caption(scene), to_pil(render_strokes(scene)), seed, 25)
                                                  for seed, scene in scenes.items()])
    assert len(recorded[0]) and demo_pipe.guidance_decoders("vae") is exact  # the exact decoder is back, unwrapped
    return recorded


@pytest.mark.skipif(not (DEMO_TINY_DECODER / "config.json").is_file(), reason="distilled decoder not shipped")
def test_shipped_tiny_decoder_pulls_the_latents_the_way_the_vae_does(demo_pipe, guided_latents):
    # GradOP+'s Adam moves each latent element by about its step in the direction of its gradient's
    # sign, so a stand-in decoder must give the painting loss's latent gradient the VAE's direction.
    from gradop.optimize import latent_gradient
    from gradop.painting import make_painting_fn

    latents, strokes = guided_latents

    def gradient(name):  # as the optimisation sees it: the strokes and the blur at the decoder's output size
        decoder = demo_pipe.guidance_decoders(name)
        size = decoder.output_size(*latents.shape[-2:])
        target = F.interpolate(strokes, size=size, mode="area")
        return latent_gradient(latents, decoder, target, make_painting_fn("blur", *size))[1]

    wanted, tiny, linear = gradient("vae"), gradient("tiny"), gradient("linear")
    cosine = F.cosine_similarity(tiny.flatten(1), wanted.flatten(1), dim=1).mean().item()
    baseline = F.cosine_similarity(linear.flatten(1), wanted.flatten(1), dim=1).mean().item()
    # Measured on these latents: 0.818 (the decoder distilled on colours alone, shipped until session 9:
    # 0.668); linear 0.540.
    assert cosine > 0.75 and cosine > baseline + 0.1


def test_gradop_plus_with_the_linear_map_follows_the_strokes_and_records_it(demo_pipe, strokes):
    from gradop.images import pil_to_tensor
    from gradop.painting import make_painting_fn

    prompt = "a red hut beside a lake under a blue sky"
    text = demo_pipe.text2img(prompt, steps=10, seed=3)
    guided = demo_pipe.gradop_plus(prompt, strokes, steps=10, seed=3, guidance_decoder="linear")
    assert guided.params["guidance_decoder"] == "linear"
    assert read_params(png_bytes(guided.images[0], guided.image_params(0)))["guidance_decoder"] == "linear"
    assert guided.losses[-1] < guided.losses[0]
    paint, target = make_painting_fn("blur", 64, 64), pil_to_tensor(strokes)

    def blurred_l2(image):
        return F.mse_loss(paint(pil_to_tensor(image)), paint(target)).item()

    exact = demo_pipe.gradop_plus(prompt, strokes, steps=10, seed=3, guidance_decoder="vae")
    # Blurred L2 to the strokes, measured on model v3c (seeds 3-6): text 0.19-0.25, full VAE
    # 0.055-0.086, linear map 0.084-0.107 (seed 3: 0.191, 0.086, 0.107). On model v3 the linear map
    # was within 2% of the VAE here (0.125 against 0.127); on the benchmark's 144 guided images of
    # v3c it is closer to the strokes than the VAE (0.038 against 0.046).
    assert blurred_l2(guided.images[0]) < 0.7 * blurred_l2(text.images[0])
    assert blurred_l2(guided.images[0]) < 1.4 * blurred_l2(exact.images[0])
