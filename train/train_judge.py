"""Train the judge v2 (segmenter + realism scorer, gradop/world/judge.py) on world v2 renderings.

    .venv/bin/python train/train_judge.py --data build/world2/train.npz --latents-dir build/world2 \
        --vae pretrained_models/gradop-demo/vae --out build/judge2 --minutes 25 --seed 0 --threads 1

Segmenter: cross-entropy on the pixels of every domain (photo 40%, painting, crayon and strokes
20% each), all classes. Realism: P(photo domain): photos (label 1) against paintings, crayon
drawings, strokes and flattened photos (label 0).

What the judge will see are the demo model's outputs, i.e. VAE decodes. So half of every batch
(both tasks, both labels) is replaced by the VAE's reconstruction of the same images (decoded
from the latents of train/encode_latents.py), and blur / noise / colour augmentations hit both
realism labels alike: sharpness is not the cue, the domain is.

--paste P (judge v3b): with probability P an image also gets one class region of another image
of the same domain, moved anywhere (train.common.paste_regions). World scenes always put a class in the same
places (sky on top, huts on the ground), so a segmenter trained on them alone reads position, not
appearance: judge v3 labels a hut's own photo pixels moved into the sky 0.03 hut. Region-word
control asks for exactly such things (a hut where a sun was painted), so the judge must see them.

--moves F --moves-share P (judge v4): a share P of the segmenter's images are replaced by moved-class
examples of train/render_moves.py: a class's own pixels centred on another class's place, that
place mostly emptied first, in every domain, and as the VAE returns them (with probability
--recon). Pasting anywhere left v3b calling a sun on the ground a hut.
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
from gradop.world.judge import Judge, flatten_regions, load_judge  # noqa: E402
from train.common import Logger, load_cache, paste_regions  # noqa: E402

SEG_DOMAINS = (("photos", 0.4), ("paintings", 0.2), ("crayons", 0.2), ("strokes", 0.2))
FAKE_DOMAINS = ("paintings", "crayons", "strokes", "flat")
MOVES_DOMAINS = {"photo": "photos", "painting": "paintings", "crayon": "crayons"}


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


class Batches:
    """Images of one domain by index, optionally as VAE reconstructions."""

    def __init__(self, data: dict, latents_dir: str, vae):
        self.data, self.vae = data, vae
        self.latents = {k: torch.load(Path(latents_dir) / f"latents_{k}.pt")[0] for k in ("photos", "paintings", "crayons")
                        if latents_dir and (Path(latents_dir) / f"latents_{k}.pt").is_file()}

    def images(self, key: str, idx: np.ndarray, recon: np.ndarray) -> torch.Tensor:
        x = to01(self.data[key][idx])
        if self.vae is not None and key in self.latents and recon.any():
            with torch.no_grad():
                dec = self.vae.decode(self.latents[key][torch.from_numpy(idx[recon])]).sample
            x[torch.from_numpy(recon)] = (dec.clamp(-1, 1) + 1) / 2
        return x

    def mixed(self, keys: list[str], idx: np.ndarray, recon: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(idx), 3, *self.data["photos"].shape[1:3])
        for key in set(keys):
            sel = np.array([k == key for k in keys])
            if key == "flat":
                photos = self.images("photos", idx[sel], recon[sel])
                out[torch.from_numpy(sel)] = flatten_regions(photos, torch.from_numpy(self.data["masks"][idx[sel]]).long())
            else:
                out[torch.from_numpy(sel)] = self.images(key, idx[sel], recon[sel])
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/world2/train.npz")
    ap.add_argument("--latents-dir", default="build/world2")
    ap.add_argument("--vae", default="pretrained_models/gradop-demo/vae")
    ap.add_argument("--out", default="build/judge2")
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--recon", type=float, default=0.5, help="share of images replaced by their VAE reconstruction")
    ap.add_argument("--seg-width", type=int, default=16)
    ap.add_argument("--real-width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default="", help="continue from this judge folder (its widths)")
    ap.add_argument("--paste", type=float, default=0.0,
                    help="share of segmenter images that get another image's class region moved into them")
    ap.add_argument("--moves", default="", help="moved-class examples of train/render_moves.py")
    ap.add_argument("--moves-share", type=float, default=0.0,
                    help="share of segmenter images replaced by --moves examples (as the VAE returns them with "
                         "probability --recon)")
    ap.add_argument("--segmenter-only", action="store_true",
                    help="train only the segmenter; the realism scorer keeps --init's weights exactly")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_cache(args.data)
    vae = None
    if args.vae and args.recon > 0:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae).eval()
    batches = Batches(data, args.latents_dir, vae)
    moves = load_cache(args.moves) if args.moves else None
    n_scenes, masks = len(data["photos"]), data["masks"]
    judge = (load_judge(args.init) if args.init else Judge(args.seg_width, args.real_width)).train()
    params = judge.segmenter.parameters() if args.segmenter_only else judge.parameters()
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    log = Logger(Path("logs") / f"{Path(args.out).name}_log.jsonl")
    names, weights = zip(*SEG_DOMAINS)
    t0, step = time.time(), 0
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        b = args.batch
        idx = rng.integers(0, n_scenes, b)
        keys = list(rng.choice(names, b, p=np.array(weights) / sum(weights)))
        x = batches.mixed(keys, idx, rng.random(b) < args.recon)
        y = torch.from_numpy(masks[idx]).long()
        if moves is not None:
            swap = np.nonzero(rng.random(b) < args.moves_share)[0]
            pick = rng.integers(0, len(moves["labels"]), len(swap))
            recon = rng.random(len(swap)) < args.recon
            for i, k, r in zip(swap, pick, recon):
                x[i] = to01(moves["recon" if r else "images"][k][None])[0]
                y[i] = torch.from_numpy(moves["labels"][k]).long()
                keys[i] = MOVES_DOMAINS[moves["domains"][k]]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if args.paste > 0:
            x, y = paste_regions(x, y, keys, args.paste, rng)
        seg_loss = F.cross_entropy(judge.segmenter(augment(x, gen)), y)
        if args.segmenter_only:
            loss = seg_loss
        else:
            # Realism: half photos (1), half other domains (0); reconstructions on both sides.
            n = b // 2
            ridx = rng.integers(0, n_scenes, b)
            rkeys = ["photos"] * n + list(rng.choice(FAKE_DOMAINS, b - n))
            real_in = augment(batches.mixed(rkeys, ridx, rng.random(b) < args.recon), gen)
            real_y = torch.cat([torch.ones(n), torch.zeros(b - n)])
            real_loss = F.binary_cross_entropy_with_logits(judge.realism_net(real_in), real_y)
            loss = seg_loss + 0.5 * real_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            log(step=step, seg=float(seg_loss), real=None if args.segmenter_only else float(real_loss),
                lr=opt.param_groups[0]["lr"])
        if step % 200 == 0:
            judge.eval().save(args.out)
            judge.train()
    judge.eval().save(args.out)
    log(step=step, done=True, minutes=(time.time() - t0) / 60)


if __name__ == "__main__":
    main()
