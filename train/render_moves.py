"""Pre-render the judge's moved-class training images: one class's own pixels moved onto the
place of another class in another scene, in every domain, as the VAE returns them too.

    .venv/bin/python train/render_moves.py --world 3 --count 8000 --out build/world3/moves.npz

World scenes always put a class in the same places, so a segmenter trained on them reads place,
not look: judge v3b calls a sun moved onto a hut's place "house". Region words ask for exactly
that (a sun where a hut was painted), and the model's output then goes through the VAE. Each
example takes a random class of a random training scene (seeds 0 to --scenes - 1, the training
range) and centres it on a random other class of another one (gradop.world.moves.move_region);
with probability --emptied that place's objects are removed first (gradop.world.moves.empty_place),
as a region word replaces what was painted. Every class and place is drawn uniformly, so the
region benchmark's eight swaps are not singled out; its moved-class check uses held-out seeds.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DOMAIN_SHARES = (("photo", 0.5), ("painting", 0.25), ("crayon", 0.25))
MIN_PIXELS = 20


def _classes(scene: dict, labels: np.ndarray) -> list[int]:
    from gradop.world.scene import CLASS_ID, scene_classes

    return [CLASS_ID[c] for c in sorted(scene_classes(scene)) if (labels == CLASS_ID[c]).sum() >= MIN_PIXELS]


SKY_PHRASES = {"day": "a blue sky", "sunset": "a sunset sky", "night": "a night sky"}


def moved_caption(target: dict, source: dict, cls: str, domain: str, rng) -> str:
    """The target scene's caption in the domain, with the moved class named when it is not yet
    (the phrase the source scene's caption would use), so that a region word can ask for it."""
    from gradop.world.captions import caption, caption_classes, phrases

    text = caption(target, domain=domain)
    if cls in caption_classes(text):
        return text
    phrase = SKY_PHRASES[source["sky"]] if cls == "sky" else phrases(source, rng)[cls]
    return f"{text} with {phrase}"


def _example(k: int, world: int, scenes: int, emptied: float, seed: int):
    from gradop.world import render, sample_scene
    from gradop.world.moves import empty_place, move_region
    from gradop.world.render import render_masks
    from gradop.world.scene import CLASSES

    rng = np.random.default_rng([seed, k])
    domains, shares = zip(*DOMAIN_SHARES)
    domain = str(rng.choice(domains, p=shares))
    while True:
        source, target = (sample_scene(int(s), world) for s in rng.integers(0, scenes, 2))
        source_labels, target_labels = render_masks(source), render_masks(target)
        cls = rng.choice(_classes(source, source_labels))
        places = [c for c in _classes(target, target_labels) if c != cls]
        if not places:
            continue
        place = int(rng.choice(places))
        empty = rng.random() < emptied
        place_mask = target_labels == place
        if empty:  # what lies under the removed objects is labelled by the emptied scene
            target = empty_place(target, CLASSES[place])
            target_labels = render_masks(target)
        moved = move_region(render(source, domain), source_labels == cls, render(target, domain), place_mask)
        if moved is None:
            continue
        labels = target_labels.copy()
        labels[moved[1]] = cls
        # its own generator, so that the images do not depend on whether captions are made
        text = moved_caption(target, source, CLASSES[cls], domain, np.random.default_rng([seed, k, 1]))
        return (moved[0] * 255 + 0.5).astype(np.uint8), labels.astype(np.uint8), domain, text


def main() -> None:
    import torch
    from diffusers import AutoencoderKL

    from gradop.world import DEFAULT_WORLD, WORLDS
    from train.common import to_tensor

    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, choices=WORLDS, default=DEFAULT_WORLD)
    ap.add_argument("--count", type=int, default=8000)
    ap.add_argument("--scenes", type=int, default=6000, help="draw scenes from seeds 0 .. scenes - 1 (training range)")
    ap.add_argument("--emptied", type=float, default=0.7, help="share of examples whose place is emptied first")
    ap.add_argument("--vae", default="pretrained_models/gradop-demo/vae", help="also store each image's VAE round trip")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="build/world3/moves.npz")
    args = ap.parse_args()
    t0 = time.time()
    make = functools.partial(_example, world=args.world, scenes=args.scenes, emptied=args.emptied, seed=args.seed)
    with mp.get_context("fork").Pool(args.workers) as pool:
        images, labels, domains, captions = zip(*pool.map(make, range(args.count), chunksize=64))
    images = np.stack(images)
    print(f"rendered {args.count} moved examples in {time.time() - t0:.0f} s", flush=True)
    torch.set_num_threads(args.workers)
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    recon = []
    with torch.no_grad():
        for batch in np.array_split(images, max(1, len(images) // 64)):
            y = vae(to_tensor(batch)).sample  # encode to the posterior's mode, decode
            recon.append(((y.clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).numpy())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, images=images, recon=np.concatenate(recon), labels=np.stack(labels), domains=np.array(domains),
             captions=np.array(captions))
    print(f"{args.count} examples (and their VAE round trips) in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
