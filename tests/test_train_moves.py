"""train/render_moves.py: the judge's moved-class training examples, end to end through the script."""

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gradop.world import CLASSES, render, sample_scene  # noqa: E402
from gradop.world.captions import caption, caption_classes  # noqa: E402
from train.render_moves import MIN_PIXELS, _example, moved_caption  # noqa: E402


def test_an_example_is_a_class_moved_onto_another_class_and_labelled_so():
    rendered = {}  # domain -> the 50 scenes as rendered
    for k in range(6):
        image, labels, domain, text = _example(k, world=3, scenes=50, emptied=1.0, seed=3)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3) and labels.shape == (64, 64)
        assert np.array_equal(image, _example(k, world=3, scenes=50, emptied=1.0, seed=3)[0]), "seeded"
        # No scene of the 50 renders like this: something was moved in.
        if domain not in rendered:
            rendered[domain] = [(render(sample_scene(s, 3), domain) * 255 + 0.5).astype(np.uint8) for s in range(50)]
        assert not any(np.array_equal(image, scene) for scene in rendered[domain])
        assert set(np.unique(labels)) <= set(range(14))
        # The caption names what the image shows, the moved class included.
        shown = {CLASSES[c] for c in np.unique(labels) if (labels == c).sum() >= MIN_PIXELS} - {"sky"}
        assert shown <= caption_classes(text), (text, shown)


def test_the_moved_caption_adds_the_moved_class_only_when_the_caption_lacks_it():
    scenes = [sample_scene(k, 3) for k in range(200)]
    hut = next(s for s in scenes if s["houses"] and not s["sun"] and "sky" not in caption_classes(caption(s)))
    sun = next(s for s in scenes if s["sun"])
    plain = caption(hut, domain="painting")
    assert moved_caption(hut, sun, "house", "painting", np.random.default_rng(0)) == plain
    with_sun = moved_caption(hut, sun, "sun", "painting", np.random.default_rng(0))
    assert with_sun.startswith(plain + " with ") and "sun" in caption_classes(with_sun[len(plain):])
    night = {**sun, "sky": "night"}
    assert moved_caption(hut, night, "sky", "photo", np.random.default_rng(0)) == caption(hut) + " with a night sky"


def test_the_script_writes_images_their_vae_round_trips_labels_and_captions(tmp_path):
    out = tmp_path / "moves.npz"
    subprocess.run([sys.executable, "train/render_moves.py", "--count", "8", "--scenes", "40", "--workers", "1",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True)
    data = np.load(out)
    assert data["images"].shape == data["recon"].shape == (8, 64, 64, 3) and data["labels"].shape == (8, 64, 64)
    assert set(data["domains"]) <= {"photo", "painting", "crayon"} and len(data["captions"]) == 8
    diff = np.abs(data["images"].astype(float) - data["recon"]).mean((1, 2, 3))
    assert (diff > 0).all() and (diff < 40).all(), diff  # the VAE's reconstruction: close, never identical
    assert np.array_equal(data["labels"][0], _example(0, world=3, scenes=40, emptied=0.7, seed=0)[1])
