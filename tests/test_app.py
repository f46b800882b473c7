"""The Streamlit page under streamlit's AppTest, on the tiny built-in model.

The canvas is a custom component, which AppTest cannot draw on: a drawing is injected into its
widget state (see shared/STACK.md). Generation runs on a worker thread, so a test presses
Generate, waits for the job, then runs the page again to see the results.
"""

import base64
import io
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from gradop.metadata import read_params
from gradop.options import RELEASE_ADAM, GradopPlusOptions
from gradop.pipeline import GenerationResult, GradopPipeline
from gradop.region_words import RegionWord

APP = str(Path(__file__).resolve().parents[1] / "app.py")
CANVAS = "canvas-0"  # the canvas widget's key until something remounts it
BLUE, RED = (47, 111, 208), (216, 58, 58)
# Few steps everywhere: the page's mechanics are the same at 2 steps as at 50.
FAST = dict(steps=2, iterations=1, grad_steps=1, opt_steps=1)
PROMPT = "a red hut beside a blue lake"


@pytest.fixture(autouse=True)
def server_environment(monkeypatch):
    """The tiny model, whatever the app's default; no operator settings from the shell."""
    for name in ("GRADOP_ALLOWED_MODELS", "GRADOP_CONFIG", "GRADOP_DEVICE", "GRADOP_DTYPE", "GRADOP_COMPILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADOP_MODEL", "tiny-random")
    # The app's jobs set torch's CPU threads (every core but one by default); keep this process's.
    monkeypatch.setenv("GRADOP_THREADS", str(torch.get_num_threads()))


@pytest.fixture
def generate_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every library call the page makes (the calls still run)."""
    calls, real_generate = [], GradopPipeline.generate

    def spy(self, method, prompt, strokes=None, **kwargs):
        calls.append(dict(kwargs, method=method, prompt=prompt, strokes=strokes))
        return real_generate(self, method, prompt, strokes, **kwargs)

    monkeypatch.setattr(GradopPipeline, "generate", spy)
    return calls


@pytest.fixture
def fake_generate(monkeypatch) -> list[dict]:
    """An instant stand-in for the library call, for tests about the page's own state."""
    calls = []

    def fake(self, method, prompt, strokes=None, *, seed=None, num_images=1, callback=None, **kwargs):
        calls.append(dict(kwargs, method=method, prompt=prompt, strokes=strokes, seed=seed))
        params = dict(method=method, prompt=prompt, seed=seed, num_images=num_images, height=64, width=64)
        return GenerationResult([Image.new("RGB", (64, 64), "gray")] * num_images, params)

    monkeypatch.setattr(GradopPipeline, "generate", fake)
    return calls


def painting(side: int = 512) -> Image.Image:
    """Two strokes on a transparent canvas, as the canvas component sends them."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 260, 470, 470), fill=(*BLUE, 255))  # a lake, bottom
    draw.ellipse((180, 60, 330, 220), fill=(*RED, 255))  # a hut, top
    return image


def canvas_state(image: Image.Image, objects: list | None = None) -> dict:
    """The canvas widget's value: Fabric JSON (`raw`) and the rendered strokes as a PNG data URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"version": "7.0.0", "objects": objects or [{"type": "Path"}]}, "data": url}}


def open_app(drawing: Image.Image | None = None, **settings) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if drawing is not None:
        at.session_state[CANVAS] = canvas_state(drawing)
    for key, value in (FAST | settings).items():
        at.session_state[key] = value
    return at.run()


def generate(at: AppTest, timeout: float = 180) -> AppTest:
    at.button(key="generate").click().run()
    job = at.session_state["job"]
    if job is not None:
        assert job.wait(timeout), "generation did not finish"
    return at.run()


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def no_exception(at: AppTest) -> None:
    assert not at.exception, texts(at.exception)


def test_page_shows_test_model_banner_cpu_notice_and_allow_list(monkeypatch):
    monkeypatch.setenv("GRADOP_ALLOWED_MODELS", "tiny-random, /srv/models/other-model")
    at = open_app()
    no_exception(at)
    assert "test model: outputs are noise" in texts(at.warning)
    assert "No GPU" in texts(at.info)
    model = at.sidebar.selectbox(key="model")
    assert list(model.options) == ["tiny-random (test model)", "other-model"]  # paths are not shown
    assert model.value == "tiny-random"


def test_paint_assign_a_region_word_generate_and_get_the_png_with_metadata(generate_calls):
    at = open_app(painting(), prompt=PROMPT, random_seed=False, seed=7)
    no_exception(at)
    selects = [s for s in at.selectbox if s.key and s.key.startswith("word-")]
    assert len(selects) == 2, [s.label for s in at.selectbox]  # one swatch per painted colour
    assert len([i for i in at.image if not i.captions or not i.captions[0]]) >= 2
    assert "0 of 2 regions have a word" in texts(at.caption)
    blue = next(s for s in selects if s.key == "word-#2f6fd0")
    assert "lake" in blue.options and "hut" in blue.options and "a" not in blue.options
    blue.set_value("lake")
    at = generate(at)
    no_exception(at)
    assert "1 of 2 regions have a word" in texts(at.caption)
    assert "Done" in texts(at.success), texts(at.error)

    # the assignment reached the library as the lake's mask
    regions = generate_calls[-1]["regions"]
    assert len(regions) == 1 and isinstance(regions[0], RegionWord) and regions[0].word == "lake"
    mask = regions[0].mask
    assert mask[400, 250] and not mask[140, 255] and not mask[10, 10]

    # the result, its download and its parameters
    output = at.session_state["outputs"][0]
    params = read_params(output.png)
    assert params["method"] == "gradop+" and params["prompt"] == PROMPT and params["seed"] == 7
    assert params["steps"] == 2 and params["height"] == 64  # the tiny model's native size
    assert [r["word"] for r in params["regions"]] == ["lake"]
    assert Image.open(io.BytesIO(output.png)).size == (64, 64)
    assert [d.label for d in at.get("download_button")] == ["Download PNG"]
    assert any("seed 7" in c for image in at.image for c in image.captions)
    assert len(at.session_state["history"]) == 1


def test_a_region_word_missing_from_the_prompt_is_flagged_and_can_be_added():
    at = open_app(painting(), prompt="a red hut beside a lake")
    at.selectbox(key="word-#2f6fd0").set_value("lake").run()
    at.text_area(key="prompt").set_value("a red hut").run()  # the word stays assigned
    no_exception(at)
    assert "Not in the prompt: lake" in texts(at.warning)
    at.button(key="generate").click().run()  # refused before any work starts
    assert "Region words not in the prompt: lake" in texts(at.warning)
    assert at.session_state["job"] is None and not at.session_state["outputs"]
    at.button(key="add_words").click().run()
    assert at.text_area(key="prompt").value == "a red hut, lake"
    assert "not in the prompt" not in texts(at.warning).lower()


def test_style_preset_edits_the_prompt_visibly():
    at = open_app(prompt="a fox")
    at.pills(key="style").set_value("oil painting").run()
    assert at.text_area(key="prompt").value == "a fox, oil painting, visible brush strokes"
    at.pills(key="style").set_value("photo").run()
    assert at.text_area(key="prompt").value == "a fox, a photograph, highly detailed, natural light"


def test_compare_runs_all_four_methods_with_one_seed():
    at = open_app(painting(), prompt=PROMPT, method="compare")
    at = generate(at)
    no_exception(at)
    outputs = at.session_state["outputs"]
    assert [o.params["method"] for o in outputs] == ["gradop+", "gradop", "sdedit", "text"], texts(at.error)
    assert len({o.params["seed"] for o in outputs}) == 1
    assert len(at.get("download_button")) == 4


def test_guidance_knobs_reach_the_library_and_the_png(generate_calls):
    at = open_app(painting(), prompt=PROMPT, method="gradop+", lr=0.15, guidance_decoder="vae-half",
                  guidance_latent="x0", random_seed=False, seed=3)
    assert not at.number_input(key="lr").disabled and not at.selectbox(key="guidance_latent").disabled
    at = generate(at)
    no_exception(at)
    call = generate_calls[-1]
    assert (call["method"], call["lr"], call["guidance_decoder"], call["guidance_latent"]) == \
        ("gradop+", 0.15, "vae-half", "x0")
    params = at.session_state["outputs"][0].params
    assert (params["lr"], params["guidance_decoder"], params["guidance_latent"]) == (0.15, "vae-half", "x0")
    at.session_state["method"] = "sdedit"
    at.run()
    assert at.selectbox(key="guidance_decoder").disabled and at.selectbox(key="guidance_latent").disabled


@pytest.mark.parametrize("latent", ["denoised", "denoised-fast"])
def test_choosing_the_denoised_latent_sets_its_schedule_and_generates(generate_calls, latent):
    at = open_app(painting(), prompt=PROMPT, method="gradop+", random_seed=False, seed=3)
    at.selectbox(key="guidance_latent").select(latent).run()
    steps = at.session_state["steps"]
    assert (at.session_state["strength"], at.session_state["iterations"]) == (0.9, round(0.8 * steps))
    assert at.session_state["lr"] == pytest.approx(0.6 / round(0.8 * steps), abs=1e-4)
    at = generate(at)
    no_exception(at)
    assert not at.error, texts(at.error)
    call = generate_calls[-1]
    assert (call["guidance_latent"], call["iterations"], call["lr"]) == \
        (latent, at.session_state["iterations"], at.session_state["lr"])
    at.selectbox(key="guidance_latent").select("noisy").run()  # back to the release's schedule
    assert (at.session_state["strength"], at.session_state["iterations"], at.session_state["lr"]) == \
        (GradopPlusOptions().strength, GradopPlusOptions().iterations, GradopPlusOptions().lr)


def test_knob_help_quotes_the_librarys_defaults_and_the_releases_schedule():
    at = open_app()
    plus = GradopPlusOptions()
    assert f"({plus.grad_steps}; the release: {RELEASE_ADAM['grad_steps']})" in at.number_input(key="grad_steps").help
    assert f"({plus.lr}; the release: {RELEASE_ADAM['grad_steps']} steps of {RELEASE_ADAM['lr']})" in \
        at.number_input(key="lr").help
    assert f"({plus.iterations})" in at.number_input(key="iterations").help


def test_gradop_has_its_own_learning_rate(generate_calls):
    # GradOP+'s default step (1.5, one Adam step) is not GradOP's (0.1, fifty): one widget each.
    at = open_app(painting(), prompt=PROMPT, method="gradop", opt_lr=0.05, random_seed=False, seed=3)
    assert at.number_input(key="lr").disabled and not at.number_input(key="opt_lr").disabled
    at = generate(at)
    no_exception(at)
    assert generate_calls[-1]["method"] == "gradop" and generate_calls[-1]["opt_lr"] == 0.05
    assert at.session_state["outputs"][0].params["opt_lr"] == 0.05


def test_the_servers_cpu_threads_reach_the_job(fake_generate, monkeypatch):
    from gradop import jobs

    threads, real_init = [], jobs.GenerationJob.__init__

    def spy(self, *args, **kwargs):
        threads.append(kwargs.get("threads"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(jobs.GenerationJob, "__init__", spy)
    at = open_app(painting(), prompt=PROMPT)
    at.button(key="generate").click().run()
    assert threads == [torch.get_num_threads()]  # GRADOP_THREADS, set above
    job = at.session_state["job"]  # an instant job may already be collected (the last poll waits for it)
    assert job is None or job.wait(60)


def test_the_operators_compile_setting_reaches_the_model(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **_: compiled.append(type(module).__name__) or module)
    monkeypatch.setenv("GRADOP_COMPILE", "1")
    at = open_app()
    no_exception(at)
    assert compiled == ["UNet2DConditionModel"]  # the guidance decoder compiles on its first use


def test_reopen_restores_an_earlier_results_settings(fake_generate):
    at = open_app(painting(), prompt="first prompt", random_seed=False, seed=11)
    at = generate(at)
    at.text_area(key="prompt").set_value("second prompt").run()
    at.session_state["seed"] = 12
    at = generate(at)
    assert len(at.session_state["history"]) == 2
    at.session_state[CANVAS] = canvas_state(Image.new("RGBA", (512, 512)))  # cleared in between
    at.run()
    assert not [s for s in at.selectbox if s.key.startswith("word-")]
    at.button(key="reopen-1").click().run()
    no_exception(at)
    assert at.text_area(key="prompt").value == "first prompt"
    assert len([s for s in at.selectbox if s.key.startswith("word-")]) == 2  # the strokes are back
    assert at.number_input(key="seed").value == 11
    assert at.session_state["outputs"][0].params["prompt"] == "first prompt"


def test_continue_from_a_result_puts_it_behind_the_canvas(fake_generate):
    at = generate(open_app(painting(), prompt=PROMPT))
    at.button(key="continue-0").click().run()
    no_exception(at)
    assert at.radio(key="background").value == "result"
    assert at.session_state["continue_from"] is not None
    assert at.toggle(key="edit_mode").value is True  # continuing edits by default
    # the strokes were cleared (new canvas): an edit of nothing is explained ...
    at.button(key="generate").click().run()
    assert "Nothing is painted" in texts(at.warning)
    # ... and re-imagining from the result alone is allowed
    at.toggle(key="edit_mode").set_value(False).run()
    at = generate(at)
    assert len(at.session_state["history"]) == 2, texts(at.error) + texts(at.warning)
    assert fake_generate[-1]["edit"] is False


def test_cancel_stops_a_running_generation(monkeypatch):
    def slow(self, method, prompt, strokes=None, *, callback=None, **kwargs):
        from gradop.pipeline import Progress

        for step in range(1, 2000):
            callback(Progress("sampling", step, 2000))
            time.sleep(0.01)
        raise AssertionError("was not cancelled")

    monkeypatch.setattr(GradopPipeline, "generate", slow)
    at = open_app(painting(), prompt=PROMPT)
    at.button(key="generate").click().run()
    assert at.button(key="cancel").label == "Cancel"
    assert at.get("progress"), "no progress bar"
    at.button(key="cancel").click().run()
    assert at.session_state["job"] is None or at.session_state["job"].wait(30)
    at.run()
    no_exception(at)
    assert "Generation cancelled" in texts(at.info)
    assert at.session_state[CANVAS]["drawing"]["data"], "the drawing was lost"


def test_a_photo_alone_is_an_editing_target(fake_generate):
    photo = io.BytesIO()
    Image.new("RGB", (300, 200), (90, 140, 60)).save(photo, format="JPEG")
    at = open_app(prompt=PROMPT, background="photo", method="sdedit", edit_mode=False)
    at.file_uploader(key="upload").upload("field.jpg", photo.getvalue(), "image/jpeg").run()
    at = generate(at)
    no_exception(at)
    call = fake_generate[-1]
    assert call["method"] == "sdedit" and call["background"].size == (512, 512)  # fitted to the canvas
    assert call["strokes"].mode == "RGBA" and call["strokes"].getextrema()[3] == (0, 0)  # no strokes on top
    assert call["edit"] is False  # re-imagine: the photo alone is the target


def test_painting_over_a_photo_edits_it_by_default_with_every_method(generate_calls):
    photo = io.BytesIO()
    Image.new("RGB", (300, 200), (90, 140, 60)).save(photo, format="PNG")
    at = open_app(painting(), prompt=PROMPT, background="photo", method="compare", random_seed=False, seed=5)
    at.file_uploader(key="upload").upload("field.png", photo.getvalue(), "image/png").run()
    assert at.toggle(key="edit_mode").value is True
    at = generate(at)
    no_exception(at)
    assert {c["method"] for c in generate_calls} == {"gradop+", "gradop", "sdedit", "text"}
    assert all(c["edit"] is True and c["background"] is not None for c in generate_calls)
    outputs = at.session_state["outputs"]
    assert {o.params["mode"] for o in outputs} == {"edit"}
    # The corners were not painted: they are the photo's pixels (fitted to the canvas, then the model).
    for output in outputs:
        corner = output.image.convert("RGB").getpixel((0, 0))
        assert max(abs(a - b) for a, b in zip(corner, (90, 140, 60))) <= 2


def test_changing_the_canvas_size_keeps_the_drawing_scaled():
    path = {"type": "Path", "left": 100, "top": 40, "scaleX": 1, "scaleY": 1}
    at = open_app(painting(), prompt=PROMPT)
    at.session_state[CANVAS] = canvas_state(painting(), [path])
    at.run()
    at.selectbox(key="canvas_size").set_value(256).run()
    no_exception(at)
    assert at.session_state["canvas_side"] == 256 and at.session_state["canvas_version"] == 1
    assert at.session_state["canvas_initial"]["objects"][0] == {"type": "Path", "left": 50, "top": 20,
                                                               "scaleX": 0.5, "scaleY": 0.5}
    assert at.session_state["strokes"].size == (256, 256)  # the regions still know the strokes
    assert len([s for s in at.selectbox if s.key.startswith("word-")]) == 2


# ----------------------------------------------------------------------------- bad input


def test_empty_prompt_is_explained():
    at = open_app(painting())
    at.button(key="generate").click().run()
    no_exception(at)
    assert "Write a prompt first" in texts(at.warning)


def test_empty_canvas_is_explained_and_text_only_still_works(fake_generate):
    at = open_app(prompt=PROMPT)
    at.button(key="generate").click().run()
    no_exception(at)
    assert "The canvas is empty" in texts(at.warning)
    at.radio(key="method").set_value("text").run()
    at = generate(at)
    assert at.session_state["outputs"][0].params["method"] == "text", texts(at.error)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("notes.png", b"this is not an image", "could not read the upload as an image"),
        ("empty.png", b"", "is empty"),
        ("bomb.png", None, "MP limit"),
    ],
)
def test_bad_uploads_get_one_line_messages(name, data, message):
    if data is None:  # 6000 x 6000 pixels: a few kB of PNG, 36 MP once decoded
        buffer = io.BytesIO()
        Image.new("1", (6000, 6000)).save(buffer, format="PNG")
        data = buffer.getvalue()
    at = open_app(painting(), prompt=PROMPT, background="photo")
    at.file_uploader(key="upload").upload(name, data, "image/png").run()
    no_exception(at)
    assert message in texts(at.error)
    assert at.button(key="generate").disabled is False  # the page keeps working


def test_a_model_that_is_not_available_offline_is_reported(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADOP_MODEL", "nobody/no-such-model")
    at = open_app(painting(), prompt=PROMPT)
    no_exception(at)
    assert "no-such-model" in texts(at.sidebar.error) and "offline" in texts(at.sidebar.error)
    assert at.button(key="generate").disabled


def test_out_of_memory_names_the_knob_to_lower(monkeypatch):
    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(GradopPipeline, "generate", out_of_memory)
    at = generate(open_app(painting(), prompt=PROMPT))
    no_exception(at)
    assert "Out of memory" in texts(at.error) and "canvas size" in texts(at.error)


def test_a_library_error_becomes_its_message(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise ValueError("word 'boat' is not in the prompt\nsecond line")

    monkeypatch.setattr(GradopPipeline, "generate", refuse)
    at = generate(open_app(painting(), prompt=PROMPT))
    no_exception(at)
    assert texts(at.error) == "word 'boat' is not in the prompt"


def test_a_broken_server_config_file_is_reported(monkeypatch, tmp_path):
    config = tmp_path / "app.toml"
    config.write_text("model = 3\n")
    monkeypatch.setenv("GRADOP_CONFIG", str(config))
    at = open_app()
    no_exception(at)
    assert "'model'" in texts(at.error) and "must be a str" in texts(at.error)
    monkeypatch.delenv("GRADOP_CONFIG")
    monkeypatch.setenv("GRADOP_THREADS", "0")
    at = open_app()
    no_exception(at)
    assert "Server configuration: threads must be a whole number >= 1" in texts(at.error)


def test_a_decompression_bomb_upload_is_one_line_and_keeps_prompt_settings_and_drawing():
    from conftest import bomb_png

    at = open_app(painting(), prompt=PROMPT, background="photo", steps=7, method="sdedit")
    at.selectbox(key="word-#2f6fd0").set_value("lake").run()
    at.file_uploader(key="upload").upload("huge.png", bomb_png(30000, 30000), "image/png").run()
    no_exception(at)
    assert texts(at.error) == "the uploaded photo has far more pixels than the 16 MP limit; resize it first"
    assert at.text_area(key="prompt").value == PROMPT and at.number_input(key="steps").value == 7
    assert at.radio(key="method").value == "sdedit" and at.selectbox(key="word-#2f6fd0").value == "lake"
    assert len([s for s in at.selectbox if s.key.startswith("word-")]) == 2  # the drawing is still there
    assert at.session_state[CANVAS]["drawing"]["data"]


@pytest.mark.parametrize("always", [False, True], ids=["once", "every run"])
def test_an_unexpected_page_error_is_one_line_and_loses_nothing(monkeypatch, always):
    from gradop import serving

    at = open_app(painting(), prompt=PROMPT, steps=9)
    at.selectbox(key="word-#2f6fd0").set_value("lake").run()
    real_prompt_words, failures = serving.prompt_words, []

    def broken(prompt):
        if always or not failures:
            failures.append(prompt)
            raise RuntimeError("/srv/gradop/internal/path.py broke")
        return real_prompt_words(prompt)

    monkeypatch.setattr(serving, "prompt_words", broken)
    at.run()
    no_exception(at)
    assert "Something went wrong on this page (RuntimeError)" in texts(at.error)
    assert "/srv" not in texts(at.error)  # no server paths
    if always:
        at.run()  # a rerun after a failed one brings back what that run did not draw
        monkeypatch.setattr(serving, "prompt_words", real_prompt_words)
        at.run()
    no_exception(at)
    assert at.text_area(key="prompt").value == PROMPT and at.number_input(key="steps").value == 9
    assert at.selectbox(key="word-#2f6fd0").value == "lake"



def test_a_missing_model_folder_is_reported_without_the_server_path(monkeypatch):
    monkeypatch.setenv("GRADOP_MODEL", "/srv/models/missing-model")
    at = open_app()
    no_exception(at)
    error = texts(at.sidebar.error)
    assert "'missing-model' does not exist" in error and "/srv" not in error
    assert at.button(key="generate").disabled


def test_white_paint_on_the_white_canvas_counts_as_empty(fake_generate):
    white = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    ImageDraw.Draw(white).rectangle((40, 40, 400, 400), fill=(255, 255, 255, 255))
    at = open_app(white, prompt=PROMPT)
    at.button(key="generate").click().run()
    no_exception(at)
    assert "The canvas is empty" in texts(at.warning) and not fake_generate
