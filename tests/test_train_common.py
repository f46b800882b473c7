"""train.common.paste_regions: class regions moved into other images of a batch, as the judge and
the UNet are trained with so that a class is known by its look, not its place."""

import numpy as np
import torch

from train.common import paste_regions


def _batch():
    """Two 16x16 images: sky (0) above, grass (1) below; the second has a 4x4 sun (2) in its sky.
    Pixel values are 10 * class + image index, so that pasted pixels can be traced back."""
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 8:] = 1
    labels[1, 2:6, 10:14] = 2
    x = torch.arange(2).float()[:, None, None, None] + labels[:, None].float() * 10
    return x.expand(2, 3, 16, 16).clone(), labels


def _sun_pasted_into_first(seed: int):
    x, labels = _batch()
    # Only the sun may go into image 0; nothing into image 1.
    x2, labels2 = paste_regions(x, labels, ["photos"] * 2, 1.0, np.random.default_rng(seed),
                                allowed=[{2}, set()])
    assert torch.equal(x2[1], x[1]) and torch.equal(labels2[1], labels[1])
    assert torch.equal(x, _batch()[0]), "the inputs are left as they were"
    moved = (x2[0] != x[0]).any(0)
    # The sun's 16 pixels, values and labels both.
    assert moved.sum() == 16 and (x2[0][:, moved] == 21).all() and (labels2[0][moved] == 2).all()
    assert (labels2[0][~moved] == labels[0][~moved]).all()
    return torch.nonzero(moved).float().mean(0)


def test_paste_moves_a_region_with_its_labels_to_random_places():
    centres = {tuple(_sun_pasted_into_first(seed).tolist()) for seed in range(6)}
    assert len(centres) > 1


def test_paste_needs_a_donor_of_the_same_group():
    x, labels = _batch()
    x2, labels2 = paste_regions(x, labels, ["photos", "paintings"], 1.0, np.random.default_rng(0))
    assert torch.equal(x2, x) and torch.equal(labels2, labels)
