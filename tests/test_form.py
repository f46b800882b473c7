"""gradop.form: the app's settings, refusals and library calls, without a server."""

import itertools

import numpy as np
from PIL import Image

from gradop import form
from gradop.options import GradopOptions, GradopPlusOptions, SamplingOptions, parse_options
from gradop.regions import find_regions

BLUE = (47, 111, 208, 255)


def strokes(side=64, colour=BLUE) -> Image.Image:
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    image.paste(colour, (0, side // 2, side, side))
    return image


def settings(**changes) -> dict:
    return form.DEFAULTS | {"prompt": "a lake"} | changes


def test_defaults_are_the_librarys_and_every_default_is_allowed():
    assert form.DEFAULTS["steps"] == SamplingOptions.defaults()["steps"]
    assert form.DEFAULTS["lr"] == GradopPlusOptions.defaults()["lr"]
    assert form.DEFAULTS["opt_lr"] == GradopOptions.defaults()["opt_lr"] != form.DEFAULTS["lr"]
    assert form.fixes(form.DEFAULTS) == {}
    for key, allowed in form.CHOICES.items():
        assert form.DEFAULTS[key] in allowed, key
    for key, (low, high) in form.RANGES.items():
        assert low <= form.DEFAULTS[key] <= high, key


def test_values_no_widget_can_produce_become_defaults():
    fixes = form.fixes(settings(method="rm -rf", steps=10_000, tool="laser", lr=-1))
    assert fixes == {"method": "gradop+", "steps": form.DEFAULTS["steps"], "tool": "freedraw",
                     "lr": form.DEFAULTS["lr"]}  # the prompt is kept


def test_compare_runs_all_four_methods_on_one_seed_and_text_gets_no_stroke_knobs():
    runs = form.generation_runs(settings(method="compare"), 64, strokes(), None, 512, [], {}, seed=7)
    assert [r.method for r in runs] == ["gradop+", "gradop", "sdedit", "text"]
    assert [r.label for r in runs] == ["GradOP+", "GradOP", "SDEdit", "Text only"]
    assert {r.kwargs["seed"] for r in runs} == {7}
    assert all(r.kwargs["height"] == r.kwargs["width"] == 64 for r in runs)  # the demo model's side
    assert "strength" in runs[0].kwargs and "strength" not in runs[3].kwargs and "strokes" not in runs[3].kwargs
    for run in runs:  # every call is one the library accepts
        parse_options(run.method, {k: v for k, v in run.kwargs.items()
                                   if k not in ("prompt", "negative_prompt", "seed", "strokes", "background",
                                                "regions", "edit")})


def test_region_words_become_a_spec_and_a_photo_alone_is_an_edit_target():
    painted = strokes()
    regions = find_regions(painted.convert("RGB"))
    [run] = form.generation_runs(settings(), 512, painted, None, 512, regions, {"#2f6fd0": "lake"}, seed=1)
    [word] = run.kwargs["regions"]
    assert word.word == "lake" and word.mask[-1].all() and not word.mask[0].any()
    photo = Image.new("RGB", (512, 512), "gray")
    [edit] = form.generation_runs(settings(method="sdedit"), 512, None, photo, 512, [], {}, seed=1)
    assert edit.kwargs["edit"] is True and edit.kwargs["background"] is photo
    assert np.asarray(edit.kwargs["strokes"])[..., 3].max() == 0  # transparent: nothing painted


def test_refusals_say_what_to_do():
    painted = strokes()
    assert form.input_problem(settings(), painted, None, {}) is None
    assert "Write a prompt" in form.input_problem(settings(prompt="  "), painted, None, {})
    assert "canvas is empty" in form.input_problem(settings(), None, None, {})
    assert form.input_problem(settings(method="text"), None, None, {}) is None
    white = strokes(colour=(255, 255, 255, 255))
    assert "canvas is empty" in form.input_problem(settings(), white, None, {})
    photo = Image.new("RGB", (64, 64), "gray")
    assert "Nothing is painted" in form.input_problem(settings(), None, photo, {})
    assert form.input_problem(settings(edit_mode=False), None, photo, {}) is None
    assert "hut" in form.input_problem(settings(), painted, None, {"#2f6fd0": "hut"})


def test_a_history_entry_fixes_the_seed_it_used():
    kept = form.recorded_settings(settings(random_seed=True, seed=0), 1234, {"#2f6fd0": "lake"})
    assert kept["seed"] == 1234 and kept["random_seed"] is False and kept["region_words"] == {"#2f6fd0": "lake"}
    assert "brush_color" not in kept and set(form.SETTINGS) <= set(kept)


def test_choosing_a_guided_latent_sets_knobs_that_run_and_stay_in_the_widgets_ranges():
    for steps, latent in itertools.product((25, 50, form.RANGES["steps"][1]), ("denoised", "denoised-fast")):
        knobs = form.guided_latent_knobs(latent, steps)
        assert knobs["iterations"] == round(0.8 * steps) and knobs["strength"] == 0.9
        parse_options("gradop+", dict(knobs, guidance_latent=latent, steps=steps))  # valid together
        assert not form.fixes({**form.DEFAULTS, "steps": steps, **knobs})  # every widget can show them
    plus = GradopPlusOptions()
    for latent in ("noisy", "x0"):
        assert form.guided_latent_knobs(latent, 50) == {"strength": plus.strength, "iterations": plus.iterations,
                                                        "lr": plus.lr}
