"""The gradop command end to end on a tiny saved model folder."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from gradop.cli import main, parse_region_flags
from gradop.metadata import read_params
from gradop.options import GradopPlusOptions


@pytest.fixture
def stroke_file(strokes, tmp_path):
    path = tmp_path / "strokes.png"
    strokes.save(path)
    return path


def test_generate_writes_a_png_with_its_parameters(tiny_model_dir, stroke_file, tmp_path):
    out = tmp_path / "out" / "fox.png"
    # A real subprocess through the installed console script's module: what a user runs.
    completed = subprocess.run(
        [sys.executable, "-m", "gradop.cli", "generate", "--strokes", str(stroke_file), "--prompt", "a photo of a fox",
         "--out", str(out), "--model", str(tiny_model_dir), "--steps", "4", "--seed", "7", "--grad-steps", "2"],
        capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (64, 64)
    params = read_params(out)
    assert params["method"] == "gradop+" and params["seed"] == 7 and params["steps"] == 4
    assert params["prompt"] == "a photo of a fox" and params["model"] == str(tiny_model_dir)
    assert "gradop+" in completed.stderr  # the tqdm progress bar


def test_compare_writes_a_grid_and_one_png_per_method(tiny_model_dir, stroke_file, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["generate", "--strokes", str(stroke_file), "--prompt", "a fox", "--out", str(out), "--compare",
                 "--model", str(tiny_model_dir), "--steps", "3", "--grad-steps", "1", "--opt-steps", "2",
                 "--opt-lr", "0.05"])
    assert code == 0
    grid_params = read_params(out)["compare"]
    assert [p["method"] for p in grid_params] == ["text", "sdedit", "gradop", "gradop+"]
    # Each guided method keeps its own learning rate: --opt-lr is GradOP's, --lr (default 1.5) GradOP+'s.
    assert grid_params[2]["opt_lr"] == 0.05 and "lr" not in grid_params[2]
    assert grid_params[3]["lr"] == GradopPlusOptions().lr
    assert len({p["seed"] for p in grid_params}) == 1  # the same seed for every method
    for suffix in ("text", "sdedit", "gradop", "gradop_plus"):
        assert read_params(tmp_path / f"grid_{suffix}.png")["seed"] == grid_params[0]["seed"]
    assert Image.open(out).width == 5 * 128  # strokes + four methods


def test_text_method_needs_no_strokes(tiny_model_dir, tmp_path):
    out = tmp_path / "t.png"
    assert main(["generate", "--method", "text", "--prompt", "a tree", "--out", str(out),
                 "--model", str(tiny_model_dir), "--steps", "2", "--seed", "1"]) == 0
    assert read_params(out)["method"] == "text"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "/no/such/model"], "does not exist"),
        (["--strength", "1.5"], "strength"),
        (["--steps", "0"], "steps"),
        (["--lr", "nan"], "learning rate"),
        (["--opt-lr", "0"], "optimisation learning rate"),
        (["--height", "100"], "multiple of 8"),
        (["--region", "lake"], "COLOUR=WORD"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(tiny_model_dir, stroke_file, tmp_path, capsys, extra, message):
    args = ["generate", "--strokes", str(stroke_file), "--prompt", "a fox", "--out", str(tmp_path / "o.png"),
            "--model", str(tiny_model_dir), "--steps", "2"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradop: error:") and message in err and len(err.strip().splitlines()) == 1


def test_missing_or_broken_strokes_file(tiny_model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    for path, message in ((tmp_path / "missing.png", "does not exist"), (broken, "could not read")):
        assert main(["generate", "--strokes", str(path), "--prompt", "a fox", "--out", str(tmp_path / "o.png"),
                     "--model", str(tiny_model_dir)]) == 2
        assert message in capsys.readouterr().err


def test_hub_model_unavailable_offline_says_what_to_do(stroke_file, tmp_path, capsys):
    code = main(["generate", "--strokes", str(stroke_file), "--prompt", "a fox", "--out", str(tmp_path / "o.png"),
                 "--model", "someone/not-cached-model"])
    err = capsys.readouterr().err
    assert code == 2 and "not in the local" in err and "local folder" in err and "Traceback" not in err


def test_info_prints_the_stored_parameters(tiny_pipe, strokes, tmp_path, capsys):
    path = tiny_pipe.sdedit("a fox", strokes, steps=2, seed=9).save(tmp_path / "x.png")[0]
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 9


def test_region_flags_and_spec_file_are_merged(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"#112233": "lake", "#445566": {"word": "tree", "occurrence": 1}}))
    merged = parse_region_flags(["#112233=river", "#abcdef = hut"], spec)
    assert merged == {"#112233": "river", "#445566": {"word": "tree", "occurrence": 1}, "#abcdef": "hut"}
    spec.write_text("{not json")  # the library's one spec parser reads it, and names the file
    with pytest.raises(ValueError, match="spec.json is not valid JSON"):
        parse_region_flags([], spec)


def test_regions_listing_and_region_flags(tiny_model_dir, stroke_file, tmp_path, capsys):
    assert main(["regions", str(stroke_file)]) == 0
    listing = capsys.readouterr().out
    assert "#285adc" in listing and "#c83228" in listing  # the two painted colours, largest first
    assert main(["regions", str(stroke_file), "--json"]) == 0
    regions = json.loads(capsys.readouterr().out)
    assert [r["color"] for r in regions] == ["#285adc", "#c83228"] and all(0 < r["area"] < 1 for r in regions)

    out, maps = tmp_path / "r.png", tmp_path / "maps.png"
    code = main(["generate", "--strokes", str(stroke_file), "--prompt", "a lake beside a hut", "--out", str(out),
                 "--model", str(tiny_model_dir), "--steps", "3", "--grad-steps", "1", "--seed", "2",
                 "--region", "#2a5bdd=lake", "--region", "#c83228=hut", "--attention-maps", str(maps)])
    assert code == 0, capsys.readouterr().err
    assert [r["word"] for r in read_params(out)["regions"]] == ["lake", "hut"]
    assert Image.open(maps).size[0] > 0
    code = main(["generate", "--strokes", str(stroke_file), "--prompt", "a lake", "--out", str(tmp_path / "r2.png"),
                 "--model", str(tiny_model_dir), "--region", "#00ff00=lake"])
    assert code == 2 and "no region has colour #00ff00" in capsys.readouterr().err


def test_without_a_model_the_embedded_demo_model_is_used_offline(stroke_file, tmp_path):
    out = tmp_path / "demo.png"
    assert main(["generate", "--strokes", str(stroke_file), "--prompt", "a red hut beside a lake", "--out", str(out),
                 "--steps", "3", "--grad-steps", "1", "--seed", "0"]) == 0
    assert read_params(out)["model"] == "gradop-demo" and Image.open(out).size == (64, 64)


# ----------------------------------------------------------------------------- nothing the user made is lost


def run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_existing_outputs_are_replaced_only_with_force(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "t.png"
    args = ["generate", "--method", "text", "--prompt", "a tree", "--out", out, "--model", tiny_model_dir,
            "--steps", "2"]
    assert run(args + ["--seed", "1"], capsys)[0] == 0
    first = out.read_bytes()
    code, err = run(args + ["--seed", "2"], capsys)
    assert code == 2 and "already exists; pass --force" in err and out.read_bytes() == first
    assert run(args + ["--seed", "2", "--force"], capsys)[0] == 0
    assert read_params(out)["seed"] == 2 and out.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.png"]  # no probe or partial files left


def test_compare_keeps_the_methods_that_finished_when_a_later_one_fails(tiny_model_dir, stroke_file, tmp_path,
                                                                        capsys, monkeypatch):
    import torch

    from gradop.pipeline import GradopPipeline

    real_generate = GradopPipeline.generate

    def out_of_memory_in_gradop(self, method, *args, **kwargs):
        if method == "gradop":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(self, method, *args, **kwargs)

    monkeypatch.setattr(GradopPipeline, "generate", out_of_memory_in_gradop)
    out, maps = tmp_path / "cmp.png", tmp_path / "maps" / "attention.png"
    code, err = run(["generate", "--strokes", stroke_file, "--prompt", "a lake", "--out", out, "--compare",
                     "--model", tiny_model_dir, "--steps", "3", "--seed", "4", "--attention-maps", maps], capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("gradop: error: out of memory") and "already saved:" in line
    for name in ("cmp_text.png", "cmp_sdedit.png"):
        assert name in line and read_params(tmp_path / name)["seed"] == 4
    assert read_params(maps)["attention_maps"] == ["text", "sdedit"]  # the maps of the finished methods
    assert not (tmp_path / "cmp_gradop.png").exists() and not out.exists()


def test_ctrl_c_says_what_was_kept(tiny_model_dir, stroke_file, tmp_path, capsys, monkeypatch):
    from gradop.pipeline import GradopPipeline

    real_generate = GradopPipeline.generate

    def interrupted_in_sdedit(self, method, *args, **kwargs):
        if method == "sdedit":
            raise KeyboardInterrupt
        return real_generate(self, method, *args, **kwargs)

    monkeypatch.setattr(GradopPipeline, "generate", interrupted_in_sdedit)
    code, err = run(["generate", "--strokes", stroke_file, "--prompt", "a lake", "--out", tmp_path / "c.png",
                     "--compare", "--model", tiny_model_dir, "--steps", "2"], capsys)
    assert code == 130 and "gradop: cancelled (already saved:" in err and "c_text.png" in err
    assert (tmp_path / "c_text.png").exists()


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log(tiny_model_dir, stroke_file, tmp_path,
                                                                           capsys, monkeypatch):
    from gradop.pipeline import GradopPipeline

    def broken(self, *args, **kwargs):
        raise RuntimeError("shapes [2, 4] and [3] do not match\nmore details")

    log = tmp_path / "logs" / "errors.log"
    monkeypatch.setenv("GRADOP_LOG", str(log))
    monkeypatch.setattr(GradopPipeline, "generate", broken)
    code, err = run(["generate", "--strokes", stroke_file, "--prompt", "a lake", "--out", tmp_path / "o.png",
                     "--model", tiny_model_dir], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len([l for l in lines if l.startswith("gradop:")]) == 1 and "Traceback" not in err
    assert "unexpected error (RuntimeError: shapes [2, 4] and [3] do not match)" in lines[-1]
    assert str(log) in lines[-1]
    recorded = log.read_text()
    assert "Traceback" in recorded and "more details" in recorded and "generate --strokes" in recorded


def test_an_image_that_cannot_be_written_is_saved_elsewhere(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import tempfile

    from gradop import outputs

    out, spare = tmp_path / "full-disk" / "t.png", tmp_path / "tmp"
    spare.mkdir()
    real_save = outputs.save_png

    def disk_full(image, path, params):
        if path == out:
            raise OSError(28, "No space left on device")
        return real_save(image, path, params)

    monkeypatch.setattr(outputs, "save_png", disk_full)
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    code, err = run(["generate", "--method", "text", "--prompt", "a tree", "--out", out, "--model", tiny_model_dir,
                     "--steps", "2", "--seed", "5"], capsys)
    rescued = list(spare.glob("gradop-*-t.png"))
    assert code == 1 and len(rescued) == 1 and read_params(rescued[0])["seed"] == 5
    assert f"could not write '{out}' (No space left on device); saved it as '{rescued[0]}'" in err


def test_a_large_scribble_on_the_small_demo_model_is_made_at_its_native_size(tmp_path, capsys):
    from conftest import draw_strokes

    strokes = tmp_path / "big.png"
    draw_strokes(128).save(strokes)
    out = tmp_path / "demo.png"
    code, err = run(["generate", "--strokes", strokes, "--prompt", "a red hut beside a lake", "--out", out,
                     "--steps", "2", "--grad-steps", "1", "--seed", "0"], capsys)
    assert code == 0, err
    assert Image.open(out).size == (64, 64) and read_params(out)["height"] == 64
    assert "gradop: note: 'gradop-demo' is a small model made for 64 px: generating 64x64 from the 128x128" in err


def test_compile_flags_reach_the_pipeline(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    from gradop.pipeline import GradopPipeline

    monkeypatch.setattr(torch, "compile", lambda module, **_: module)  # a real first call compiles for minutes

    loaded = []
    original = GradopPipeline.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        loaded.append(original(cls, *args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(GradopPipeline, "from_pretrained", classmethod(recording))
    for flags, decoder, unet in (([], False, False), (["--compile-decoder"], True, False),
                                 (["--compile-unet"], False, True)):
        out = tmp_path / f"t{len(loaded)}.png"
        assert main(["generate", "--method", "text", "--prompt", "a tree", "--out", str(out), "--model",
                     str(tiny_model_dir), "--steps", "2", "--seed", "1", *flags]) == 0
        assert loaded[-1].guidance_decoders.compile is decoder
        assert (loaded[-1].compiled_unet is not None) is unet


def test_a_wrong_compile_is_one_warning_line_and_the_image_is_made(tiny_model_dir, stroke_file, tmp_path, capsys,
                                                                   monkeypatch):
    import torch

    def zero_backward(fn, **_):  # as torch 2.13's Inductor did for the demo decoder on the CPU
        return lambda x: fn(x.detach()) + 0 * x.sum()

    monkeypatch.setattr(torch, "compile", zero_backward)
    out = tmp_path / "c.png"
    code, err = run(["generate", "--strokes", stroke_file, "--prompt", "a red hut beside a lake",
                     "--out", out, "--model", tiny_model_dir, "--steps", "4", "--grad-steps", "1", "--seed", "0",
                     "--compile-decoder"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "torch.compile" in line]
    assert warnings == ["gradop: warning: torch.compile gave the 'vae' guidance decoder wrong gradients on this "
                        "machine (cosine 0.00 to the eager decoder's); it runs eager"]
    assert "RuntimeWarning" not in err and out.is_file()
