"""Every knob of every method, in one place: defaults, validation, and what the PNG records.

One frozen dataclass per method (plus the sampling knobs all methods share). The pipeline,
`validate_options`, the CLI flags, the app's widget defaults, the PNG metadata and the time
estimate read these classes, so a knob is added here once. Values are normalised on
construction: numpy scalars become Python numbers; a wrongly typed value raises TypeError and
an out-of-range one ValueError, both one line in gradop's words.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace

from gradop.decoders import GUIDANCE_DECODERS
from gradop.guidance import DENOISED_LATENTS, GUIDANCE_LATENTS
from gradop.painting import PAINTING_FUNCTIONS
from gradop.precision import PRECISION_MODES

SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes seeds in [0, 2**64)
RELEASE_ADAM = {"grad_steps": 12, "lr": 0.1}  # the official release's Adam schedule per GradOP+ iteration
# guidance_latent "denoised" moves the latent by lr (RMS) at every pull, through the UNet: it wants
# many small pulls, not the release's few large ones. Tuned on the demo model's tuning scenes
# (model card, session 13): from strength 0.9, over 80% of the steps, lr x iterations = 0.6.
# "denoised-fast" takes the same knobs (model card, session 14).
DENOISED_MAX_LR = 0.5  # at 0.3-0.5 the demo model's images already fall back to SDEdit's curve (model card)


def denoised_knobs(steps: int, latent: str = "denoised") -> dict:
    """GradOP+'s tuned knobs for guidance_latent "denoised" or "denoised-fast" at `steps` sampling
    steps (25 steps: iterations 20, lr 0.03; 50 steps: iterations 40, lr 0.015)."""
    if latent not in DENOISED_LATENTS:
        raise ValueError(f"denoised_knobs is for the guided latents {', '.join(DENOISED_LATENTS)}, not {latent!r}")
    iterations = max(1, round(0.8 * steps))
    return {"guidance_latent": latent, "strength": 0.9, "iterations": iterations, "lr": round(0.6 / iterations, 4)}


def knob(default, label: str, *, whole: bool = False, boolean: bool = False, low=None, high=None, above=None, choices=None,
         multiple_of: int | None = None, optional: bool = False, record: bool = True, help: str = ""):
    """A dataclass field with its validation rule and PNG flag in the field metadata.

    whole: an integer; else a finite real (or a string from `choices`). low/high: inclusive
    bounds; above: exclusive lower bound. record: whether it decides the pixels (goes into the
    PNG); memory knobs that leave the result unchanged do not.
    """
    rule = dict(label=label, whole=whole, boolean=boolean, low=low, high=high, above=above, choices=choices,
                multiple_of=multiple_of, optional=optional, record=record, help=help)
    return field(default=default, metadata=rule)


def _bounds_text(rule) -> str:
    if rule["multiple_of"]:
        return f"a positive multiple of {rule['multiple_of']}"
    kind = "a whole number" if rule["whole"] else "a number"
    low, high, above = rule["low"], rule["high"], rule["above"]
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    if above is not None:
        return f"{kind} > {above}"
    return f"a finite {kind[2:]}" if not rule["whole"] else kind


def normalise(value, rule):
    """The value as a plain Python int/float/str, or TypeError/ValueError with the knob's label."""
    label = rule["label"]
    if value is None and rule["optional"]:
        return None
    if rule["boolean"]:
        if not isinstance(value, (bool, np_bool())):
            raise TypeError(f"{label} must be True or False (got {value!r})")
        return bool(value)
    if rule["choices"] is not None:
        if not isinstance(value, str):
            raise TypeError(f"{label} must be one of {', '.join(rule['choices'])} (got {value!r})")
        if value not in rule["choices"]:
            raise ValueError(f"unknown {label} '{value}'; choose one of {', '.join(rule['choices'])}")
        return value
    if rule["whole"]:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{label} must be a whole number (got {value!r})")
        value = int(value)
    else:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{label} must be a number (got {value!r})")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{label} must be {_bounds_text(rule)} (got {value})")
    low, high, above, multiple = rule["low"], rule["high"], rule["above"], rule["multiple_of"]
    if ((low is not None and value < low) or (high is not None and value > high)
            or (above is not None and value <= above) or (multiple and (value <= 0 or value % multiple))):
        hint = "; resize the strokes or pass height/width" if multiple else ""
        raise ValueError(f"{label} must be {_bounds_text(rule)} (got {value}){hint}")
    return value


def np_bool():
    import numpy

    return numpy.bool_


class Knobs:
    """Shared behaviour of the option dataclasses: validation on construction, PNG subset."""

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, normalise(getattr(self, f.name), f.metadata))

    def recorded(self) -> dict:
        """The knobs that decide the pixels, for the PNG's parameters."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["record"]}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: f.default for f in fields(cls)}

    def check_schedule(self, steps: int) -> None:
        """Checks that need the number of sampling steps (none by default)."""


@dataclass(frozen=True)
class SamplingOptions(Knobs):
    """Knobs every method shares (the text-conditioned DDIM sampling)."""

    steps: int = knob(50, "steps", whole=True, low=1, help="DDIM steps")
    guidance_scale: float = knob(7.5, "guidance scale", low=0, help="classifier-free guidance scale")
    eta: float = knob(0.0, "eta", low=0, high=1, help="DDIM eta (0: deterministic)")
    num_images: int = knob(1, "number of images", whole=True, low=1, high=16, help="images per run")
    height: int | None = knob(None, "height", whole=True, multiple_of=8, optional=True, help="output height")
    width: int | None = knob(None, "width", whole=True, multiple_of=8, optional=True, help="output width")
    region_strength: float = knob(0.5, "region strength", low=0, record=False, help="region control weight w'")


def _denoising_steps_check(method: str, steps: int, strength: float) -> None:
    # diffusers' img2img runs int(steps * strength) steps; zero steps has nothing to denoise.
    if int(steps * strength) < 1:
        raise ValueError(f"{method} with strength {strength} and {steps} steps denoises int(steps*strength) = 0 "
                         f"steps; use a strength of at least {math.ceil(1000 / steps) / 1000:g} or more steps")


@dataclass(frozen=True)
class TextOptions(Knobs):
    """text2img has no knobs beyond the sampling ones."""


@dataclass(frozen=True)
class SDEditOptions(Knobs):
    strength: float = knob(0.8, "strength", low=0, high=1, help="noise the strokes to this fraction of the schedule")

    def check_schedule(self, steps: int) -> None:
        _denoising_steps_check("sdedit", steps, self.strength)


@dataclass(frozen=True)
class GuidanceKnobs(Knobs):
    """Knobs of the latent optimisation shared by GradOP+ and GradOP (precision and memory)."""

    painting: str = knob("blur", "painting function", choices=PAINTING_FUNCTIONS, help="painting function f")
    # The release's exact "vae". "vae-half" halves GradOP+'s time and was within 5% of it on model v1, but on
    # the shipped demo model (v3) it loses a quarter of the realism (README "guidance_decoder").
    guidance_decoder: str = knob("vae", "guidance decoder", choices=GUIDANCE_DECODERS,
                                 help="what decodes latents inside the optimisation (gradop.decoders); "
                                      "the final image always uses the full VAE")
    guidance_early_stop: float = knob(0.0, "early stop", low=0, high=1,
                                      help="end an optimisation once the loss changes by less than this "
                                           "fraction per step (0: always run every step)")
    guidance_precision: str = knob("auto", "guidance precision", choices=PRECISION_MODES,
                                   help="gradients through the decoder: scaled loss or fp32 decoder for fp16, bf16 "
                                        "autocast (auto: what measured correct for the dtype and CPU)")
    guidance_batch: int = knob(1, "guidance batch", whole=True, low=1, record=False,
                               help="images decoded and differentiated at a time (memory; same result)")
    guidance_checkpointing: bool = knob(False, "guidance checkpointing", boolean=True, record=False,
                                        help="VAE gradient checkpointing while optimising (memory; slower)")


@dataclass(frozen=True)
class GradopPlusOptions(GuidanceKnobs):
    """GradOP+ (the release's single pass); see guidance.guidance_window for the window rule."""

    strength: float = knob(0.8, "strength", low=0, high=1, help="optimisation starts at step int(steps*(1-strength))")
    iterations: int = knob(3, "iterations", whole=True, low=1, help="optimised sampling steps")
    # The release runs 12 Adam steps of 0.1 per iteration. One step of 1.5 (a fresh Adam's first
    # step is a sign step: every latent element moves by lr) makes a twelfth of the decode +
    # backward passes and scored as faithful and at least as realistic on the held-out quality
    # benchmark (README, the `grad_steps` knob); RELEASE_ADAM gives the release's schedule back.
    grad_steps: int = knob(1, "gradient steps", whole=True, low=1, help="Adam steps per iteration")
    lr: float = knob(1.5, "learning rate", above=0, help="Adam learning rate")
    guidance_latent: str = knob("noisy", "guided latent", choices=GUIDANCE_LATENTS,
                                help="what is optimised: the noisy latents (the release) or the sampler's "
                                     "predicted clean latents (x0), re-noised afterwards; or denoised: the noisy "
                                     "latents, stepped by lr through the UNet's clean prediction (small "
                                     "steps, many pulls: see denoised_knobs); denoised-fast: the same with the "
                                     "sampler's own prediction held fixed (no pass through the UNet)")

    def check_schedule(self, steps: int) -> None:
        from gradop.guidance import guidance_window

        if self.guidance_latent in DENOISED_LATENTS and self.lr > DENOISED_MAX_LR:
            tuned = denoised_knobs(steps, self.guidance_latent)
            raise ValueError(f"with guidance_latent '{self.guidance_latent}', lr is the latent's step at every pull (at most "
                             f"{DENOISED_MAX_LR}); for {steps} steps use e.g. strength {tuned['strength']}, iterations "
                             f"{tuned['iterations']}, lr {tuned['lr']}")
        if not guidance_window(steps, self.strength, self.iterations):
            start = int(steps * (1 - self.strength))
            raise ValueError(f"gradop+ with strength {self.strength} and {steps} steps would never optimise (it starts "
                             f"at step {start}, the last optimisable step is {steps - 2}); raise strength or steps, "
                             "or use method 'text'")


@dataclass(frozen=True)
class GradopOptions(GuidanceKnobs):
    """GradOP (the paper's two passes): optimise a text-only sample, then SDEdit it."""

    strength: float = knob(0.8, "strength", low=0, high=1, help="re-noise the optimised sample to this fraction")
    opt_steps: int = knob(50, "optimisation steps", whole=True, low=1, help="Adam steps on the text-only sample")
    opt_lr: float = knob(0.1, "optimisation learning rate", above=0, help="Adam learning rate of those steps")
    gamma: float = knob(1e-3, "gamma", low=0, help="pull towards the text-only sample")

    def check_schedule(self, steps: int) -> None:
        _denoising_steps_check("gradop", steps, self.strength)


METHOD_OPTIONS: dict[str, type[Knobs]] = {
    "gradop+": GradopPlusOptions, "gradop": GradopOptions, "sdedit": SDEditOptions, "text": TextOptions,
}
METHODS = tuple(METHOD_OPTIONS)
KNOB_NAMES = frozenset(SamplingOptions.names()).union(*(cls.names() for cls in METHOD_OPTIONS.values()))


def parse_options(method: str, knobs: dict) -> tuple[SamplingOptions, Knobs]:
    """(sampling options, the method's options) from keyword knobs.

    Every knob given is validated, also those another method uses (a typo'd value is an error
    whichever method runs); only the method's own knobs are returned. Unknown names: TypeError.
    """
    if method not in METHOD_OPTIONS:
        raise ValueError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    unknown = sorted(set(knobs) - KNOB_NAMES)
    if unknown:
        raise TypeError(f"unknown option '{unknown[0]}'; the options are {', '.join(sorted(KNOB_NAMES))}")
    sampling = SamplingOptions(**{k: v for k, v in knobs.items() if k in SamplingOptions.names()})
    chosen = None
    for name, cls in METHOD_OPTIONS.items():
        options = cls(**{k: v for k, v in knobs.items() if k in cls.names()})
        if name == method:
            chosen = options
    chosen.check_schedule(sampling.steps)
    return sampling, chosen


def validate_options(method: str | None = None, **knobs) -> None:
    """One clear error for the first bad knob (cheap: front-ends call it before loading a model).
    With `method`, also the checks that combine knobs (e.g. strength with steps)."""
    parse_options(method or "text", knobs)


def normalise_seed(seed) -> int | None:
    """A seed as a Python int in [0, 2**64), or None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a whole number (got {seed!r})")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**64) (got {seed}); pick a smaller non-negative seed")
    return int(seed)


__all__ = ["SamplingOptions", "TextOptions", "SDEditOptions", "GradopPlusOptions", "GradopOptions", "METHOD_OPTIONS",
           "denoised_knobs", "METHODS", "KNOB_NAMES", "parse_options", "validate_options", "normalise_seed", "replace"]
