"""Train the demo model's UNet and text encoder on VAE latents of world images + captions.

    .venv/bin/python train/train_unet.py --data build/world/train.npz --vae build/vae \
        --out build/demo --minutes 70 --batch 32 --seed 0

v2 (world v2, several domains): --domains photos:0.5,paintings:0.25,crayons:0.25 draws each
example's domain with these weights, from latents encoded once by train/encode_latents.py
(--latents-dir holds latents_<domain>.pt) and the domain's captions ("a photo of ...",
"a painting of ...", "a crayon drawing of ..."). --init-unet copies every matching weight of
an earlier UNet (new attention blocks and text projections start fresh). --paste P moves a class
region of another sample (a class the sample's own caption names) anywhere into a share P of the
latents (train.common.paste_regions): world scenes put every class in the same places, and region
words ask for a class elsewhere. --train-bias P denoises a share P of the samples under region
control (each class word of the caption biased towards its class's pixels, as inference biases a
region's word; train.grounding), which is what makes the words act (model v3c); --ground W adds
a cross-attention grounding loss instead (tried, did not help; the model card, "Session 16").
--moves F --moves-share P draws a share P of each batch from train/render_moves.py's examples (a
class rendered onto another class's place, often emptied first, with a caption naming it): unlike
--paste's latent cut-outs, these are rendered and then encoded, as a real image with a class out of
its usual place would be.

Epsilon prediction on the SD noise schedule (scaled_linear 0.00085..0.012, 1000 steps),
min-SNR-5 loss weighting, 10% empty captions (for classifier-free guidance), AdamW with warm-up
and cosine decay over the planned time, EMA weights (what gets saved). The latents of every
training photo (and with --flip its mirror image: captions never say left/right) are encoded once, up
front;
each step samples from the stored posterior. Writes a complete diffusers StableDiffusionPipeline
folder to --out every --save-every steps and at the end (a partial run is usable).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world.demo_model import (MAX_TOKENS, TEXT_WIDTH, demo_scheduler, demo_text_encoder, demo_tokenizer,  # noqa: E402
                                     demo_unet, warm_start)
from train.common import Logger, load_cache, paste_regions  # noqa: E402
from train.encode_latents import encode_all  # noqa: E402
from train.grounding import bias_scale, grounding_loss, token_classes, train_cross_attention  # noqa: E402


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)  # one launch per group on CUDA


def latent_labels(masks: np.ndarray, side: int) -> torch.Tensor:
    """(N, H, W) class maps -> (N, side, side) long, the pixel at each latent cell's centre."""
    step = masks.shape[-1] // side
    return torch.from_numpy(masks[:, step // 2 :: step, step // 2 :: step]).long()


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    from diffusers import StableDiffusionPipeline

    device = unet.device
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.cpu(), tokenizer=tokenizer, unet=unet.cpu(),
                                   scheduler=demo_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    text_encoder.to(device), unet.to(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/world/train.npz")
    ap.add_argument("--vae", default="build/vae")
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--minutes", type=float, default=70)
    ap.add_argument("--steps", type=int, default=1000000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--channels", default="32,64,96")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--drop", type=float, default=0.1, help="caption dropout for classifier-free guidance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the UNet and text encoder train (cuda on a GPU); batches "
                    "are drawn on the CPU, so a seed gives the same samples everywhere")
    ap.add_argument("--save-every", type=int, default=300)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N scenes (0 = all)")
    ap.add_argument("--flip", action="store_true", help="also train on mirror images (doubles the up-front encoding)")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--latents", default="", help="cache file for the encoded latents (reused when it exists)")
    ap.add_argument("--domains", default="", help="v2: domain:weight list, e.g. photos:0.5,paintings:0.25,crayons:0.25")
    ap.add_argument("--latents-dir", default="", help="v2: folder with latents_<domain>.pt (train/encode_latents.py)")
    ap.add_argument("--init-unet", default="", help="warm start: a UNet2DConditionModel folder")
    ap.add_argument("--init-text", default="", help="continue: a CLIPTextModel folder of the same shape")
    ap.add_argument("--text-width", type=int, default=TEXT_WIDTH)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--cross-everywhere", action="store_true", help="cross-attention at every resolution")
    ap.add_argument("--photo-caption-noise", type=float, default=0.0,
                    help="v2: share of painted-domain samples captioned with their scene's photo caption, as web "
                         "captions call illustrations photos (so 'a photo of' does not override a painted look)")
    ap.add_argument("--paste", type=float, default=0.0,
                    help="v2: share of samples that get another sample's class region (same domain, a class their "
                         "own caption names) moved anywhere in latent space, so a word is not tied to one place")
    ap.add_argument("--ground", type=float, default=0.0,
                    help="v2: weight of the cross-attention grounding loss (train.grounding): each class word's "
                         "attention on its class's pixels, so that region words move what is drawn")
    ap.add_argument("--train-bias", type=float, default=0.0,
                    help="v2: share of samples denoised under region control (train.grounding): each class word "
                         "biased towards its class's pixels at a random w' in [0, --train-bias-max]")
    ap.add_argument("--train-bias-max", type=float, default=2.0)
    ap.add_argument("--moves", default="", help="v2: examples with a class moved onto another class's place, with "
                    "captions naming it (train/render_moves.py)")
    ap.add_argument("--moves-share", type=float, default=0.0, help="share of each batch drawn from --moves")
    args = ap.parse_args()
    controlled = args.ground or args.train_bias
    if (args.photo_caption_noise or args.paste or controlled or args.moves) and not args.domains:
        ap.error("--photo-caption-noise, --paste, --ground, --train-bias and --moves need the v2 domains: pass --domains and "
                 "--latents-dir")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # CUDA only; CPU stays fp32
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    log = Logger(Path("logs") / f"{out.name}_unet_log.jsonl")

    from diffusers import AutoencoderKL

    data = load_cache(args.data)
    photos, captions = data["photos"], [str(c) for c in data["captions"]]
    if args.limit:
        photos, captions = photos[: args.limit], captions[: args.limit]
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    latent_scale = vae.config.scaling_factor
    t0 = time.time()
    cache = Path(args.latents) if args.latents else None
    domain_weights = None
    if args.domains:  # v2: one block of latents and captions per domain, concatenated
        caption_key = {"photos": "captions", "paintings": "captions_painting", "crayons": "captions_crayon"}
        parts = [item.split(":") for item in args.domains.split(",")]
        means, stds, captions = [], [], []
        for name, _ in parts:
            m, sd = torch.load(Path(args.latents_dir) / f"latents_{name}.pt")
            n = args.limit or len(m)
            means.append(m[:n])
            stds.append(sd[:n])
            captions += [str(c) for c in data[caption_key[name]][:n]]
        sizes = [len(m) for m in means]
        photo_captions = [str(c) for c in data["captions"][: max(sizes)]]  # scene i's photo caption
        mean, std = torch.cat(means), torch.cat(stds)
        domain_weights = (np.array([float(w) for _, w in parts]), np.cumsum([0] + sizes[:-1]), np.array(sizes))
    elif cache and cache.is_file():
        mean, std = torch.load(cache)
    else:
        mean, std = encode_all(vae, photos)
        if cache:
            torch.save((mean, std), cache)
    if args.flip:
        mean_f, std_f = encode_all(vae, np.ascontiguousarray(photos[:, :, ::-1]))
        mean, std = torch.cat([mean, mean_f]), torch.cat([std, std_f])
    log(phase="encoded", n=len(mean), seconds=round(time.time() - t0, 1), latent_std=float(mean.std() * latent_scale))

    tokenizer = demo_tokenizer()
    if args.moves:  # encoded once, like the scenes; their labels at latent resolution (nearest)
        moved = load_cache(args.moves)
        moves_mean, moves_std = encode_all(vae, moved["images"])
        moves_labels = latent_labels(moved["labels"], moves_mean.shape[-1])
        moves_ids = tokenizer([str(c) for c in moved["captions"]], padding="max_length", max_length=MAX_TOKENS,
                              truncation=True, return_tensors="pt").input_ids
        log(phase="moves_encoded", n=len(moves_mean), seconds=round(time.time() - t0, 1))
    ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    if args.flip:
        ids = torch.cat([ids, ids])
    empty = tokenizer([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids[0]
    if args.photo_caption_noise:
        photo_ids = tokenizer(photo_captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                              return_tensors="pt").input_ids
        painted = torch.tensor([name != "photos" for name, _ in parts])
    text_encoder = demo_text_encoder(tokenizer, seed=args.seed, width=args.text_width, layers=args.text_layers).train()
    unet = demo_unet(seed=args.seed, channels=tuple(int(c) for c in args.channels.split(",")), heads=args.heads,
                     text_width=args.text_width, cross_everywhere=args.cross_everywhere).train()
    if args.init_text:
        from transformers import CLIPTextModel

        text_encoder.load_state_dict(CLIPTextModel.from_pretrained(args.init_text).state_dict())
    if args.init_unet:
        from diffusers import UNet2DConditionModel

        fresh = warm_start(unet, UNet2DConditionModel.from_pretrained(args.init_unet).state_dict())
        log(phase="warm_start", copied=len(unet.state_dict()) - len(fresh), fresh=len(fresh))
    unet, text_encoder = unet.to(device), text_encoder.to(device)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    if controlled:
        from gradop.world import CLASSES, WORD_CLASSES

        attention = train_cross_attention(unet, len(CLASSES))  # the EMA copy keeps diffusers' processors
        class_of_token = token_classes(tokenizer, WORD_CLASSES, CLASSES)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    sched = demo_scheduler()
    abar = sched.alphas_cumprod.float()
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction

    t0, step = time.time(), 0
    run_loss, run_ground = torch.zeros((), device=device), torch.zeros((), device=device)
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        if domain_weights is None:
            idx = torch.from_numpy(rng.integers(0, len(mean), args.batch))
        else:
            weights, starts, sizes = domain_weights
            dom = rng.choice(len(weights), args.batch, p=weights / weights.sum())
            idx = torch.from_numpy(starts[dom] + rng.integers(0, sizes[dom]))
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * latent_scale
        if args.paste or controlled or args.moves:  # the scene's class map at latent resolution (nearest)
            scene = (idx - torch.from_numpy(starts[dom])).numpy()
            labels = latent_labels(data["masks"][scene], z0.shape[-1])
        if args.paste:  # pasted classes are ones the sample's caption names
            named = [set(np.nonzero(data["flags"][k])[0].tolist()) for k in scene]
            z0, labels = paste_regions(z0, labels, dom.tolist(), args.paste, rng, named)
        tok = ids[idx].clone()
        if args.photo_caption_noise:  # the scene is the sample's row within its domain's block
            noisy = painted[torch.from_numpy(dom)] & (torch.rand(args.batch, generator=gen) < args.photo_caption_noise)
            tok[noisy] = photo_ids[(idx - torch.from_numpy(starts[dom]))[noisy]]
        if args.moves:  # a share of the batch: a class where the world never puts it, named in the caption
            # (after the photo-caption noise, which would give it the replaced scene's caption)
            swap = torch.from_numpy(np.nonzero(rng.random(args.batch) < args.moves_share)[0])
            k = torch.from_numpy(rng.integers(0, len(moves_mean), len(swap)))
            z0[swap] = (moves_mean[k] + moves_std[k] * torch.randn(moves_mean[k].shape, generator=gen)) * latent_scale
            labels[swap], tok[swap] = moves_labels[k], moves_ids[k]
        drop = torch.rand(args.batch, generator=gen) < args.drop
        tok[drop] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        if controlled:
            strengths = bias_scale(t, abar, args.train_bias, args.train_bias_max, gen) if args.train_bias else None
            attention.begin(class_of_token[tok].to(device), labels.to(device),
                            None if strengths is None else strengths.to(device))
        zt, noise, tok, t_dev = zt.to(device), noise.to(device), tok.to(device), t.to(device)
        cond = text_encoder(tok)[0]
        pred = unet(zt, t_dev, cond).sample
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * weight[t].to(device)).mean()
        if args.ground:
            ground = grounding_loss(attention)
            run_ground += ground.detach()
            loss = loss + args.ground * ground
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        run_loss += loss.detach()  # summed on the device: no sync per step
        if step % 25 == 0:
            log(step=step, loss=float(run_loss) / 25, lr=lr, it_s=step / (time.time() - t0),
                **({"ground": float(run_ground) / 25} if args.ground else {}))
            run_loss, run_ground = torch.zeros((), device=device), torch.zeros((), device=device)
        if step % args.save_every == 0:
            save_pipeline(out, vae, ema_text, tokenizer, ema_unet)
    save_pipeline(out, vae, ema_text, tokenizer, ema_unet)
    log(step=step, done=True, minutes=(time.time() - t0) / 60)


if __name__ == "__main__":
    main()
