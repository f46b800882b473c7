"""`gradop bench quality`: the quality benchmark's command-line front-end.

    gradop bench quality --out build/quality                      # one process
    for i in 0 1; do gradop bench quality --shard $i/2 --out build/quality & done; wait
    gradop bench quality --merge --out build/quality              # summary, tables, plot, sheet
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path("build/quality")


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    from gradop.models import DEFAULT_MODEL
    from gradop.quality.runner import EXTRA_SETTINGS, GUIDED_SETTINGS, REGION_SETTINGS, REGION_STRENGTHS
    from gradop.world import DEFAULT_WORLD, WORLDS

    guided = [s.label for s in GUIDED_SETTINGS]
    extra = [s.label for s in EXTRA_SETTINGS]
    region = [s.label for s in REGION_SETTINGS]
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model to measure (default {DEFAULT_MODEL})")
    parser.add_argument("--judge", type=Path, help="judge folder (default: the shipped judge of --world-version)")
    parser.add_argument("--world", type=int, default=36, help="paintings by the world's stroke renderer (default 36)")
    parser.add_argument("--app", type=int, default=36, help="app-style paintings (default 36)")
    parser.add_argument("--ambiguous", type=int, default=32, help="colour-ambiguous app-style paintings (default 32)")
    parser.add_argument("--edit", type=int, default=12, help="held-out photos with a painted object to edit (default 12)")
    parser.add_argument("--world-version", type=int, choices=WORLDS, default=DEFAULT_WORLD,
                        help=f"scenes of world 3 (the demo model's, default {DEFAULT_WORLD}: painting domains, boats, "
                             "rocks, per-scene palettes that reach the painted colours), world 2 (the same without "
                             "the palettes) or world 1 (the original world, model v1)")
    parser.add_argument("--seeds", type=int, default=2, help="images per painting and setting (default 2)")
    parser.add_argument("--steps", type=int, default=25,
                        help="DDIM steps of every method (default 25, to fit 100+ paintings in 30 min on 2 CPU cores; "
                             "the pipeline's default is 50)")
    parser.add_argument("--settings", nargs="+", default=guided, metavar="LABEL",
                        help=f"guided settings to run (default: {', '.join(guided)}; also: {', '.join(extra)})")
    parser.add_argument("--region-settings", nargs="*", default=region, metavar="LABEL",
                        help=f"settings run with region control (default: {', '.join(region)})")
    parser.add_argument("--region-strengths", nargs="+", type=float, default=list(REGION_STRENGTHS), metavar="W",
                        help="region strengths w' besides 0 (default " + " ".join(map(str, REGION_STRENGTHS)) + ")")
    parser.add_argument("--references", type=int, default=100, help="held-out photos validating realism (default 100)")
    parser.add_argument("--sheet", type=int, default=3, help="paintings of each kind in the contact sheet (default 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--shard", default="0/1", help="i/n: run paintings i, i+n, ... (merge the shards with --merge)")
    parser.add_argument("--merge", action="store_true", help="only summarise the rows already in --out")
    parser.add_argument("--resume", action="store_true",
                        help="keep this shard's finished paintings in --out and run only the rest (same options)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: best available)")


def _settings(labels, known, what):
    by_label = {s.label: s for s in known}
    unknown = [label for label in labels if label not in by_label]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(by_label)}")
    return tuple(by_label[label] for label in labels)


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard '{text}' must look like i/n, e.g. 0/2") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard '{text}': i must be in 0..n-1")
    return index, count


def run_quality(args) -> int:
    from gradop.quality.runner import EXTRA_SETTINGS, GUIDED_SETTINGS, REGION_SETTINGS

    guided = _settings(args.settings, GUIDED_SETTINGS + EXTRA_SETTINGS, "setting")
    region = _settings(args.region_settings, REGION_SETTINGS, "region setting")
    shard, shards = _shard(args.shard)
    for name in ("world", "app", "ambiguous", "edit", "references", "sheet"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0")
    if not 1 <= args.seeds <= 16 or args.steps < 1:
        raise ValueError("--seeds must be 1-16 and --steps >= 1")
    if any(w <= 0 for w in args.region_strengths):
        raise ValueError("--region-strengths must be > 0 (strength 0, no control, is always run)")
    command = "gradop bench quality " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["bench", "quality"] else sys.argv[1:])
    if not args.merge:
        _run(args, guided, region, shard, shards, command)
    if args.merge or shards == 1:
        return _summarise(args.out, command)
    return 0


def _run(args, guided, region, shard, shards, command) -> None:
    import torch

    from gradop.pipeline import GradopPipeline
    from gradop.quality.runner import Context, run_shard
    from gradop.quality.scenes import benchmark_paintings
    from gradop.world.judge import JUDGES, load_judge

    torch.set_num_threads(args.threads)
    started = time.time()
    paintings = benchmark_paintings(args.world, args.app, args.ambiguous, args.edit,
                                    world_version=args.world_version)
    if not paintings:
        raise ValueError("no paintings to run: give --world, --app, --ambiguous or --edit > 0")
    judge_folder = args.judge or JUDGES[args.world_version]
    judge = load_judge(judge_folder)
    pipe = GradopPipeline.from_pretrained(args.model, device=args.device)
    sheet = {p.name for kind in ("world", "app", "ambiguous", "edit")
             for p in [q for q in paintings if q.kind == kind][:args.sheet]}
    ctx = Context(pipe, judge, seeds=args.seeds, steps=args.steps, guided_settings=guided, region_settings=region,
                  region_strengths=tuple(args.region_strengths), images_dir=args.out / "images", sheet_paintings=sheet,
                  world_version=args.world_version)
    config = {"command": command, "model": args.model, "judge": os.path.relpath(judge_folder),
              "world": args.world, "app": args.app, "ambiguous": args.ambiguous, "edit": args.edit,
              "world_version": args.world_version, "seeds": args.seeds, "steps": args.steps,
              "settings": args.settings, "region_settings": args.region_settings,
              "region_strengths": args.region_strengths, "references": args.references, "shard": args.shard,
              "threads": args.threads, "started": started}
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / f"config_{shard}.json"
    if args.resume and previous.exists():  # the wall time counts from the first start
        config["started"] = json.loads(previous.read_text()).get("started", started)
        config["resumed"] = started  # the wall time then includes the pause
    previous.write_text(json.dumps(config, indent=1) + "\n")
    run_shard(ctx, paintings, args.out, shard, shards, references=args.references, resume=args.resume,
              log=lambda line: print(line, file=sys.stderr, flush=True))
    config.update(finished=time.time(), load_average=os.getloadavg())
    (args.out / f"config_{shard}.json").write_text(json.dumps(config, indent=1) + "\n")


def _summarise(out: Path, command: str) -> int:
    from gradop.quality.report import write_outputs
    from gradop.quality.runner import read_rows
    from gradop.quality.summary import summarise

    rows = read_rows(out)
    if not rows:
        raise ValueError(f"no benchmark rows in {out}; run `gradop bench quality --out {out}` first")
    shards = [json.loads(p.read_text()) for p in sorted(out.glob("config_*.json"))]
    config = dict(shards[0]) if shards else {}
    config["shards"] = [{k: s.get(k) for k in ("shard", "command", "started", "finished", "stopped", "note", "load_average")}
                        for s in shards]
    ends = [s.get("finished", s.get("stopped")) for s in shards]
    if shards and all(ends):  # a shard stopped by hand records "stopped" instead of "finished"
        config["wall_minutes"] = round((max(ends) - min(s["started"] for s in shards)) / 60, 1)
        config["complete"] = all("finished" in s for s in shards)
    config["merge_command"] = command
    summary = summarise(rows, config)
    files = write_outputs(summary, rows, out)
    print(f"promise 1: {summary['promise_1']['verdict']}")
    print(f"promise 2: {summary['promise_2']['verdict']}")
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
