"""The quality benchmark's editing section: painting an object onto held-out world photos.

Each "edit" painting (gradop.quality.scenes.edit_painting) is a held-out photo with one blob
painted on its ground for "hut" or "tree". Every region setting edits it (background = the
photo, RGBA strokes) without the region word and with it at each region strength (region-to-
word control ties the blob to "hut" / "tree"; the prompt is the same), and GradOP+ also
re-imagines the whole image (edit=False, the behaviour before edit mode), for reference.
Measured per image:
- l2_outside: mean squared error (pixels in [0, 1]) to the photo outside the feathered edit
  region (the pixels an edit must copy: 0 expected);
- l2_band: the same inside the feather band (where generated and photo pixels are mixed);
- class_share: the judge's share of the blob's pixels that show the object's class;
- realism_judge and realism_gap: the judge's photo probability of the edited image, and its
  difference to the original photo's (negative = less photo-like; a seam counts against it).

    gradop bench quality --world 0 --app 0 --ambiguous 0 --edit 12 --out build/editing
"""

from __future__ import annotations

import numpy as np
import torch

from gradop.editing import prepare_edit
from gradop.images import pil_to_tensor
from gradop.quality.metrics import bootstrap_ci
from gradop.quality.metrics import format_ci as _ci
from gradop.region_words import word_occurrences
from gradop.world.scene import CLASS_ID

SHARE_TARGET = 0.6  # issue 14: the judge finds the word's class on at least this share of the blob
SCORES = ("l2_outside", "l2_band", "class_share", "realism_judge", "realism_gap")


def measure(judge, images: torch.Tensor, edit, class_id: int) -> list[dict]:
    """Scores of each edited image (N, 3, H, W in [0, 1]) against the edit's photo and blob
    (`edit`: gradop.editing.prepare_edit at the images' size)."""
    alpha, painted = edit.alpha.numpy(), edit.painted.numpy()
    band = (alpha > 0) & (alpha < 1)
    reference = pil_to_tensor(edit.background)[0].numpy()
    labels, realism = judge.segment(images).numpy(), judge.realism(images).tolist()
    rows = []
    for k, image in enumerate(images.numpy()):
        sq = ((image - reference) ** 2).mean(0)
        rows.append(dict(l2_outside=float(sq[alpha == 0].mean()), l2_band=float(sq[band].mean()) if band.any() else 0.0,
                         class_share=float((labels[k][painted] == class_id).mean()), realism_judge=float(realism[k])))
    return rows


class EditingSection:
    """Issue 14: edits of held-out photos; see the module docstring."""

    name = "editing"

    def applies(self, painting) -> bool:
        return painting.kind == "edit"

    def run(self, ctx, painting) -> list[dict]:
        from gradop.quality.runner import painting_seed

        cls, word = painting.meanings[0]
        region = {painting.colour: {"word": word, "occurrence": word_occurrences(painting.caption, word) - 1}}
        photo_realism = float(ctx.judge.realism(pil_to_tensor(painting.background))[0])
        reimagine = [s for s in ctx.region_settings if s.method == "gradop+"][:1]
        runs = [(s, "no word", 0.0, True) for s in ctx.region_settings]
        runs += [(s, "word", w, True) for s in ctx.region_settings for w in ctx.region_strengths]
        runs += [(s, "reimagine", ctx.region_strengths[0], False) for s in reimagine]
        kept = ctx.images_dir is not None and painting.name in ctx.sheet_paintings
        keep = ctx.images_dir / painting.name if kept else None  # the contact sheet's images
        edit, rows = None, []
        for setting, condition, strength, in_edit_mode in runs:
            extra = {"regions": region, "region_strength": strength} if condition != "no word" else {}
            result = ctx.pipe.generate(setting.method, painting.caption, painting.image, background=painting.background,
                                       edit=in_edit_mode, seed=painting_seed(painting), steps=ctx.steps,
                                       num_images=ctx.seeds, **setting.kwargs, **extra)
            images = torch.cat([pil_to_tensor(image) for image in result.images])
            if edit is None:  # every run has the same output size: one edit region per painting
                edit = prepare_edit(painting.image, painting.background, (images.shape[-1], images.shape[-2]))
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    edit.background.save(keep / "photo.png")
                    edit.composite.save(keep / "painted.png")
            if keep is not None:
                tag = {"no word": "", "word": f" {word} w{strength}", "reimagine": " reimagine"}[condition]
                result.images[0].save(keep / f"{setting.label}{tag}.png".replace(" ", "_"))
            for k, scores in enumerate(measure(ctx.judge, images, edit, CLASS_ID[cls])):
                rows.append({"section": self.name, "painting": painting.name, "kind": painting.kind,
                             "setting": setting.label, "method": setting.method, "image": k, "word": word,
                             "assigned_class": cls, "condition": condition, "region_strength": strength,
                             "photo_realism": photo_realism, "realism_gap": scores["realism_judge"] - photo_realism,
                             **scores})
        return rows

    def summarise(self, rows: list[dict]) -> dict:
        """Per setting and condition: means with bootstrap CIs over paintings (the largest
        L2 outside too, which must be exactly 0), and the class share per object word."""
        out = {}
        for key in dict.fromkeys((r["setting"], r["condition"], r["region_strength"]) for r in rows):
            group = [r for r in rows if (r["setting"], r["condition"], r["region_strength"]) == key]
            paintings = [r["painting"] for r in group]
            entry = {score: bootstrap_ci([r[score] for r in group], paintings) for score in SCORES}
            entry["l2_outside_max"] = max(r["l2_outside"] for r in group)
            entry["class_share_by_word"] = {w: float(np.mean([r["class_share"] for r in group if r["word"] == w]))
                                            for w in sorted({r["word"] for r in group})}
            entry["images"] = len(group)
            out[_label(*key)] = entry
        return out

    def markdown(self, part: dict) -> str:
        if not part:
            return ""
        lines = ["## Editing: painting an object onto held-out photos\n",
                 "Edit mode keeps the photo outside the painted blob (dilated and feathered); \"reimagine\" is GradOP+ "
                 "redrawing the whole image. Class share: the judge's share of the blob showing the word's class "
                 f"(target >= {SHARE_TARGET}). Realism gap: realism of the edit minus the photo's (target within 0.05).\n",
                 "| setting / condition | L2 outside (max) | L2 in feather band | class share | by word | realism | "
                 "realism gap |", "|---|---|---|---|---|---|---|"]
        for label, e in part.items():
            words = ", ".join(f"{w} {v:.2f}" for w, v in e["class_share_by_word"].items())
            lines.append(f"| {label} | {e['l2_outside']['mean']:.4f} ({e['l2_outside_max']:.4f}) | "
                         f"{e['l2_band']['mean']:.4f} | {_ci(e['class_share'])} | {words} | {_ci(e['realism_judge'])} | "
                         f"{_ci(e['realism_gap'])} |")
        edits = {k: e for k, e in part.items() if "reimagine" not in k}
        copied = all(e["l2_outside_max"] == 0 for e in edits.values())
        best = max(((e["class_share"]["mean"], k) for k, e in edits.items() if "/ word" in k), default=None)
        lines.append(f"\nPixels outside the feathered blob copied exactly in every edit: **{'yes' if copied else 'NO'}**. "
                     + (f"Best class share with the word: **{best[0]:.2f}** ({best[1]}; target {SHARE_TARGET})."
                        if best else "") + "\n")
        return "\n".join(lines)


def _label(setting: str, condition: str, strength: float) -> str:
    return f"{setting} / {condition}" + (f" w'={strength:g}" if condition == "word" else "")
