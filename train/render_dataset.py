"""Pre-render world scenes to a .npz cache (photos, strokes, masks as uint8, captions).

    .venv/bin/python train/render_dataset.py --start 0 --count 16000 --out build/world/train.npz

Deterministic: scene i uses seed start + i. Held-out sets use seeds from 1_000_000 (see
gradop.world.HELDOUT_SEED); training never sees them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np


def _render(seed: int):
    from gradop.world import caption, render_masks, render_photo, render_strokes, sample_scene, scene_classes
    from gradop.world.scene import CLASS_ID

    scene = sample_scene(seed)
    photo = (render_photo(scene) * 255 + 0.5).astype(np.uint8)
    strokes = (render_strokes(scene) * 255 + 0.5).astype(np.uint8)
    flags = np.zeros(len(CLASS_ID), np.uint8)
    for name in scene_classes(scene):
        flags[CLASS_ID[name]] = 1
    return photo, strokes, render_masks(scene), caption(scene), flags


def render_range(start: int, count: int, workers: int = 2) -> dict:
    seeds = range(start, start + count)
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            rows = pool.map(_render, seeds, chunksize=64)
    else:
        rows = [_render(s) for s in seeds]
    photos, strokes, masks, captions, flags = zip(*rows)
    return dict(photos=np.stack(photos), strokes=np.stack(strokes), masks=np.stack(masks),
                captions=np.array(captions), flags=np.stack(flags), seeds=np.arange(start, start + count))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=16000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="build/world/train.npz")
    args = ap.parse_args()
    t0 = time.time()
    data = render_range(args.start, args.count, args.workers)
    np.savez(args.out, **data)
    print(f"rendered {args.count} scenes in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
