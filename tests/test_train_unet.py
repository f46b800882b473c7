"""train/train_unet.py's helpers (the script itself runs end to end in tests/test_train_grounding.py)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.train_unet import latent_labels  # noqa: E402


def test_latent_labels_take_each_cells_centre_pixel():
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 8:16, 4:8] = 3  # latent cells (2..3, 1): rows 8-15, columns 4-7
    masks[1, :, 32:] = 5  # the right half
    labels = latent_labels(masks, 16)
    assert labels.shape == (2, 16, 16) and labels.dtype == torch.long
    assert labels[0].nonzero().tolist() == [[2, 1], [3, 1]] and (labels[0, 2:4, 1] == 3).all()
    assert (labels[1, :, 8:] == 5).all() and (labels[1, :, :8] == 0).all()
