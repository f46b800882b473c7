"""gradop web app: paint coarse colour strokes, describe the scene, get an image that follows both.

    streamlit run app.py                                   # the default model (see below)
    streamlit run app.py -- --model gradop-demo --allowed-models gradop-demo,/srv/models/sd15
    GRADOP_MODEL=... GRADOP_ALLOWED_MODELS=a,b streamlit run app.py
    GRADOP_CONFIG=server.toml streamlit run app.py        # or ./gradop-app.toml

The server operator picks the models; web users choose among them in the sidebar. UI only:
method logic lives in gradop.pipeline, the settings form (defaults, refusals, the calls a click
makes) in gradop.form, server-side helpers in gradop.serving.

Server settings (.streamlit/config.toml, read from the folder `streamlit run` starts in):
no file watcher and no gc.collect() after every rerun, because both starve the generation
thread (bench/bench_app.py measures it). For a public server, add on the command line or in
that file:

    streamlit run app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true \
        --client.showErrorDetails none \
        -- --model /srv/models/sd15 --allowed-models /srv/models/sd15,gradop-demo

- `--client.showErrorDetails none`: visitors see no tracebacks (they go to the server log);
- keep `server.enableXsrfProtection` and `server.enableCORS` at their defaults (true); behind a
  reverse proxy that terminates TLS, or use `--server.sslCertFile/--server.sslKeyFile`;
- `server.maxUploadSize` (20 MB here) bounds uploads; app.py also bounds pixels;
- `--server.baseUrlPath gradop` to serve under a sub-path; `--server.fileWatcherType auto` only
  while editing app.py (rerun on save).
One model is loaded per process and jobs of all tabs share it, one at a time. On a CPU a
generation uses every core but one (`--threads N` / GRADOP_THREADS / `threads` in the config file
to choose): the browser and the server's own loop need the last one. `--compile` (GRADOP_COMPILE=1,
`compile = true`) compiles the UNet and the guidance decoder: each image size's first generation
then waits for the compiler (one to two minutes on an H100 or this CPU; about 15 s once Inductor's
disk cache holds it), and later ones run faster (README, "compile_unet").
"""

from __future__ import annotations

import contextlib
import logging
import sys

import streamlit as st
from PIL import Image

from gradop import form, jobs, serving
from gradop.form import BACKGROUNDS, CANVAS_SIZES, CHOICES, DEFAULTS, METHOD_LABELS, RANGES, TOOLS
from gradop.images import load_image
from gradop.options import RELEASE_ADAM

log = logging.getLogger("gradop.app")
serving.log_to_server_output()
# Streamlit compiles its emoji pattern (0.26 s on a 2-core CPU) at the first alert with non-ASCII
# text: let the first page load pay it, not the moment a generation says "Done in … · seed …".
with contextlib.suppress(ImportError):
    import streamlit.emojis  # noqa: F401
st.set_page_config(page_title="gradop: guided image synthesis", page_icon=":material/brush:", layout="wide")

# Quick colours, far enough apart that each stays its own region (names are only hints).
PALETTE = {"#8fc9f0": "sky", "#2f6fd0": "water", "#4caf50": "grass", "#1e5a2a": "trees",
           "#8c8c8c": "rock", "#8b5a2b": "earth", "#e8c860": "sand", "#f08a24": "orange",
           "#d83a3a": "red", "#303030": "dark"}
MAX_UPLOAD_MB = 20  # the pixel limit (decompression bombs) is gradop.images.MAX_PIXELS
STATE = dict(outputs=[], history=[], job=None, notice=None, canvas_version=0, canvas_initial=None,
             canvas_side=512, drawing=None, strokes=None, canvas_fallback=None, continue_from=None,
             kept_widgets={}, page_failed=None)


# ----------------------------------------------------------------------------- model

@st.cache_resource(show_spinner="Loading the model (once per server process)…", max_entries=2)
def load_pipeline(name: str, device: str | None, dtype: str | None, compile: bool = False):
    from gradop.pipeline import GradopPipeline

    return GradopPipeline.from_pretrained(name, device=device, dtype=dtype, compile_unet=compile,
                                          compile_decoder=compile)


@st.cache_data(show_spinner=False, max_entries=16)
def find_regions_cached(raw: bytes, size: tuple[int, int]) -> list:
    return serving.detect_regions(Image.frombytes("RGBA", size, raw))


def sidebar(config: serving.AppConfig):
    """The allow-listed model choice; returns the loaded pipeline, or None with an error shown."""
    with st.sidebar:
        st.header("Model")
        choice = st.selectbox("Model", config.allowed_models, format_func=serving.model_label, key="model",
                              help="The models this server offers (set by its operator).")
        name = serving.choose_model(choice, config)
        try:
            pipeline = load_pipeline(name, config.device, config.dtype, config.compile)
        except ValueError as error:  # ModelLoadError: offline, missing, refused pickle, ...
            st.error(jobs.user_message(error).replace(name, serving.model_label(name)))  # no server paths
            return None
        device = pipeline.device.type
        st.caption(f"Running on **{device.upper()}** · native size {pipeline.default_size} px")
        st.caption("Draw colour strokes, write a prompt, give regions their words, press Generate.")
        return pipeline


# ----------------------------------------------------------------------------- canvas

def redraw_canvas(drawing: dict | None, strokes: Image.Image | None = None) -> None:
    """Remount the canvas showing `drawing`; `strokes` stand for its pixels until it sends its own."""
    st.session_state.canvas_initial, st.session_state.canvas_fallback = drawing, strokes
    st.session_state.canvas_version += 1


def on_canvas_size() -> None:
    new, old = st.session_state.canvas_size, st.session_state.canvas_side
    if new not in CANVAS_SIZES:  # not one of the offered sizes: keep the canvas as it is
        st.session_state.canvas_size = old
        return
    if new != old:
        strokes = st.session_state.strokes
        redraw_canvas(serving.scale_drawing(st.session_state.drawing, new / old),
                      strokes.resize((new, new), Image.Resampling.LANCZOS) if strokes is not None else None)
        st.session_state.canvas_side = new


def palette_row() -> None:
    """One button per quick colour, painted in that colour (the page's CSS), ticked when in use."""
    css = "".join(f".st-key-colour-{h[1:]} button {{background:{h};color:{serving.text_color(h)};border:none}}"
                  for h in PALETTE)
    st.html(f"<style>{css}</style>")
    with st.container(horizontal=True, gap="small"):
        for hex_color, name in PALETTE.items():
            mark = ":material/check: " if st.session_state.brush_color == hex_color else ""
            st.button(f"{mark}{name}", key=f"colour-{hex_color[1:]}",
                      on_click=st.session_state.update, kwargs={"brush_color": hex_color})


def canvas_background(side: int) -> Image.Image | None:
    mode = st.session_state.background
    if mode == "photo":
        upload = st.file_uploader("Photo to edit (PNG, JPEG or WebP)", type=["png", "jpg", "jpeg", "webp"],
                                  key="upload", max_upload_size=MAX_UPLOAD_MB,
                                  help="Paint over it: the photo with your strokes is the target.")
        if upload is None:
            return None
        try:
            return serving.fit_background(load_image(upload.getvalue(), what="the uploaded photo"), side)
        except ValueError as error:
            st.error(jobs.user_message(error))
        except Exception as error:  # noqa: BLE001 - a file must never take the page (and its state) down
            log.error("could not use an uploaded photo", exc_info=error)
            st.error(f"Could not use this photo ({error.__class__.__name__}); save it again as PNG or JPEG.")
        return None
    if mode == "result":
        if st.session_state.continue_from is None:
            st.caption("No result yet: generate one, then press “Continue from this result” under it.")
            return None
        return serving.fit_background(st.session_state.continue_from, side)
    return None


def canvas_section():
    """Drawing tools and the canvas; returns (strokes RGBA or None, background or None, side)."""
    from streamlit_drawable_canvas import st_canvas  # only importable inside a running app

    st.subheader("1 · Paint")
    palette_row()
    picker_col, tool_col = st.columns([1, 4], vertical_alignment="bottom")
    picker_col.color_picker("Colour", key="brush_color", help="Any colour; each colour becomes one region.")
    tool_col.segmented_control("Tool", list(TOOLS), format_func=TOOLS.get, key="tool")
    size_col, canvas_col = st.columns([3, 1])
    size_col.slider("Brush size", *RANGES["brush_size"], key="brush_size")
    canvas_col.selectbox("Canvas size", CANVAS_SIZES, key="canvas_size", on_change=on_canvas_size,
                         format_func=lambda s: f"{s} px", help="Generation size for real models (512 is SD's).")
    st.radio("Background", list(BACKGROUNDS), format_func=BACKGROUNDS.get, key="background", horizontal=True,
             help="Blank canvas, a photo to edit, or the last result to keep painting on it.")
    if st.session_state.background != "blank":
        st.toggle("Change only what I paint", key="edit_mode",
                  help="On: every pixel you do not paint stays as it is (an edit). Off: re-imagine the whole "
                       "image from your strokes over it.")
    side = st.session_state.canvas_side
    background = canvas_background(side)
    color = st.session_state.brush_color
    st.space("small")  # room for the canvas toolbar, which sits above its top-right corner
    result = st_canvas(
        fill_color=color, stroke_color=color, stroke_width=st.session_state.brush_size,
        drawing_mode=st.session_state.tool or "freedraw", background_image=background,
        initial_drawing=st.session_state.canvas_initial, height=side, width=side,
        return_image_data=True, key=f"canvas-{st.session_state.canvas_version}",
    )
    pixels = result.image_data
    if pixels is None:  # a freshly (re)mounted canvas has not sent its pixels yet
        strokes = st.session_state.canvas_fallback
    else:
        strokes = serving.strokes_from_canvas(pixels)
    if strokes is not None and strokes.size != (side, side):  # high-DPI screens send more pixels
        strokes = strokes.resize((side, side), Image.Resampling.LANCZOS)
    st.session_state.drawing, st.session_state.strokes = result.json_data, strokes  # to rescale / restore
    st.caption("Undo, redo and clear are in the canvas toolbar. Filled shapes make clean regions.")
    return strokes, background, side


# ----------------------------------------------------------------------------- prompt, knobs, regions

def on_guided_latent() -> None:
    st.session_state.update(form.guided_latent_knobs(st.session_state.guidance_latent, st.session_state.steps))


def on_style() -> None:
    st.session_state.prompt = serving.apply_style(st.session_state.prompt, st.session_state.style)


def prompt_section() -> None:
    st.subheader("2 · Describe")
    st.text_area("Prompt", key="prompt", height=80, placeholder="a red hut beside a blue lake, mountains behind")
    st.pills("Style", list(serving.STYLE_PRESETS), key="style", on_change=on_style,
             help="Adds (or swaps) a style phrase at the end of the prompt.")
    st.text_input("Negative prompt", key="negative_prompt", help="What the image should not show.")
    st.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key="method", horizontal=True,
             help="GradOP+ follows strokes with realistic detail; SDEdit is the classic baseline; "
                  "Compare runs all four with the same seed.")
    seed_col, random_col = st.columns([2, 1], vertical_alignment="bottom")
    random_col.checkbox("Random seed", key="random_seed")
    seed_col.number_input("Seed", *RANGES["seed"], step=1, key="seed", disabled=st.session_state.random_seed,
                          help="Same seed and settings give the same image.")


def advanced_section() -> None:
    method = st.session_state.method
    guided, plus, two_pass = method != "text", method in ("gradop+", "compare"), method in ("gradop", "compare")
    with st.expander("Advanced settings"):
        a, b = st.columns(2)
        a.number_input("Steps", *RANGES["steps"], key="steps",
                       help=f"Denoising steps: more is slower and finer ({DEFAULTS['steps']}).")
        b.number_input("Guidance", *RANGES["guidance_scale"], step=0.5, key="guidance_scale",
                       help=f"How strongly the prompt steers the image ({DEFAULTS['guidance_scale']}).")
        a.slider("Strength", *RANGES["strength"], step=0.05, key="strength", disabled=not guided,
                 help="Where stroke guidance starts; for SDEdit the noise added to the painting "
                      f"({DEFAULTS['strength']}).")
        b.number_input("Images per method", *RANGES["num_images"], key="num_images", help="More images take longer.")
        a.number_input("Iterations", *RANGES["iterations"], key="iterations", disabled=not plus,
                       help=f"GradOP+: sampling steps that pull the image towards the strokes "
                            f"({DEFAULTS['iterations']}).")
        b.number_input("Gradient steps", *RANGES["grad_steps"], key="grad_steps", disabled=not plus,
                       help=f"GradOP+: gradient steps per pull ({DEFAULTS['grad_steps']}; the release: "
                            f"{RELEASE_ADAM['grad_steps']}); the main cost on a CPU.")
        a.number_input("Optimisation steps", *RANGES["opt_steps"], key="opt_steps", disabled=not two_pass,
                       help=f"GradOP: gradient steps of its optimisation pass ({DEFAULTS['opt_steps']}).")
        b.selectbox("Painting function", CHOICES["painting"], key="painting", disabled=not guided,
                    help="How an image is reduced to a painting: blur (release) or median + palette (slower).")
        a.number_input("Learning rate", *RANGES["lr"], step=0.05, format="%.3f", key="lr", disabled=not plus,
                       help=f"GradOP+: the Adam step on the latent ({DEFAULTS['lr']}; the release: "
                            f"{RELEASE_ADAM['grad_steps']} steps of {RELEASE_ADAM['lr']}); with the denoised "
                            "guided latents, the latent's step at every pull.")
        b.number_input("Optimisation learning rate", *RANGES["opt_lr"], step=0.01, format="%.3f", key="opt_lr",
                       disabled=not two_pass,
                       help=f"GradOP: the Adam step of its optimisation pass ({DEFAULTS['opt_lr']}).")
        a.selectbox("Guidance decoder", CHOICES["guidance_decoder"], key="guidance_decoder",
                    disabled=not (plus or two_pass),
                    help="What decodes the latent while it is pulled to the strokes: vae (exact, the release's) or "
                         "a cheaper stand-in (faster on a CPU, less realistic on the demo model; README).")
        b.selectbox("Guided latent", CHOICES["guidance_latent"], key="guidance_latent", disabled=not plus,
                    on_change=on_guided_latent,
                    help="GradOP+: optimise the noisy latent (the release's) or the predicted clean one (x0); or "
                         "denoised: many small pulls through the model's own clean prediction (more realistic at "
                         "the same faithfulness on the demo model, slower); denoised-fast: the same pulls with the "
                         "model's prediction held fixed (about half of denoised's time). Choosing one sets its "
                         "strength, iterations and learning rate.")
        a.slider("Region strength", *RANGES["region_strength"], step=0.05, key="region_strength",
                 help="How strongly each painted region is tied to its word (0.1-1).")


def on_add_words(words: list[str]) -> None:
    st.session_state.prompt = serving.add_words(st.session_state.prompt, words)


def regions_section(strokes: Image.Image | None) -> tuple[list, dict]:
    """Swatches of the painted regions, each with a word of the prompt; returns (regions, {hex: word})."""
    st.subheader("3 · Region words")
    regions = find_regions_cached(strokes.tobytes(), strokes.size) if strokes is not None else []
    if not regions:
        st.caption("Painted colour regions appear here; give each a word of the prompt so the model "
                   "knows what it is (e.g. blue = lake).")
        return [], {}
    prompt = st.session_state.prompt
    words = serving.prompt_words(prompt)
    assigned = {}
    for region in regions:
        key = f"word-{region.hex}"
        current = st.session_state.get(key)
        options = ["", *words, *([current] if current and current not in words else [])]
        swatch, select = st.columns([1, 6], vertical_alignment="center")
        swatch.image(serving.region_swatch(region))
        word = select.selectbox(
            f"Region {region.hex} · {region.area_fraction:.0%} of the canvas", options, key=key,
            format_func=lambda w: w or "— no word (the model guesses) —", accept_new_options=True,
            help="Pick a word of the prompt, or type one.")
        if word:
            assigned[region.hex] = word
    st.caption(f"{len(assigned)} of {len(regions)} regions have a word.")
    missing = serving.missing_words(prompt, assigned.values())
    if missing:
        st.warning(f"Not in the prompt: {', '.join(missing)}. Region words must appear in the prompt.")
        st.button("Add them to the prompt", on_click=on_add_words, args=(missing,), key="add_words")
    return regions, assigned


# ----------------------------------------------------------------------------- generation

def start_generation(pipeline, strokes, background, side, regions, assigned, threads) -> None:
    s = st.session_state
    problem = form.input_problem(s, strokes, background, assigned)
    if problem:
        s.notice = ("warning", problem)
        return
    seed = serving.new_seed() if s.random_seed else int(s.seed)
    runs = form.generation_runs(s, pipeline.default_size, strokes, background, side, regions, assigned, seed)
    settings = form.recorded_settings(s, seed, assigned)
    meta = {"settings": settings, "drawing": s.drawing, "strokes": strokes, "background": background}
    s.job = jobs.GenerationJob(pipeline, runs, estimates=jobs.estimate_runs(pipeline, runs), meta=meta,
                               alive=session_alive(),
                               threads=threads if pipeline.device.type == "cpu" else None).start()


def session_alive():
    """A function telling whether this browser session is still connected, for the job to
    cancel itself when its tab is closed or reloaded (None outside a running server)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not runtime.exists():
        return None
    server, session_id = runtime.get_instance(), context.session_id
    return lambda: server.is_active_session(session_id)


def collect_finished_job() -> None:
    """Move a finished job's images into the gallery and history (called at the top of each run)."""
    s = st.session_state
    job = s.job
    if job is None or not job.finished:
        return
    s.job = None
    if job.outputs:
        s.outputs = job.outputs
        number = (s.history[0].number + 1) if s.history else 1
        meta = job.meta
        entry = jobs.HistoryEntry(number, meta["settings"], job.outputs, meta["drawing"], meta["strokes"],
                                     meta["background"])
        s.history = jobs.add_to_history(s.history, entry)
    if job.status == "done":
        s.notice = ("success", f"Done in {jobs.format_duration(job.elapsed)} · seed {job.runs[0].kwargs['seed']}.")
    else:
        s.notice = ("info" if job.status == "cancelled" else "error", job.message)


# Each poll re-renders the panel in the browser, which shares the CPU on a laptop. A poll returns at
# once: while a script run lasts the browser animates its running state, and waiting up to 0.8 s per
# poll for the job's end (to show "Done" sooner) made Compare all slower: median 14.6 s against
# 12.1 s, Chromium 4.5-7.5 s against 3.4-4.7 s of CPU (bench/bench_app.py --quick, 5 alternating pairs).
PROGRESS_POLL_S = 1.0


@st.fragment(run_every=PROGRESS_POLL_S)
def progress_panel() -> None:
    job = st.session_state.job
    if job is None:
        return
    if not job.finished and job.seconds_left() < PROGRESS_POLL_S:
        # The last poll: show "Done" when it is, not up to a poll later. seconds_left counts the
        # runs still to come (in Compare all the last, text-only, costs one decode): before it
        # did, this wait was skipped and "Done" came 0.2-1.0 s after the job (bench/bench_app.py).
        job.wait(PROGRESS_POLL_S)
    if job.finished:
        st.rerun()
    st.progress(job.fraction, text=job.describe())
    job.request_preview()  # the next poll shows a fresh one; none is decoded between polls
    if job.preview is not None:
        st.image(serving.for_display(job.preview), caption="live preview", width=256)
    st.button("Cancelling…" if job.cancelling else "Cancel", key="cancel", on_click=job.cancel,
              disabled=job.cancelling)


def generate_section(pipeline, strokes, background, side, regions, assigned, threads) -> None:
    st.subheader("4 · Generate")
    s = st.session_state
    if pipeline is not None and pipeline.device.type == "cpu":
        size = serving.generation_side(pipeline.default_size, side)
        runs = form.generation_runs(s, pipeline.default_size, None, None, side, [], {}, 0)
        seconds = sum(jobs.estimate_runs(pipeline, runs))
        st.info(f"No GPU: running on the CPU. One generation takes {jobs.format_duration(seconds)} "
                f"at {size} px with these settings.")
    clicked = st.button("Generate", type="primary", key="generate", disabled=pipeline is None or s.job is not None)
    if clicked:
        s.notice = None
        start_generation(pipeline, strokes, background, side, regions, assigned, threads)
    if s.notice:
        kind, text = s.notice
        getattr(st, kind)(text)
        if kind == "warning":  # input problems are shown once; a job's outcome stays until the next one
            s.notice = None
    if s.job is not None:
        progress_panel()


# ----------------------------------------------------------------------------- results and history

def continue_from(output: jobs.Output) -> None:
    st.session_state.update(continue_from=output.image, background="result")
    redraw_canvas(None)


def results_section() -> None:
    outputs = st.session_state.outputs
    if not outputs:
        return
    st.subheader("Results")
    columns = st.columns(min(len(outputs), 4))
    for i, output in enumerate(outputs):
        with columns[i % len(columns)]:
            st.image(serving.for_display(output.image, 384), caption=output.caption)
            st.download_button("Download PNG", output.png, file_name=output.file_name, mime="image/png",
                               key=f"download-{i}", on_click="ignore", help="With its settings in the PNG metadata.")
            st.button("Continue from this result", key=f"continue-{i}", on_click=continue_from, args=(output,),
                      help="Use it as the canvas background and paint changes over it.")


def reopen(entry: jobs.HistoryEntry) -> None:
    s = st.session_state
    s.update(serving.settings_for_widgets(entry.settings, set(DEFAULTS)))
    for hex_color, word in entry.settings.get("region_words", {}).items():
        s[f"word-{hex_color}"] = word
    s.canvas_side = entry.settings.get("canvas_size", s.canvas_side)
    s.outputs = entry.outputs
    # The image the strokes were painted over comes back through the "continue" slot.
    s.continue_from, s.background = entry.background, "blank" if entry.background is None else "result"
    redraw_canvas(entry.drawing, entry.strokes)


def history_section() -> None:
    history = st.session_state.history
    if not history:
        return
    with st.expander(f"History of this tab ({len(history)})"):
        for entry in history:
            thumbs, text = st.columns([2, 3], vertical_alignment="center")
            thumbs.image([serving.for_display(o.image, 96) for o in entry.outputs], width=96)
            text.write(entry.title)
            text.button("Re-open these settings", key=f"reopen-{entry.number}", on_click=reopen, args=(entry,))


# ----------------------------------------------------------------------------- page

def repair_settings() -> None:
    """Values no widget can produce (a tampered message, a stale entry) become the defaults."""
    s = st.session_state
    s.update(form.fixes(s))
    if s.get("canvas_side") not in CANVAS_SIZES:
        s.canvas_side = s.canvas_size


def widget_keys() -> list[str]:
    return [*DEFAULTS, "model", *(k for k in st.session_state if str(k).startswith("word-"))]


def restore_after_failure() -> None:
    """Streamlit forgets the widgets that a failed run did not draw: bring back their last good
    values (prompt, settings, region words) and the drawing on a freshly mounted canvas."""
    s = st.session_state
    for key, value in s.kept_widgets.items():
        if key not in s:
            s[key] = value
    redraw_canvas(s.drawing, s.strokes)


def page(config: serving.AppConfig) -> None:
    pipeline = sidebar(config)
    if pipeline is not None and pipeline.model_name in serving.TEST_MODELS:
        st.warning(f"**test model: outputs are noise.** '{pipeline.model_name}' has random weights and only "
                   "shows the mechanics; the operator sets a real model with GRADOP_MODEL or --model.",
                   icon=":material/warning:")
    collect_finished_job()
    paint_col, control_col = st.columns([3, 2], gap="large")
    with paint_col:
        strokes, background, side = canvas_section()
    with control_col:
        prompt_section()
        advanced_section()
        regions, assigned = regions_section(strokes)
        generate_section(pipeline, strokes, background, side, regions, assigned, serving.cpu_threads(config.threads))
    results_section()
    history_section()


def main() -> None:
    s = st.session_state
    for key, value in STATE.items():
        s.setdefault(key, value.copy() if isinstance(value, (list, dict)) else value)
    if s.page_failed is not None:
        restore_after_failure()
    for key, value in DEFAULTS.items():
        s.setdefault(key, value)
    repair_settings()
    st.title("gradop · paint, describe, generate")
    if s.page_failed:
        st.error(s.page_failed)
    try:
        config = serving.resolve_config(sys.argv[1:])
    except ValueError as error:
        st.error(f"Server configuration: {error}")
        st.stop()
    try:
        page(config)
    except Exception as error:  # noqa: BLE001 - one line for the user; the traceback is in the server log
        log.error("the page failed", exc_info=error)
        first_time = s.page_failed is None
        s.page_failed = (f"Something went wrong on this page ({error.__class__.__name__}); your prompt, settings "
                         "and drawing are kept. Try again, or reload the page if it persists.")
        if first_time:
            st.rerun()  # draw the page again at once, with the kept values
        st.error(s.page_failed)
        return
    s.page_failed = None
    s.kept_widgets = {key: s[key] for key in widget_keys() if key in s}

main()
