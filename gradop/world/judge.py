"""The judge: a small per-pixel class segmenter for world images and a realism scorer.

Both are plain torch modules trained by train/train_judge.py on world renderings and shipped
as pretrained_models/gradop-demo/judge*/judge.safetensors (one per world version, JUDGES). Inputs are (B, 3, H, W) float
tensors in [0, 1] (any H, W divisible by 4; trained at 64x64).

- Segmenter: pixel class logits over gradop.world.CLASSES (a judge trained before classes were
  appended reads the first ones; Judge.classes says which).
- Realism: one logit per image, P(photo domain) against the painted domains. v2: photos
  against flat paintings, crayon drawings, strokes and flattened photos, half of them seen
  through the demo VAE (so sharpness is not the cue; the domain is). v1: photos against
  strokes, flattened photos and blurred photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from gradop.world.scene import CLASSES, CLASS_ID, DEFAULT_WORLD

_SHIPPED = Path(__file__).resolve().parents[2] / "pretrained_models" / "gradop-demo"
# The shipped judge of each world version (each validated on held-out renders of its world).
# World 3's is judge v4: v3's realism scorer; its segmenter trained on with class regions moved
# anywhere (v3b), because v3's read position (a hut's own pixels moved into the sky: 0.04 hut; see
# gradop.world.moves), then with classes moved onto other classes' emptied places, in every domain
# and through the VAE (v4, train/render_moves.py). judge3/ and judge3b/ stay for the runs published with them.
JUDGES = {1: _SHIPPED / "judge", 2: _SHIPPED / "judge2", 3: _SHIPPED / "judge4"}
DEFAULT_JUDGE = JUDGES[DEFAULT_WORLD]
PRESENCE_PIXELS = 12  # a class counts as present when the segmenter gives it at least this many pixels (of 64x64)


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
                         nn.GroupNorm(8, cout), nn.SiLU())


class Segmenter(nn.Module):
    def __init__(self, width: int = 24, classes: int = len(CLASSES)):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_block(3, w), _block(w, w))
        self.down1 = nn.Sequential(_block(w, 2 * w, stride=2), _block(2 * w, 2 * w))
        self.down2 = nn.Sequential(_block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w, dilation=2),
                                   _block(4 * w, 4 * w, dilation=4), _block(4 * w, 4 * w, dilation=2))
        self.up1 = _block(4 * w + 2 * w, 2 * w)
        self.up2 = _block(2 * w + w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        u1 = self.up1(torch.cat([F.interpolate(s2, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1))
        u2 = self.up2(torch.cat([F.interpolate(u1, size=s0.shape[-2:], mode="bilinear", align_corners=False), s0], 1))
        return self.head(u2)


class RealismNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w, stride=2), _block(2 * w, 2 * w),
                                      _block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w, stride=2))
        self.head = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x * 2 - 1)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return self.head(pooled).squeeze(1)


class Judge(nn.Module):
    def __init__(self, seg_width: int = 16, real_width: int = 16, classes: tuple[str, ...] = CLASSES):
        super().__init__()
        self.classes = tuple(classes)
        self.config = {"seg_width": seg_width, "real_width": real_width, "classes": list(self.classes)}
        self.segmenter = Segmenter(seg_width, len(self.classes))
        self.realism_net = RealismNet(real_width)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class ids."""
        return self.segmenter(images.float()).argmax(1)

    @torch.no_grad()
    def realism(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) probability that each image is a world photo rather than a painting."""
        return torch.sigmoid(self.realism_net(images.float()))

    @torch.no_grad()
    def present(self, images: torch.Tensor, min_pixels: int | None = None) -> list[set[str]]:
        """The class names the segmenter finds in each image (at least min_pixels pixels,
        scaled from 64x64 to the image size)."""
        labels = self.segment(images)
        area = labels.shape[-1] * labels.shape[-2]
        need = (PRESENCE_PIXELS if min_pixels is None else min_pixels) * area / 4096
        counts = torch.stack([(labels == c).flatten(1).sum(1) for c in range(len(self.classes))], 1)
        return [{self.classes[c] for c in range(len(self.classes)) if row[c] >= need} for row in counts.tolist()]

    def main_class(self, images: torch.Tensor, among: tuple[str, ...] | None = None) -> list[str]:
        """The most frequent predicted class per image (optionally among some classes only)."""
        labels = self.segment(images)
        names = among or self.classes
        ids = [CLASS_ID[c] for c in names]
        counts = torch.stack([(labels == c).flatten(1).sum(1) for c in ids], 1)
        return [names[i] for i in counts.argmax(1).tolist()]

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "judge.safetensors"))
        (folder / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")


def load_judge(folder: str | Path = DEFAULT_JUDGE) -> Judge:
    """A judge (default: the shipped judge of the demo model's world), eval mode, CPU."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "judge.safetensors").is_file():
        raise FileNotFoundError(f"no judge weights in {folder}; train them with train/train_judge.py")
    config = json.loads((folder / "config.json").read_text())
    classes = tuple(config["classes"])
    # World v2 appended classes; a judge trained on the first ones (v1) still reads those.
    if classes != CLASSES[: len(classes)]:
        raise ValueError(f"the judge in {folder} was trained for other classes: {config['classes']}")
    judge = Judge(config["seg_width"], config["real_width"], classes)
    judge.load_state_dict(load_file(str(folder / "judge.safetensors")))
    return judge.eval()


def flatten_regions(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fill every class region of each image with its mean colour (a 'flat painting' look)."""
    out = torch.empty_like(images)
    for b in range(images.shape[0]):
        for c in masks[b].unique():
            sel = masks[b] == c
            mean = images[b][:, sel].mean(1, keepdim=True)
            out[b][:, sel] = mean
    return out
