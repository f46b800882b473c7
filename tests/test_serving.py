"""gradop.serving: the web app's server-side helpers, without Streamlit."""

import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gradop import serving
from gradop.serving import AppConfig


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./gradop-app.toml unless a test writes one
    for name in ("GRADOP_MODEL", "GRADOP_ALLOWED_MODELS", "GRADOP_CONFIG", "GRADOP_DEVICE", "GRADOP_DTYPE",
                 "GRADOP_THREADS", "GRADOP_COMPILE"):
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------- configuration


def test_default_config_serves_the_built_in_default_model():
    assert serving.resolve_config([]) == AppConfig(model=serving.DEFAULT_MODEL, allowed_models=(serving.DEFAULT_MODEL,))


def test_command_line_beats_environment_beats_config_file(tmp_path):
    (tmp_path / "gradop-app.toml").write_text('model = "from-file/model"\nallowed_models = ["a/b"]\ndevice = "cpu"\n')
    assert serving.resolve_config([]).model == "from-file/model"
    assert serving.resolve_config([]).allowed_models == ("from-file/model", "a/b")
    env = {"GRADOP_MODEL": "from-env/model", "GRADOP_ALLOWED_MODELS": "x/y, from-env/model ,"}
    config = serving.resolve_config([], env)
    assert config.model == "from-env/model" and config.allowed_models == ("from-env/model", "x/y")
    assert config.device == "cpu"  # still from the file
    config = serving.resolve_config(["--model", "tiny-random", "--allowed-models", "p/q", "--dtype", "float32"], env)
    assert config == AppConfig("tiny-random", ("tiny-random", "p/q"), "cpu", "float32")


def test_compile_from_the_operator_command_line_environment_or_file(tmp_path):
    assert serving.resolve_config([]).compile is False
    (tmp_path / "gradop-app.toml").write_text("compile = true\n")
    assert serving.resolve_config([]).compile is True
    assert serving.resolve_config([], {"GRADOP_COMPILE": "0"}).compile is False  # environment beats file
    (tmp_path / "gradop-app.toml").write_text("compile = false\n")
    assert serving.resolve_config([], {"GRADOP_COMPILE": "yes"}).compile is True
    assert serving.resolve_config(["--compile"], {"GRADOP_COMPILE": "off"}).compile is True
    with pytest.raises(ValueError, match="GRADOP_COMPILE must be 1/true/yes/on or 0/false/no/off"):
        serving.resolve_config([], {"GRADOP_COMPILE": "fast"})
    (tmp_path / "gradop-app.toml").write_text('compile = "yes"\n')
    with pytest.raises(ValueError, match="'compile' in .* must be a bool"):
        serving.resolve_config([])


def test_cpu_threads_from_the_operator_else_every_core_but_one(tmp_path, monkeypatch):
    (tmp_path / "gradop-app.toml").write_text("threads = 3\n")
    assert serving.resolve_config([]).threads == 3
    assert serving.resolve_config([], {"GRADOP_THREADS": "2"}).threads == 2
    assert serving.resolve_config(["--threads", "1"], {"GRADOP_THREADS": "2"}).threads == 1
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
            serving.resolve_config(["--threads", bad])
    assert serving.cpu_threads(5) == 5
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert serving.cpu_threads(None) == 1  # two cores: one for the generation, one for browser and server
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert serving.cpu_threads(None) == 7


def test_explicit_config_file_and_unknown_arguments(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('model = "m/n"\n')
    config = serving.resolve_config(["tests/test_app.py", "-q", "--config", str(path), "--durations=5"])
    assert config.model == "m/n"
    assert serving.resolve_config([], {"GRADOP_CONFIG": str(path)}).model == "m/n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("model = ", "not valid TOML"),
        ('modle = "x"', "unknown key 'modle'"),
        ("model = 3", "'model' in"),
        ('allowed_models = "a,b"', "must be a list"),
        ('allowed_models = ["a", 2]', "list of model names"),
    ],
)
def test_bad_config_files_get_one_line_messages(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        serving.resolve_config(["--config", str(path)])
    assert "\n" not in str(error.value)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ValueError, match="cannot read the app config file"):
        serving.resolve_config(["--config", str(tmp_path / "nope.toml")])


def test_web_users_only_get_allow_listed_models():
    config = AppConfig("tiny-random", ("tiny-random", "/srv/models/sd15"))
    assert serving.choose_model("/srv/models/sd15", config) == "/srv/models/sd15"
    assert serving.choose_model("/etc/passwd", config) == "tiny-random"
    assert serving.choose_model(None, config) == "tiny-random"


def test_the_server_log_gets_gradops_info_lines_once(capfd):
    logger = logging.getLogger("gradop")
    saved_handlers, saved_level = list(logger.handlers), logger.level
    logger.handlers = [h for h in logger.handlers if not getattr(h, "gradop_server", False)]  # app tests add it
    try:
        serving.log_to_server_output()
        serving.log_to_server_output()  # app.py runs on every rerun: still one handler
        assert sum(getattr(h, "gradop_server", False) for h in logger.handlers) == 1
        logging.getLogger("gradop.jobs").info("generation done: text in 1.00 s")
        assert capfd.readouterr().err.count("INFO gradop.jobs: generation done: text in 1.00 s") == 1
    finally:
        logger.handlers = saved_handlers
        logger.setLevel(saved_level)


def test_model_labels_hide_server_paths():
    assert serving.model_label("/srv/models/sd15") == "sd15"
    assert serving.model_label("./weights/model.safetensors") == "model.safetensors"
    assert serving.model_label("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert serving.model_label("tiny-random") == "tiny-random (test model)"


# ----------------------------------------------------------------------------- images, prompts, regions


def two_colour_strokes(side=128) -> Image.Image:
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, side // 2, side - 1, side - 1), fill=(47, 111, 208, 255))
    draw.ellipse((side // 4, 4, side // 2, side // 3), fill=(216, 58, 58, 255))
    return image


def test_strokes_from_canvas():
    assert serving.strokes_from_canvas(None) is None
    assert serving.strokes_from_canvas(np.zeros((8, 8, 4), np.uint8)) is None  # nothing painted
    painted = np.zeros((8, 8, 4), np.uint8)
    painted[2, 3] = (255, 0, 0, 255)
    strokes = serving.strokes_from_canvas(painted)
    assert strokes.mode == "RGBA" and strokes.getpixel((3, 2)) == (255, 0, 0, 255)


def test_sizes_for_generation_and_display():
    assert serving.generation_side(64, 512) == 64  # the toy model keeps its native size
    assert serving.generation_side(512, 768) == 768  # real models follow the canvas
    small = Image.new("RGB", (64, 64))
    assert serving.for_display(small).size == (256, 256)
    assert serving.for_display(Image.new("RGB", (512, 512))).size == (512, 512)
    assert serving.fit_background(Image.new("RGB", (300, 200)), 256).size == (256, 256)


def test_scale_drawing_scales_positions_and_sizes():
    drawing = {"version": "7", "objects": [{"type": "Path", "left": 10, "top": 20, "scaleX": 1, "scaleY": 2}]}
    scaled = serving.scale_drawing(drawing, 0.5)
    assert scaled["objects"][0] == {"type": "Path", "left": 5, "top": 10, "scaleX": 0.5, "scaleY": 1}
    assert drawing["objects"][0]["left"] == 10  # not mutated
    assert serving.scale_drawing(None, 2) is None


def test_style_presets_add_swap_and_remove():
    styled = serving.apply_style("a fox", "oil painting")
    assert styled == "a fox, " + serving.STYLE_PRESETS["oil painting"]
    assert serving.apply_style(styled, "photo") == "a fox, " + serving.STYLE_PRESETS["photo"]
    assert serving.apply_style(styled, None) == "a fox"
    assert serving.apply_style("", "photo") == serving.STYLE_PRESETS["photo"]


def test_prompt_words_missing_words_and_adding_them():
    prompt = serving.apply_style("A red hut beside the lake, a red sky", "watercolour painting")
    assert serving.prompt_words(prompt) == ["red", "hut", "lake", "sky"]
    assert serving.missing_words(prompt, ["lake", "boat", "Hut", "boat", "!!"]) == ["boat", "!!"]
    assert serving.add_words("a hut", ["lake", "boat"]) == "a hut, lake, boat"


def test_regions_and_spec_from_the_strokes_alone():
    strokes = two_colour_strokes()
    regions = serving.detect_regions(strokes)
    assert [r.hex for r in regions] == ["#2f6fd0", "#d83a3a"]  # largest first
    spec = serving.region_spec(regions, {"#2f6fd0": " lake ", "#d83a3a": ""})
    assert len(spec) == 1 and spec[0].word == "lake" and spec[0].mask[100, 64] and not spec[0].mask[10, 10]
    assert serving.detect_regions(None) == []
    swatch = serving.region_swatch(regions[1])
    assert swatch.size == (56, 56) and swatch.getpixel((0, 55)) == (236, 236, 236)


def test_text_colour_for_palette_buttons():
    assert serving.text_color("#303030") == "#ffffff"
    assert serving.text_color("#e8c860") == "#000000"


def test_settings_for_widgets_keeps_known_keys_only():
    assert serving.settings_for_widgets({"prompt": "p", "gone": 1}, {"prompt", "seed"}) == {"prompt": "p"}


def test_the_app_serves_the_embedded_demo_model_without_a_noise_banner():
    config = serving.resolve_config([], {})
    assert config.model == "gradop-demo" and config.model not in serving.TEST_MODELS


def test_repaired_settings_replace_what_no_widget_can_produce():
    defaults = dict(canvas_size=512, style=None, steps=50, guidance=7.5, prompt="", random_seed=True)
    choices = dict(canvas_size=(256, 512, 768), style=("photo", None))
    ranges = dict(steps=(1, 200), guidance=(0.0, 30.0))
    good = dict(canvas_size=768, style="photo", steps=200, guidance=3, prompt="a fox", random_seed=False)
    assert serving.repaired_settings(good, defaults, choices, ranges) == {}
    assert serving.repaired_settings(good | {"style": None}, defaults, choices, ranges) == {}
    tampered = [("canvas_size", "512"), ("canvas_size", 512.0), ("canvas_size", 10**9), ("canvas_size", None),
                ("style", "../etc"), ("steps", "ten"), ("steps", True), ("steps", 10**6), ("steps", 2.5),
                ("guidance", float("nan")), ("guidance", -1.0), ("prompt", None), ("prompt", ["a"]),
                ("random_seed", "yes")]
    for key, value in tampered:
        assert serving.repaired_settings(good | {key: value}, defaults, choices, ranges) == {key: defaults[key]}, key
