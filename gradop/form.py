"""The web app's settings form, without Streamlit: each widget's key, default and allowed values,
why a Generate click is refused, and the library calls a click makes.

app.py draws the widgets and keeps their values in Streamlit's session state; the functions here
take those values as a plain mapping, so they are tested without a server (tests/test_form.py).
"""

from __future__ import annotations

from typing import Mapping

from PIL import Image

from gradop import jobs, serving
from gradop.decoders import GUIDANCE_DECODERS
from gradop.editing import painted_area
from gradop.guidance import DENOISED_LATENTS, GUIDANCE_LATENTS
from gradop.images import is_blank, to_rgb
from gradop.options import GradopOptions, GradopPlusOptions, SamplingOptions, denoised_knobs
from gradop.painting import PAINTING_FUNCTIONS

METHOD_LABELS = {"gradop+": "GradOP+", "gradop": "GradOP", "sdedit": "SDEdit", "text": "Text only",
                 "compare": "Compare all"}
COMPARED = ("gradop+", "gradop", "sdedit", "text")  # what "compare" runs, in the order shown
TOOLS = {"freedraw": ":material/brush: Brush", "line": ":material/horizontal_rule: Line",
         "rect": ":material/rectangle: Rectangle", "circle": ":material/circle: Circle"}
BACKGROUNDS = {"blank": "Blank", "photo": "Photo (edit a real image)", "result": "Last result (continue)"}
CANVAS_SIZES = (256, 512, 768)

# Widget keys and their defaults: set once per tab, so "re-open settings" can write them. The
# method knobs' defaults are the library's (one source).
_KNOBS = {**SamplingOptions.defaults(), **GradopOptions.defaults(), **GradopPlusOptions.defaults()}
DEFAULTS = dict(
    prompt="", negative_prompt="", style=None, method="gradop+", seed=0, random_seed=True,
    **{k: _KNOBS[k] for k in ("steps", "guidance_scale", "strength", "iterations", "grad_steps", "opt_steps",
                              "lr", "opt_lr", "guidance_decoder", "guidance_latent", "painting", "region_strength",
                              "num_images")}, brush_color="#2f6fd0",
    brush_size=24, tool="freedraw", canvas_size=512, background="blank", edit_mode=True,
)
# What a history entry keeps (and "re-open these settings" writes back): not the brush.
SETTINGS = [k for k in DEFAULTS if k not in ("brush_color", "brush_size", "tool", "background")]
# What each widget accepts: a value from outside (a tampered message, an old history entry) is
# replaced by the default before any widget or callback sees it.
CHOICES = dict(canvas_size=CANVAS_SIZES, method=tuple(METHOD_LABELS), background=tuple(BACKGROUNDS),
               tool=(*TOOLS, None), painting=tuple(PAINTING_FUNCTIONS), style=(*serving.STYLE_PRESETS, None),
               guidance_decoder=tuple(GUIDANCE_DECODERS), guidance_latent=tuple(GUIDANCE_LATENTS))
RANGES = dict(steps=(1, 200), guidance_scale=(0.0, 30.0), strength=(0.0, 1.0), num_images=(1, 4),
              iterations=(1, 200), grad_steps=(1, 32), opt_steps=(1, 200), lr=(0.001, 2.0), opt_lr=(0.001, 1.0),
              region_strength=(0.0, 2.0), brush_size=(2, 96), seed=(0, 2**32 - 1))


def guided_latent_knobs(latent: str, steps: int) -> dict:
    """The GradOP+ knobs that go with a guided latent (what choosing it in the form sets): the
    tuned many-small-pulls schedule for "denoised" and "denoised-fast", the library's defaults for
    the others."""
    if latent in DENOISED_LATENTS:
        return {k: v for k, v in denoised_knobs(steps, latent).items() if k != "guidance_latent"}
    return {k: DEFAULTS[k] for k in ("strength", "iterations", "lr")}


def fixes(values: Mapping) -> dict:
    """{key: default} for each of the form's values that no widget can produce (a tampered
    message, a stale entry): what the page applies before drawing."""
    return serving.repaired_settings({key: values.get(key) for key in DEFAULTS}, DEFAULTS, CHOICES, RANGES)


def input_problem(settings: Mapping, strokes: Image.Image | None, background: Image.Image | None,
                  assigned: dict[str, str]) -> str | None:
    """Why Generate cannot run with these inputs (one line that says what to do), or None."""
    if not settings["prompt"].strip():
        return "Write a prompt first: describe the image you want."
    blank = strokes is None or is_blank(to_rgb(strokes))  # white paint on the white canvas is no guide
    if settings["method"] != "text" and blank and background is None:
        return ("The canvas is empty: paint some strokes (or choose a photo background) to guide the image, "
                "or choose Text only.")
    if background is not None and settings["edit_mode"] and (strokes is None or not painted_area(strokes).any()):
        return ("Nothing is painted: paint over the part of the picture to change, or switch off "
                "“Change only what I paint” to re-imagine the whole image.")
    missing = serving.missing_words(settings["prompt"], assigned.values())
    if missing:
        return f"Region words not in the prompt: {', '.join(missing)}. Add them to the prompt or clear them."
    return None


def generation_runs(settings: Mapping, model_side: int, strokes: Image.Image | None,
                    background: Image.Image | None, side: int, regions: list, assigned: dict[str, str],
                    seed: int) -> list[jobs.Run]:
    """The library calls one Generate click makes: one per method ("compare": all four, one seed)."""
    size = serving.generation_side(model_side, side)
    common = dict(prompt=settings["prompt"].strip(), negative_prompt=settings["negative_prompt"], height=size,
                  width=size, steps=int(settings["steps"]), guidance_scale=float(settings["guidance_scale"]),
                  seed=seed, num_images=int(settings["num_images"]),
                  regions=serving.region_spec(regions, assigned) or None,
                  region_strength=float(settings["region_strength"]))
    if strokes is None and background is not None:  # a photo alone is the target
        strokes = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    edit = background is not None and bool(settings["edit_mode"])
    guided = dict(strokes=strokes, background=background, strength=float(settings["strength"]),
                  painting=settings["painting"], iterations=int(settings["iterations"]),
                  grad_steps=int(settings["grad_steps"]), opt_steps=int(settings["opt_steps"]),
                  lr=float(settings["lr"]), opt_lr=float(settings["opt_lr"]), guidance_decoder=settings["guidance_decoder"],
                  guidance_latent=settings["guidance_latent"])
    if background is not None:
        guided["edit"] = edit
    text = dict(strokes=strokes, background=background, edit=True) if edit else {}  # text-only fills the painted area
    methods = COMPARED if settings["method"] == "compare" else (settings["method"],)
    return [jobs.Run(METHOD_LABELS[m], m, common | (guided if m != "text" else text)) for m in methods]


def recorded_settings(settings: Mapping, seed: int, assigned: dict[str, str]) -> dict:
    """What a history entry keeps of a click: the form with the seed it used (fixed, so that
    re-opening gives the same image) and the region words."""
    return {key: settings[key] for key in SETTINGS} | {"seed": seed, "random_seed": False,
                                                       "region_words": dict(assigned)}
