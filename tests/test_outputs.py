"""gradop.outputs: output files checked before any work, written whole, never lost."""

import os

import pytest
from PIL import Image

from gradop.metadata import read_params
from gradop.outputs import Writer, check_outputs


def test_an_output_that_is_an_input_under_another_name_is_refused(tmp_path):
    strokes = tmp_path / "strokes.png"
    Image.new("RGB", (8, 8)).save(strokes)
    os.link(strokes, tmp_path / "linked.png")  # the same file under a second name
    (tmp_path / "sub").mkdir()
    for out in (tmp_path / "linked.png", tmp_path / "sub" / ".." / "strokes.png"):
        with pytest.raises(ValueError, match="is the --strokes input"):
            check_outputs([("--out", out)], [("--strokes", strokes)], force=True)


def test_checks_create_nothing_and_force_allows_replacing(tmp_path):
    out = tmp_path / "new" / "deeper" / "x.png"
    check_outputs([("--out", out)], [], force=False)
    assert sorted(tmp_path.iterdir()) == []  # no folders or probe files left behind by the check
    Writer().write(Image.new("RGB", (8, 8)), out, {"seed": 1})
    with pytest.raises(ValueError, match="already exists; pass --force"):
        check_outputs([("--out", out)], [], force=False)
    check_outputs([("--out", out)], [], force=True)
    with pytest.raises(ValueError, match="is also the --out file"):
        check_outputs([("--out", out), ("--attention-maps", out)], [], force=True)


def test_a_failed_write_keeps_the_file_it_was_replacing(tmp_path, monkeypatch):
    out = tmp_path / "x.png"
    Writer().write(Image.new("RGB", (8, 8)), out, {"seed": 1})
    before = out.read_bytes()

    from gradop import metadata

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metadata.os, "replace", broken_replace)
    with pytest.raises(OSError):
        metadata.save_png(Image.new("RGB", (8, 8), "red"), out, {"seed": 2})
    assert out.read_bytes() == before and read_params(out)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no partial file left
