"""The shipped demo model (pretrained_models/gradop-demo) and its judge: load offline, generate,
and the generations show what their captions ask for. Few steps and seeds keep this fast; the
full measurements are bench/demo_model_eval.py."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gradop.images import pil_to_tensor
from gradop.pipeline import GradopPipeline
from gradop.world import caption, render, render_masks, render_photo, render_strokes, sample_scene, to_pil
from gradop.world.judge import DEFAULT_JUDGE, Judge, load_judge
from gradop.world.scene import CLASSES, HELDOUT_SEED

DEMO = Path(__file__).resolve().parents[1] / "pretrained_models" / "gradop-demo"
STEPS = 20


@pytest.fixture(scope="module")
def demo_pipe() -> GradopPipeline:
    return GradopPipeline.from_pretrained(str(DEMO), device="cpu")


@pytest.fixture(scope="module")
def judge():
    return load_judge(DEFAULT_JUDGE)


def test_shipped_files_are_small_safetensors():
    files = [p for p in DEMO.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt", ".pth")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert (DEMO / "README.md").is_file()


def test_loads_offline_by_folder_and_by_builtin_name(demo_pipe):
    assert demo_pipe.default_size == 64
    assert demo_pipe.vae_scale_factor == 4
    by_name = GradopPipeline.from_pretrained("gradop-demo", device="cpu")
    assert by_name.unet.config.block_out_channels == demo_pipe.unet.config.block_out_channels
    a = demo_pipe.generate("text", "a meadow under a blue sky", steps=3, seed=1).images[0]
    b = by_name.generate("text", "a meadow under a blue sky", steps=3, seed=1).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_judge_segments_held_out_photos(judge):
    scenes = [sample_scene(HELDOUT_SEED + 500 + i) for i in range(8)]
    x = torch.from_numpy(np.stack([render_photo(s) for s in scenes])).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.stack([render_masks(s) for s in scenes])).long()
    assert (judge.segment(x) == y).float().mean() > 0.85
    strokes = torch.from_numpy(np.stack([render_strokes(s) for s in scenes])).permute(0, 3, 1, 2)
    assert judge.realism(x).mean() > judge.realism(strokes).mean() + 0.3


@pytest.mark.parametrize("prompt, ground", [
    ("a photo of a grassy meadow under a blue sky", "grass"),
    ("a photo of a sandy beach under a blue sky", "sand"),
    ("a photo of a snowy field under a clear blue sky", "snow"),
])
def test_judge_recognises_the_main_class_of_generations(demo_pipe, judge, prompt, ground):
    images = [demo_pipe.generate("text", prompt, steps=STEPS, seed=seed).images[0] for seed in (0, 1)]
    x = torch.cat([pil_to_tensor(im) for im in images])
    assert judge.main_class(x, among=("grass", "sand", "snow")) == [ground, ground]


def test_the_prompt_picks_the_domain_as_in_stable_diffusion(demo_pipe, judge):
    # The paper's setting: the model knows photos and paintings, and the caption picks one. The
    # judge (validated on held-out renders) tells the shipped model's photos from its paintings.
    # Measured on these 10 captions with model v3c: photo 0.92, painting 0.09 on average; photo
    # ahead in 10 (an earlier model: 0.79, 0.12, ahead in 8; the misses were huts drawn flat).
    scenes = [sample_scene(HELDOUT_SEED + 300 + i) for i in range(10)]
    realism = {}
    for domain in ("photo", "painting"):
        images = [demo_pipe.generate("text", caption(s, domain=domain), steps=STEPS, seed=i).images[0]
                  for i, s in enumerate(scenes)]
        realism[domain] = judge.realism(torch.cat([pil_to_tensor(im) for im in images]))
    assert realism["photo"].mean() > realism["painting"].mean() + 0.4, realism
    assert (realism["photo"] > realism["painting"]).sum() >= 7, realism


def test_gradop_plus_follows_the_strokes(demo_pipe):
    from gradop.painting import make_painting_fn

    scene = sample_scene(HELDOUT_SEED + 77)
    strokes = to_pil(render_strokes(scene))
    text = caption(scene)
    guided = demo_pipe.generate("gradop+", text, strokes, steps=STEPS, seed=0)
    free = demo_pipe.generate("text", text, steps=STEPS, seed=0)
    assert guided.images[0].size == (64, 64) and guided.losses
    paint = make_painting_fn("blur", 64, 64)
    target = paint(pil_to_tensor(strokes))
    l2 = [float((paint(pil_to_tensor(r.images[0])) - target).pow(2).mean()) for r in (guided, free)]
    assert l2[0] < l2[1]


@pytest.mark.parametrize("index, word", [(1, "hut"), (5, "sun")])
def test_region_words_put_a_small_object_where_it_is_painted(demo_pipe, judge, index, word):
    # Model v3c was trained under region control (train/grounding.py); v3 ignored the word in a
    # sun- or hut-sized region (the judge found the sun there 0.00-0.05 of the time). Tuning
    # paintings (the benchmark's held-out ones are not used here).
    from gradop.quality.metrics import region_shares
    from gradop.quality.scenes import AMBIGUOUS_TUNING_SEED, ambiguous_painting
    from gradop.regions import find_regions, nearest_region
    from gradop.world.scene import CLASS_ID

    painting = ambiguous_painting(index, seed_base=AMBIGUOUS_TUNING_SEED)
    cls = next(c for c, w in painting.meanings if w == word)
    assert painting.source == cls  # the word is the one the painted shape suggests
    mask = nearest_region(find_regions(painting.image), painting.colour).mask
    shares = {}
    for strength in (0.0, 0.5):
        extra = {"regions": {painting.colour: word}, "region_strength": strength} if strength else {}
        images = [demo_pipe.generate("text", painting.caption, painting.image, steps=STEPS, seed=seed, **extra).images[0]
                  for seed in (0, 1)]
        labels = judge.segment(torch.cat([pil_to_tensor(im) for im in images]))
        shares[strength] = float(np.mean(region_shares(labels, mask, CLASS_ID[cls], CLASS_ID["sky"])["assigned_share"]))
    # Measured on v3c (20 steps, seeds 0-1), max-pooled masks: hut 0.50 without the word, 1.00 with it;
    # sun 0.00, 1.00 (area-resized masks, session 16: 0.96 and 0.98).
    assert shares[0.5] >= 0.8 and shares[0.5] >= shares[0.0] + 0.3, shares


def test_a_judge_of_the_first_classes_still_loads(tmp_path):
    # World v2 appended classes; a judge trained on the first ones (v1) keeps working on those.
    Judge(8, 8, CLASSES[:12]).save(tmp_path / "old")
    old = load_judge(tmp_path / "old")
    assert old.classes == CLASSES[:12]
    x = torch.rand(2, 3, 32, 32)
    assert old.segment(x).max() < 12 and all(found <= set(CLASSES[:12]) for found in old.present(x))
    Judge(8, 8, ("sky", "sea")).save(tmp_path / "other")
    with pytest.raises(ValueError, match="trained for other classes"):
        load_judge(tmp_path / "other")


def _moved_class_shares(judge, n: int = 8, emptied: bool = False, vae=None) -> dict[str, float]:
    """Per region-word swap: the share of a held-out photo's own class pixels, moved onto the
    place of the class it is swapped with (emptied of that class first, if asked), that the judge
    labels as that class (after a round trip through `vae`, if given)."""
    from gradop.world.moves import SWAPS, move_photo_class, scenes_with
    from gradop.world.scene import CLASS_ID

    shares = {}
    for cls, place in SWAPS:
        images, masks = [], []
        for source, target in zip(scenes_with(cls, HELDOUT_SEED + 60_000, n, 3), scenes_with(place, HELDOUT_SEED + 65_000, n, 3)):
            if case := move_photo_class(source, target, emptied=place if emptied else None):
                images.append(case[1]), masks.append(torch.from_numpy(case[2]))
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        if vae is not None:
            with torch.no_grad():
                x = (vae(x * 2 - 1).sample.clamp(-1, 1) + 1) / 2
        hits = judge.segment(x) == CLASS_ID[cls]
        shares[f"{cls}->{place}"] = float(np.mean([float(hit[m].float().mean()) for hit, m in zip(hits, masks)]))
    return shares


def test_the_default_judge_sees_a_class_where_the_world_never_puts_it(judge):
    # Region words ask for a hut where a sun was painted, a lake above the horizon, ... Judge v3 read
    # position: a hut's own photo pixels moved into the sky were 0.08 hut, a lake's 0.00 lake. The
    # default judge was trained with class regions moved anywhere (train/train_judge.py --paste).
    old, new = _moved_class_shares(load_judge(DEMO / "judge3")), _moved_class_shares(judge)
    assert np.mean(list(new.values())) >= 0.5 and np.mean(list(new.values())) >= np.mean(list(old.values())) + 0.25
    assert new["house->sun"] >= 0.5 and new["sky->water"] >= 0.8, new
    assert max(old["house->sun"], old["sky->water"], old["water->sky"]) < 0.15, old


def test_judge_v4_sees_more_of_a_class_moved_onto_an_emptied_place_after_the_vae(judge, demo_pipe):
    # What a region word asks for: one class where another was painted, and every generated image
    # goes through the VAE. Judge v4 was trained on such moves (train/render_moves.py); v3b only on
    # pastes anywhere. Measured on these 24 photos per swap: v3b 0.55, v4 0.64 (mean); a lake in
    # the sky 0.19 -> 0.42; no swap lower.
    old = _moved_class_shares(load_judge(DEMO / "judge3b"), 24, emptied=True, vae=demo_pipe.vae)
    new = _moved_class_shares(judge, 24, emptied=True, vae=demo_pipe.vae)
    assert np.mean(list(new.values())) >= np.mean(list(old.values())) + 0.04, (old, new)
    assert new["water->sky"] >= old["water->sky"] + 0.1 and min(new[k] - old[k] for k in new) > -0.05, (old, new)


@pytest.mark.parametrize("folder", ["judge3b", "judge4"])
def test_later_judges_keep_v3s_realism_scorer_exactly(folder):
    # Only the segmenter was retrained (train_judge.py --segmenter-only), so every realism number
    # published with judge v3 stands under v3b and v4.
    v3, later = load_judge(DEMO / "judge3").state_dict(), load_judge(DEMO / folder).state_dict()
    realism = [k for k in v3 if k.startswith("realism_net.")]
    assert realism and all(torch.equal(v3[k], later[k]) for k in realism)
    assert any(not torch.equal(v3[k], later[k]) for k in v3 if k.startswith("segmenter."))


@pytest.mark.parametrize("folder, world", [("judge2", 2), ("judge3", 3), ("judge3b", 3), ("judge4", 3)])
def test_judges_segment_every_domain_and_tell_photos_from_paintings(folder, world):
    judge = load_judge(DEMO / folder)
    assert judge.classes == CLASSES
    scenes = [sample_scene(HELDOUT_SEED + 900 + i, world=world) for i in range(8)]
    y = torch.from_numpy(np.stack([render_masks(s) for s in scenes])).long()
    realism = {}
    for domain in ("photo", "painting", "crayon", "strokes"):
        x = torch.from_numpy(np.stack([render(s, domain) for s in scenes])).permute(0, 3, 1, 2)
        assert (judge.segment(x) == y).float().mean() > 0.8, domain
        realism[domain] = judge.realism(x)
    assert (realism["photo"] > 0.5).all()
    for domain in ("painting", "crayon", "strokes"):
        assert (realism[domain] < 0.5).float().mean() >= 0.875, (domain, realism[domain])
