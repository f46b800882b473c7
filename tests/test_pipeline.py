"""The four methods on the tiny model: equivalence with diffusers, GradOP+ behaviour, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST
from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from gradop.images import pil_to_tensor
from gradop.painting import make_painting_fn
from gradop.pipeline import METHODS, GenerationCancelled

PROMPT = "a photo of a fox beside a tree"


def pixels(result):
    return np.stack([np.asarray(image) for image in result.images])


def blurred_l2(image, strokes):
    paint = make_painting_fn("blur", image.height, image.width)
    return F.mse_loss(paint(pil_to_tensor(image)), paint(pil_to_tensor(strokes))).item()


def diffusers_pipe(cls, tiny_pipe):
    scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler_config)
    pipe = cls(**tiny_pipe.components | {"scheduler": scheduler}, safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sdedit_equals_diffusers_img2img_pixel_for_pixel(tiny_pipe, strokes):
    ours = tiny_pipe.sdedit(PROMPT, strokes, strength=0.7, negative_prompt="blurry", **FAST)
    reference = diffusers_pipe(StableDiffusionImg2ImgPipeline, tiny_pipe)(
        PROMPT, image=strokes, strength=0.7, negative_prompt="blurry", num_inference_steps=FAST["steps"],
        generator=torch.Generator().manual_seed(FAST["seed"]),
    ).images
    assert np.array_equal(pixels(ours), np.stack([np.asarray(i) for i in reference]))


@pytest.mark.parametrize("eta", [0.0, 1.0])  # 1: DDPM-like steps, drawing noise from the seeded generator
def test_text2img_equals_diffusers_text_to_image(tiny_pipe, eta):
    ours = tiny_pipe.text2img(PROMPT, height=64, width=64, eta=eta, **FAST)
    reference = diffusers_pipe(StableDiffusionPipeline, tiny_pipe)(
        PROMPT, height=64, width=64, num_inference_steps=FAST["steps"], eta=eta,
        generator=torch.Generator().manual_seed(FAST["seed"]),
    ).images
    assert np.array_equal(pixels(ours), np.asarray(reference[0])[None])
    if eta:
        assert not np.array_equal(pixels(ours), pixels(tiny_pipe.text2img(PROMPT, height=64, width=64, **FAST)))


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_pixels_other_seed_other_pixels(tiny_pipe, strokes, method):
    first = tiny_pipe.generate(method, PROMPT, strokes, steps=4, seed=11)
    again = tiny_pipe.generate(method, PROMPT, strokes, steps=4, seed=11)
    other = tiny_pipe.generate(method, PROMPT, strokes, steps=4, seed=12)
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))
    assert first.params["seed"] == 11 and first.params["method"] == method


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradop_plus_follows_strokes_better_than_text2img(tiny_pipe, strokes, seed):
    guided = tiny_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=seed)
    text_only = tiny_pipe.text2img(PROMPT, steps=6, seed=seed)
    assert blurred_l2(guided.images[0], strokes) < blurred_l2(text_only.images[0], strokes)


def test_gradop_plus_optimises_in_the_release_window(tiny_pipe, strokes):
    phases = []
    result = tiny_pipe.gradop_plus(PROMPT, strokes, steps=10, strength=0.8, iterations=3, grad_steps=2, seed=0,
                                   callback=lambda p: phases.append(p.phase))
    # i_start = int(10 * (1 - 0.8)) = int(1.999...) = 1: optimisation right after sampling steps 1, 2, 3.
    sampled = [i for i, phase in enumerate(phases) if phase == "sampling"]
    optimising = [i for i, phase in enumerate(phases) if phase == "optimising"]
    assert len(sampled) == 10 and len(optimising) == 6 and len(result.losses) == 6
    assert optimising == [2, 3, 5, 6, 8, 9]  # two Adam steps after each of sampling events 1, 2, 3
    assert result.params["iterations"] == 3 and result.params["grad_steps"] == 2 and result.params["strength"] == 0.8


def test_gradop_plus_with_an_empty_window_is_an_error_not_text2img(tiny_pipe, strokes):
    # strength 0.1 of 10 steps puts the window at the last step, where the release never optimises.
    with pytest.raises(ValueError, match="would never optimise"):
        tiny_pipe.gradop_plus(PROMPT, strokes, steps=10, strength=0.1, seed=5)


def test_strength_edge_values(tiny_pipe, strokes):
    for method in ("sdedit", "gradop", "gradop+"):
        for strength in (0.0, 0.05):  # int(4 * 0.05) = 0 denoising steps; gradop+ window starts at step 3 of 4
            with pytest.raises(ValueError, match="strength"):
                tiny_pipe.generate(method, PROMPT, strokes, steps=4, strength=strength, seed=0)
    full = tiny_pipe.sdedit(PROMPT, strokes, steps=3, strength=1.0, seed=0)  # all steps, from pure noise level
    assert len(full.images) == 1
    seen = []
    plus = tiny_pipe.gradop_plus(PROMPT, strokes, steps=4, strength=1.0, iterations=2, grad_steps=1, seed=0,
                                 callback=lambda p: seen.append(p.phase))
    assert seen[:3] == ["sampling", "optimising", "sampling"] and len(plus.losses) == 2  # window [0, 2)
    tiny = tiny_pipe.gradop(PROMPT, strokes, steps=4, strength=0.25, opt_steps=1, seed=0)  # exactly one step
    assert len(tiny.losses) == 1


def test_numpy_knobs_and_caller_generators(tiny_pipe, strokes):
    ours = tiny_pipe.gradop_plus(PROMPT, strokes, steps=np.int64(3), grad_steps=np.int64(1), lr=np.float32(0.25),
                                 seed=np.int64(9))
    assert ours.params["steps"] == 3 and type(ours.params["steps"]) is int and ours.params["seed"] == 9
    # A caller's fresh generator is recorded by its seed, so the PNG's parameters reproduce the image.
    theirs = tiny_pipe.gradop_plus(PROMPT, strokes, steps=3, grad_steps=1, lr=0.25,
                                   generator=torch.Generator().manual_seed(9))
    assert theirs.params["seed"] == 9 and np.array_equal(pixels(ours), pixels(theirs))
    used = torch.Generator().manual_seed(9)
    torch.randn(1, generator=used)
    with pytest.warns(UserWarning, match="already used"):
        assert tiny_pipe.text2img(PROMPT, steps=2, generator=used).params["seed"] is None
    with pytest.raises(ValueError, match="seed must be in"):
        tiny_pipe.text2img(PROMPT, steps=2, seed=2**64)
    with pytest.raises(TypeError, match="unknown option 'grad_step'"):
        tiny_pipe.gradop_plus(PROMPT, strokes, grad_step=2)


def test_gradop_two_pass_lowers_the_loss_and_follows_strokes(tiny_pipe, strokes):
    result = tiny_pipe.gradop(PROMPT, strokes, steps=6, opt_steps=20, seed=0)
    text_only = tiny_pipe.text2img(PROMPT, steps=6, seed=0)
    assert len(result.losses) == 20 and result.losses[-1] < result.losses[0]
    assert blurred_l2(result.images[0], strokes) < blurred_l2(text_only.images[0], strokes)


def test_several_images_per_call(tiny_pipe, strokes):
    for method in METHODS:
        result = tiny_pipe.generate(method, PROMPT, strokes, steps=3, seed=0, num_images=2)
        assert len(result.images) == 2, method
        assert not np.array_equal(*pixels(result)), method


def test_progress_callback_counts_to_total_and_cancel_stops(tiny_pipe, strokes):
    seen = []
    tiny_pipe.gradop_plus(PROMPT, strokes, steps=5, iterations=2, grad_steps=3, seed=0, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].step == seen[-1].total == 5 + 2 * 3
    assert seen[0].latents.shape == (1, 4, 8, 8)

    def cancel_at_three(progress):
        if progress.step == 3:
            raise GenerationCancelled()

    with pytest.raises(GenerationCancelled):
        tiny_pipe.gradop_plus(PROMPT, strokes, steps=5, seed=0, callback=cancel_at_three)
    # The shared pipeline still works after a cancelled call, and gives the same result.
    first = tiny_pipe.text2img(PROMPT, steps=3, seed=4)
    assert np.array_equal(pixels(first), pixels(tiny_pipe.text2img(PROMPT, steps=3, seed=4)))


def test_calls_leave_shared_components_untouched(tiny_pipe, strokes):
    unet, vae = tiny_pipe.unet, tiny_pipe.vae
    weights = {k: v.clone() for k, v in vae.state_dict().items()}
    processors = dict(unet.attn_processors)
    config = dict(tiny_pipe.scheduler_config)
    tiny_pipe.gradop_plus(PROMPT, strokes, steps=4, grad_steps=2, seed=0)
    tiny_pipe.gradop(PROMPT, strokes, steps=4, opt_steps=2, seed=0)
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in weights.items())
    assert all(p.grad is None for p in vae.parameters())
    assert dict(unet.attn_processors) == processors and dict(tiny_pipe.scheduler_config) == config


def test_rgba_strokes_composite_on_white_and_size_follows_strokes(tiny_pipe):
    from PIL import Image

    rgba = Image.new("RGBA", (48, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (5, 5, 20, 20))
    result = tiny_pipe.sdedit(PROMPT, rgba, steps=2, seed=0)
    assert result.images[0].size == (48, 40) and result.params["height"] == 40


def test_odd_sized_strokes_keep_their_aspect_ratio(tiny_pipe):
    from PIL import Image

    from PIL import ImageDraw

    wide = Image.new("RGB", (150, 75), "white")  # 2:1, not a multiple of 8
    ImageDraw.Draw(wide).ellipse((20, 10, 90, 60), fill=(40, 90, 220))  # something to follow
    # The model's native pixel count (64 x 64) at 2:1, each side rounded to 8.
    assert tiny_pipe._size(None, None, wide) == (48, 88)
    assert tiny_pipe._size(None, 96, wide) == (48, 96) and tiny_pipe._size(32, None, wide) == (32, 64)
    result = tiny_pipe.sdedit(PROMPT, wide, steps=2, seed=0)
    assert result.images[0].size == (88, 48)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=60), "multiple of 8"),
        (dict(width=0), "multiple of 8"),
        (dict(strength=1.5), "strength"),
        (dict(strength=-0.1), "strength"),
        (dict(steps=0), "steps"),
        (dict(iterations=0), "iterations"),
        (dict(grad_steps=-1), "gradient steps"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(lr=0), "learning rate"),
        (dict(guidance_scale=-1), "guidance"),
        (dict(num_images=0), "number of images"),
        (dict(eta=2.0), "eta"),
        (dict(painting="crayon"), "painting function"),
    ],
)
def test_bad_knobs_give_one_line_value_errors(tiny_pipe, strokes, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        tiny_pipe.gradop_plus(PROMPT, strokes, **{"steps": 2, "seed": 0} | kwargs)
    assert "\n" not in str(error.value)


def test_bad_calls_give_clear_errors(tiny_pipe, strokes, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        tiny_pipe.generate("dreambooth", PROMPT, strokes)
    with pytest.raises(ValueError, match="needs a stroke image"):
        tiny_pipe.generate("gradop+", PROMPT, None)
    with pytest.raises(ValueError, match="prompt is empty"):
        tiny_pipe.gradop_plus("  ", strokes)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        tiny_pipe.gradop_plus(PROMPT, empty)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="could not read"):
        tiny_pipe.gradop_plus(PROMPT, text)


def test_regions_and_attention_maps_through_every_method(tiny_pipe, strokes):
    regions = {"#285adc": "fox", "#c83228": "tree"}
    fast = dict(steps=2, grad_steps=1, opt_steps=1, seed=1)
    for method in METHODS:
        controlled = tiny_pipe.generate(method, PROMPT, strokes, regions=regions, region_strength=1.0,
                                        attention_maps=True, **fast)
        plain = tiny_pipe.generate(method, PROMPT, strokes, **fast)
        assert not np.array_equal(pixels(controlled), pixels(plain)), method
        assert [r["word"] for r in controlled.params["regions"]] == ["fox", "tree"]
        assert controlled.attention_maps is not None and plain.attention_maps is None
        off = tiny_pipe.generate(method, PROMPT, strokes, regions=regions, region_strength=0.0, **fast)
        assert np.array_equal(pixels(off), pixels(plain)), method  # w' = 0 is exactly the plain call


def test_missing_region_word_is_an_error_or_appended(tiny_pipe, strokes):
    with pytest.raises(ValueError, match="not in the prompt"):
        tiny_pipe.text2img("a photo of a fox", strokes=strokes, regions={"#285adc": "lake"}, steps=2, seed=0)
    result = tiny_pipe.generate("text", "a photo of a fox", strokes, regions={"#285adc": "lake"}, steps=2, seed=0,
                                append_missing_words=True)
    assert result.params["prompt"] == "a photo of a fox, lake"


def test_blank_canvas_is_an_error_for_guided_methods(tiny_pipe):
    from PIL import Image

    white, clear = Image.new("RGB", (64, 64), "white"), Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    for method in ("gradop+", "gradop", "sdedit"):
        for blank in (white, clear):
            with pytest.raises(ValueError, match="blank"):
                tiny_pipe.generate(method, PROMPT, blank, steps=2, seed=0)
    photo = Image.new("RGB", (64, 64), (90, 140, 60))  # re-imagining from a photo alone: the photo is the target
    assert len(tiny_pipe.sdedit(PROMPT, clear, background=photo, edit=False, steps=2, seed=0).images) == 1
    with pytest.raises(ValueError, match="nothing is painted"):  # an edit (the default) of nothing
        tiny_pipe.sdedit(PROMPT, clear, background=photo, steps=2, seed=0)
    assert len(tiny_pipe.text2img(PROMPT, white, steps=2, seed=0).images) == 1  # text ignores the canvas


def test_regions_come_from_the_strokes_not_the_background_photo(tiny_pipe):
    from PIL import Image

    strokes = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    strokes.paste((200, 50, 40, 255), (40, 40, 56, 56))  # a 16x16 red square
    photo = Image.new("RGB", (64, 64), (60, 150, 70))
    photo.paste((200, 50, 40), (0, 0, 30, 64))  # the photo's own red half must not become the region
    result = tiny_pipe.sdedit(PROMPT, strokes, background=photo, regions={"#c83228": "fox"}, steps=2, seed=0)
    (region,) = result.params["regions"]
    assert region["word"] == "fox" and abs(region["area"] - 16 * 16) <= 16


def test_median_palette_through_the_whole_pipeline(tiny_pipe, strokes):
    median = tiny_pipe.gradop_plus(PROMPT, strokes, steps=6, painting="median-palette", seed=0)
    blur = tiny_pipe.gradop_plus(PROMPT, strokes, steps=6, seed=0)
    text_only = tiny_pipe.text2img(PROMPT, steps=6, seed=0)
    assert median.params["painting"] == "median-palette" and not np.array_equal(pixels(median), pixels(blur))
    assert median.losses[-1] < median.losses[0]
    assert blurred_l2(median.images[0], strokes) < blurred_l2(text_only.images[0], strokes)
    two_pass = tiny_pipe.gradop(PROMPT, strokes, steps=4, opt_steps=5, painting="median-palette", seed=0)
    assert two_pass.params["painting"] == "median-palette" and len(two_pass.losses) == 5


class CountingModule(torch.nn.Module):
    """Stands in for torch.compile's wrapper (whose first call takes minutes on a CPU): the same
    module behind a forward that counts its calls, attributes (config, dtype) read through."""

    def __init__(self, module):
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def test_compile_unet_samples_with_the_compiled_unet_except_under_region_control(tiny_pipe, strokes, monkeypatch):
    from gradop.compiling import compile_unet
    from gradop.pipeline import GradopPipeline

    modes = []
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: modes.append(mode) or CountingModule(module))
    pipe = GradopPipeline(tiny_pipe.components, model_name="tiny-random", compile_unet=True)
    assert modes == [None]  # Inductor's default on the CPU
    compiled = pipe.compiled_unet
    for method in METHODS:  # the compiled UNet runs every sampling loop, to the same pixels
        before = compiled.calls
        assert np.array_equal(pixels(pipe.generate(method, PROMPT, strokes, **FAST)),
                              pixels(tiny_pipe.generate(method, PROMPT, strokes, **FAST))), method
        assert compiled.calls > before, method
    # Region words and attention maps swap the attention processors: the eager UNet runs them.
    regions = {"#285adc": "fox", "#c83228": "tree"}
    before = compiled.calls
    for extra in (dict(regions=regions), dict(attention_maps=True)):
        assert np.array_equal(pixels(pipe.gradop_plus(PROMPT, strokes, **extra, **FAST)),
                              pixels(tiny_pipe.gradop_plus(PROMPT, strokes, **extra, **FAST)))
    assert compiled.calls == before
    pipe.text2img(PROMPT, **FAST)  # and the next plain call is compiled again
    assert compiled.calls == before + FAST["steps"]
    compile_unet(tiny_pipe.unet, "cuda")
    assert modes[-1] == "reduce-overhead"  # CUDA graphs on a GPU
