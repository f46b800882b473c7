"""Running the methods on the benchmark's paintings, with the same seeds for every method.

The benchmark is a list of sections (SECTIONS). Each section takes the paintings it applies to
and returns one row (a flat dict of scores, "section" = its name) per generated image. The
guided and region sections are summarised by summary.py; the others (editing.py) summarise
themselves. A section is an object with `name`, `applies(painting)`, `run(context, painting)
-> rows`, and optionally `summarise(rows) -> dict` (stored under its name in summary.json) and
`markdown(part) -> str` (appended to the report), added to SECTIONS; nothing else changes.

Rows are appended to `<out>/rows_<shard>.jsonl` as each painting finishes, so a run that is
stopped keeps what it did and several shards can run side by side (`--shard i/n`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gradop.editing import encode_image
from gradop.images import pil_to_tensor
from gradop.options import RELEASE_ADAM
from gradop.quality.editing import EditingSection
from gradop.quality.metrics import Judge, faithfulness, realism_signals, region_shares
from gradop.quality.scenes import MOVED_SEED, REFERENCE_SEED, Painting, _to_model_size, render_app_painting
from gradop.region_words import spec_from_colors
from gradop.regions import find_regions
from gradop.world import DEFAULT_WORLD, render_photo, render_strokes, sample_scene, to_pil
from gradop.world.moves import SWAPS, move_photo_class, scenes_with
from gradop.world.scene import CLASS_ID


@dataclass(frozen=True)
class Setting:
    """One method with its knobs, under a short label used in every table."""

    label: str
    method: str
    options: tuple = ()  # (name, value) pairs, hashable

    @property
    def kwargs(self) -> dict:
        return dict(self.options)


SDEDIT_STRENGTHS = (0.5, 0.6, 0.7, 0.8, 0.9)
# GradOP+ with the loss on the UNet's predicted clean image, differentiated through the UNet
# (guidance_latent "denoised"): a small step of the noisy latent at each of `iterations` sampling
# steps from strength 0.9, lr the step in RMS. Chosen on the tuning scenes (seeds 1,500,000+;
# model card, session 13) so that one setting lies at or below each SDEdit strength's blurred L2;
# a larger lr is more faithful. Iterations are for the benchmark's 25 steps.
DENOISED_SETTINGS = tuple(
    Setting(f"gradop+ denoised it{it} lr{lr}", "gradop+",
            (("guidance_latent", "denoised"), ("strength", 0.9), ("iterations", it), ("lr", lr)))
    for it, lr in ((20, 0.1), (20, 0.05), (20, 0.03), (20, 0.02), (12, 0.02)))
# The same step with the sampler's own prediction held fixed (guidance_latent "denoised-fast": no
# pass through the UNet). Chosen on 40 tuning scenes (model card, session 14), one at or below each
# SDEdit strength's blurred L2 (lr 0.025 between two measured points), and lr 0.03, the knobs the
# app and gradop.options.denoised_knobs set.
FAST_SETTINGS = tuple(
    Setting(f"gradop+ fast lr{lr}", "gradop+",
            (("guidance_latent", "denoised-fast"), ("strength", 0.9), ("iterations", 20), ("lr", lr)))
    for lr in (0.07, 0.05, 0.04, 0.03, 0.025, 0.015))
GUIDED_SETTINGS = (
    Setting("text2img", "text"),
    *(Setting(f"sdedit {s}", "sdedit", (("strength", s),)) for s in SDEDIT_STRENGTHS),
    Setting("gradop+", "gradop+"),
    # The release's Adam schedule (12 steps of 0.1 per iteration): the exact path the default's
    # fewer, larger steps are measured against (decoder_parity).
    Setting("gradop+ release", "gradop+", tuple(RELEASE_ADAM.items())),
    Setting("gradop+ it6", "gradop+", (("iterations", 6),)),
    Setting("gradop+ s0.6", "gradop+", (("strength", 0.6),)),
    Setting("gradop+ s0.9", "gradop+", (("strength", 0.9),)),
    Setting("gradop+ median", "gradop+", (("painting", "median-palette"),)),
    Setting("gradop+ x0", "gradop+", (("guidance_latent", "x0"),)),  # METHOD.md's predicted-x0 variant
    *DENOISED_SETTINGS,
    *FAST_SETTINGS,
    # Cheaper guidance decoders, each measured against the default exact path (decoder_parity).
    Setting("gradop+ vae-half", "gradop+", (("guidance_decoder", "vae-half"),)),
    Setting("gradop+ linear", "gradop+", (("guidance_decoder", "linear"),)),
    Setting("gradop", "gradop"),
)
# The other guidance decoders (issue 12), selectable with --settings for a parity run.
DECODER_SETTINGS = tuple(Setting(f"gradop+ {d}", "gradop+", (("guidance_decoder", d),))
                         for d in ("vae", "conv", "tiny"))
# A generated reference that certainly keeps the painting's flat look: realism signals must
# rank text2img above it (validation on generated images).
PAINTING_LIKE_REFERENCE = Setting("sdedit 0.3 (reference)", "sdedit", (("strength", 0.3),))
# Not generated: the world's own photo of the scene the painting was drawn from. Where a perfect
# photo of the painted scene lands on faithfulness and realism (an upper bound on what "realistic
# at equal faithfulness" can mean in the lab).
SCENE_PHOTO_LABEL = "scene photo (reference)"
REGION_SETTINGS = (Setting("text2img", "text"), Setting("sdedit 0.8", "sdedit", (("strength", 0.8),)),
                   Setting("gradop+", "gradop+"), Setting("gradop", "gradop"))
REGION_STRENGTHS = (0.5, 2.0)
# GradOP+ with two pulls earlier in the schedule, chosen on the tuning scenes
# (bench/eval_guidance_quality.py) to beat SDEdit 0.8 and 0.9; the held-out run did not confirm
# it (README "Quality benchmark", `bash bench/run_quality.sh window`). Selectable with --settings.
# Measured with the release's Adam schedule, which they keep.
WINDOW_SETTINGS = (
    Setting("gradop+ s0.85 it2 lr0.15", "gradop+", (("strength", 0.85), ("iterations", 2),
                                                    ("grad_steps", RELEASE_ADAM["grad_steps"]), ("lr", 0.15))),
    Setting("gradop+ s0.9 it2", "gradop+", (("strength", 0.9), ("iterations", 2), *RELEASE_ADAM.items())),
    Setting("gradop+ s0.95 it2 gs16", "gradop+", (("strength", 0.95), ("iterations", 2), ("grad_steps", 16),
                                                  ("lr", RELEASE_ADAM["lr"]))),
)
# The exact VAE path in fp32 and under bf16 autocast (what "auto" runs on CPUs with native bf16).
PRECISION_SETTINGS = (Setting("gradop+ fp32", "gradop+", (("guidance_precision", "native"),)),
                      Setting("gradop+ bf16", "gradop+", (("guidance_precision", "bf16"),)))
# Other Adam schedules against the release's 12 x 0.1 (the default is one step of 1.5): session
# 10's default 3 x 0.4 and 2 x 0.6 (the release's step budget, steps x lr = 1.2, in fewer
# passes), and single steps of 1.2 and 1.3 (shorter sign steps than the default's).
SCHEDULE_SETTINGS = tuple(Setting(f"gradop+ gs{g} lr{lr}", "gradop+", (("grad_steps", g), ("lr", lr)))
                          for g, lr in ((3, 0.4), (2, 0.6), (1, 1.2), (1, 1.3)))
EXTRA_SETTINGS = DECODER_SETTINGS + WINDOW_SETTINGS + PRECISION_SETTINGS + SCHEDULE_SETTINGS  # only with --settings
SETTINGS_BY_LABEL = {s.label: s for s in (*GUIDED_SETTINGS, *EXTRA_SETTINGS, PAINTING_LIKE_REFERENCE)}


@dataclass
class Context:
    """What every section needs: the loaded pipeline and judge, and the run's choices."""

    pipe: object  # gradop.pipeline.GradopPipeline
    judge: Judge
    seeds: int = 2  # images per painting and setting (num_images, one generator seed per painting)
    steps: int = 50
    guided_settings: tuple = GUIDED_SETTINGS
    region_settings: tuple = REGION_SETTINGS
    region_strengths: tuple = REGION_STRENGTHS
    world_version: int = DEFAULT_WORLD  # the world of the scenes and reference photos (the demo model's)
    images_dir: Path | None = None  # where example outputs for the contact sheet go
    sheet_paintings: set = field(default_factory=set)  # names of paintings whose outputs are kept
    signals: dict = field(init=False)

    def __post_init__(self):
        self.signals = realism_signals(self.judge)

    def generate(self, painting: Painting, setting: Setting, seed: int, **extra) -> tuple[torch.Tensor, float]:
        """(images (seeds, 3, H, W), seconds per image) for one setting on one painting."""
        size = painting.image.size
        start = time.perf_counter()
        result = self.pipe.generate(setting.method, painting.caption, painting.image, seed=seed, steps=self.steps,
                                    num_images=self.seeds, height=size[1], width=size[0], **setting.kwargs, **extra)
        seconds = (time.perf_counter() - start) / self.seeds
        if self.images_dir is not None and painting.name in self.sheet_paintings:
            folder = self.images_dir / painting.name
            folder.mkdir(parents=True, exist_ok=True)
            painting.image.save(folder / "strokes.png")
            tag = extra.get("regions") and f" {next(iter(extra['regions'].values()))} w{extra['region_strength']}"
            result.images[0].save(folder / f"{setting.label}{tag or ''}.png".replace(" ", "_"))
        return torch.cat([pil_to_tensor(image) for image in result.images]), seconds

    def realism(self, images: torch.Tensor) -> dict[str, list[float]]:
        return {f"realism_{name}": signal(images).tolist() for name, signal in self.signals.items()}


def painting_seed(painting: Painting) -> int:
    return 10_000 + painting.seed % 1_000_000  # fixed per painting, the same for every method


class GuidedSection:
    """Promise (1): every guided setting on the world and app paintings."""

    name = "guided"

    def applies(self, painting: Painting) -> bool:
        return painting.kind in ("world", "app")

    def run(self, ctx: Context, painting: Painting) -> list[dict]:
        target = pil_to_tensor(painting.image)
        masks = [r.mask for r in find_regions(painting.image)]
        rows = []
        # The reference needs at least one denoising step (int(steps * 0.3) >= 1; diffusers fails on 0).
        reference = (PAINTING_LIKE_REFERENCE,) if int(ctx.steps * PAINTING_LIKE_REFERENCE.kwargs["strength"]) >= 1 else ()
        for setting in (*ctx.guided_settings, *reference):
            images, seconds = ctx.generate(painting, setting, painting_seed(painting))
            scores = {**faithfulness(images, target, masks), **ctx.realism(images)}
            for k in range(len(images)):
                rows.append({"section": self.name, "painting": painting.name, "kind": painting.kind, "setting": setting.label,
                             "method": setting.method, "image": k, "seconds": seconds,
                             **{key: values[k] for key, values in scores.items()}})
        photo = torch.from_numpy(render_photo(sample_scene(painting.seed, ctx.world_version),
                                              painting.image.size[0])).permute(2, 0, 1)[None]
        scores = {**faithfulness(photo, target, masks), **ctx.realism(photo)}
        rows.append({"section": self.name, "painting": painting.name, "kind": painting.kind, "setting": SCENE_PHOTO_LABEL,
                     "method": "reference", "image": 0, "seconds": 0.0, **{key: v[0] for key, v in scores.items()}})
        return rows


class RegionSection:
    """Promise (2): colour-ambiguous paintings, each word assigned at several strengths, and no
    control (strength 0), for every region setting."""

    name = "region"

    def applies(self, painting: Painting) -> bool:
        return painting.kind == "ambiguous"

    def run(self, ctx: Context, painting: Painting) -> list[dict]:
        target = pil_to_tensor(painting.image)
        rows = []
        mask = spec_from_colors(painting.image, {painting.colour: painting.meanings[0][1]})[0].mask
        for setting in ctx.region_settings:
            runs = [(None, 0.0)] + [(word, w) for _, word in painting.meanings for w in ctx.region_strengths]
            for word, strength in runs:
                extra = {"regions": {painting.colour: word}, "region_strength": strength} if word else {}
                images, seconds = ctx.generate(painting, setting, painting_seed(painting), **extra)
                labels = ctx.judge.segment(images)
                scores = {**faithfulness(images, target, [mask]), **ctx.realism(images)}
                # Without control one image answers both questions: is it the first or the second meaning?
                for cls, assigned_word in painting.meanings:
                    if word is not None and assigned_word != word:
                        continue
                    competing = next(c for c, _ in painting.meanings if c != cls)
                    shares = region_shares(labels, mask, CLASS_ID[cls], CLASS_ID[competing])
                    for k in range(len(images)):
                        rows.append({"section": self.name, "painting": painting.name, "kind": painting.kind,
                                     "setting": setting.label, "method": setting.method, "image": k, "seconds": seconds,
                                     "word": assigned_word, "assigned_class": cls, "competing_class": competing,
                                     "natural": cls == painting.source, "region_strength": strength,
                                     **{key: values[k] for key, values in {**scores, **shares}.items()}})
        return rows


SECTIONS = [GuidedSection(), RegionSection(), EditingSection()]


def reference_rows(ctx: Context, indices) -> list[dict]:
    """Realism signals on held-out world photos, their stroke renderings and app-style
    paintings of the same scenes (validation of every signal against known answers); and the
    segmenter on class regions moved where the world never has them (moved_rows)."""
    rows = []
    for i in indices:
        rows += moved_rows(ctx, i)
        scene = sample_scene(REFERENCE_SEED + i, ctx.world_version)
        views = {"photo": torch.from_numpy(render_photo(scene)).permute(2, 0, 1)[None],
                 "world": pil_to_tensor(to_pil(render_strokes(scene))),
                 "app": pil_to_tensor(_to_model_size(render_app_painting(scene), 64))}
        for kind, image in views.items():
            rows.append({"section": "reference", "painting": f"reference-{i:03d}", "kind": kind, "image": 0,
                         **{k: v[0] for k, v in ctx.realism(image).items()}})
    return rows


def moved_rows(ctx: Context, index: int) -> list[dict]:
    """For each of the region section's swaps (a hut asked for where a sun was painted, ...): a
    held-out photo's own pixels of the first class moved onto the second class's place in another
    held-out photo (gradop.world.moves). The share of them the judge still labels as that class
    says whether promise 2's "swapped" shares can be trusted; in place, the same pixels unmoved.
    The emptied_* shares move them onto that place with the place's objects removed first (no hut
    left around a sun moved onto it), as a region word asks for one class there. The *_vae shares
    judge the images after a round trip through the model's VAE, as every generated image is
    decoded by it."""
    rows = []
    for k, (cls, place) in enumerate(SWAPS):
        seed = MOVED_SEED + 1000 * index + 100 * k
        source, = scenes_with(cls, seed, 1, ctx.world_version)
        target = scenes_with(place, seed + 50, 1, ctx.world_version)[0]
        case, emptied = (move_photo_class(source, target, emptied=e) for e in (None, place))
        if case is None:
            continue
        images = (case[0], case[1], emptied[1])
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        pipe = ctx.pipe
        latents = torch.cat([encode_image(pipe.vae, to_pil(x), pipe.device, pipe.dtype) for x in images])
        decoded = pipe.decode(latents).float().cpu()
        hits = (ctx.judge.segment(torch.cat([pixels, decoded])) == CLASS_ID[cls]).numpy()
        masks = (source[1], case[2], emptied[2])
        shares = {f"{name}{suffix}_share": float(hits[offset + i][mask].mean())
                  for offset, suffix in ((0, ""), (3, "_vae")) for i, (name, mask) in
                  enumerate(zip(("in_place", "moved", "emptied"), masks))}
        rows.append({"section": "reference", "painting": f"reference-{index:03d}", "kind": "moved", "image": 0,
                     "swap": f"{cls}->{place}", **shares})
    return rows


def run_shard(ctx: Context, paintings: list[Painting], out: Path, shard: int = 0, shards: int = 1,
              references: int = 0, resume: bool = False, log=print) -> Path:
    """Run every section on this shard's paintings (every shards-th, from shard) and append
    the rows to out/rows_<shard>.jsonl; returns that file. With `resume`, paintings (and
    references) already in that file are kept and skipped (rerun with the same options)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rows_{shard}.jsonl"
    kept = _complete_rows(path) if resume and path.exists() else []
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    finished = {r["painting"] for r in kept}
    mine = [p for p in paintings[shard::shards] if p.name not in finished]
    started = time.time()
    with path.open("a") as file:
        todo = [i for i in range(shard, references, shards) if f"reference-{i:03d}" not in finished]
        file.write("".join(json.dumps(r) + "\n" for r in reference_rows(ctx, todo)))
        for done, painting in enumerate(mine, 1):
            rows = [row for section in SECTIONS if section.applies(painting) for row in section.run(ctx, painting)]
            file.write("".join(json.dumps(_plain(r)) + "\n" for r in rows))
            file.flush()
            log(f"shard {shard}/{shards}: {done}/{len(mine)} paintings, {time.time() - started:.0f} s")
    return path


def _plain(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}


def _complete_rows(path: Path) -> list[dict]:
    """The rows of one shard file; a last line still being written (or cut off) is skipped."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return rows


def read_rows(out: Path) -> list[dict]:
    """Every row of every shard in `out`."""
    return [row for path in sorted(out.glob("rows_*.jsonl")) for row in _complete_rows(path)]
