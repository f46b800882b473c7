"""The quality benchmark's editing section, run for one case on the tiny model (mechanics only)."""

import numpy as np

from gradop.quality.editing import edit_case, run_editing
from gradop.world.judge import load_judge


def test_edit_cases_are_held_out_and_name_the_painted_object():
    from gradop.world.scene import HELDOUT_SEED

    hut, tree = edit_case(0), edit_case(1)
    assert hut["seed"] >= HELDOUT_SEED and tree["seed"] >= HELDOUT_SEED
    assert hut["prompt"].endswith("with a red hut") and tree["prompt"].endswith("with a green tree")
    alpha = np.asarray(hut["strokes"])[..., 3]
    assert 0.02 < (alpha > 0).mean() < 0.1  # one blob
    assert hut["region"]["occurrence"] == hut["prompt"].split().count("hut") - 1  # the appended word


def test_run_editing_reports_copied_pixels_and_both_conditions(tiny_pipe, tmp_path):
    saved = []
    report = run_editing(tiny_pipe, load_judge(), 1, tmp_path, steps=2, methods=("sdedit",), reimagine=True,
                         log=lambda *_: None, on_case=saved.append, iterations=1, grad_steps=1)
    summary = report["summary"]
    assert set(summary) == {"sdedit/word", "sdedit/no_word", "gradop+/reimagine"}
    assert summary["sdedit/word"]["l2_outside"] == 0 and summary["sdedit/no_word"]["l2_outside"] == 0
    assert summary["gradop+/reimagine"]["l2_outside"] > 0  # re-imagining redraws the photo
    assert 0 <= summary["sdedit/word"]["class_share"] <= 1 and len(saved) == 1
    assert (tmp_path / "edit_example_0.png").is_file()
