"""The procedural world: deterministic, sane renderers and captions that match the scene."""

import numpy as np
import pytest

from gradop.world import (CLASSES, CLASS_ID, DEFAULT_WORLD, DOMAINS, OPTIONAL_CLASSES, VOCABULARY, caption,
                          caption_classes, render, render_masks, render_photo, render_strokes, sample_scene,
                          scene_classes)
from gradop.world.scene import HELDOUT_SEED

SEEDS = range(12)


def test_same_seed_same_scene_and_images():
    for seed in (0, 5, 123):
        a, b = sample_scene(seed), sample_scene(seed)
        assert a == b
        assert np.array_equal(render_photo(a), render_photo(b))
        assert np.array_equal(render_strokes(a), render_strokes(b))
        assert np.array_equal(render_masks(a), render_masks(b))
        assert caption(a) == caption(b)
    assert not np.array_equal(render_photo(sample_scene(1)), render_photo(sample_scene(2)))


@pytest.mark.parametrize("seed", SEEDS)
def test_renderers_shapes_ranges_and_masks(seed):
    scene = sample_scene(seed)
    photo, strokes, masks = render_photo(scene), render_strokes(scene), render_masks(scene)
    assert photo.shape == strokes.shape == (64, 64, 3) and masks.shape == (64, 64)
    assert photo.dtype == strokes.dtype == np.float32 and masks.dtype == np.uint8
    assert 0 <= photo.min() and photo.max() <= 1 and 0 <= strokes.min() and strokes.max() <= 1
    assert masks.max() < len(CLASSES)
    present = {CLASSES[c] for c in np.unique(masks)}
    # Every visible class is one the scene description holds; sky and ground always show.
    assert present <= scene_classes(scene)
    assert {"sky", scene["ground"]} <= present


def test_visible_classes_mostly_match_the_description():
    # Objects can be hidden (a sun behind a mountain), but rarely.
    hits = total = 0
    for seed in range(60):
        scene = sample_scene(seed)
        present = {CLASSES[c] for c in np.unique(render_masks(scene))}
        hits += len(present & scene_classes(scene))
        total += len(scene_classes(scene))
    assert hits / total > 0.95


def test_strokes_look_painted_and_photos_do_not():
    for seed in SEEDS:
        scene = sample_scene(seed)
        photo, strokes = render_photo(scene), render_strokes(scene)
        n_photo = len(np.unique((photo * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        n_strokes = len(np.unique((strokes * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        assert n_photo > 4 * n_strokes  # photos: shading and texture; strokes: a few flat colours
        # High-frequency detail: photos vary more between neighbouring pixels inside regions.
        masks = render_masks(scene)
        same = masks[:, 1:] == masks[:, :-1]
        d_photo = np.median(np.abs(np.diff(photo, axis=1)).sum(-1)[same])
        d_strokes = np.median(np.abs(np.diff(strokes, axis=1)).sum(-1)[same])
        assert d_photo > d_strokes
    # White canvas shows through somewhere in most paintings.
    white = [(render_strokes(sample_scene(s)) > 0.99).all(-1).mean() for s in range(30)]
    assert np.mean([w > 0 for w in white]) > 0.7


@pytest.mark.parametrize("seed", SEEDS)
def test_captions_name_every_optional_class(seed):
    scene = sample_scene(seed)
    text = caption(scene)
    assert text == text.strip() and "  " not in text and len(text.split()) <= 40
    named = caption_classes(text) & set(OPTIONAL_CLASSES)
    assert named == scene_classes(scene) - {"sky"}, text


def test_caption_words_are_single_tokens():
    from gradop.world.demo_model import MAX_TOKENS, demo_tokenizer

    tok = demo_tokenizer()
    assert all(len(tok(w).input_ids) == 3 for w in VOCABULARY)
    for seed in range(200):
        assert len(tok(caption(sample_scene(seed))).input_ids) <= MAX_TOKENS


def test_class_table():
    assert len(CLASSES) >= 10 and CLASS_ID["sky"] == 0
    assert set(OPTIONAL_CLASSES) == set(CLASSES) - {"sky"}


def _inside_region_change(image: np.ndarray, masks: np.ndarray) -> float:
    """Median colour change between horizontal neighbours inside one class region."""
    same = masks[:, 1:] == masks[:, :-1]
    return float(np.median(np.abs(np.diff(image, axis=1)).sum(-1)[same]))


def test_every_domain_renders_the_same_scene_deterministically():
    scene = sample_scene(7, world=2)
    assert np.array_equal(render(scene), render_photo(scene))
    assert np.array_equal(render(scene, "strokes"), render_strokes(scene))
    for domain in DOMAINS:
        a, b = render(scene, domain), render(sample_scene(7, world=2), domain)
        assert a.shape == (64, 64, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
        assert np.array_equal(a, b)
        assert render(scene, domain, size=32).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="unknown domain 'oil'"):
        render(scene, "oil")


def test_domains_share_the_layout_but_not_the_look():
    for seed in range(6):
        scene = sample_scene(seed, world=2)
        masks = render_masks(scene)
        photo, painting, crayon = (render(scene, d) for d in DOMAINS)
        # Flat painting: no texture inside regions, dark outlines between them.
        assert _inside_region_change(painting, masks) < _inside_region_change(photo, masks)
        edges = np.zeros(masks.shape, bool)
        edges[:, 1:] = masks[:, 1:] != masks[:, :-1]
        assert painting.sum(-1)[edges].mean() < painting.sum(-1)[~edges].mean()
        # Crayon: paper shows between hatch lines, so it is lighter than the painting and textured.
        assert crayon.mean() > painting.mean()
        assert _inside_region_change(crayon, masks) > _inside_region_change(painting, masks)


@pytest.mark.parametrize("seed", SEEDS)
def test_captions_name_the_domain_and_the_same_classes(seed):
    scene = sample_scene(seed, world=2)
    texts = {d: caption(scene, domain=d) for d in DOMAINS}
    assert texts["photo"] == caption(scene)
    for text in texts.values():
        assert caption_classes(text) & set(OPTIONAL_CLASSES) == scene_classes(scene) - {"sky"}
    words = {d: set(t.split()) for d, t in texts.items()}
    assert not words["photo"] & {"painting", "cartoon", "drawing", "crayon"}
    assert words["painting"] & {"painting", "cartoon"} and "drawing" in words["crayon"]
    with pytest.raises(ValueError, match="unknown domain"):
        caption(scene, domain="oil")


def test_every_class_is_sometimes_big_enough_to_steer():
    # Region control needs classes that can cover a region of 1/5 x 1/5 of the image or more.
    largest = dict.fromkeys(CLASSES, 0.0)
    closeups = set()
    for seed in range(300):
        scene = sample_scene(seed, world=2)
        closeups.add(scene["closeup"])
        masks = render_masks(scene)
        for c, name in enumerate(CLASSES):
            largest[name] = max(largest[name], float((masks == c).mean()))
    assert all(v >= 1 / 25 for v in largest.values()), largest
    assert {"house", "tree", "rock", "boat"} <= closeups


# The world as it was when the demo model, the judge and the published benchmarks were made.
WORLD1_COMMIT = "78c5256"
WORLD1_FILES = ("scene.py", "captions.py", "render.py")


@pytest.fixture(scope="module")
def world1(tmp_path_factory):
    """The original world-1 code (from git history) as a separate package `world_v1_original`."""
    import importlib
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("world1")
    package = root / "world_v1_original"
    package.mkdir()
    (package / "__init__.py").write_text("")
    repo = Path(__file__).resolve().parents[1]
    for name in WORLD1_FILES:
        shown = subprocess.run(["git", "show", f"{WORLD1_COMMIT}:gradop/world/{name}"], cwd=repo,
                               capture_output=True, text=True)
        if shown.returncode:  # e.g. a shallow clone without that commit
            pytest.skip(f"git history with {WORLD1_COMMIT} is not available: {shown.stderr.strip()}")
        (package / name).write_text(shown.stdout.replace("from gradop.world.", "from world_v1_original."))
    sys.path.insert(0, str(root))
    try:
        yield {name: importlib.import_module(f"world_v1_original.{name[:-3]}") for name in WORLD1_FILES}
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("world_v1_original")]:
            del sys.modules[name]


WORLD1_SEEDS = [*range(10), 4321, *(HELDOUT_SEED + k for k in (0, 1, 2, 77, 500, 503, 900, 10_000, 20_000))]


@pytest.mark.parametrize("seed", WORLD1_SEEDS)
def test_world_1_is_exactly_the_original(world1, seed):
    old_scene = world1["scene.py"].sample_scene(seed)
    scene = sample_scene(seed, world=1)
    assert scene["world"] == 1
    assert {k: v for k, v in scene.items() if k != "world"} == old_scene
    assert caption(scene) == world1["captions.py"].caption(old_scene)
    assert caption(scene, seed=5) == world1["captions.py"].caption(old_scene, seed=5)
    old_render = world1["render.py"]
    assert np.array_equal(render_photo(scene), old_render.render_photo(old_scene))
    assert np.array_equal(render_strokes(scene), old_render.render_strokes(old_scene))
    assert np.array_equal(render_masks(scene), old_render.render_masks(old_scene))
    assert np.array_equal(render_photo(scene, size=32), old_render.render_photo(old_scene, size=32))
    assert scene_classes(scene) == world1["scene.py"].scene_classes(old_scene)


def test_the_default_world_is_the_demo_models_and_every_world_is_recorded_in_the_scene():
    assert DEFAULT_WORLD == 3 and sample_scene(7) == sample_scene(7, world=3)
    v2 = [sample_scene(seed, world=2) for seed in range(40)]
    assert all(s["world"] == 2 for s in v2)
    assert any(s["boats"] or s["rocks"] for s in v2) and any(s["closeup"] for s in v2)
    assert all("boats" not in sample_scene(seed, world=1) for seed in range(40))
    # Same seed, different world: the sizes world 2 made bigger differ.
    assert any(sample_scene(s, world=1)["trees"] != s2["trees"] for s, s2 in zip(range(40), v2))
    with pytest.raises(ValueError, match="unknown world version 4"):
        sample_scene(0, world=4)


def test_world_3_is_world_2_with_a_palette_pulled_towards_the_painted_colours():
    from gradop.world.render import stroke_base

    for seed in range(12):
        v2, v3 = sample_scene(seed, world=2), sample_scene(seed, world=3)
        assert {k: v for k, v in v3.items() if k not in ("world", "palette_pull")} == \
            {k: v for k, v in v2.items() if k != "world"}
        assert set(v3["palette_pull"]) == set(CLASSES) and all(0 <= t <= 1 for t in v3["palette_pull"].values())
        assert np.array_equal(render(v3, "strokes"), render(v2, "strokes"))  # scribbles are not re-coloured
        assert np.array_equal(render_masks(v3), render_masks(v2))
        assert caption(v3) == caption(v2)
    # Each region's mean colour moves the scene's fraction of the way to its painted colour, in
    # every domain (renders at 64 px; the sky is one region without sun or moon on top of it).
    scene = next(s for s in (sample_scene(seed, world=3) for seed in range(100)) if s["sun"] is None
                 and s["moon"] is None and not s["clouds"] and not s["mountains"])
    sky = render_masks(scene) == CLASS_ID["sky"]
    painted = np.asarray(stroke_base("sky", scene))
    for domain in DOMAINS:
        before = render(sample_scene(scene["seed"], world=2), domain)[sky].mean(0)
        after = render(scene, domain)[sky].mean(0)
        expected = before + scene["palette_pull"]["sky"] * (painted - before)
        assert np.abs(after - expected).max() < 0.03, domain  # clipping at 0/1 aside
        assert np.abs(after - painted).max() <= np.abs(before - painted).max() + 1e-6


def test_move_region_pastes_a_class_shape_and_all_onto_another_place():
    from gradop.world.moves import move_photo_class, move_region, scenes_with
    from gradop.world.scene import label_map

    (hut_scene, hut), = scenes_with("house", HELDOUT_SEED + 70_000, 1, DEFAULT_WORLD)
    (sun_scene, sun), = scenes_with("sun", HELDOUT_SEED + 70_000, 1, DEFAULT_WORLD)
    assert hut.sum() >= 20 and np.array_equal(hut, label_map(hut_scene, 64) == CLASS_ID["house"])
    source, target = render_photo(hut_scene), render_photo(sun_scene)
    image, mask = move_region(source, hut, target, sun)
    photo, moved, moved_mask = move_photo_class((hut_scene, hut), (sun_scene, sun))  # the same, from the scenes
    assert np.array_equal(photo, source) and np.array_equal(moved, image) and np.array_equal(moved_mask, mask)
    # The hut's own pixels, in its own shape, centred where the sun was; everything else untouched.
    ys, xs = np.nonzero(mask)
    sy, sx = np.nonzero(sun)
    assert abs(ys.mean() - sy.mean()) <= 2 and abs(xs.mean() - sx.mean()) <= 2
    assert mask.sum() <= hut.sum() and np.array_equal(image[~mask], target[~mask])
    assert sorted(map(tuple, image[mask].round(5))) != sorted(map(tuple, target[mask].round(5)))
    if mask.sum() == hut.sum():  # nothing clipped: exactly the hut's pixels
        assert np.allclose(np.sort(image[mask], 0), np.sort(source[hut], 0))
    # Moved so that fewer than 10 pixels stay on the image: nothing to judge.
    speck, corner = np.zeros_like(sun), np.zeros_like(sun)
    speck[30:34, 30:34], corner[0, 0] = True, True  # 16 pixels, centred on the corner: 4 stay
    assert move_region(source, speck, target, corner) is None


def test_a_class_moved_onto_an_emptied_place_leaves_nothing_of_that_place():
    from gradop.world.moves import SWAPS, empty_place, move_photo_class, scenes_with
    from gradop.world.scene import label_map, scene_classes

    for cls, place in SWAPS:
        source, = scenes_with(cls, HELDOUT_SEED + 71_000, 1, DEFAULT_WORLD)
        target, = scenes_with(place, HELDOUT_SEED + 72_000, 1, DEFAULT_WORLD)
        emptied = empty_place(target[0], place)
        kept = move_photo_class(source, target)
        photo, moved, mask = move_photo_class(source, target, emptied=place)
        assert np.array_equal(mask, kept[2]) and np.array_equal(moved[mask], kept[1][mask]), "the same pixels, same place"
        if place in ("sky", "grass"):  # backgrounds: nothing to remove
            assert emptied == target[0] and np.array_equal(moved, kept[1])
            continue
        # The place's objects are gone, the scene is otherwise the same, and so are the other classes' pixels.
        assert place not in scene_classes(emptied) and not (label_map(emptied, 64) == CLASS_ID[place]).any()
        assert scene_classes(emptied) | {place} >= scene_classes(target[0]) - {"boat"}
        left = ~mask & ~target[1]
        assert not np.array_equal(moved, kept[1]) and np.abs(moved[left] - kept[1][left]).mean() < 0.05
        assert place in scene_classes(target[0]), "the scene itself is not changed"
