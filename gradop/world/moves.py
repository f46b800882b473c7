"""Classes away from the places the world puts them, for validating the judge.

World scenes always put a class in the same places (sky on top, lakes and huts on the ground, the
sun high in the sky), so a segmenter trained on them can read position instead of appearance.
Region-word control asks for exactly what the world never shows (a hut where a sun was painted, a
lake in the band above the horizon), so the judge that scores it must recognise a class by its
look anywhere. `move_region` builds such test images from held-out photos: one class's own pixels,
shape and all, moved onto the place of the class it is swapped with.
"""

from __future__ import annotations

import numpy as np

from gradop.world.render import render_photo
from gradop.world.scene import CLASS_ID, label_map, sample_scene, scene_classes

# The region-word benchmark's colour-ambiguous swaps (gradop.quality.scenes.AMBIGUOUS_PAIRS), both ways.
SWAPS = (("house", "sun"), ("sun", "house"), ("water", "sky"), ("sky", "water"), ("tree", "grass"), ("grass", "tree"),
         ("mountain", "cloud"), ("cloud", "mountain"))


def scenes_with(cls: str, first_seed: int, n: int, world: int, size: int = 64, min_pixels: int = 20) -> list[tuple[dict, np.ndarray]]:
    """(scene, class mask) of the first n scenes from first_seed on with at least min_pixels of cls
    (a day sky for "sky": the ambiguous paintings paint only day skies blue)."""
    out, seed = [], first_seed
    while len(out) < n:
        scene = sample_scene(seed, world)
        if cls in scene_classes(scene) and (cls != "sky" or scene["sky"] == "day"):
            mask = label_map(scene, size) == CLASS_ID[cls]
            if mask.sum() >= min_pixels:
                out.append((scene, mask))
        seed += 1
    return out


def move_region(source: np.ndarray, source_mask: np.ndarray, target: np.ndarray,
                target_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`target` (H, W, 3) with the pixels of `source` under `source_mask` pasted so that their
    centroid lands on the centroid of `target_mask`, clipped at the border; and the mask of the
    pasted pixels. None when fewer than 10 pixels land inside the image."""
    ys, xs = np.nonzero(source_mask)
    ty, tx = np.nonzero(target_mask)
    to_y, to_x = ys + int(round(ty.mean() - ys.mean())), xs + int(round(tx.mean() - xs.mean()))
    h, w = target_mask.shape
    keep = (to_y >= 0) & (to_y < h) & (to_x >= 0) & (to_x < w)
    if keep.sum() < 10:
        return None
    image, mask = target.copy(), np.zeros((h, w), bool)
    image[to_y[keep], to_x[keep]] = source[ys[keep], xs[keep]]
    mask[to_y[keep], to_x[keep]] = True
    return image, mask


def move_photo_class(source: tuple[dict, np.ndarray], target: tuple[dict, np.ndarray],
                     size: int = 64, emptied: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The judge's test case from two (scene, class mask) pairs of scenes_with: the source scene's
    photo, the target scene's photo with the source class's pixels moved onto the target class's
    place, and the mask of the moved pixels (None: see move_region). With `emptied` (the target's
    class), the target is rendered without that class's objects first (empty_place), so that no
    hut is left around a sun moved onto it."""
    photo = render_photo(source[0], size)
    target_scene = empty_place(target[0], emptied) if emptied else target[0]
    moved = move_region(photo, source[1], render_photo(target_scene, size), target[1])
    return None if moved is None else (photo, *moved)


# The scene entries that hold a class's objects, and what they become without them. Sky and the
# ground are backgrounds: a class moved onto them has nothing to replace.
_REMOVABLE = {"sun": {"sun": None}, "moon": {"moon": None}, "cloud": {"clouds": []}, "mountain": {"mountains": []},
              "hill": {"hills": None}, "water": {"water": None, "boats": []}, "tree": {"trees": [], "forest": False},
              "house": {"houses": []}, "boat": {"boats": []}, "rock": {"rocks": []}}


def empty_place(scene: dict, cls: str) -> dict:
    """A copy of `scene` without the objects of class `cls` (unchanged for sky and the ground).
    The moved-class check pastes a class onto another's place; a region word asks for the one
    class there, not for it on top of the other, so the place is emptied first."""
    return {**scene, **_REMOVABLE.get(cls, {})}
