"""From rows to numbers and verdicts: signal validation, per-setting means with CIs, and the
verdicts on gradop's two promises. Pure functions of the rows (shards merge by concatenation).
"""

from __future__ import annotations

import numpy as np

from gradop.quality.metrics import auc, bootstrap_ci, paired
from gradop.quality.runner import PAINTING_LIKE_REFERENCE, SDEDIT_STRENGTHS

VALID_AUC = 0.75  # a realism signal must rank photos above paintings at least this well, on every reference pair
SIGNALS = ("judge", "texture")
FAITHFULNESS = ("blurred_l2", "painted_l2", "region_colour_error")
SHARE_TARGET = 0.9
PARITY = 0.05  # issue 12: a cheaper guidance path may be the default only within 5% of the full VAE


def _rows(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _column(rows, key):
    return [r[key] for r in rows]


def validate_signals(rows: list[dict]) -> dict:
    """AUC of each realism signal on pairs whose answer is known: world photos vs world stroke
    paintings, photos vs app-style paintings, text2img vs SDEdit 0.3 outputs (generated images
    that keep the painting's look). SDEdit 0.5 is reported too, for information: whether it looks
    painted is what is being measured, not a known answer."""
    ref = _rows(rows, section="reference")
    guided = _rows(rows, section="guided")
    out = {}
    for name in SIGNALS:
        key = f"realism_{name}"
        photos = _column(_rows(ref, kind="photo"), key)
        text = _column(_rows(guided, setting="text2img"), key)
        checks = {
            "photo_vs_world_strokes": auc(photos, _column(_rows(ref, kind="world"), key)),
            "photo_vs_app_paintings": auc(photos, _column(_rows(ref, kind="app"), key)),
            "text2img_vs_sdedit_0.3": auc(text, _column(_rows(guided, setting=PAINTING_LIKE_REFERENCE.label), key)),
        }
        known = [v for v in checks.values() if not np.isnan(v)]
        out[name] = {**checks, "text2img_vs_sdedit_0.5 (info)": auc(text, _column(_rows(guided, setting="sdedit 0.5"), key)),
                     "n_photos": len(photos), "n_text2img": len(text),
                     "valid": bool(len(known) == len(checks) and min(known) >= VALID_AUC)}
    return out


def validate_segmenter(rows: list[dict]) -> dict:
    """Per swap of the region section: the mean share of a class's own photo pixels that the
    judge labels as that class in place and when moved onto the swapped class's place (runner.moved_rows).
    A swapped word whose class the judge does not see there cannot score, whatever is drawn."""
    moved = _rows(rows, section="reference", kind="moved")
    out = {}
    for swap in dict.fromkeys(_column(moved, "swap")):
        sel = _rows(moved, swap=swap)
        out[swap] = {"in_place": float(np.mean(_column(sel, "in_place_share"))),
                     "moved": float(np.mean(_column(sel, "moved_share"))), "n": len(sel)}
        # Runs before session 18 did not round-trip through the VAE; before session 19 did not empty the place.
        for key in ("in_place_vae", "moved_vae", "emptied", "emptied_vae"):
            if all(f"{key}_share" in r for r in sel):
                out[swap][key] = float(np.mean(_column(sel, f"{key}_share")))
    return out


def setting_table(rows: list[dict], section: str = "guided") -> dict:
    """Mean and bootstrap CI (over paintings) of every score, per setting."""
    table = {}
    for setting in dict.fromkeys(_column(_rows(rows, section=section), "setting")):
        sel = _rows(rows, section=section, setting=setting)
        groups = _column(sel, "painting")
        table[setting] = {key: bootstrap_ci(_column(sel, key), groups)
                          for key in (*FAITHFULNESS, *(f"realism_{s}" for s in SIGNALS))}
        table[setting]["seconds_per_image"] = float(np.mean(_column(sel, "seconds")))
        table[setting]["images"] = len(sel)
    return table


def promise_one(rows: list[dict], validation: dict) -> dict:
    """For each SDEdit strength: which GradOP+ settings have significantly higher realism (the
    CI of the paired difference above 0) on every validated signal, at equal or better blurred
    L2 (mean paired difference <= 0)? Every comparison is kept, wins or not."""
    guided = _rows(rows, section="guided")
    valid = [s for s in SIGNALS if validation.get(s, {}).get("valid")]
    gp_settings = [s for s in dict.fromkeys(_column(guided, "setting")) if s.startswith("gradop+")]
    result = {"validated_signals": valid, "strengths": {}}
    for strength in SDEDIT_STRENGTHS:
        sd = _rows(guided, setting=f"sdedit {strength}")
        if not sd:
            continue
        comparisons = {}
        for gp in gp_settings:
            g = _rows(guided, setting=gp)
            c = {"blurred_l2_diff": paired(g, sd, "blurred_l2"),
                 **{f"realism_{s}_diff": paired(g, sd, f"realism_{s}") for s in SIGNALS}}
            c["blurred_l2_diff"]["win_rate"] = 1 - c["blurred_l2_diff"]["win_rate"]  # lower L2 wins
            c["l2_equal_or_better"] = c["blurred_l2_diff"]["mean"] <= 0
            c["realism_significant"] = {s: c[f"realism_{s}_diff"]["low"] > 0 for s in SIGNALS}
            c["realism_higher_mean"] = {s: c[f"realism_{s}_diff"]["mean"] > 0 for s in SIGNALS}
            c["wins"] = bool(valid) and c["l2_equal_or_better"] and all(c["realism_significant"][s] for s in valid)
            c["wins_on_means"] = bool(valid) and c["l2_equal_or_better"] and all(c["realism_higher_mean"][s] for s in valid)
            comparisons[gp] = c
        result["strengths"][str(strength)] = {
            "comparisons": comparisons,
            "winners": [gp for gp, c in comparisons.items() if c["wins"]],
            "winners_on_means": [gp for gp, c in comparisons.items() if c["wins_on_means"]],
        }
    n = len(result["strengths"])
    won = sum(bool(v["winners"]) for v in result["strengths"].values())
    won_means = sum(bool(v["winners_on_means"]) for v in result["strengths"].values())
    result.update(won=won, won_on_means=won_means, compared=n)
    if not n:
        result["verdict"] = "not measured: no SDEdit setting was run"
    elif not valid:
        result["verdict"] = "undecided: no realism signal passed validation"
    else:
        result["verdict"] = ("holds" if n and won == n else "does not hold") + \
            f": GradOP+ won (significantly more realistic at equal or better blurred L2) at {won} of {n} SDEdit strengths" + \
            f" ({won_means} of {n} on plain means)"
    return result


def decoder_parity(rows: list[dict], validation: dict) -> dict:
    """GradOP+ with each cheaper guidance path (another decoder, the decoder under bf16 autocast,
    or fewer Adam steps; a setting that differs from the defaults at most by those knobs) against
    the exact path: the full VAE at the release's Adam schedule (at the default one when the
    release's was not run), fp32 when that was run by name. The relative change of mean blurred
    L2 and of each validated realism signal, with the paired CI of the difference."""
    from gradop.options import RELEASE_ADAM, GradopPlusOptions
    from gradop.quality.runner import SETTINGS_BY_LABEL

    cheap_knobs, defaults = ("guidance_decoder", "guidance_precision", "grad_steps", "lr"), GradopPlusOptions()
    guided = _rows(rows, section="guided")
    paths = {}  # (decoder, precision, Adam steps, lr) -> label, for the settings that were run
    for label in dict.fromkeys(_column(guided, "setting")):
        setting = SETTINGS_BY_LABEL.get(label)
        if setting is None or setting.method != "gradop+" or set(setting.kwargs) - set(cheap_knobs):
            continue
        path = tuple(setting.kwargs.get(knob, getattr(defaults, knob)) for knob in cheap_knobs)
        if setting.kwargs:  # a label that names its path wins over the defaults'
            paths[path] = label
        else:
            paths.setdefault(path, label)
    keys = ["blurred_l2"] + [f"realism_{s}" for s in SIGNALS if validation.get(s, {}).get("valid")]
    out = {}
    # "auto" is bf16 on some CPUs, hence fp32 ("native") first.
    schedules = [(RELEASE_ADAM["grad_steps"], RELEASE_ADAM["lr"]), (defaults.grad_steps, defaults.lr)]
    exact = next((p for adam in schedules for p in (("vae", "native", *adam), ("vae", "auto", *adam)) if p in paths),
                 None)
    if exact is None:
        return out
    full = _rows(guided, setting=paths[exact])
    for (decoder, precision, grad_steps, lr), label in paths.items():
        if (decoder, precision, grad_steps, lr) == exact:
            continue
        cheap = _rows(guided, setting=label)
        entry = {"against": paths[exact], "decoder": decoder, "precision": precision, "grad_steps": grad_steps,
                 "lr": lr}
        for key in keys:
            a, b = float(np.mean(_column(cheap, key))), float(np.mean(_column(full, key)))
            entry[key] = {"cheap": a, "full": b, "relative": (a - b) / abs(b) if b else float("nan"),
                          "diff": paired(cheap, full, key)}
        entry["within"] = bool(all(abs(entry[k]["relative"]) <= PARITY for k in keys))
        # The stricter reading: the CI of the difference, on its worse side (higher L2, lower
        # realism), stays within PARITY of the full VAE's mean.
        entry["within_ci"] = bool(all(
            (entry[k]["diff"]["high"] if k == "blurred_l2" else -entry[k]["diff"]["low"]) <= PARITY * abs(entry[k]["full"])
            for k in keys))
        entry["seconds_per_image"] = {"cheap": float(np.mean(_column(cheap, "seconds"))),
                                      "full": float(np.mean(_column(full, "seconds")))}
        out[label] = entry
    return out


def promise_two(rows: list[dict], validation: dict) -> dict:
    """Per region setting and strength: the assigned class's share of the region (mean, CI),
    the competing class's share, the share of cases >= 0.9, and realism with control minus
    without (paired, to catch collapses); split into natural and swapped assignments too."""
    region = _rows(rows, section="region")
    out = {"by_setting": {}}
    for setting in dict.fromkeys(_column(region, "setting")):
        sel = _rows(region, setting=setting)
        base = [r for r in sel if r["region_strength"] == 0]
        per = {}
        for strength in sorted({r["region_strength"] for r in sel}):
            cur = [r for r in sel if r["region_strength"] == strength]
            entry = _shares(cur)
            for label, natural in (("natural", True), ("swapped", False)):
                entry[label] = _shares([r for r in cur if r["natural"] == natural])
            # Which words fail: "lake in a sky region" reads as "lake (swapped)".
            entry["by_word"] = {f"{word} ({'natural' if natural else 'swapped'})": float(np.mean(shares))
                                for (word, natural), shares in _group_shares(cur).items()}
            if strength:
                entry["realism_change"] = {s: paired(_keyed(cur), _keyed(base), f"realism_{s}") for s in SIGNALS}
            entry["seconds_per_image"] = float(np.mean(_column(cur, "seconds"))) if cur else float("nan")
            per[str(strength)] = entry
        out["by_setting"][setting] = per
    judge_ok = validation.get("judge", {}).get("valid", False)
    holding = [(setting, w) for setting, per in out["by_setting"].items() for w, e in per.items()
               if float(w) > 0 and e["assigned_share"]["mean"] >= SHARE_TARGET
               and (not judge_ok or e["realism_change"]["judge"]["high"] >= 0)]
    best = max(((e["assigned_share"]["mean"], setting, w) for setting, per in out["by_setting"].items()
                for w, e in per.items() if float(w) > 0), default=None)
    for label in ("natural", "swapped"):  # the best mean per kind of assignment, for the verdict line
        out[f"best_{label}"] = max(((e[label]["assigned_share"]["mean"], setting, float(w))
                                    for setting, per in out["by_setting"].items() for w, e in per.items()
                                    if float(w) > 0 and e[label]["images"]), default=None)
    out["visible_share"] = visible_share(region, validate_segmenter(rows))
    out["holding"] = [f"{s} w'={w}" for s, w in holding]
    out["best"] = {"setting": best[1], "region_strength": float(best[2]), "assigned_share": best[0]} if best else None
    if not region:
        out["verdict"] = "not measured: no colour-ambiguous paintings were run"
        return out
    detail = "; ".join(f"best {label} {b[0]:.2f} ({b[1]} at w'={b[2]})"
                       for label in ("natural", "swapped") if (b := out[f"best_{label}"]))
    visible = out["visible_share"]
    out["verdict"] = ("holds for " + ", ".join(out["holding"])) if holding else (
        "does not hold: no setting reaches a mean assigned-class share of 0.9"
        + (f" (best {best[0]:.2f}: {best[1]} at w'={best[2]}; {detail})" if best else "")
        + (f"; the world's own class pixels, where each case asks for them, score {visible['assigned_share']:.2f} "
           f"with this judge (natural {visible['natural']:.2f}, swapped {visible['swapped']:.2f})" if visible else "")
        + (f", {visible['assigned_share_vae']:.2f} through the VAE" if visible and "assigned_share_vae" in visible else ""))
    return out


def visible_share(region: list[dict], segmenter: dict) -> dict | None:
    """What this judge can see of promise 2: per case, the share of the world's own pixels of the
    assigned class that it labels as the class (validate_segmenter: in place for a natural word;
    for a swapped one, moved onto the other class's place, emptied of that class where the run
    did so, since a region word asks for the one class there), averaged like the assigned share.
    An estimate of what a model drawing world-like objects would score, not a bound (the
    benchmark's regions are larger than most world objects). None when a case's swap was not validated."""
    cases = {(r["painting"], r["word"]): r for r in region if r["region_strength"] > 0}
    swaps = [segmenter.get(f"{r.get('assigned_class')}->{r.get('competing_class')}") for r in cases.values()]
    if not cases or None in swaps:
        return None
    moved = "emptied" if all("emptied" in s for s in swaps) else "moved"
    out = {"cases": len(cases), "swapped_onto": moved}
    for suffix in ("", "_vae"):  # as rendered, and after the model's VAE (what generated images go through)
        if all(f"{moved}{suffix}" in s for s in swaps):
            seen = [(r["natural"], s[("in_place" if r["natural"] else moved) + suffix])
                    for r, s in zip(cases.values(), swaps)]
            out[f"assigned_share{suffix}"] = float(np.mean([v for _, v in seen]))
            for label, natural in (("natural", True), ("swapped", False)):
                values = [v for n, v in seen if n == natural]
                out[f"{label}{suffix}"] = float(np.mean(values)) if values else float("nan")
    return out


def _keyed(rows):
    # Region rows pair by painting, image and word (one image per word at a strength > 0).
    return [{**r, "painting": f"{r['painting']}|{r['word']}"} for r in rows]


def _group_shares(rows) -> dict:
    """(word, natural) -> assigned shares, natural assignments first, then by word."""
    groups: dict = {}
    for r in sorted(rows, key=lambda r: (not r["natural"], r["word"])):
        groups.setdefault((r["word"], r["natural"]), []).append(r["assigned_share"])
    return groups


def _shares(rows):
    groups = _column(rows, "painting")
    return {"assigned_share": bootstrap_ci(_column(rows, "assigned_share"), groups),
            "competing_share": bootstrap_ci(_column(rows, "competing_share"), groups),
            "cases_at_or_above_0.9": float(np.mean([r["assigned_share"] >= SHARE_TARGET for r in rows])) if rows else float("nan"),
            "realism_judge": bootstrap_ci(_column(rows, "realism_judge"), groups),
            "images": len(rows)}


def summarise(rows: list[dict], config: dict | None = None) -> dict:
    from gradop.quality.runner import SECTIONS

    validation = validate_signals(rows)
    summary = {"config": config or {}, "validation": validation, "segmenter_validation": validate_segmenter(rows),
               "paintings": {kind: len({r["painting"] for r in rows if r["kind"] == kind and r["section"] != "reference"})
                             for kind in ("world", "app", "ambiguous", "edit")},
               "guided": setting_table(rows), "promise_1": promise_one(rows, validation),
               "promise_2": promise_two(rows, validation),
               "decoder_parity": decoder_parity(rows, validation)}
    for section in SECTIONS:  # sections added later summarise themselves
        if hasattr(section, "summarise"):
            summary[section.name] = section.summarise(_rows(rows, section=section.name))
    return summary
