"""The per-method option dataclasses: defaults, normalisation, validation, PNG subset."""

import numpy as np
import pytest

from gradop.options import (
    METHOD_OPTIONS,
    RELEASE_ADAM,
    GradopOptions,
    GradopPlusOptions,
    SamplingOptions,
    SDEditOptions,
    normalise_seed,
    parse_options,
    validate_options,
)


def test_defaults_are_the_release_defaults_but_for_gradop_plus_adam_schedule():
    plus = GradopPlusOptions()
    assert (plus.strength, plus.iterations, plus.painting, plus.guidance_decoder) == (0.8, 3, "blur", "vae")
    # One Adam step of 1.5 per iteration, measured against the release's twelve of 0.1.
    assert (plus.grad_steps, plus.lr) == (1, 1.5) and RELEASE_ADAM == {"grad_steps": 12, "lr": 0.1}
    two_pass = GradopOptions()
    assert (two_pass.opt_steps, two_pass.opt_lr, two_pass.gamma, two_pass.strength) == (50, 0.1, 1e-3, 0.8)
    sampling = SamplingOptions()
    assert (sampling.steps, sampling.guidance_scale, sampling.eta, sampling.num_images) == (50, 7.5, 0.0, 1)


def test_numpy_scalars_become_python_numbers():
    opts = GradopPlusOptions(grad_steps=np.int64(2), lr=np.float32(0.25), strength=np.float64(0.5))
    assert opts.grad_steps == 2 and type(opts.grad_steps) is int
    assert type(opts.lr) is float and opts.lr == 0.25 and type(opts.strength) is float
    sampling = SamplingOptions(steps=np.int32(7), height=np.int64(64))
    assert type(sampling.steps) is int and type(sampling.height) is int


@pytest.mark.parametrize(
    "cls, kwargs, error, message",
    [
        (SamplingOptions, dict(steps=2.5), TypeError, "steps must be a whole number"),
        (SamplingOptions, dict(steps="5"), TypeError, "steps must be a whole number"),
        (SamplingOptions, dict(steps=True), TypeError, "steps must be a whole number"),
        (SamplingOptions, dict(steps=0), ValueError, "steps must be a whole number >= 1"),
        (SamplingOptions, dict(guidance_scale="7"), TypeError, "guidance scale must be a number"),
        (SamplingOptions, dict(height=60), ValueError, "multiple of 8"),
        (SamplingOptions, dict(num_images=17), ValueError, r"number of images must be a whole number in \[1, 16\]"),
        (GradopPlusOptions, dict(lr=float("nan")), ValueError, "learning rate"),
        (GradopPlusOptions, dict(lr=0), ValueError, "learning rate must be a number > 0"),
        (GradopPlusOptions, dict(painting="crayon"), ValueError, "unknown painting function 'crayon'"),
        (GradopPlusOptions, dict(painting=3), TypeError, "painting function must be one of"),
        (SDEditOptions, dict(strength=1.5), ValueError, r"strength must be a number in \[0, 1\]"),
        (GradopOptions, dict(gamma=-1), ValueError, "gamma"),
        (GradopOptions, dict(opt_lr=0), ValueError, "optimisation learning rate must be a number > 0"),
        (GradopOptions, dict(guidance_precision="fp8"), ValueError, "unknown guidance precision 'fp8'"),
        (GradopPlusOptions, dict(guidance_batch=0), ValueError, "guidance batch"),
        (GradopPlusOptions, dict(guidance_checkpointing="yes"), TypeError, "guidance checkpointing must be True or"),
    ],
)
def test_bad_values_give_one_line_errors(cls, kwargs, error, message):
    with pytest.raises(error, match=message) as raised:
        cls(**kwargs)
    assert "\n" not in str(raised.value)


def test_recorded_knobs_are_the_ones_that_decide_pixels():
    guidance = {"painting", "guidance_decoder", "guidance_early_stop", "guidance_precision"}
    assert set(GradopPlusOptions().recorded()) == {"strength", "iterations", "grad_steps", "lr",
                                                   "guidance_latent"} | guidance
    assert set(GradopOptions().recorded()) == {"strength", "opt_steps", "opt_lr", "gamma"} | guidance
    assert SDEditOptions(strength=0.6).recorded() == {"strength": 0.6}
    assert METHOD_OPTIONS["text"]().recorded() == {}


def test_parse_options_validates_every_knob_and_returns_the_methods_own():
    sampling, opts = parse_options("sdedit", dict(steps=np.int64(4), strength=0.5, grad_steps=2))
    assert sampling.steps == 4 and opts == SDEditOptions(strength=0.5)
    with pytest.raises(ValueError, match="gradient steps"):  # another method's knob, still checked
        parse_options("sdedit", dict(grad_steps=0))
    with pytest.raises(TypeError, match="unknown option 'grad_step'"):
        parse_options("gradop+", dict(grad_step=3))
    with pytest.raises(ValueError, match="unknown method"):
        parse_options("dreambooth", {})


@pytest.mark.parametrize("method", ["sdedit", "gradop"])
def test_strength_that_denoises_no_step_is_refused(method):
    with pytest.raises(ValueError, match=r"int\(steps\*strength\) = 0"):
        validate_options(method, steps=50, strength=0.01)
    with pytest.raises(ValueError, match="strength of at least 0.02"):
        validate_options(method, steps=50, strength=0.0)
    validate_options(method, steps=50, strength=0.02)  # one step: fine
    validate_options(None, steps=50, strength=0.0)  # without a method, no cross checks


def test_gradop_plus_with_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="would never optimise"):
        validate_options("gradop+", steps=10, strength=0.1)
    with pytest.raises(ValueError, match="would never optimise"):
        validate_options("gradop+", steps=50, strength=0.0)
    validate_options("gradop+", steps=10, strength=0.2)  # window [8, 9): one optimised step


def test_denoised_latent_refuses_the_release_sized_step_and_says_what_to_use():
    from gradop.options import denoised_knobs

    with pytest.raises(ValueError, match=r"denoised.*strength 0.9, iterations 40, lr 0.015"):
        validate_options("gradop+", guidance_latent="denoised", steps=50)  # the default lr 1.5
    assert denoised_knobs(25) == {"guidance_latent": "denoised", "strength": 0.9, "iterations": 20, "lr": 0.03}
    for steps in (10, 25, 50, 100):
        knobs = denoised_knobs(steps)
        validate_options("gradop+", steps=steps, **knobs)  # the tuned schedule is valid at any step count
        assert knobs["lr"] * knobs["iterations"] == pytest.approx(0.6, rel=0.01)
    # The fast variant takes the same schedule and the same refusal.
    with pytest.raises(ValueError, match=r"'denoised-fast'.*strength 0.9, iterations 20, lr 0.03"):
        validate_options("gradop+", guidance_latent="denoised-fast", steps=25)
    assert denoised_knobs(25, "denoised-fast") == dict(denoised_knobs(25), guidance_latent="denoised-fast")
    with pytest.raises(ValueError, match="denoised_knobs is for the guided latents"):
        denoised_knobs(25, "noisy")


def test_seeds():
    assert normalise_seed(np.uint64(2**64 - 1)) == 2**64 - 1 and normalise_seed(None) is None
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        normalise_seed(2**64)
    with pytest.raises(ValueError, match="seed must be in"):
        normalise_seed(-1)
    with pytest.raises(TypeError, match="seed must be a whole number"):
        normalise_seed(1.5)
