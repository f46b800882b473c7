"""The quality benchmark's editing section (mechanics on the tiny model; the numbers come from the real run)."""

import numpy as np
import pytest

from gradop.quality.editing import EditingSection
from gradop.quality.runner import REGION_SETTINGS, Context
from gradop.quality.scenes import benchmark_paintings, edit_painting
from gradop.world.judge import load_judge
from gradop.world.scene import HELDOUT_SEED


def test_edit_paintings_are_held_out_photos_with_one_blob_named_in_the_prompt():
    hut, tree = edit_painting(0), edit_painting(1)
    assert hut.seed >= HELDOUT_SEED and tree.seed >= HELDOUT_SEED
    assert hut.caption.endswith("with a red hut") and tree.caption.endswith("with a green tree")
    assert hut.meanings == (("house", "hut"),) and tree.meanings == (("tree", "tree"),)
    alpha = np.asarray(hut.image)[..., 3]
    assert hut.image.mode == "RGBA" and 0.02 < (alpha > 0).mean() < 0.1  # one blob
    assert hut.background.size == hut.image.size and np.asarray(hut.background).std() > 0  # a photo
    assert [p.kind for p in benchmark_paintings(1, 1, 0, 2)] == ["world", "app", "edit", "edit"]


def test_editing_section_copies_the_photo_outside_and_reimagine_does_not(tiny_pipe, tmp_path):
    gradop_plus = [s for s in REGION_SETTINGS if s.label == "gradop+"]
    ctx = Context(tiny_pipe, load_judge(), seeds=1, steps=2, region_settings=tuple(gradop_plus), region_strengths=(3.0,),
                  images_dir=tmp_path, sheet_paintings={"edit-000"})
    section, painting = EditingSection(), edit_painting(0)
    assert section.applies(painting) and not section.applies(benchmark_paintings(1, 0, 0)[0])
    rows = section.run(ctx, painting)
    by = {r["condition"]: r for r in rows}
    assert set(by) == {"no word", "word", "reimagine"}
    assert by["no word"]["l2_outside"] == 0 and by["word"]["l2_outside"] == 0
    assert by["reimagine"]["l2_outside"] > 0  # re-imagining redraws the photo
    assert all(0 <= r["class_share"] <= 1 and r["realism_gap"] == pytest.approx(r["realism_judge"] - r["photo_realism"])
               for r in rows)
    summary = section.summarise(rows)
    assert summary["gradop+ / word w'=3"]["l2_outside_max"] == 0
    assert "copied exactly in every edit: **yes**" in section.markdown(summary)
    assert {p.name for p in (tmp_path / "edit-000").iterdir()} >= {"photo.png", "painted.png", "gradop+.png",
                                                                   "gradop+_hut_w3.0.png", "gradop+_reimagine.png"}
