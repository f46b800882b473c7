"""The quality benchmark's editing section: painting an object onto held-out world photos.

Each case is a held-out world photo (seeds from gradop.world.scene.HELDOUT_SEED) with one blob
painted on its ground: a red blob for "hut" or a green one for "tree" (the world's stroke
colours), and the prompt "<the photo's caption> with a red hut" / "... with a green tree".
Every method edits it (background = the photo, RGBA strokes) twice, with and without the
region word (region-to-word control tying the blob to "hut" / "tree"; the prompt is the same).
Measured per method and condition, mean over cases:
- l2_outside: mean squared error (pixels in [0, 1]) to the photo outside the feathered edit
  region (the pixels an edit must copy: 0 expected);
- l2_band: the same inside the feather band (where generated and photo pixels are mixed);
- class_share: the judge's share of the blob's pixels that show the object's class;
- realism and realism_gap: the judge's photo probability of the edited image, and its
  difference to the original photo's (negative = less photo-like; a seam counts against it).
The "reimagine" rows are GradOP+ without edit mode (today's full regeneration), for reference.

    .venv/bin/python -m gradop.quality.editing --cases 24 --out logs/editing.json --examples docs/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gradop.editing import prepare_edit
from gradop.images import pil_to_tensor
from gradop.regions import word_occurrences
from gradop.world import caption, render_photo, sample_scene, to_pil
from gradop.world.scene import CLASS_ID, HELDOUT_SEED

CASE_SEED = HELDOUT_SEED + 30_000  # apart from the other evaluations' held-out ranges
OBJECTS = (  # (word, class, phrase, stroke colour, blob size as a fraction of the side (w, h))
    ("hut", "house", "a red hut", (204, 51, 38), (0.26, 0.2)),
    ("tree", "tree", "a green tree", (13, 102, 26), (0.16, 0.26)),
)
METHODS = ("gradop+", "sdedit", "gradop", "text")


def edit_case(index: int, size: int = 64) -> dict:
    """One held-out case: the photo, the RGBA blob, the prompt and the object's word and class."""
    scene = sample_scene(CASE_SEED + index)
    word, cls, phrase, colour, (bw, bh) = OBJECTS[index % len(OBJECTS)]
    rng = np.random.default_rng(CASE_SEED + index)
    horizon = scene["horizon"]
    cx = rng.uniform(0.2, 0.8) * size
    cy = rng.uniform(min(horizon + 0.15, 0.8), 0.82) * size
    strokes = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(strokes).ellipse((cx - bw * size / 2, cy - bh * size / 2, cx + bw * size / 2, cy + bh * size / 2),
                                    fill=(*colour, 255))
    prompt = f"{caption(scene)} with {phrase}"
    return dict(seed=CASE_SEED + index, photo=to_pil(render_photo(scene, size)), strokes=strokes, prompt=prompt,
                word=word, cls=cls, colour="#%02x%02x%02x" % colour,
                region={"word": word, "occurrence": word_occurrences(prompt, word) - 1})


def measure(judge, edited: Image.Image, case: dict) -> dict:
    edit = prepare_edit(case["strokes"], case["photo"], edited.size)
    alpha = edit.alpha.numpy()
    out, photo = pil_to_tensor(edited)[0].numpy(), pil_to_tensor(case["photo"])[0].numpy()
    sq = ((out - photo) ** 2).mean(0)
    band = (alpha > 0) & (alpha < 1)
    labels = judge.segment(pil_to_tensor(edited))[0].numpy()
    painted = edit.painted.numpy()
    return dict(l2_outside=float(sq[alpha == 0].mean()), l2_band=float(sq[band].mean()) if band.any() else 0.0,
                class_share=float((labels[painted] == CLASS_ID[case["cls"]]).mean()),
                realism=float(judge.realism(pil_to_tensor(edited))[0]))


def run_editing(pipe, judge, n_cases: int, out_dir: str | Path | None = None, *, steps: int = 50,
                methods=METHODS, reimagine: bool = True, examples: int = 4, log=print, on_case=None,
                **options) -> dict:
    """The editing section: per-case rows and the summary (see the module docstring).
    `options` go to every generate call (e.g. region_strength); on_case(report so far) is
    called after each case (e.g. to save partial results of a long run)."""
    out_dir = Path(out_dir) if out_dir is not None else None
    rows, started = [], time.time()
    for index in range(n_cases):
        case = edit_case(index, pipe.default_size)
        photo_realism = float(judge.realism(pil_to_tensor(case["photo"]))[0])
        runs = [(m, cond) for m in methods for cond in ("word", "no_word")] + ([("gradop+", "reimagine")] if reimagine else [])
        shown = []
        for method, condition in runs:
            regions = {case["colour"]: case["region"]} if condition != "no_word" else None
            result = pipe.generate(method, case["prompt"], case["strokes"], background=case["photo"], seed=case["seed"],
                                   steps=steps, regions=regions, edit=condition != "reimagine", **options)
            row = dict(case=index, seed=case["seed"], word=case["word"], method=method, condition=condition,
                       photo_realism=photo_realism, **measure(judge, result.images[0], case))
            row["realism_gap"] = row["realism"] - photo_realism
            rows.append(row)
            if method == "gradop+":
                shown.append((condition, result.images[0]))
        if out_dir is not None and index < examples:
            save_example(out_dir / f"edit_example_{index}.png", case, shown)
        log(f"case {index + 1}/{n_cases} ({case['word']}) {time.time() - started:.0f}s")
        if on_case is not None:
            on_case({"n_cases": index + 1, "steps": steps, "options": options, "summary": summarise(rows), "rows": rows})
    return {"n_cases": n_cases, "steps": steps, "options": options, "summary": summarise(rows), "rows": rows}


def summarise(rows: list[dict]) -> dict:
    """Means per method and condition (and per object word)."""
    summary: dict = {}
    for key in sorted({(r["method"], r["condition"]) for r in rows}):
        group = [r for r in rows if (r["method"], r["condition"]) == key]
        mean = {k: float(np.mean([r[k] for r in group])) for k in
                ("l2_outside", "l2_band", "class_share", "realism", "photo_realism", "realism_gap")}
        mean["realism_gap_abs"] = float(np.mean([abs(r["realism_gap"]) for r in group]))
        mean["class_share_by_word"] = {w: float(np.mean([r["class_share"] for r in group if r["word"] == w]))
                                       for w in sorted({r["word"] for r in group})}
        mean["n"] = len(group)
        summary[f"{key[0]}/{key[1]}"] = mean
    return summary


def save_example(path: Path, case: dict, shown: list[tuple[str, Image.Image]]) -> None:
    from gradop.grid import labelled_grid

    painted = prepare_edit(case["strokes"], case["photo"], case["photo"].size, edit=False).composite
    labels = ["photo", "painted"] + [f"gradop+ {c.replace('_', ' ')}" for c, _ in shown]
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid([case["photo"], painted] + [image for _, image in shown], labels).save(path)


def main(argv: list[str] | None = None) -> None:
    from gradop.pipeline import GradopPipeline
    from gradop.world.judge import DEFAULT_JUDGE, load_judge

    ap = argparse.ArgumentParser(description="Editing benchmark on held-out world photos (demo model).")
    ap.add_argument("--model", default="gradop-demo")
    ap.add_argument("--judge", default=str(DEFAULT_JUDGE))
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--region-strength", type=float, default=0.5)
    ap.add_argument("--edit-start", default="noise", help="GradOP+: noise (the release) or painting")
    ap.add_argument("--no-reimagine", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="logs/editing.json")
    ap.add_argument("--examples", default="", help="folder for a few before/after grids")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = GradopPipeline.from_pretrained(args.model, device="cpu")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict) -> None:
        out.write_text(json.dumps(report, indent=1) + "\n")

    report = run_editing(pipe, load_judge(args.judge), args.cases, args.examples or None, steps=args.steps,
                         methods=tuple(args.methods.split(",")), reimagine=not args.no_reimagine, on_case=save,
                         region_strength=args.region_strength, edit_start=args.edit_start)
    save(report)
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
