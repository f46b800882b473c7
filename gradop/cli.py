"""The `gradop` command line: a thin argparse front-end over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = "Stroke-guided image synthesis with latent diffusion (GradOP / GradOP+)."
METHOD_ORDER = ("text", "sdedit", "gradop", "gradop+")  # the order of a --compare grid
VALIDATED = ("steps", "guidance_scale", "eta", "num_images", "strength", "iterations", "grad_steps", "lr",
             "opt_steps", "gamma", "region_strength", "painting", "height", "width")


def build_parser() -> argparse.ArgumentParser:
    from gradop import __version__
    from gradop.models import DEFAULT_MODEL
    from gradop.painting import PAINTING_FUNCTIONS

    parser = argparse.ArgumentParser(prog="gradop", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gradop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="make an image that follows a stroke painting and a prompt")
    gen.add_argument("--strokes", type=Path, help="the stroke painting (PNG/JPEG; transparent = white canvas)")
    gen.add_argument("--prompt", required=True, help='what the image shows, e.g. "a photo of a fox beside a tree"')
    gen.add_argument("--out", type=Path, required=True, help="output PNG (parameters are stored inside)")
    gen.add_argument("--method", choices=METHOD_ORDER, default="gradop+", help="synthesis method (default gradop+)")
    gen.add_argument("--compare", action="store_true", help="run every method with the same seed; --out gets a grid")
    gen.add_argument("--negative-prompt", default="", help="what to avoid")
    gen.add_argument("--seed", type=int, help="random seed (default: random, recorded in the PNG)")
    gen.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    gen.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    gen.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0: deterministic)")
    gen.add_argument("--strength", type=float, default=0.8,
                     help="where guidance starts: gradop+ optimises from step steps*(1-strength); sdedit/gradop noise to it")
    gen.add_argument("--iterations", type=int, default=3, help="gradop+: optimised sampling steps (default 3)")
    gen.add_argument("--grad-steps", type=int, default=12, help="gradop+: Adam steps per iteration (default 12)")
    gen.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    gen.add_argument("--painting", choices=PAINTING_FUNCTIONS, default="blur", help="painting function f (default blur)")
    gen.add_argument("--opt-steps", type=int, default=50, help="gradop: optimisation steps (default 50)")
    gen.add_argument("--gamma", type=float, default=1e-3, help="gradop: pull towards the text-only sample (default 1e-3)")
    gen.add_argument("--num-images", type=int, default=1, help="images per run (default 1)")
    gen.add_argument("--height", type=int, help="output height, multiple of 8 (default: strokes or model size)")
    gen.add_argument("--width", type=int, help="output width, multiple of 8 (default: strokes or model size)")
    gen.add_argument("--background", type=Path, help="photo under transparent strokes (real-image editing)")
    add_region_arguments(gen)
    add_model_arguments(gen, DEFAULT_MODEL)

    regions = commands.add_parser("regions", help="list the colour regions of a stroke painting")
    regions.add_argument("image", type=Path, help="the stroke painting")
    regions.add_argument("--min-area", type=float, default=0.005, help="smallest region, as a fraction of the image")
    regions.add_argument("--json", action="store_true", help="print JSON instead of a table")

    info = commands.add_parser("info", help="print the parameters stored in a gradop PNG")
    info.add_argument("image", type=Path)

    from gradop.quality.command import add_quality_arguments

    benches = commands.add_parser("bench", help="measure gradop").add_subparsers(dest="bench", required=True)
    add_quality_arguments(benches.add_parser("quality", help="the quality benchmark: GradOP+ vs SDEdit, region words"))
    return parser


def add_region_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", action="append", default=[], metavar="COLOUR=WORD",
                        help='say what a painted colour is, e.g. --region "#3a7bd5=lake" (repeatable)')
    parser.add_argument("--regions", type=Path, metavar="SPEC.json", help='colour -> word JSON, e.g. {"#3a7bd5": "lake"}')
    parser.add_argument("--region-strength", type=float, default=0.5, help="region control weight w' (default 0.5)")
    parser.add_argument("--append-missing-words", action="store_true", help="append region words missing from the prompt")
    parser.add_argument("--attention-maps", type=Path, help="also save per-token cross-attention maps as an image grid")


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument("--model", default=default_model, help=f"hub id, diffusers folder or .safetensors file (default {default_model})")
    parser.add_argument("--config", help="for a single-file checkpoint: diffusers folder or hub id of its architecture")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: best available)")
    parser.add_argument("--dtype", help="float16, bfloat16 or float32 (default: float16 on CUDA, else float32)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickled .ckpt weights (only files you trust)")


def parse_region_flags(flags: list[str], spec_path: Path | None) -> dict:
    """--region "#hex=word" flags and a --regions JSON file -> {colour: word or {word, occurrence}}."""
    assignments: dict = {}
    if spec_path is not None:
        try:
            data = json.loads(Path(spec_path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"could not read region spec '{spec_path}' ({error.__class__.__name__}); expected JSON like "
                             '{"#3a7bd5": "lake"}') from None
        if isinstance(data, list):
            data = {item.get("color", ""): {k: v for k, v in item.items() if k != "color"} for item in data}
        if not isinstance(data, dict):
            raise ValueError(f"region spec '{spec_path}' must be a JSON object mapping colours to words")
        assignments.update(data)
    for flag in flags:
        colour, sep, word = flag.partition("=")
        if not sep or not colour.strip() or not word.strip():
            raise ValueError(f"--region '{flag}' must look like COLOUR=WORD, e.g. \"#3a7bd5=lake\"")
        assignments[colour.strip()] = word.strip()
    return assignments


def generate(args) -> int:
    from tqdm import tqdm

    from gradop.grid import labelled_grid
    from gradop.images import load_image
    from gradop.metadata import save_png
    from gradop.pipeline import GradopPipeline, validate_options

    methods = METHOD_ORDER if args.compare else (args.method,)
    if any(m != "text" for m in methods) and args.strokes is None:
        raise ValueError("--strokes is required for this method; pass a stroke painting or use --method text")
    strokes = load_image(args.strokes, what="stroke image") if args.strokes is not None else None
    background = load_image(args.background, what="background photo") if args.background is not None else None
    regions = parse_region_flags(args.region, args.regions)
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out '{args.out}' must end in .png (the parameters are stored as PNG text)")
    options = dict(
        negative_prompt=args.negative_prompt, height=args.height, width=args.width, steps=args.steps,
        guidance_scale=args.guidance, eta=args.eta, seed=args.seed, num_images=args.num_images,
        strength=args.strength, iterations=args.iterations, grad_steps=args.grad_steps, lr=args.lr,
        painting=args.painting, opt_steps=args.opt_steps, gamma=args.gamma, regions=regions or None,
        region_strength=args.region_strength, append_missing_words=args.append_missing_words,
        background=background, attention_maps=args.attention_maps is not None,
    )
    validate_options(**{k: v for k, v in options.items() if k in VALIDATED})  # fail before a slow model load
    pipe = GradopPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                          allow_pickle=args.allow_pickle, config=args.config)
    if args.seed is None:  # one seed for every method of a comparison, recorded in each PNG
        import secrets

        options["seed"] = secrets.randbelow(2**32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    for method in methods:
        with tqdm(desc=method, unit="step", leave=True) as bar:
            def advance(progress, bar=bar):
                bar.total = progress.total
                bar.update(progress.step - bar.n)

            results[method] = pipe.generate(method, args.prompt, strokes, callback=advance, **options)
    if args.attention_maps is not None:
        grids = [result.attention_maps for result in results.values()]
        grid = grids[0] if len(grids) == 1 else labelled_grid(grids, list(results), columns=1)
        grid.save(args.attention_maps)
        print(args.attention_maps)
    if not args.compare:
        for path in results[args.method].save(args.out):
            print(path)
        return 0
    images, labels = ([strokes.convert("RGB")], ["strokes"]) if strokes is not None else ([], [])
    for method, result in results.items():
        stem = args.out.with_name(f"{args.out.stem}_{method.replace('+', '_plus')}.png")
        for path in result.save(stem):
            print(path)
        images += result.images
        labels += [method] * len(result.images)
    grid_params = {"compare": [result.params for result in results.values()]}
    print(save_png(labelled_grid(images, labels), args.out, grid_params))
    return 0


def list_regions(args) -> int:
    from gradop.images import load_image
    from gradop.regions import find_regions

    regions = find_regions(load_image(args.image, what="stroke image"), min_area_fraction=args.min_area)
    if args.json:
        print(json.dumps([{"color": r.hex, "area": round(r.area_fraction, 4), "bbox": list(r.bbox)} for r in regions]))
        return 0
    if not regions:
        print("no painted regions found (only background); paint something or lower --min-area")
        return 0
    print(f"{'colour':<9} {'area':>6}  bbox (x0, y0, x1, y1)")
    for region in regions:
        print(f"{region.hex:<9} {100 * region.area_fraction:5.1f}%  {region.bbox}")
    return 0


def show_info(args) -> int:
    from gradop.metadata import read_params

    print(json.dumps(read_params(args.image), indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gradop.quality.command import run_quality

    handlers = {"generate": generate, "regions": list_regions, "info": show_info, "bench": run_quality}
    try:
        return handlers[args.command](args)
    except ValueError as error:  # every user-caused problem: one line, no traceback
        print(f"gradop: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradop: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
