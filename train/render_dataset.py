"""Pre-render world scenes to a .npz cache: every domain (photos, paintings, crayons), the
strokes and the masks as uint8, and one caption per domain (captions = the photo captions).

    .venv/bin/python train/render_dataset.py --world 2 --start 0 --count 6000 --out build/world2/train.npz

(or in shards, one process each, then --merge shard files --out build/world2/train.npz)

Deterministic: scene i uses seed start + i. Held-out sets use seeds from 1_000_000 (see
gradop.world.HELDOUT_SEED); training never sees them.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import time

import numpy as np


def _render(seed: int, world: int = 1):
    from gradop.world import DOMAINS, caption, render, render_masks, sample_scene, scene_classes
    from gradop.world.scene import CLASS_ID

    scene = sample_scene(seed, world=world)
    images = [(render(scene, d) * 255 + 0.5).astype(np.uint8) for d in DOMAINS + ("strokes",)]
    flags = np.zeros(len(CLASS_ID), np.uint8)
    for name in scene_classes(scene):
        flags[CLASS_ID[name]] = 1
    return (*images, render_masks(scene), *[caption(scene, domain=d) for d in DOMAINS], flags)


def render_range(start: int, count: int, workers: int = 2, world: int = 1) -> dict:
    seeds = range(start, start + count)
    render_one = functools.partial(_render, world=world)
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            rows = pool.map(render_one, seeds, chunksize=64)
    else:
        rows = [render_one(s) for s in seeds]
    photos, paintings, crayons, strokes, masks, cap_photo, cap_painting, cap_crayon, flags = zip(*rows)
    return dict(photos=np.stack(photos), paintings=np.stack(paintings), crayons=np.stack(crayons),
                strokes=np.stack(strokes), masks=np.stack(masks), captions=np.array(cap_photo),
                captions_painting=np.array(cap_painting), captions_crayon=np.array(cap_crayon),
                flags=np.stack(flags), seeds=np.arange(start, start + count))


def main() -> None:
    from gradop.world import DEFAULT_WORLD, WORLDS

    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=16000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--world", type=int, choices=WORLDS, default=DEFAULT_WORLD,
                    help="world version of the scenes: 3 (the shipped model's, default: world 2 with a per-scene palette), "
                         "2 (boats, rocks, close-ups, painted domains) or 1 (the original world, model v1)")
    ap.add_argument("--out", default="build/world/train.npz")
    ap.add_argument("--merge", nargs="+", default=[], help="concatenate these rendered shards into --out instead")
    args = ap.parse_args()
    t0 = time.time()
    if args.merge:
        shards = [np.load(p) for p in args.merge]
        np.savez(args.out, **{k: np.concatenate([s[k] for s in shards]) for k in shards[0].files})
        print(f"merged {len(shards)} shards -> {args.out}")
        return
    data = render_range(args.start, args.count, args.workers, args.world)
    np.savez(args.out, **data)
    print(f"rendered {args.count} scenes in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
