"""Train the judge (segmenter + realism scorer, gradop/world/judge.py) on world renderings.

    .venv/bin/python train/train_judge.py --data build/world/train.npz \
        --out pretrained_models/gradop-demo/judge --minutes 14 --seed 0 --threads 1

Segmenter: cross-entropy on photo pixels, with augmentations that mimic generated images
(flips, colour jitter, noise, slight blur). Realism: photos (label 1) against stroke
renderings, flattened photos (region mean colours) and blurred photos (label 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.painting import gaussian_blur  # noqa: E402
from gradop.world.judge import Judge, flatten_regions  # noqa: E402
from train.common import Logger, load_cache  # noqa: E402


def to01(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    gain = 1 + 0.15 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.06 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    x = x * gain + bias
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        x[blur] = gaussian_blur(x[blur], 3, 0.8)
    x = x + torch.randn(x.shape, generator=gen) * 0.03 * torch.rand(b, 1, 1, 1, generator=gen)
    return x.clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/world/train.npz")
    ap.add_argument("--out", default="pretrained_models/gradop-demo/judge")
    ap.add_argument("--minutes", type=float, default=14)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_cache(args.data)
    photos, strokes, masks = data["photos"], data["strokes"], data["masks"]
    judge = Judge().train()
    opt = torch.optim.AdamW(judge.parameters(), lr=args.lr, weight_decay=1e-4)
    log = Logger(Path("logs") / "judge_log.jsonl")
    t0, step = time.time(), 0
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        idx = rng.integers(0, len(photos), args.batch)
        flip = rng.random() < 0.5
        x = to01(photos[idx][:, :, ::-1] if flip else photos[idx])
        y = torch.from_numpy(np.ascontiguousarray(masks[idx][:, :, ::-1] if flip else masks[idx])).long()
        seg_loss = F.cross_entropy(judge.segmenter(augment(x.clone(), gen)), y)
        # Realism: half photos, half painted looks (strokes / flattened / blurred photos).
        n = args.batch // 2
        ridx = rng.integers(0, len(photos), n)
        kinds = rng.integers(0, 3, n)
        fakes = to01(strokes[ridx])
        flat = flatten_regions(to01(photos[ridx]), torch.from_numpy(masks[ridx]).long())
        blurred = gaussian_blur(to01(photos[ridx]), 7, 1.5 + 2 * float(rng.random()))
        k = torch.from_numpy(kinds)[:, None, None, None]
        fakes = torch.where(k == 0, fakes, torch.where(k == 1, flat, blurred))
        real_in = augment(torch.cat([x[:n], fakes]), gen)
        real_y = torch.cat([torch.ones(n), torch.zeros(n)])
        real_loss = F.binary_cross_entropy_with_logits(judge.realism_net(real_in), real_y)
        loss = seg_loss + 0.5 * real_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            log(step=step, seg=float(seg_loss), real=float(real_loss), lr=opt.param_groups[0]["lr"])
        if step % 300 == 0:
            judge.eval().save(args.out)
            judge.train()
    judge.eval().save(args.out)
    log(step=step, done=True, minutes=(time.time() - t0) / 60)


if __name__ == "__main__":
    main()
