"""The benchmark's files: every score (JSON and CSV), the summary (JSON), a markdown report,
the realism-vs-faithfulness plot (matplotlib, the optional `bench` extra) and a contact sheet."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from PIL import Image

from gradop.grid import labelled_grid
from gradop.quality import runner
from gradop.quality.metrics import format_ci as _ci
from gradop.quality.runner import SCENE_PHOTO_LABEL, SDEDIT_STRENGTHS
from gradop.quality.summary import FAITHFULNESS, PARITY, SIGNALS, VALID_AUC

SHEET_COLUMNS = ("text2img", "sdedit_0.5", "sdedit_0.7", "sdedit_0.9", "gradop+", "gradop+_median", "gradop")


def markdown(summary: dict) -> str:
    config = summary["config"]
    lines = ["# Quality benchmark\n", f"Command: `{config.get('command', '')}`\n",
             *([f"Model: `{config['model']}`; world {config.get('world_version', 1)}; judge `{config['judge']}`.\n"]
               if "judge" in config else []),
             "Paintings: " + ", ".join(f"{n} {kind}" for kind, n in summary["paintings"].items())
             + f"; {config.get('seeds', '?')} seeds each; {config.get('steps', '?')} steps."
             " Means with 95% bootstrap CIs over paintings.\n",
             (f"Wall time: {config['wall_minutes']} min"
              + ("" if config.get("complete", True) else " (stopped before every painting was done: "
                 + "; ".join(s.get("note") or "" for s in config.get("shards", [])[:1]) + ")")
              + (f"; load average at the end {load}" if (load := config.get('shards', [{}])[0].get('load_average')) else "")
              + ".\n"
              if "wall_minutes" in config else ""),
             "## Realism signals: validation (AUC on known answers)\n",
             f"A signal is used for verdicts only if every known-answer AUC is >= {VALID_AUC}.\n",
             "| signal | photo vs world strokes | photo vs app paintings | text2img vs SDEdit 0.3 | text2img vs SDEdit 0.5 (info) | valid |",
             "|---|---|---|---|---|---|"]
    for name, v in summary["validation"].items():
        lines.append(f"| {name} | {v['photo_vs_world_strokes']:.3f} | {v['photo_vs_app_paintings']:.3f} | "
                     f"{v['text2img_vs_sdedit_0.3']:.3f} | {v['text2img_vs_sdedit_0.5 (info)']:.3f} | "
                     f"{'yes' if v['valid'] else 'NO'} |")
    lines += ["\n## Promise 1: GradOP+ vs SDEdit (world + app paintings)\n",
              "Blurred L2, painted L2 and region colour error: lower is closer to the strokes. "
              "Realism: judge = the judge's P(photo); texture = share of non-flat 3x3 windows. Higher is more photo-like.\n",
              "| setting | blurred L2 | painted L2 | region colour error | realism (judge) | realism (texture) | s/image |",
              "|---|---|---|---|---|---|---|"]
    for setting, t in summary["guided"].items():
        lines.append(f"| {setting} | " + " | ".join(_ci(t[k], 4 if "l2" in k else 3) for k in FAITHFULNESS)
                     + " | " + " | ".join(_ci(t[f"realism_{s}"]) for s in SIGNALS) + f" | {t['seconds_per_image']:.2f} |")
    p1 = summary["promise_1"]
    lines += [f"\nVerdict: **{p1['verdict']}**. Validated signals: {', '.join(p1['validated_signals']) or 'none'}.\n",
              "Each GradOP+ setting minus SDEdit at each strength (paired by painting and seed; win = share of images where "
              "GradOP+ is better):\n",
              "| SDEdit | GradOP+ setting | blurred L2 diff (win) | realism judge diff (win) | realism texture diff (win) | wins |",
              "|---|---|---|---|---|---|"]
    for strength, s in p1["strengths"].items():
        for gp, c in s["comparisons"].items():
            cells = [f"{_ci(c['blurred_l2_diff'], 4)} ({c['blurred_l2_diff']['win_rate']:.2f})"]
            cells += [f"{_ci(c[f'realism_{sig}_diff'])} ({c[f'realism_{sig}_diff']['win_rate']:.2f})" for sig in SIGNALS]
            lines.append(f"| {strength} | {gp} | " + " | ".join(cells) + f" | {'yes' if c['wins'] else 'no'} |")
    p2 = summary["promise_2"]
    lines += ["\n## Promise 2: region words on colour-ambiguous regions\n",
              "Share of the region's pixels the judge labels as the assigned word's class (and as the competing class); "
              "w'=0 is no control. natural = the word that matches where the colour was painted; swapped = the other.\n",
              "| setting | w' | assigned share | natural | swapped | competing share | cases >= 0.9 | realism (judge) | "
              "realism change vs w'=0 (judge) | s/image |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for setting, per in p2["by_setting"].items():
        for w, e in per.items():
            change = _ci(e["realism_change"]["judge"]) if "realism_change" in e else "—"
            lines.append(f"| {setting} | {w} | {_ci(e['assigned_share'])} | {e['natural']['assigned_share']['mean']:.3f} | "
                         f"{e['swapped']['assigned_share']['mean']:.3f} | {_ci(e['competing_share'])} | "
                         f"{e['cases_at_or_above_0.9']:.3f} | {_ci(e['realism_judge'])} | {change} | "
                         f"{e['seconds_per_image']:.2f} |")
    if p2["by_setting"]:
        lines += ["\nBy word (mean assigned share; a swapped word is asked for where the other class was painted, "
                  "e.g. lake (swapped) = a lake in a sky-shaped region):\n"]
        columns = list(dict.fromkeys(k for per in p2["by_setting"].values() for e in per.values()
                                     for k in e.get("by_word", {})))
        lines += ["| setting | w' | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for setting, per in p2["by_setting"].items():
            for w, e in per.items():
                cells = [f"{e['by_word'][c]:.2f}" if c in e.get("by_word", {}) else "—" for c in columns]
                lines.append(f"| {setting} | {w} | " + " | ".join(cells) + " |")
    if moved := summary.get("segmenter_validation"):
        lines += ["\nThe judge on these swaps (validation): the share of a held-out photo's own class pixels it labels as "
                  "that class in place, and moved onto the swapped class's place (e.g. house->sun: a hut's pixels where "
                  "a sun was). A swapped word can only score where the moved share is high. Emptied: the place's own "
                  "objects removed first (no sun left around a hut moved onto it), as a region word asks for one class "
                  "there. Through the VAE: the images encoded and decoded by the model's VAE first, as every generated "
                  "image is.\n",
                  "| class -> place | in place | moved | moved, emptied | in place, through the VAE | moved, through the VAE "
                  "| moved, emptied, through the VAE | photos |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {swap} | " + " | ".join(f"{v[k]:.2f}" if k in v else "—" for k in
                                             ("in_place", "moved", "emptied", "in_place_vae", "moved_vae", "emptied_vae"))
                  + f" | {v['n']} |" for swap, v in moved.items()]
        if visible := p2.get("visible_share"):
            vae = (f"; through the VAE, {visible['assigned_share_vae']:.2f} (natural {visible['natural_vae']:.2f}, "
                   f"swapped {visible['swapped_vae']:.2f})") if "assigned_share_vae" in visible else ""
            onto = "moved onto the emptied place" if visible.get("swapped_onto") == "emptied" else "moved"
            lines.append(f"\nWhat this judge can see: the world's own pixels of each case's assigned class (in place for "
                         f"a natural word, {onto} for a swapped one; the table above) score {visible['assigned_share']:.2f} "
                         f"(natural {visible['natural']:.2f}, swapped {visible['swapped']:.2f}){vae}, over the "
                         f"{visible['cases']} cases above. An estimate of what a model that drew world-like objects "
                         "would score, not a bound: the regions here are larger than most world objects.")
    lines.append(f"\nVerdict: **{p2['verdict']}**.\n")
    if parity := summary.get("decoder_parity"):
        lines += ["## Guidance decoders and Adam steps: a cheaper path against the exact one\n",
                  "The same GradOP+ setting with another guidance decoder, precision or Adam schedule, against the "
                  "full VAE at the release's schedule (12 Adam steps of 0.1 per iteration) where that was run "
                  f"(issue 12: parity = every relative change within {PARITY:.0%}). Relative change = (cheap - full) "
                  "/ full of the means; the CI is the paired difference.\n",
                  "| setting | against | score | cheap | full VAE | relative change | paired diff | s/image cheap / full |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, e in parity.items():
            for key in [k for k in e if isinstance(e[k], dict) and "relative" in e[k]]:
                v = e[key]
                lines.append(f"| {label} | {e['against']} | {key} | {v['cheap']:.4f} | {v['full']:.4f} | "
                             f"{v['relative']:+.1%} | {_ci(v['diff'], 4)} | {e['seconds_per_image']['cheap']:.2f} / "
                             f"{e['seconds_per_image']['full']:.2f} |")
        lines.append("\n" + "; ".join(f"{label}: **{'within' if e['within'] else 'NOT within'} {PARITY:.0%}** "
                                      f"(the CI's worse end: {'within' if e['within_ci'] else 'not within'})"
                                      for label, e in parity.items()) + ".\n")
    for section in runner.SECTIONS:  # sections added later write their own part
        if hasattr(section, "markdown") and section.name in summary:
            lines.append(section.markdown(summary[section.name]))
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> Path:
    """Realism against blurred L2, one panel per realism signal: SDEdit's strength sweep as a
    line, GradOP+ through the denoiser as another, the other GradOP+ settings, GradOP and text2img
    as points, 95% CIs as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["guided"]
    fig, axes = plt.subplots(1, len(SIGNALS), figsize=(6 * len(SIGNALS), 5.6))
    for ax, signal in zip(axes, SIGNALS):
        def point(setting, **style):
            t = table[setting]
            x, y = t["blurred_l2"], t[f"realism_{signal}"]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=[[x["mean"] - x["low"]], [x["high"] - x["mean"]]],
                        yerr=[[y["mean"] - y["low"]], [y["high"] - y["mean"]]], capsize=3, **style)
            return x["mean"], y["mean"]

        sweep = [f"sdedit {s}" for s in SDEDIT_STRENGTHS if f"sdedit {s}" in table]
        if sweep:
            xy = [point(s, color="tab:blue", fmt="o") for s in sweep]
            ax.plot(*zip(*xy), color="tab:blue", label="SDEdit (strength 0.5 → 0.9)")
            for s, (x, y) in zip(sweep, xy):
                ax.annotate(s.split()[1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color="tab:blue")
        # GradOP+'s denoised steps: each one's lr sweeps a curve of its own, drawn like SDEdit's.
        curves = []
        for prefix, colour, fmt, name in (("gradop+ denoised", "tab:green", "D", "GradOP+ denoised"),
                                          ("gradop+ fast", "tab:orange", "^", "GradOP+ denoised-fast")):
            curve = sorted((s for s in table if s.startswith(prefix + " ")), key=lambda s: table[s]["blurred_l2"]["mean"])
            if curve:
                xy = [point(s, color=colour, fmt=fmt) for s in curve]
                ax.plot(*zip(*xy), color=colour, label=f"{name} (larger lr → left)")
                for s, (x, y) in zip(curve, xy):
                    ax.annotate(s.removeprefix(prefix).strip(), (x, y), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=colour)
            curves += curve
        styles = itertools.cycle(zip("s^vDP*X<", ("tab:red", "tab:brown", "tab:pink", "goldenrod",
                                                  "darkred", "salmon", "olive", "tab:olive")))
        for setting in table:
            if setting.startswith("gradop+") and setting not in curves:
                marker, colour = next(styles)
                x, y = point(setting, color=colour, fmt=marker, label=setting)
                ax.annotate(setting.removeprefix("gradop+").strip() or "default", (x, y), textcoords="offset points",
                            xytext=(4, -10), fontsize=8, color=colour)
        for setting, colour, fmt in (("gradop", "tab:purple", "h"), ("text2img", "tab:gray", "x"),
                                     ("sdedit 0.3 (reference)", "tab:cyan", "o"),
                                     (SCENE_PHOTO_LABEL, "black", "*")):
            if setting in table:
                point(setting, color=colour, fmt=fmt, label=setting)
        valid = summary["validation"].get(signal, {}).get("valid")
        ax.set_title(f"realism: {signal} ({'validated' if valid else 'FAILED validation'})")
        ax.set_xlabel("blurred L2 to the strokes (lower = more faithful)")
        ax.set_ylabel(f"realism ({signal}; higher = more photo-like)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=5)  # below the panels, off the points
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def contact_sheet(images_dir: Path, path: Path, rows_per_kind: int = 3) -> Path | None:
    """Strokes and outputs (first seed) of a few paintings: guided settings for world/app
    paintings, no control vs each word at the strongest w' for ambiguous ones, the photo and
    GradOP+'s edits for edit ones."""
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir()) if images_dir.is_dir() else []
    if not folders:
        return None
    images, labels, columns = [], [], 1 + len(SHEET_COLUMNS)
    for folder in folders:
        files = {p.stem: p for p in folder.glob("*.png")}
        if folder.name.startswith("edit"):  # photo, painted, GradOP+ edits without / with the word, re-imagined
            names = ["photo", "painted", "gradop+"] + sorted(k for k in files if k.startswith("gradop+_") and "_w" in k)
            names += ["gradop+_reimagine"]
        elif folder.name.startswith("ambiguous"):
            region = sorted(k for k in files if k.startswith("gradop+_") and "_w" in k)
            names = ["strokes", "gradop+"] + region[-4:]
        else:
            names = ["strokes", *SHEET_COLUMNS]
        names = [n for n in names if n in files][:columns]
        for n in names:
            images.append(Image.open(files[n]).convert("RGB"))
            labels.append(folder.name if n == names[0] else n)  # the row's first image names the painting
        for _ in range(columns - len(names)):  # pad the row
            images.append(Image.new("RGB", (8, 8), "white"))
            labels.append("")
    labelled_grid(images, labels, columns=columns, cell=128).save(path)
    return path


def write_outputs(summary: dict, rows: list[dict], out: Path) -> dict[str, Path]:
    """All outputs under `out`; returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.json", "scores_json": out / "scores.json", "scores_csv": out / "scores.csv",
             "report": out / "report.md", "plot": out / "realism_vs_faithfulness.png"}
    files["summary"].write_text(json.dumps(summary, indent=1) + "\n")
    files["scores_json"].write_text(json.dumps(rows) + "\n")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with files["scores_csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, keys)
        writer.writeheader()
        writer.writerows(rows)
    files["report"].write_text(markdown(summary))
    plot(summary, files["plot"])
    sheet = contact_sheet(out / "images", out / "contact_sheet.png")
    if sheet:
        files["contact_sheet"] = sheet
    return files
