"""The quality benchmark (gradop.quality): its paintings, metrics and statistics, and the
`gradop bench quality` harness end to end on the demo model (2 paintings, 2 steps). The end-to-end
test checks that the harness runs and writes its outputs; it does not check gradop's claims."""

import ast
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradop.cli import main
from gradop.quality.metrics import auc, bootstrap_ci, faithfulness, paired, region_shares, texture_share
from gradop.quality.scenes import (AMBIGUOUS_PAIRS, AMBIGUOUS_SEED, AMBIGUOUS_TUNING_SEED, APP_PALETTE,
                                   ambiguous_painting, app_painting, benchmark_paintings, world_painting)
from gradop.region_words import word_occurrences
from gradop.regions import find_regions, nearest_region
from gradop.images import pil_to_tensor
from gradop.quality.runner import SCENE_PHOTO_LABEL
from gradop.world import render_photo, sample_scene
from gradop.world.judge import load_judge
from gradop.world.moves import SWAPS
from gradop.world.scene import HELDOUT_SEED

ROOT = Path(__file__).resolve().parents[1]


def test_app_palette_is_the_apps():
    tree = ast.parse((ROOT / "app.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PALETTE")
    assert ast.literal_eval(node.value) == APP_PALETTE


def test_app_paintings_use_only_palette_colours_and_canvas():
    painting = app_painting(3)
    colours = {tuple(c) for c in np.asarray(painting.drawing).reshape(-1, 3)}
    allowed = {tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in APP_PALETTE} | {(255, 255, 255)}
    assert colours <= allowed and len(colours) >= 4
    assert (np.asarray(painting.drawing) == 255).all(-1).mean() > 0.005  # some white canvas shows
    assert painting.image.size == (64, 64) and painting.seed >= HELDOUT_SEED


@pytest.mark.parametrize("seed_base", [AMBIGUOUS_SEED, AMBIGUOUS_TUNING_SEED], ids=["benchmark", "tuning"])
@pytest.mark.parametrize("index", range(len(AMBIGUOUS_PAIRS) * 2))
def test_ambiguous_paintings_have_the_colour_region_and_name_both_words(index, seed_base):
    painting = ambiguous_painting(index, seed_base=seed_base)
    # Each painting comes from its own block of 1000 seeds of its range (tuning never meets the benchmark).
    assert seed_base + 1000 * index <= painting.seed < seed_base + 1000 * (index + 1)
    (first, first_word), (second, second_word) = painting.meanings
    assert word_occurrences(painting.caption, first_word) == 1 and word_occurrences(painting.caption, second_word) == 1
    region = nearest_region(find_regions(painting.image), painting.colour)
    assert region.area_fraction >= 0.01
    # Exactly one region wears the ambiguous colour (the competing class is painted otherwise).
    close = [r for r in find_regions(painting.image) if np.abs(np.subtract(r.color, region.color)).sum() < 40]
    assert len(close) == 1
    assert painting.source == (first if (index // len(AMBIGUOUS_PAIRS)) % 2 == 0 else second)


def test_the_judges_validation_swaps_are_the_region_sections_pairs_both_ways():
    pairs = {(first[0], second[0]) for _, first, second, _ in AMBIGUOUS_PAIRS}
    assert set(SWAPS) == pairs | {(b, a) for a, b in pairs} and len(SWAPS) == 2 * len(pairs)


def test_benchmark_paintings_interleave_kinds_and_never_use_training_seeds():
    paintings = benchmark_paintings(2, 2, 2)
    assert [p.kind for p in paintings] == ["world", "app", "ambiguous"] * 2
    assert all(p.seed >= HELDOUT_SEED for p in paintings)
    assert world_painting(0).caption == paintings[0].caption  # deterministic


def test_texture_share_separates_flat_paint_from_texture():
    flat = torch.full((1, 3, 32, 32), 0.4)
    rng = torch.Generator().manual_seed(0)
    noisy = (0.4 + 0.1 * torch.randn(1, 3, 32, 32, generator=rng)).clamp(0, 1)
    assert texture_share(flat).item() == 0
    assert texture_share(noisy).item() > 0.95


def test_faithfulness_is_zero_for_the_strokes_themselves_and_grows_with_change():
    target = torch.zeros(1, 3, 16, 16)
    target[:, 2, :8] = 1.0  # blue top half on black
    masks = [r.mask for r in find_regions(Image.fromarray((target[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)))]
    shifted = target.clone()
    shifted[:, 0] += 0.3
    scores = faithfulness(torch.cat([target, shifted]), target, masks)
    assert scores["blurred_l2"][0] == pytest.approx(0, abs=1e-7) and scores["blurred_l2"][1] > 0.02
    assert scores["region_colour_error"][0] == pytest.approx(0, abs=1e-6)
    assert scores["region_colour_error"][1] == pytest.approx(0.3, abs=1e-4)


def test_region_shares_count_the_regions_pixels_per_class():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2] = 6
    labels[0, 2, :2] = 3
    mask = np.zeros((4, 4), bool)
    mask[1:3] = True  # 4 pixels of class 6, 2 of class 3, 2 of class 0
    shares = region_shares(labels, mask, assigned=6, competing=3)
    assert shares == {"assigned_share": [0.5], "competing_share": [0.25]}


def test_statistics_auc_bootstrap_and_paired_wins():
    assert auc([2, 3], [0, 1]) == 1.0 and auc([0, 1], [2, 3]) == 0.0 and auc([1], [1]) == 0.5
    ci = bootstrap_ci([1.0, 1.2, 3.0, 3.2], ["a", "a", "b", "b"])
    assert ci["n"] == 2 and ci["mean"] == pytest.approx(2.1) and ci["low"] <= 2.1 <= ci["high"]
    rows_a = [{"painting": p, "image": 0, "x": v} for p, v in zip("abcd", (2.0, 3.0, 4.0, 0.0))]
    rows_b = [{"painting": p, "image": 0, "x": 1.0} for p in "abcd"]
    diff = paired(rows_a, rows_b, "x")
    assert diff["mean"] == pytest.approx(1.25) and diff["win_rate"] == 0.75


def test_bench_quality_end_to_end_on_two_paintings(tmp_path, capsys):
    out = tmp_path / "quality"
    code = main(["bench", "quality", "--world", "1", "--app", "0", "--ambiguous", "1", "--edit", "1", "--steps", "2",
                 "--seeds", "2", "--settings", "text2img", "sdedit 0.5", "gradop+", "--region-settings", "gradop+",
                 "--region-strengths", "1.0", "--references", "2", "--sheet", "1", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in (out / "rows_0.jsonl").read_text().splitlines()]
    guided = [r for r in rows if r["section"] == "guided"]
    region = [r for r in rows if r["section"] == "region"]
    assert {r["setting"] for r in guided} == {"text2img", "sdedit 0.5", "gradop+", SCENE_PHOTO_LABEL}
    assert len(guided) == 3 * 2 + 1
    # The scene photo is the world's own photo of the painting's scene, scored like the outputs.
    (photo,) = [r for r in guided if r["setting"] == SCENE_PHOTO_LABEL]
    painting = world_painting(0)
    scene_photo = torch.from_numpy(render_photo(sample_scene(painting.seed))).permute(2, 0, 1)[None]
    assert photo["realism_judge"] == pytest.approx(load_judge().realism(scene_photo).item(), abs=1e-5)
    assert photo["blurred_l2"] == pytest.approx(
        faithfulness(scene_photo, pil_to_tensor(painting.image), [])["blurred_l2"][0], rel=1e-5)
    # No control answers for both words; each word at w'=1: 2 images each.
    assert len(region) == (2 + 2) * 2 and {r["region_strength"] for r in region} == {0.0, 1.0}
    references = [r for r in rows if r["section"] == "reference"]
    assert sorted(r["kind"] for r in references if r["kind"] != "moved") == ["app", "app", "photo", "photo", "world", "world"]
    # The segmenter's validation: each swap's class moved onto the other class's place, per reference.
    moved = [r for r in references if r["kind"] == "moved"]
    assert sorted(r["swap"] for r in moved) == sorted(f"{a}->{b}" for a, b in SWAPS for _ in range(2))
    assert all(0 <= r[f"{k}{v}_share"] <= 1 for r in moved for k in ("moved", "in_place", "emptied") for v in ("", "_vae"))
    editing = [r for r in rows if r["section"] == "editing"]  # no word, the word at w'=1, re-imagined: 2 images each
    assert [(r["condition"], r["region_strength"]) for r in editing[::2]] == [("no word", 0), ("word", 1.0), ("reimagine", 1.0)]
    for r in rows:
        for key, value in r.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, r)
    with (out / "scores.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["guided"]) == {"text2img", "sdedit 0.5", "gradop+", SCENE_PHOTO_LABEL}
    assert summary["promise_1"]["verdict"] and summary["promise_2"]["verdict"]
    report = (out / "report.md").read_text()
    assert "| setting | blurred L2 |" in report and "| gradop+ |" in report and "Promise 2" in report
    assert set(summary["editing"]) == {"gradop+ / no word", "gradop+ / word w'=1", "gradop+ / reimagine"}
    assert "## Editing" in report and "| gradop+ / word w'=1 |" in report
    assert {swap: v["n"] for swap, v in summary["segmenter_validation"].items()} == {f"{a}->{b}": 2 for a, b in SWAPS}
    assert ("| class -> place | in place | moved | moved, emptied | in place, through the VAE | moved, through the VAE "
            "| moved, emptied, through the VAE | photos |") in report
    visible = summary["promise_2"]["visible_share"]
    assert 0 <= visible["assigned_share"] <= 1 and 0 <= visible["assigned_share_vae"] <= 1 and visible["cases"] == 2
    for name in ("realism_vs_faithfulness.png", "contact_sheet.png"):
        with Image.open(out / name) as image:
            assert image.size[0] > 300 and image.size[1] > 100
    assert "promise 1:" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--shard", "2/2"], "--shard '2/2'"),
    (["--settings", "sdedit 0.42"], "unknown setting 'sdedit 0.42'"),
    (["--merge"], "no benchmark rows"),
])
def test_bench_quality_bad_input_is_one_line(tmp_path, capsys, extra, message):
    assert main(["bench", "quality", "--out", str(tmp_path / "empty"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _synthetic_rows(gradop_realism: float, gradop_l2: float) -> list[dict]:
    """Rows with known answers: photos score 0.9, paintings 0.1 (both signals valid); SDEdit at
    every strength has realism 0.5 and blurred L2 0.05; GradOP+ as given (plus noise)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):
        for kind, value in (("photo", 0.9), ("world", 0.1), ("app", 0.1)):
            rows.append({"section": "reference", "painting": f"r{i}", "kind": kind, "image": 0,
                         "realism_judge": value + rng.normal(0, 0.02), "realism_texture": value + rng.normal(0, 0.02)})
        settings = {"text2img": (0.9, 0.2), "sdedit 0.3 (reference)": (0.1, 0.01), "gradop+": (gradop_realism, gradop_l2),
                    **{f"sdedit {s}": (0.5, 0.05) for s in (0.5, 0.6, 0.7, 0.8, 0.9)}}
        for setting, (real, l2) in settings.items():
            for k in range(2):
                noisy = lambda v: float(v + rng.normal(0, 0.01))  # noqa: E731
                rows.append({"section": "guided", "painting": f"p{i}", "kind": "world", "setting": setting,
                             "method": setting.split()[0], "image": k, "seconds": 1.0, "blurred_l2": noisy(l2),
                             "painted_l2": noisy(l2), "region_colour_error": noisy(l2), "realism_judge": noisy(real),
                             "realism_texture": noisy(real)})
    return rows


def test_promise_one_verdict_follows_the_paired_differences():
    from gradop.quality.summary import summarise

    better = summarise(_synthetic_rows(gradop_realism=0.7, gradop_l2=0.04))
    assert all(v["valid"] for v in better["validation"].values())
    assert better["promise_1"]["won"] == 5 and better["promise_1"]["verdict"].startswith("holds")
    worse_l2 = summarise(_synthetic_rows(gradop_realism=0.7, gradop_l2=0.08))["promise_1"]
    assert worse_l2["won"] == 0 and worse_l2["verdict"].startswith("does not hold")
    same_realism = summarise(_synthetic_rows(gradop_realism=0.5, gradop_l2=0.04))["promise_1"]
    assert same_realism["won"] == 0


def test_a_signal_that_fails_validation_is_not_used(monkeypatch):
    from gradop.quality.summary import summarise

    rows = _synthetic_rows(gradop_realism=0.7, gradop_l2=0.04)
    for r in rows:
        if r["section"] == "reference" and r["kind"] == "photo":
            r["realism_texture"] = 0.0  # photos now score below paintings on texture
    summary = summarise(rows)
    assert not summary["validation"]["texture"]["valid"] and summary["validation"]["judge"]["valid"]
    assert summary["promise_1"]["validated_signals"] == ["judge"]


def test_sections_added_later_summarise_and_report_themselves(monkeypatch):
    from gradop.quality import runner
    from gradop.quality.report import markdown
    from gradop.quality.summary import summarise

    class Extra:
        name = "extra"

        def summarise(self, rows):
            return {"images": len(rows)}

        def markdown(self, part):
            return f"## Extra section: {part['images']} images"

    monkeypatch.setattr(runner, "SECTIONS", [*runner.SECTIONS, Extra()])
    rows = _synthetic_rows(0.7, 0.04) + [{"section": "extra", "painting": "e0", "kind": "world", "image": 0}]
    summary = summarise(rows)
    assert summary["extra"] == {"images": 1}
    assert "## Extra section: 1 images" in markdown(summary)


def test_resume_keeps_finished_paintings_and_runs_the_rest(monkeypatch, tmp_path):
    from gradop.quality import runner

    ran = []

    class Recording:
        name = "recording"

        def applies(self, painting):
            return True

        def run(self, ctx, painting):
            ran.append(painting.name)
            return [{"section": self.name, "painting": painting.name, "kind": painting.kind, "image": 0}]

    monkeypatch.setattr(runner, "SECTIONS", [Recording()])
    ctx = runner.Context(pipe=None, judge=None)
    paintings = benchmark_paintings(2, 1, 0)
    path = runner.run_shard(ctx, paintings[:2], tmp_path, log=lambda _: None)
    with path.open("a") as handle:
        handle.write('{"section": "recording", "painting": "cut off')  # a shard stopped mid-write
    runner.run_shard(ctx, paintings, tmp_path, resume=True, log=lambda _: None)
    assert ran == [p.name for p in paintings[:2]] + [paintings[2].name]
    assert [r["painting"] for r in runner.read_rows(tmp_path)] == [p.name for p in paintings]


@pytest.mark.parametrize("factor, noise, within, within_ci",
                         [(1.02, 0, True, True), (0.97, 0, True, True), (1.10, 0, False, False), (1.04, 0.01, True, False)])
def test_decoder_parity_compares_the_cheap_decoder_with_the_full_vae(factor, noise, within, within_ci):
    from gradop.quality.report import markdown
    from gradop.quality.summary import summarise

    rng = np.random.default_rng(1)
    rows = _synthetic_rows(gradop_realism=0.7, gradop_l2=0.04)
    base = [r for r in rows if r.get("setting") == "gradop+"]
    exact = [{**r, "setting": "gradop+ vae"} for r in base]  # the release's exact path
    # A cheap decoder: blurred L2 scaled by `factor`, plus per-image noise (a wide CI).
    cheap = [{**r, "setting": "gradop+ linear", "seconds": 0.5,
              "blurred_l2": r["blurred_l2"] * factor + float(rng.normal(0, noise))} for r in base]
    bf16 = [{**r, "setting": "gradop+ bf16", "realism_judge": r["realism_judge"] * 0.9} for r in base]
    summary = summarise(rows + exact + cheap + bf16)
    parity = summary["decoder_parity"]["gradop+ linear"]
    assert parity["against"] == "gradop+ vae" and parity["decoder"] == "linear" and parity["precision"] == "auto"
    in_bf16 = summary["decoder_parity"]["gradop+ bf16"]  # the exact decoder under bf16 autocast
    assert in_bf16["against"] == "gradop+ vae" and (in_bf16["decoder"], in_bf16["precision"]) == ("vae", "bf16")
    assert in_bf16["realism_judge"]["relative"] == pytest.approx(-0.1) and in_bf16["within"] is False
    # With the fp32 decoder run by name ("auto" is bf16 on some CPUs), that is the exact path.
    fp32 = [{**r, "setting": "gradop+ fp32", "realism_judge": r["realism_judge"] * 0.5} for r in base]
    against_fp32 = summarise(rows + exact + bf16 + fp32)["decoder_parity"]
    assert against_fp32["gradop+ bf16"]["against"] == "gradop+ fp32"
    assert against_fp32["gradop+ bf16"]["realism_judge"]["relative"] == pytest.approx(0.8)
    assert parity["blurred_l2"]["relative"] == pytest.approx(factor - 1, abs=0.01 if noise else 1e-9)
    assert parity["realism_judge"]["relative"] == pytest.approx(0, abs=1e-9)
    assert parity["within"] is within and parity["within_ci"] is within_ci
    verdict = (f"gradop+ linear: **{'within' if within else 'NOT within'} 5%** "
               f"(the CI's worse end: {'within' if within_ci else 'not within'})")
    assert verdict in markdown(summary)
    # The default ("gradop+" rows, identical to the exact path's here) is compared too unless it is the exact path.
    from gradop.options import GradopPlusOptions

    if GradopPlusOptions().guidance_decoder == "vae":
        assert "gradop+" not in summary["decoder_parity"]
    else:
        assert summary["decoder_parity"]["gradop+"]["within_ci"] is True


def test_parity_compares_fewer_adam_steps_with_the_release_schedule_of_the_full_vae():
    from gradop.quality.runner import SCHEDULE_SETTINGS
    from gradop.quality.summary import summarise

    rows = _synthetic_rows(gradop_realism=0.7, gradop_l2=0.04)
    base = [r for r in rows if r.get("setting") == "gradop+"]
    release = [{**r, "setting": "gradop+ release", "realism_judge": r["realism_judge"] * 0.98} for r in base]
    fewer = [{**r, "setting": SCHEDULE_SETTINGS[-1].label, "blurred_l2": r["blurred_l2"] * 1.08} for r in base]
    fp32 = [{**r, "setting": "gradop+ fp32"} for r in base]  # fp32 at the default schedule: not the release's
    earlier = [{**r, "setting": "gradop+ s0.9 it2"} for r in base]  # another window: a different method, not a cheaper path
    parity = summarise(rows + release + fewer + fp32 + earlier)["decoder_parity"]
    entry = parity[SCHEDULE_SETTINGS[-1].label]
    assert entry["against"] == "gradop+ release"
    assert (entry["decoder"], entry["grad_steps"], entry["lr"]) == ("vae", 1, 1.3)
    assert entry["blurred_l2"]["relative"] == pytest.approx(0.08) and entry["within"] is False
    # The default (one Adam step of 1.5) is itself a cheaper path against the release's schedule.
    default = parity["gradop+"]
    assert default["against"] == "gradop+ release" and (default["grad_steps"], default["lr"]) == (1, 1.5)
    assert default["realism_judge"]["relative"] == pytest.approx(1 / 0.98 - 1) and default["within"] is True
    assert "gradop+ s0.9 it2" not in parity and parity["gradop+ fp32"]["against"] == "gradop+ release"


def test_world_v2_paintings_draw_its_new_classes_and_the_demo_models_world_is_the_default():
    from gradop.quality.scenes import render_app_painting
    from gradop.world import DEFAULT_WORLD, sample_scene

    first = benchmark_paintings(2, 2, 0)
    assert [p.caption for p in first] == [p.caption for p in benchmark_paintings(2, 2, 0, world_version=DEFAULT_WORLD)]
    v1 = benchmark_paintings(2, 2, 0, world_version=1)
    assert [p.caption for p in v1] != [p.caption for p in first]
    scene = next(s for s in (sample_scene(2_000_000 + i, 2) for i in range(200)) if s.get("boats") or s.get("rocks"))
    drawn = np.asarray(render_app_painting(scene))
    hidden = np.asarray(render_app_painting(scene, {"boat": None, "rock": None}))
    assert (drawn != hidden).any(axis=-1).mean() > 0.001  # boats and rocks are painted, not left as canvas


def test_bench_quality_on_world_v2_picks_the_v2_judge(tmp_path):
    from gradop.world.judge import JUDGES

    out = tmp_path / "v2"
    assert main(["bench", "quality", "--world-version", "2", "--world", "1", "--app", "0",
                 "--ambiguous", "0", "--edit", "0", "--steps", "2", "--seeds", "1", "--settings", "text2img",
                 "--references", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config_0.json").read_text())
    assert config["world_version"] == 2 and Path(config["judge"]).resolve() == JUDGES[2].resolve()
    rows = [json.loads(line) for line in (out / "rows_0.jsonl").read_text().splitlines()]
    assert {r["section"] for r in rows} == {"reference", "guided"}


def test_tuning_paintings_alternate_renderers_on_their_own_seed_range():
    from gradop.quality.scenes import APP_SEED, TUNING_SEED, WORLD_SEED, render_app_painting, tuning_painting
    from gradop.world import render_strokes, to_pil

    scene, strokes = tuning_painting(0, world_version=2)
    assert scene["seed"] == TUNING_SEED and scene["world"] == 2
    assert np.array_equal(np.asarray(strokes), np.asarray(to_pil(render_strokes(scene))))
    scene, strokes = tuning_painting(1)
    assert strokes.size == (64, 64)
    assert np.array_equal(np.asarray(strokes), np.asarray(render_app_painting(scene).resize((64, 64), Image.LANCZOS)))
    # Apart from the benchmark's held-out ranges (each used for at most a few hundred paintings).
    assert all(abs(TUNING_SEED - start) > 10_000 for start in (WORLD_SEED, APP_SEED))


def test_every_named_setting_is_a_call_the_library_accepts():
    from gradop.options import parse_options
    from gradop.quality.runner import SETTINGS_BY_LABEL

    for label, setting in SETTINGS_BY_LABEL.items():
        _, options = parse_options(setting.method, setting.kwargs)  # raises on an unknown knob or bad value
        for name, value in setting.options:
            assert getattr(options, name) == value, label


def test_promise_two_reports_each_words_share_natural_and_swapped():
    from gradop.quality.report import markdown
    from gradop.quality.summary import promise_two, summarise

    rows = []
    for p, (word, natural, share) in enumerate([("lake", True, 0.8), ("lake", False, 0.1), ("sky", True, 1.0),
                                                ("sky", False, 0.6), ("lake", True, 0.6)]):
        for strength, s in ((0.0, 0.0), (2.0, share)):
            rows.append({"section": "region", "painting": f"ambiguous-{p:03d}", "kind": "ambiguous", "setting": "text2img",
                         "method": "text", "image": 0, "seconds": 1.0, "word": word, "natural": natural,
                         "assigned_class": {"lake": "water", "sky": "sky"}[word],
                         "competing_class": {"lake": "sky", "sky": "water"}[word],
                         "region_strength": strength, "assigned_share": s, "competing_share": 0.0,
                         "realism_judge": 0.5, "realism_texture": 0.5})
    by_word = promise_two(rows, {})["by_setting"]["text2img"]["2.0"]["by_word"]
    assert by_word == pytest.approx({"lake (natural)": 0.7, "sky (natural)": 1.0, "lake (swapped)": 0.1,
                                     "sky (swapped)": 0.6})
    assert list(by_word) == ["lake (natural)", "sky (natural)", "lake (swapped)", "sky (swapped)"]
    moved = [{"section": "reference", "painting": f"r{i}", "kind": "moved", "image": 0, "swap": "water->sky",
              "in_place_share": 0.9, "moved_share": share} for i, share in enumerate((0.0, 0.2))]
    # Without every swap validated there is no visible share to give.
    assert summarise(_synthetic_rows(0.7, 0.04) + rows + moved)["promise_2"]["visible_share"] is None
    moved.append({"section": "reference", "painting": "r2", "kind": "moved", "image": 0, "swap": "sky->water",
                  "in_place_share": 1.0, "moved_share": 0.5})
    summary = summarise(_synthetic_rows(0.7, 0.04) + rows + moved)
    assert summary["segmenter_validation"] == {"water->sky": {"in_place": pytest.approx(0.9), "moved": pytest.approx(0.1), "n": 2},
                                               "sky->water": {"in_place": 1.0, "moved": 0.5, "n": 1}}
    # A perfect model: natural lakes 0.9 (twice) and sky 1.0 in place; lake 0.1 and sky 0.5 moved.
    assert summary["promise_2"]["visible_share"].pop("swapped_onto") == "moved"
    assert summary["promise_2"]["visible_share"] == pytest.approx(
        {"assigned_share": 3.4 / 5, "natural": 2.8 / 3, "swapped": 0.3, "cases": 5})
    report = markdown(summary)
    assert "| text2img | 2.0 | 0.70 | 1.00 | 0.10 | 0.60 |" in report
    assert "| water->sky | 0.90 | 0.10 | — | — | — | — | 2 |" in report  # a run from before the VAE round trip
    assert "score 0.68 (natural 0.93, swapped 0.30), over the 5 cases" in report
    assert "where each case asks for them, score 0.68 with this judge" in summary["promise_2"]["verdict"]
    # With the round trip through the VAE as well.
    for r, (in_place, moved_share) in zip(moved, ((0.8, 0.0), (0.8, 0.0), (0.9, 0.3))):
        r.update(in_place_vae_share=in_place, moved_vae_share=moved_share)
    summary = summarise(_synthetic_rows(0.7, 0.04) + rows + moved)
    assert summary["promise_2"]["visible_share"].pop("swapped_onto") == "moved"
    assert summary["promise_2"]["visible_share"] == pytest.approx(
        {"assigned_share": 3.4 / 5, "natural": 2.8 / 3, "swapped": 0.3, "cases": 5,
         "assigned_share_vae": 2.8 / 5, "natural_vae": 2.5 / 3, "swapped_vae": 0.15})
    report = markdown(summary)
    assert "| water->sky | 0.90 | 0.10 | — | 0.80 | 0.00 | — | 2 |" in report
    assert "through the VAE, 0.56 (natural 0.83, swapped 0.15)" in report
    assert summary["promise_2"]["verdict"].endswith("swapped 0.30), 0.56 through the VAE")
    # With the place emptied first (session 19 on), a swapped word is estimated from those shares.
    for r, (emptied, emptied_vae) in zip(moved, ((0.6, 0.4), (0.4, 0.2), (0.7, 0.5))):
        r.update(emptied_share=emptied, emptied_vae_share=emptied_vae)
    summary = summarise(_synthetic_rows(0.7, 0.04) + rows + moved)
    assert summary["segmenter_validation"]["water->sky"]["emptied"] == pytest.approx(0.5)
    visible = summary["promise_2"]["visible_share"]
    assert visible["swapped_onto"] == "emptied"
    # Swapped: lake 0.5 and sky 0.7 moved onto the emptied place; through the VAE 0.3 and 0.5.
    assert {k: v for k, v in visible.items() if k != "swapped_onto"} == pytest.approx(
        {"assigned_share": (2.8 + 0.5 + 0.7) / 5, "natural": 2.8 / 3, "swapped": 0.6, "cases": 5,
         "assigned_share_vae": (2.5 + 0.3 + 0.5) / 5, "natural_vae": 2.5 / 3, "swapped_vae": 0.4})
    report = markdown(summary)
    assert "| water->sky | 0.90 | 0.10 | 0.50 | 0.80 | 0.00 | 0.30 | 2 |" in report
    assert "moved onto the emptied place for a swapped one" in report
