"""Every bad input and mishap we know of, with the one line the user gets (the issue 13 table).

CLI rows run `gradop` in-process and check: exit code 2, exactly one line on stderr that starts
with "gradop: error:" and contains the expected words, no traceback. Rows marked `before_model`
also prove that the check happens before any model is loaded (loading one fails the row).
Library rows call the API function and expect a one-line ValueError.
"""

import io
import json

import pytest
from PIL import Image

from conftest import bomb_png, draw_strokes
from gradop.cli import main
from gradop.images import load_image
from gradop.metadata import read_params
from gradop.pipeline import GradopPipeline
from gradop.region_words import load_spec_json, read_spec_file


@pytest.fixture
def files(tmp_path):
    """Good and bad inputs on disk, by name; every row's {name} is formatted from this."""
    paths = {name: tmp_path / name for name in (
        "strokes.png", "blank.png", "clear.png", "bomb.png", "notes.png", "cut.png", "folder", "a_file",
        "existing.png", "grid_text.png", "twice_1.png", "empty.json", "numbers.json", "latin1.json",
        "number.json", "missing.json", "bad_colour.json", "occurrence.json", "gradop.png", "plain.png",
        "photo.jpg", "out.png", "dir.png")}
    draw_strokes().save(paths["strokes.png"])
    draw_strokes().save(paths["grid_text.png"])
    Image.new("RGB", (64, 64), "white").save(paths["blank.png"])
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(paths["clear.png"])
    paths["bomb.png"].write_bytes(bomb_png(30000, 30000))
    paths["notes.png"].write_text("this is a text file, not an image")
    buffer = io.BytesIO()
    draw_strokes().save(buffer, format="PNG")
    paths["cut.png"].write_bytes(buffer.getvalue()[:120])
    paths["folder"].mkdir()
    paths["dir.png"].mkdir()
    paths["a_file"].write_text("a file where a folder is expected")
    for name in ("existing.png", "twice_1.png", "plain.png"):
        Image.new("RGB", (8, 8)).save(paths[name])
    paths["empty.json"].write_text("{}")
    paths["numbers.json"].write_text("[1, 2, 3]")
    paths["latin1.json"].write_bytes('{"#285adc": "lac bleu à côté"}'.encode("latin-1"))
    paths["number.json"].write_text("3")
    paths["bad_colour.json"].write_text(json.dumps({"blue-ish": "lake"}))
    paths["occurrence.json"].write_text(json.dumps({"#285adc": {"word": "lake", "occurrence": 2}}))
    Image.new("RGB", (8, 8)).save(paths["gradop.png"], pnginfo=None)
    Image.new("RGB", (8, 8), "green").save(paths["photo.jpg"])
    return {name: str(path) for name, path in paths.items()} | {"tmp": str(tmp_path)}


@pytest.fixture(autouse=True)
def error_log(tmp_path, monkeypatch):
    log = tmp_path / "errors.log"
    monkeypatch.setenv("GRADOP_LOG", str(log))
    return log


def generate_args(*extra, strokes="{strokes.png}", out="{out.png}"):
    base = ["generate", "--prompt", "a lake beside a hut", "--out", out, "--steps", "2"]
    return base + (["--strokes", strokes] if strokes else []) + list(extra)


BEFORE_MODEL = [
    # --- outputs: checked before anything runs; inputs are never overwritten
    ("out is the strokes", generate_args(out="{strokes.png}"), "is the --strokes input and would be overwritten"),
    ("out is the strokes, --force", generate_args("--force", out="{strokes.png}"), "is the --strokes input"),
    ("out is the background", generate_args("--background", "{existing.png}", out="{existing.png}"),
     "is the --background input"),
    ("out is the region spec", generate_args("--regions", "{out.png}", out="{out.png}"), "is the --regions input"),
    ("compare file is the strokes", generate_args("--compare", strokes="{grid_text.png}", out="{tmp}/grid.png"),
     "is the --strokes input"),
    ("out exists", generate_args(out="{existing.png}"), "already exists; pass --force to overwrite"),
    ("numbered out exists", generate_args("--num-images", "2", out="{tmp}/twice.png"), "twice_1.png' already exists"),
    ("out is a folder", generate_args(out="{dir.png}"), "dir.png' is a folder; give a file name"),
    ("out is a folder without .png", generate_args(out="{folder}"), "must end in .png"),
    ("out's folder is a file", generate_args(out="{a_file}/x.png"), "cannot create the folder"),
    ("out is not .png", generate_args(out="{tmp}/x.jpg"), "must end in .png"),
    ("maps not .png", generate_args("--attention-maps", "{tmp}/maps"), "--attention-maps '"),
    ("maps' folder is a file", generate_args("--attention-maps", "{a_file}/maps.png"),
     "cannot create the folder"),
    ("maps is the out file", generate_args("--attention-maps", "{out.png}"), "is also the --out file"),
    # --- the numbers and words
    ("seed too large", generate_args("--seed", str(2**64)), "--seed must be a whole number from 0 to 2**64 - 1"),
    ("seed negative", generate_args("--seed", "-1"), "--seed must be a whole number from 0"),
    ("seed not a number", generate_args("--seed", "abc"), "invalid int value: 'abc'"),
    ("empty prompt", ["generate", "--prompt", " ", "--out", "{out.png}", "--strokes", "{strokes.png}"],
     "--prompt is empty"),
    ("strength", generate_args("--strength", "1.5"), "strength must be"),
    ("steps", generate_args("--steps", "0"), "steps must be a whole number >= 1"),
    ("learning rate", generate_args("--lr", "nan"), "learning rate must be"),
    ("height", generate_args("--height", "100"), "height must be a positive multiple of 8"),
    ("no strokes", generate_args(strokes=None), "--strokes is required for this method"),
    # --- the input images
    ("strokes missing", generate_args(strokes="{tmp}/nope.png"), "does not exist"),
    ("strokes is a folder", generate_args(strokes="{folder}"), "is a folder"),
    ("strokes is text", generate_args(strokes="{notes.png}"), "could not read"),
    ("strokes truncated", generate_args(strokes="{cut.png}"), "could not decode"),
    ("strokes bomb", generate_args(strokes="{bomb.png}"), "has far more pixels than the 16 MP limit"),
    ("background bomb", generate_args("--background", "{bomb.png}"), "background photo '"),
    ("strokes all white", generate_args(strokes="{blank.png}"), "has nothing painted"),
    ("strokes transparent", generate_args(strokes="{clear.png}"), "has nothing painted"),
    # --- regions: one spec parser for the CLI and the API, the file named in every message
    ("spec {}", generate_args("--regions", "{empty.json}"), "empty.json is empty: map at least one colour"),
    ("spec [1, 2, 3]", generate_args("--regions", "{numbers.json}"), "numbers.json, item 0"),
    ("spec not UTF-8", generate_args("--regions", "{latin1.json}"), "latin1.json is not UTF-8"),
    ("spec a number", generate_args("--regions", "{number.json}"), "number.json must be a JSON object"),
    ("spec missing", generate_args("--regions", "{missing.json}"), "cannot read region spec"),
    ("spec is a folder", generate_args("--regions", "{folder}"), "is a folder"),
    ("spec bad colour", generate_args("--regions", "{bad_colour.json}"), "bad colour 'blue-ish'"),
    ("spec occurrence", generate_args("--regions", "{occurrence.json}"), "occurrence 2 does not exist"),
    ("region flag shape", generate_args("--region", "lake"), "must look like COLOUR=WORD"),
    ("region flag colour", generate_args("--region", "#zzzzzz=lake"), "bad colour '#zzzzzz'"),
    ("region colour not painted", generate_args("--region", "#00ff00=lake"), "no region has colour #00ff00"),
    ("region word not in prompt", generate_args("--region", "#285adc=boat"),
     "add it to the prompt or pass --append-missing-words"),
    ("regions without strokes", generate_args("--method", "text", "--region", "#285adc=lake", strokes=None),
     "need --strokes"),
    # --- the other commands
    ("info on text", ["info", "{notes.png}"], "is not an image"),
    ("info on a missing file", ["info", "{tmp}/nope.png"], "does not exist"),
    ("info on a folder", ["info", "{folder}"], "is a folder"),
    ("info on a truncated PNG", ["info", "{cut.png}"], "damaged or truncated PNG"),
    ("info on a bomb", ["info", "{bomb.png}"], "far too many pixels"),
    ("info on a plain PNG", ["info", "{plain.png}"], "carries no gradop parameters"),
    ("info on a JPEG", ["info", "{photo.jpg}"], "carries no gradop parameters"),
    ("regions on a bomb", ["regions", "{bomb.png}"], "has far more pixels than the 16 MP limit"),
    ("regions on text", ["regions", "{notes.png}"], "could not read"),
    ("regions min area", ["regions", "{strokes.png}", "--min-area", "2"], "--min-area must be"),
    ("unknown command", ["paint"], "invalid choice: 'paint'"),
]

AT_MODEL_LOAD = [
    ("model path missing", generate_args("--model", "/no/such/model"), "does not exist"),
    ("hub id, offline mode", generate_args("--model", "someone/not-cached"), "offline mode is on"),
    ("dtype", generate_args("--dtype", "float8"), "unknown dtype 'float8'"),
    ("device", generate_args("--device", "tpu9"), "unknown device 'tpu9'"),
]


def run_cli(argv: list[str], files: dict, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main([fill(arg, files) for arg in argv])
    except SystemExit as exit:  # argparse
        code = exit.code
    return code, capsys.readouterr().err


def fill(arg: str, files: dict) -> str:
    for name, path in files.items():
        arg = arg.replace("{" + name + "}", path)
    return arg


def assert_one_line(code: int, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("gradop: error:"), err
    assert message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [row[1:] for row in BEFORE_MODEL], ids=[row[0] for row in BEFORE_MODEL])
def test_cli_refuses_before_loading_a_model(argv, message, files, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(GradopPipeline, "from_pretrained", no_model)
    code, err = run_cli(argv, files, capsys)
    assert_one_line(code, err, message)


@pytest.mark.parametrize("argv, message", [row[1:] for row in AT_MODEL_LOAD], ids=[row[0] for row in AT_MODEL_LOAD])
def test_cli_model_problems_are_one_line(argv, message, files, capsys):
    code, err = run_cli(argv, files, capsys)
    assert_one_line(code, err, message)


def test_hub_id_without_network_and_without_offline_mode_says_what_to_do(files, capsys, monkeypatch):
    """No HF_HUB_OFFLINE, and the hub unreachable: huggingface_hub's own connection error is
    raised where diffusers asks the hub (nothing touches the network)."""
    import diffusers.pipelines.pipeline_utils as pipeline_utils
    from huggingface_hub.utils import httpx

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pipeline_utils, "model_info", unreachable)
    code, err = run_cli(generate_args("--model", "someone/not-cached-model"), files, capsys)
    assert_one_line(code, err, "the hub cannot be reached (no network)")
    for advice in ("local diffusers folder", "HF_HUB_OFFLINE=1", "hf download someone/not-cached-model"):
        assert advice in err
    assert "local_files_only" not in err


def test_cuda_without_a_gpu(files, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    code, err = run_cli(generate_args("--device", "cuda"), files, capsys)
    assert_one_line(code, err, "no CUDA GPU is visible; use --device cpu")


def test_read_only_folder(files, capsys, monkeypatch, tmp_path):
    """A folder that refuses new files (root ignores permission bits, so the refusal is simulated
    where the probe file is created: the operating system's answer for a read-only folder)."""
    import pathlib

    real_open = pathlib.Path.open

    def read_only(self, mode="r", *args, **kwargs):
        if self.parent == tmp_path / "folder" and "x" in mode:
            raise PermissionError(13, "Permission denied")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", read_only)
    monkeypatch.setattr(GradopPipeline, "from_pretrained", lambda *a, **k: pytest.fail("model loaded"))
    code, err = run_cli(generate_args(out="{folder}/x.png"), files, capsys)
    assert_one_line(code, err, "cannot write to the folder")
    assert "Permission denied" in err


# ----------------------------------------------------------------------------- the library


def spec_call(name):
    return lambda files: load_spec_json(files[name], draw_strokes())


LIBRARY = [
    ("load_image: bomb bytes", lambda f: load_image(bomb_png()), "has far more pixels than the 16 MP limit"),
    ("load_image: bomb file", lambda f: load_image(f["bomb.png"]), "bomb.png' has far more pixels"),
    ("load_image: folder", lambda f: load_image(f["folder"]), "is a folder"),
    ("load_image: text", lambda f: load_image(f["notes.png"]), "could not read"),
    ("load_image: truncated", lambda f: load_image(f["cut.png"]), "could not decode"),
    ("read_params: bomb", lambda f: read_params(bomb_png()), "far too many pixels"),
    ("read_params: text", lambda f: read_params(f["notes.png"]), "is not an image"),
    ("read_params: truncated", lambda f: read_params(f["cut.png"]), "damaged or truncated PNG"),
    ("spec file: {}", lambda f: read_spec_file(f["empty.json"]), "is empty"),
    ("spec file: [1, 2, 3]", lambda f: read_spec_file(f["numbers.json"]), "item 0"),
    ("spec file: not UTF-8", lambda f: read_spec_file(f["latin1.json"]), "latin1.json is not UTF-8"),
    ("load_spec_json: [1, 2, 3]", spec_call("numbers.json"), "numbers.json, item 0"),
    ("load_spec_json: {}", spec_call("empty.json"), "empty.json is empty"),
    ("API: bomb strokes", lambda f: f["pipe"].gradop_plus("a lake", bomb_png()),
     "has far more pixels than the 16 MP limit"),
    ("API: bomb strokes file", lambda f: f["pipe"].sdedit("a lake", f["bomb.png"]), "bomb.png' has far more"),
    ("API: regions from a bomb", lambda f: __import__("gradop.regions").regions.find_regions(load_image(bomb_png())),
     "has far more pixels"),
]


@pytest.mark.parametrize("call, message", [row[1:] for row in LIBRARY], ids=[row[0] for row in LIBRARY])
def test_library_errors_are_one_line_value_errors(call, message, files, tiny_pipe):
    with pytest.raises(ValueError) as error:
        call(files | {"pipe": tiny_pipe})
    assert message in str(error.value) and "\n" not in str(error.value)

