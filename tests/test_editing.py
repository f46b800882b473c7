"""Edit mode: the edit region, blended latent diffusion, the paste-back, and fitting photos."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from gradop.editing import (blend_latents, dilate, feathered_alpha, fit_image, fit_size, latent_mask,
                            painted_area, prepare_edit)
from gradop.images import pil_to_tensor
from gradop.models import ddim_scheduler


def photo(size=(64, 64), seed=0) -> Image.Image:
    """A textured 'photo' (smooth gradient plus noise), so copied pixels are easy to tell apart."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, np.full((h, w), 90.0)], -1) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def blob(size=(64, 64), box=(20, 24, 40, 44), fill=(200, 40, 30, 255), mode="RGBA") -> Image.Image:
    image = Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else "white")
    ImageDraw.Draw(image).ellipse(box, fill=fill if mode == "RGBA" else fill[:3])
    return image


def test_painted_area_alpha_and_non_white_rule():
    rgba = blob()
    assert painted_area(rgba).sum() == (np.asarray(rgba)[..., 3] > 0).sum() > 0
    rgb = np.full((16, 16, 3), 255, np.uint8)
    rgb[:4] = (250, 248, 252)  # near-white (paper, JPEG noise) is canvas
    rgb[8:12, 8:12] = (30, 120, 40)
    painted = painted_area(Image.fromarray(rgb))
    assert painted.sum() == 16 and painted[8:12, 8:12].all()


def test_dilate_feather_and_latent_mask():
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[16, 10:20] = True  # a 1-pixel line
    grown = dilate(region, 2)
    assert grown[14:19, 10:20].all() and not grown[13].any() and not grown[19].any()
    alpha = feathered_alpha(grown, 3)
    assert torch.all(alpha[grown] == 1)
    # Linear ramp: 3/4, 2/4, 1/4 going up from the grown region's edge, then exactly 0.
    assert alpha[11:14, 15].tolist() == pytest.approx([0.25, 0.5, 0.75]) and alpha[10, 15] == 0
    assert alpha[:10].sum() == 0
    cells = latent_mask(region, 8)
    assert cells.shape == (1, 1, 4, 4)
    assert cells[0, 0, 2, 1:3].tolist() == [1, 1] and cells.sum() == 2  # a thin stroke still gets its cells


@pytest.mark.parametrize("size", [(640, 480), (300, 900), (40, 30), (64, 64)])
def test_fit_size_keeps_aspect_ratio_and_model_area(size):
    width, height = fit_size(size, 64)
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width / height - size[0] / size[1]) <= 0.5 * (size[0] / size[1]) * (8 / min(width, height))
    assert 0.6 * 64 * 64 <= width * height <= 1.4 * 64 * 64
    fitted = fit_image(photo(size), (width, height))
    assert fitted.size == (width, height)


def test_fit_image_does_not_distort():
    # A circle in a 4:3 photo stays a circle in the fitted image (crop, not stretch).
    image = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(image).ellipse((150, 100, 250, 200), fill="black")
    fitted = np.asarray(fit_image(image, fit_size(image.size, 64)).convert("L")) < 128
    ys, xs = np.nonzero(fitted)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 1


def test_prepare_edit_rgba_and_rgb_strokes_composite_over_the_photo():
    background = photo()
    for strokes in (blob(), blob(mode="RGB")):
        edit = prepare_edit(strokes, background, (64, 64))
        composite, base = np.asarray(edit.composite), np.asarray(background)
        painted = painted_area(strokes)
        assert np.array_equal(composite[~painted], base[~painted])  # RGB white is not painted white
        assert np.abs(composite[painted].astype(int) - (200, 40, 30)).max() <= 1
        on_white = np.asarray(edit.strokes_on_white)
        assert (on_white[~painted] == 255).all()
        assert edit.region.sum() > painted.sum() and edit.params()["mode"] == "edit"


def test_prepare_edit_fits_large_photo_and_strokes_together():
    big, strokes = photo((256, 192)), blob((256, 192), box=(80, 90, 160, 150))
    edit = prepare_edit(strokes, big, fit_size(big.size, 64))
    assert edit.background.size == edit.composite.size == (72, 56)
    ys, xs = np.nonzero(edit.painted.numpy())
    assert abs(xs.mean() - 120 * 72 / 256) < 2 and abs(ys.mean() - 120 * 56 / 192) < 2


def test_prepare_edit_errors_are_one_line():
    with pytest.raises(ValueError, match="nothing is painted"):
        prepare_edit(Image.new("RGBA", (64, 64)), photo(), (64, 64))
    with pytest.raises(ValueError, match="aspect ratio"):
        prepare_edit(blob((64, 32)), photo(), (64, 64))
    with pytest.raises(ValueError, match=">= 0"):
        prepare_edit(blob(), photo(), (64, 64), feather_px=-1)


def test_explicit_mask_replaces_the_strokes_rule():
    mask = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 63, 127), fill=255)  # left half, at another resolution
    edit = prepare_edit(None, photo(), (64, 64), mask=mask, dilate_px=0, feather_px=0)
    assert edit.region[:, :32].all() and not edit.region[:, 32:].any()
    assert edit.params()["edit_mask"] == "explicit"
    assert np.array_equal(np.asarray(edit.composite), np.asarray(photo()))


def test_paste_back_copies_every_pixel_outside_the_feather():
    background = photo()
    edit = prepare_edit(blob(), background, (64, 64))
    generated = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    (out,) = edit.paste_back([generated])
    out, base, alpha = np.asarray(out), np.asarray(background), edit.alpha.numpy()
    assert np.array_equal(out[alpha == 0], base[alpha == 0])
    assert (out[alpha == 1] == 0).all()
    band = (alpha > 0) & (alpha < 1)
    assert band.any() and (np.abs(out[band].astype(int) - np.rint((1 - alpha[band, None]) * base[band])) <= 1).all()


def test_guidance_loss_counts_only_painted_pixels():
    edit = prepare_edit(blob(), photo(), (64, 64))
    target = torch.rand(1, 3, 64, 64)
    paint, weighted_target = edit.guidance(lambda x: x, target)
    image = torch.rand(1, 3, 64, 64)
    m = edit.painted
    expected = ((image - target) ** 2)[..., m].mean()
    assert torch.nn.functional.mse_loss(paint(image), weighted_target).item() == pytest.approx(expected.item(), rel=1e-5)
    image2 = image.clone()
    image2[..., ~edit.painted] = 0.5  # changing unpainted pixels does not change the loss
    assert torch.nn.functional.mse_loss(paint(image2), weighted_target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_blend_latents_keeps_inside_and_noised_background_outside():
    scheduler = ddim_scheduler({})
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    latents, background, noise = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(3))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 3:6] = 1
    t = scheduler.timesteps[4].reshape(1)
    out = blend_latents(latents, background, mask, noise, scheduler, t)
    inside = mask.bool().expand_as(out)
    assert torch.equal(out[inside], latents[inside])
    assert torch.allclose(out[~inside], scheduler.add_noise(background, noise, t)[~inside])
    clean = blend_latents(latents, background, mask, noise, scheduler, None)
    assert torch.equal(clean[~inside], background[~inside])


# ----------------------------------------------------------------------------- edit mode in the pipeline

PROMPT = "a photo of a red hut"
EDIT = dict(steps=4, seed=3)


@pytest.mark.parametrize("method, knobs", [("text", {}), ("sdedit", {}), ("gradop+", {}), ("gradop", {}),
                                           ("gradop+", {"guidance_latent": "denoised", "lr": 0.1}),
                                           ("gradop+", {"guidance_latent": "denoised-fast", "lr": 0.1})])
def test_edit_keeps_every_pixel_outside_the_feather(tiny_pipe, tmp_path, method, knobs):
    from gradop.metadata import read_params

    background, strokes = photo(), blob()
    result = tiny_pipe.generate(method, PROMPT, strokes, background=background, num_images=2, iterations=1,
                                grad_steps=2, opt_steps=2, **EDIT, **knobs)
    edit = prepare_edit(strokes, background, (64, 64))
    outside, inside = edit.alpha.numpy() == 0, edit.alpha.numpy() == 1
    for image in result.images:
        out, base = np.asarray(image), np.asarray(background)
        assert np.array_equal(out[outside], base[outside])
        assert np.abs(out[inside].astype(int) - base[inside]).mean() > 10  # the painted area was synthesised
    (path, _) = result.save(tmp_path / "edit.png")
    params = read_params(path)
    assert params["mode"] == "edit" and params["edit_feather"] == 2 and params["edit_dilate"] == 1


def test_text_edit_is_diffusers_inpainting_for_a_4_channel_unet(tiny_pipe):
    """Our blending step reproduces StableDiffusionInpaintPipeline's latent blending exactly
    (same noise, same latent mask, the background's latents): inside the paste-back's opaque
    core the pixels are the same."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from gradop.editing import encode_image

    background, strokes = photo(seed=4), blob()
    ours = tiny_pipe.generate("text", PROMPT, strokes, background=background, negative_prompt="blurry", **EDIT)
    edit = prepare_edit(strokes, background, (64, 64))
    cells = latent_mask(edit.region, tiny_pipe.vae_scale_factor)
    mask_image = Image.fromarray((F_nearest(cells, 64) * 255).astype(np.uint8))
    latents = encode_image(tiny_pipe.vae, edit.background, "cpu", torch.float32)
    reference = StableDiffusionInpaintPipeline(
        **tiny_pipe.components | {"scheduler": DDIMScheduler.from_config(tiny_pipe.scheduler_config)},
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )(PROMPT, image=latents, mask_image=mask_image, masked_image_latents=latents, strength=1.0, height=64, width=64,
      negative_prompt="blurry", num_inference_steps=EDIT["steps"], generator=torch.Generator().manual_seed(EDIT["seed"]),
      ).images[0]
    core = edit.alpha.numpy() == 1
    assert np.abs(np.asarray(ours.images[0])[core].astype(int) - np.asarray(reference)[core]).max() <= 1


def F_nearest(cells: torch.Tensor, size: int) -> np.ndarray:
    return torch.nn.functional.interpolate(cells, size=(size, size), mode="nearest")[0, 0].numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_gradop_plus_edit_follows_the_strokes_inside_better_than_unguided(tiny_pipe, seed):
    from gradop.painting import make_painting_fn

    background, strokes = photo(), blob(box=(12, 12, 52, 52))
    guided = tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, steps=5, grad_steps=6,
                                seed=seed).images[0]
    unguided = tiny_pipe.generate("text", PROMPT, strokes, background=background, steps=5, seed=seed).images[0]
    edit = prepare_edit(strokes, background, (64, 64))
    paint = make_painting_fn("blur", 64, 64)
    target = pil_to_tensor(edit.composite)

    def painted_error(image):
        return ((paint(pil_to_tensor(image)) - target) ** 2)[..., edit.painted].mean().item()

    assert painted_error(guided) < painted_error(unguided)


@pytest.mark.parametrize("size, expected", [((256, 192), (72, 56)), ((30, 40), (56, 72)), ((64, 64), (64, 64))])
def test_a_photo_larger_or_smaller_than_the_model_keeps_its_aspect_ratio(tiny_pipe, size, expected):
    background = photo(size)
    strokes = blob(size, box=tuple(int(v * s) for v, s in zip((0.3, 0.3, 0.6, 0.6), size * 2)))
    result = tiny_pipe.generate("sdedit", PROMPT, strokes, background=background, **EDIT)
    assert result.images[0].size == expected and (result.params["width"], result.params["height"]) == expected
    assert abs(expected[0] / expected[1] - size[0] / size[1]) < 0.1
    # Outside the edit, the output is the photo fitted without distortion.
    edit = prepare_edit(strokes, background, expected)
    outside = edit.alpha.numpy() == 0
    assert np.array_equal(np.asarray(result.images[0])[outside], np.asarray(fit_image(background, expected))[outside])


def test_reimagine_redraws_everything_and_rgb_strokes_keep_the_photo_under_white(tiny_pipe):
    background, strokes = photo(), blob(mode="RGB")
    edited = tiny_pipe.generate("sdedit", PROMPT, strokes, background=background, **EDIT)
    whole = tiny_pipe.generate("sdedit", PROMPT, strokes, background=background, edit=False, **EDIT)
    other = tiny_pipe.generate("sdedit", PROMPT, strokes, background=photo(seed=9), edit=False, **EDIT)
    outside = prepare_edit(strokes, background, (64, 64)).alpha.numpy() == 0
    assert np.array_equal(np.asarray(edited.images[0])[outside], np.asarray(background)[outside])
    assert not np.array_equal(np.asarray(whole.images[0])[outside], np.asarray(background)[outside])
    assert whole.params["mode"] == "reimagine" and "edit_feather" not in whole.params
    # RGB strokes over a photo: the white canvas shows the photo (before, the photo was ignored).
    assert whole.params["strokes_sha256"] != other.params["strokes_sha256"]
    assert not np.array_equal(np.asarray(whole.images[0]), np.asarray(other.images[0]))


def test_region_words_in_edit_mode_find_the_strokes_not_the_photo(tiny_pipe):
    strokes = blob()
    result = tiny_pipe.generate("text", PROMPT, strokes, background=photo(), regions={"#c8281e": "hut"}, **EDIT)
    (region,) = result.params["regions"]
    assert region["word"] == "hut" and abs(region["area"] - painted_area(strokes).sum()) <= 0.1 * painted_area(strokes).sum()


def test_edit_mode_errors(tiny_pipe):
    with pytest.raises(ValueError, match="needs a background"):
        tiny_pipe.generate("gradop+", PROMPT, blob(), edit=True, **EDIT)
    with pytest.raises(ValueError, match="mask marks"):
        tiny_pipe.generate("gradop+", PROMPT, blob(), mask=Image.new("L", (64, 64), 255), **EDIT)
    with pytest.raises(ValueError, match="nothing is painted"):
        tiny_pipe.generate("text", PROMPT, None, background=photo(), **EDIT)


def test_explicit_mask_edits_the_photo_without_strokes(tiny_pipe):
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    result = tiny_pipe.generate("sdedit", PROMPT, None, background=photo(), mask=mask, **EDIT)
    out, base = np.asarray(result.images[0]), np.asarray(photo())
    assert np.array_equal(out[:8], base[:8]) and not np.array_equal(out[24:40, 24:40], base[24:40, 24:40])
    assert result.params["edit_mask"] == "explicit"


# ----------------------------------------------------------------------------- the CLI

def test_cli_background_edits_by_default_reimagine_and_mask(tiny_model_dir, tmp_path, capsys):
    from gradop.cli import main
    from gradop.metadata import read_params

    photo_path, strokes_path, mask_path = tmp_path / "photo.png", tmp_path / "strokes.png", tmp_path / "mask.png"
    photo((128, 128)).save(photo_path)
    blob((128, 128), box=(40, 48, 80, 88)).save(strokes_path)
    Image.new("L", (128, 128), 0).save(mask_path)
    common = ["--prompt", PROMPT, "--model", str(tiny_model_dir), "--steps", "2", "--grad-steps", "1", "--seed", "4",
              "--background", str(photo_path)]
    out = tmp_path / "edit.png"
    assert main(["generate", "--strokes", str(strokes_path), "--out", str(out)] + common) == 0
    edit = prepare_edit(blob((128, 128), box=(40, 48, 80, 88)), photo((128, 128)), (64, 64))
    outside = edit.alpha.numpy() == 0
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB"))[outside], np.asarray(edit.background)[outside])
    assert read_params(out)["mode"] == "edit"
    whole = tmp_path / "whole.png"
    assert main(["generate", "--strokes", str(strokes_path), "--out", str(whole), "--reimagine"] + common) == 0
    assert read_params(whole)["mode"] == "reimagine"
    capsys.readouterr()
    assert main(["generate", "--out", str(tmp_path / "m.png"), "--mask", str(mask_path)] + common) == 2  # all black
    assert "nothing is painted" in capsys.readouterr().err
    assert main(["generate", "--strokes", str(strokes_path), "--out", str(tmp_path / "n.png"), "--prompt", PROMPT,
                 "--mask", str(mask_path)]) == 2
    assert "need --background" in capsys.readouterr().err


def test_gradop_plus_edit_can_start_from_the_noised_painting(tiny_pipe):
    phases = []
    background, strokes = photo(), blob()
    result = tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, steps=10, iterations=2,
                                grad_steps=2, seed=1, edit_start="painting", callback=lambda p: phases.append(p.phase))
    # img2img from the window's first step (int(10 * 0.2) = 1): 9 sampling steps, 2 x 2 Adam steps.
    assert phases.count("sampling") == 9 and phases.count("optimising") == 4 and len(result.losses) == 4
    outside = prepare_edit(strokes, background, (64, 64)).alpha.numpy() == 0
    assert np.array_equal(np.asarray(result.images[0])[outside], np.asarray(background)[outside])
    assert result.params["edit_start"] == "painting"
    denoised = tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, steps=10, iterations=2,
                                  grad_steps=2, seed=1, edit_start="painting", guidance_latent="denoised", lr=0.1)
    assert len(denoised.losses) == 4  # img2img hands the callback the prompts' embeddings too
    assert np.array_equal(np.asarray(denoised.images[0])[outside], np.asarray(background)[outside])
    fast = tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, steps=10, iterations=2,
                              grad_steps=2, seed=1, edit_start="painting", guidance_latent="denoised-fast", lr=0.1)
    assert len(fast.losses) == 4 and fast.losses[-1] < fast.losses[0]  # img2img's scheduler records its x0 too
    assert np.array_equal(np.asarray(fast.images[0])[outside], np.asarray(background)[outside])
    with pytest.raises(ValueError, match="unknown edit start"):
        tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, edit_start="photo", **EDIT)
    with pytest.raises(ValueError, match="edit feather"):
        tiny_pipe.generate("gradop+", PROMPT, strokes, background=background, edit_feather=-2, **EDIT)
