"""Quick held-out measurements of judge v2 and the demo model v2 (issue 10).

    .venv/bin/python train/eval_v2.py judge --judge build/judge2 --n 300 --out logs/eval_judge2.json
    .venv/bin/python train/eval_v2.py model --model build/demo2 --judge build/judge2 --n 40 \
        --images build/eval/gen_demo2.npz --out logs/eval_model2.json   # again with other --judge: re-scores

judge: segmenter pixel accuracy / mean IoU per domain and realism accuracy (photo > 0.5,
painting domains < 0.5), on rendered held-out scenes and on their VAE reconstructions; and
"moved": a class's own photo pixels moved to where the world puts the class it is swapped with in
the region-word benchmark (a hut where suns are, a lake where the sky is, ...), as the share of
those pixels the segmenter still labels as the class (next to the share in place; "emptied": with
the place's own objects removed first).
model: on held-out scenes, text2img with the scene's photo caption and with its painting
caption (realism accuracy: can the judge tell them apart?), named-class presence in the photo
outputs, SDEdit at 0.5 / 0.6 / 0.7 and default GradOP+ on the scene's strokes with the photo
caption (realism, blurred L2 to the strokes), and the wall time of one default GradOP+ image.
Held-out scenes are world-3 (or --world 2) scenes with seeds from gradop.world.scene.HELDOUT_SEED (+ 20,000 here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world import CLASSES, DEFAULT_WORLD, caption, render, render_masks, sample_scene, scene_classes, to_pil  # noqa: E402
from gradop.world.judge import load_judge  # noqa: E402
from gradop.world.scene import HELDOUT_SEED  # noqa: E402

OFFSET = 20_000
WORLD = DEFAULT_WORLD  # the shipped model's world (3) unless --world 2
DOMAINS = ("photo", "painting", "crayon", "strokes")


def _x(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def judge_eval(judge, vae, n: int) -> dict:
    scenes = [sample_scene(HELDOUT_SEED + OFFSET + i, world=WORLD) for i in range(n)]
    y = torch.from_numpy(np.stack([render_masks(s) for s in scenes])).long()
    out: dict = {}
    for d in DOMAINS:
        x = _x([render(s, d) for s in scenes])
        variants = {"render": x}
        if vae is not None:
            with torch.no_grad():
                variants["vae"] = torch.cat([(vae(x[i : i + 50] * 2 - 1).sample.clamp(-1, 1) + 1) / 2
                                             for i in range(0, n, 50)])
        for name, imgs in variants.items():
            pred = judge.segment(imgs)
            inter = [int(((pred == c) & (y == c)).sum()) for c in range(len(CLASSES))]
            union = [int(((pred == c) | (y == c)).sum()) for c in range(len(CLASSES))]
            real = judge.realism(imgs)
            correct = (real > 0.5) if d == "photo" else (real < 0.5)
            out[f"{d}/{name}"] = dict(pixel_acc=round(float((pred == y).float().mean()), 4),
                                      miou=round(float(np.mean([i / u for i, u in zip(inter, union) if u])), 4),
                                      realism=round(float(real.mean()), 4), realism_acc=round(float(correct.float().mean()), 4))
    return out


def moved_eval(judge, vae, n: int) -> dict:
    """gradop.world.moves: photo pixels of class A (held-out scene a) moved, shape and all, onto
    the place of class B in scene b; the share the segmenter still labels A, against in place.
    emptied_*: scene b rendered without its B objects first (gradop.world.moves.empty_place)."""
    from gradop.world.moves import SWAPS, move_photo_class, scenes_with
    from gradop.world.scene import CLASS_ID

    out = {}
    for src, dst in SWAPS:
        pasted, masks, inplace = {"": [], "emptied_": []}, [], []
        for source, target in zip(scenes_with(src, HELDOUT_SEED + OFFSET, n, WORLD),
                                  scenes_with(dst, HELDOUT_SEED + OFFSET + 50_000, n, WORLD)):
            if case := move_photo_class(source, target):
                pasted[""].append(case[1]), masks.append(case[2]), inplace.append((case[0], source[1]))
                pasted["emptied_"].append(move_photo_class(source, target, emptied=dst)[1])
        m = torch.from_numpy(np.stack(masks))
        row = {"n": len(masks)}
        for prefix, images in pasted.items():
            variants = {"render": _x(images)}
            if vae is not None:
                with torch.no_grad():
                    variants["vae"] = (vae(variants["render"] * 2 - 1).sample.clamp(-1, 1) + 1) / 2
            for name, imgs in variants.items():
                hit = judge.segment(imgs) == CLASS_ID[src]
                row[f"{prefix}moved_{name}"] = round(float(np.mean([float(hit[i][m[i]].float().mean())
                                                                    for i in range(len(m))])), 4)
        seg = judge.segment(_x([a for a, _ in inplace])) == CLASS_ID[src]
        row["in_place"] = round(float(np.mean([float(seg[i][torch.from_numpy(ma)].float().mean())
                                               for i, (_, ma) in enumerate(inplace)])), 4)
        out[f"{src}->{dst}"] = row
    return out


def generate_all(pipe, n: int, steps: int, first: int = 0) -> dict[str, np.ndarray]:
    """Per method, (n, 64, 64, 3) uint8 generations on held-out scenes first..first+n-1
    (seed i for scene i)."""
    out: dict[str, list] = {}
    for i in range(first, first + n):
        scene = sample_scene(HELDOUT_SEED + OFFSET + i, world=WORLD)
        strokes = to_pil(render(scene, "strokes"))
        photo_text, paint_text = caption(scene, domain="photo"), caption(scene, domain="painting")
        gens = {"text_photo": pipe.generate("text", photo_text, steps=steps, seed=i),
                "text_painting": pipe.generate("text", paint_text, steps=steps, seed=i),
                "gradop+": pipe.generate("gradop+", photo_text, strokes, steps=steps, seed=i)}
        for s in (0.5, 0.6, 0.7):
            gens[f"sdedit_{s}"] = pipe.generate("sdedit", photo_text, strokes, strength=s, steps=steps, seed=i)
        for name, result in gens.items():
            out.setdefault(name, []).append(np.asarray(result.images[0]))
        print(f"scene {i + 1}/{n}", flush=True)
    return {k: np.stack(v) for k, v in out.items()}


def model_eval(images: dict[str, np.ndarray], judge) -> dict:
    from gradop.painting import make_painting_fn

    paint = make_painting_fn("blur", 64, 64)
    rows = []
    for i in range(len(images["text_photo"])):
        scene = sample_scene(HELDOUT_SEED + OFFSET + i, world=WORLD)
        target = paint(_x([render(scene, "strokes")]))
        row = {"seed": HELDOUT_SEED + OFFSET + i, "caption": caption(scene)}
        for name in images:
            x = _x([images[name][i].astype(np.float32) / 255])
            row[f"{name}/realism"] = float(judge.realism(x)[0])
            row[f"{name}/l2"] = float((paint(x) - target).pow(2).mean())
        named = scene_classes(scene) - {"sky"}
        found = judge.present(_x([images["text_photo"][i].astype(np.float32) / 255]))[0]
        row["named"], row["found"] = sorted(named), sorted(found & named)
        row["unnamed_found"] = sorted(found - named - {"sky"})  # what the judge sees that the caption never asked for
        rows.append(row)
    keys = [k for k in rows[0] if "/" in k]
    summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
    pairs = [(r["text_photo/realism"], r["text_painting/realism"]) for r in rows]
    summary["text_photo_vs_painting_acc"] = round(float(np.mean([(p > 0.5) + (q < 0.5) for p, q in pairs]) / 2), 4)
    summary["text_photo_ranked_above_painting"] = round(float(np.mean([p > q for p, q in pairs])), 4)
    summary["class_presence"] = round(sum(len(r["found"]) for r in rows) / max(1, sum(len(r["named"]) for r in rows)), 4)
    per_class = {}
    for c in CLASSES[1:]:
        hits = [c in r["found"] for r in rows if c in r["named"]]
        if hits:
            per_class[c] = (round(float(np.mean(hits)), 3), len(hits))
    summary["class_presence_per_class"] = per_class
    # Precision's side: per class, the share of images whose caption does not name it where the judge finds it.
    summary["unnamed_found_per_class"] = {
        c: round(float(np.mean([c in r["unnamed_found"] for r in rows if c not in r["named"]])), 3)
        for c in CLASSES[1:] if any(c in r["unnamed_found"] for r in rows)}
    return {"summary": summary, "rows": rows}


def timing(pipe, repeats: int = 3) -> dict:
    scene = sample_scene(HELDOUT_SEED + OFFSET, world=WORLD)
    strokes, text = to_pil(render(scene, "strokes")), caption(scene)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        pipe.generate("gradop+", text, strokes, seed=r)
        times.append(time.perf_counter() - t0)
    return {"gradop+_default_s_best": round(min(times), 3), "all_s": [round(t, 3) for t in times],
            "threads": torch.get_num_threads(), "loadavg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("judge", "model", "timing"))
    ap.add_argument("--judge", default="build/judge2")
    ap.add_argument("--vae", default="pretrained_models/gradop-demo/vae")
    ap.add_argument("--model", default="build/demo2")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", nargs="+", default=[],
                    help="model: the generations' .npz (written if missing; existing ones, in scene order, are re-scored)")
    ap.add_argument("--first", type=int, default=0, help="model: the first held-out scene (for shards)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--world", type=int, choices=(2, 3), default=DEFAULT_WORLD,
                    help=f"world of the held-out scenes (default {DEFAULT_WORLD}, the shipped model's)")
    args = ap.parse_args()
    global WORLD
    WORLD = args.world
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.what == "judge":
        from diffusers import AutoencoderKL

        judge, vae = load_judge(args.judge), AutoencoderKL.from_pretrained(args.vae).eval() if args.vae else None
        result = {**judge_eval(judge, vae, args.n), "moved": moved_eval(judge, vae, min(args.n, 60))}
    elif args.what == "model" and args.images and all(Path(p).is_file() for p in args.images):
        parts = [np.load(p) for p in args.images]
        result = model_eval({k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}, load_judge(args.judge))
    else:
        from gradop.pipeline import GradopPipeline

        pipe = GradopPipeline.from_pretrained(args.model, device="cpu")
        if args.what == "timing":
            result = timing(pipe)
        else:
            images = generate_all(pipe, args.n, args.steps, args.first)
            if args.images:
                np.savez(args.images[0], **images)
            result = {"first": args.first, **model_eval(images, load_judge(args.judge))} if args.first == 0 else {"first": args.first}
    result = {"command": " ".join(sys.argv), "wall_s": round(time.time() - t0, 1), **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
