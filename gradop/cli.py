"""The `gradop` command line: a thin argparse front-end over the library."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gradop.cli_errors import explain, first_line

DESCRIPTION = "Stroke-guided image synthesis with latent diffusion (GradOP / GradOP+)."
METHOD_ORDER = ("text", "sdedit", "gradop", "gradop+")  # the order of a --compare grid


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other gradop error (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"gradop: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from gradop import __version__
    from gradop.models import DEFAULT_MODEL
    from gradop.decoders import GUIDANCE_DECODERS
    from gradop.options import RELEASE_ADAM, GradopOptions, GradopPlusOptions, SamplingOptions
    from gradop.guidance import GUIDANCE_LATENTS
    from gradop.painting import PAINTING_FUNCTIONS
    from gradop.precision import PRECISION_MODES

    d = {**SamplingOptions.defaults(), **GradopOptions.defaults(), **GradopPlusOptions.defaults()}  # one source

    parser = Parser(prog="gradop", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gradop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="make an image that follows a stroke painting and a prompt")
    gen.add_argument("--strokes", type=Path, help="the stroke painting (PNG/JPEG; transparent = white canvas)")
    gen.add_argument("--prompt", required=True, help='what the image shows, e.g. "a photo of a fox beside a tree"')
    gen.add_argument("--out", type=Path, required=True, help="output PNG (parameters are stored inside)")
    gen.add_argument("--force", action="store_true", help="overwrite existing output files (never the inputs)")
    gen.add_argument("--method", choices=METHOD_ORDER, default="gradop+", help="synthesis method (default gradop+)")
    gen.add_argument("--compare", action="store_true", help="run every method with the same seed; --out gets a grid")
    gen.add_argument("--negative-prompt", default="", help="what to avoid")
    gen.add_argument("--seed", type=int, help="random seed (default: random, recorded in the PNG)")
    gen.add_argument("--steps", type=int, default=d["steps"], help=f"DDIM steps (default {d['steps']})")
    gen.add_argument("--guidance", type=float, default=d["guidance_scale"],
                     help=f"classifier-free guidance scale (default {d['guidance_scale']})")
    gen.add_argument("--eta", type=float, default=d["eta"], help=f"DDIM eta (default {d['eta']:g}: deterministic)")
    gen.add_argument("--strength", type=float, default=d["strength"],
                     help="where guidance starts: gradop+ optimises from step int(steps*(1-strength)); sdedit/gradop noise to it")
    gen.add_argument("--iterations", type=int, default=d["iterations"],
                     help=f"gradop+: optimised sampling steps (default {d['iterations']})")
    gen.add_argument("--grad-steps", type=int, default=d["grad_steps"],
                     help=f"gradop+: Adam steps per iteration (default {d['grad_steps']})")
    gen.add_argument("--lr", type=float, default=d["lr"],
                     help=f"gradop+: Adam learning rate (default {d['lr']}; the release's schedule is "
                          f"--grad-steps {RELEASE_ADAM['grad_steps']} --lr {RELEASE_ADAM['lr']})")
    gen.add_argument("--painting", choices=PAINTING_FUNCTIONS, default=d["painting"],
                     help=f"painting function f (default {d['painting']})")
    gen.add_argument("--guidance-decoder", choices=GUIDANCE_DECODERS, default=d["guidance_decoder"],
                     help="what decodes latents inside the optimisation: the full vae (exact, the release's, "
                          "default), the vae on a half-size latent (vae-half: about half of GradOP+'s time), a fitted "
                          "linear/conv latent-to-RGB map, or an AutoencoderTiny (tiny; see --tiny-decoder)")
    gen.add_argument("--guidance-latent", choices=GUIDANCE_LATENTS, default=d["guidance_latent"],
                     help="gradop+: optimise the noisy latents (noisy, the release's) or the sampler's predicted "
                          "clean latents, then re-noise them (x0); or step the noisy latents through the UNet's "
                          "clean prediction (denoised: many small pulls, e.g. --strength 0.9 --iterations 40 "
                          "--lr 0.015 for 50 steps; more realistic than SDEdit at equal faithfulness on the demo "
                          "model, README); denoised-fast: the same pulls with the model's prediction held fixed "
                          "(no pass through the UNet, about half the cost)")
    gen.add_argument("--early-stop", type=float, default=d["guidance_early_stop"],
                     help="end each optimisation once the loss changes by less than this fraction per step (default 0: off)")
    gen.add_argument("--tiny-decoder", help="AutoencoderTiny folder or hub id for --guidance-decoder tiny "
                                            "(e.g. madebyollin/taesd; the demo model ships its own)")
    gen.add_argument("--opt-steps", type=int, default=d["opt_steps"],
                     help=f"gradop: optimisation steps (default {d['opt_steps']})")
    gen.add_argument("--opt-lr", type=float, default=d["opt_lr"],
                     help=f"gradop: Adam learning rate of those steps (default {d['opt_lr']})")
    gen.add_argument("--gamma", type=float, default=d["gamma"],
                     help=f"gradop: pull towards the text-only sample (default {d['gamma']:g})")
    gen.add_argument("--guidance-precision", choices=PRECISION_MODES, default=d["guidance_precision"],
                     help="the guidance decoder's precision: auto, fp32 (decoder in fp32), scaled (loss scaling, fp16), "
                          "bf16 (autocast: faster on CPUs with AMX, where auto picks it)")
    gen.add_argument("--guidance-batch", type=int, default=d["guidance_batch"],
                     help=f"images optimised at a time (memory; same result; default {d['guidance_batch']})")
    gen.add_argument("--guidance-checkpointing", action="store_true",
                     help="VAE gradient checkpointing while optimising (less memory, slower)")
    gen.add_argument("--num-images", type=int, default=d["num_images"], help=f"images per run (default {d['num_images']})")
    gen.add_argument("--height", type=int, help="output height, multiple of 8 (default: strokes or model size)")
    gen.add_argument("--width", type=int, help="output width, multiple of 8 (default: strokes or model size)")
    gen.add_argument("--background", type=Path,
                     help="photo (or earlier result) the strokes are painted over: only the painted area changes "
                          "(transparent pixels of RGBA strokes, white ones of RGB strokes, are unpainted)")
    gen.add_argument("--mask", type=Path, help="with --background: what to change (white = change), instead of the strokes")
    gen.add_argument("--reimagine", action="store_true",
                     help="with --background: redraw the whole image from the strokes over the photo (no edit)")
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
    parser.add_argument("--vae-slicing", action="store_true", help="decode several images one at a time (memory)")
    parser.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles (memory; faint seams)")
    parser.add_argument("--cpu-offload", action="store_true",
                        help="keep models in CPU memory, each moved to the GPU while it runs (small GPUs)")
    parser.add_argument("--compile-decoder", action="store_true",
                        help="torch.compile the guidance decoder (GPU: ~30%% faster GradOP+ after a one-time compile)")
    parser.add_argument("--compile-unet", action="store_true",
                        help="torch.compile the UNet, with CUDA graphs on a GPU (H100: 50 steps in 0.5 s instead of "
                             "1.5-2.5 s, after ~70 s of compiling; worth it for many images)")


def parse_region_flags(flags: list[str], spec_path: Path | None) -> dict:
    """--region "#hex=word" flags and a --regions JSON file -> {colour: word or {word, occurrence}}.
    The file is read by gradop.region_words.read_spec_file, the one spec parser; flags win over it."""
    from gradop.region_words import read_spec_file
    from gradop.regions import parse_color

    assignments: dict = dict(read_spec_file(spec_path)) if spec_path is not None else {}
    for flag in flags:
        colour, sep, word = flag.partition("=")
        if not sep or not colour.strip() or not word.strip():
            raise ValueError(f"--region '{flag}' must look like COLOUR=WORD, e.g. \"#3a7bd5=lake\"")
        parse_color(colour)
        assignments[colour.strip()] = word.strip()
    return assignments


@dataclass
class Plan:
    """A checked `generate` run: everything a user can get wrong is found before the model loads."""

    methods: tuple[str, ...]
    strokes: Image.Image | None
    options: dict
    files: dict[str, list[Path]]  # method -> where its images go
    grid: Path | None  # the --compare grid
    maps: Path | None  # --attention-maps


def plan_generation(args) -> Plan:
    from gradop.editing import painted_area
    from gradop.images import is_blank, load_image, to_rgb
    from gradop.options import KNOB_NAMES, SEED_LIMIT, validate_options

    methods = METHOD_ORDER if args.compare else (args.method,)
    guided = any(m != "text" for m in methods)
    if not args.prompt.strip():
        raise ValueError("--prompt is empty; describe the image you want")
    if guided and args.strokes is None and args.background is None:
        raise ValueError("--strokes is required for this method; pass a stroke painting or use --method text")
    if (args.mask is not None or args.reimagine) and args.background is None:
        raise ValueError("--mask and --reimagine need --background (the photo to edit)")
    if args.mask is not None and args.reimagine:
        raise ValueError("--mask marks what an edit changes; --reimagine redraws everything: choose one")
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed must be a whole number from 0 to 2**64 - 1 (got {args.seed})")
    options = dict(
        negative_prompt=args.negative_prompt, height=args.height, width=args.width, steps=args.steps,
        guidance_scale=args.guidance, eta=args.eta, seed=args.seed, num_images=args.num_images,
        strength=args.strength, iterations=args.iterations, grad_steps=args.grad_steps, lr=args.lr,
        painting=args.painting, opt_steps=args.opt_steps, opt_lr=args.opt_lr, gamma=args.gamma,
        guidance_decoder=args.guidance_decoder, guidance_early_stop=args.early_stop,
        guidance_latent=args.guidance_latent,
        guidance_precision=args.guidance_precision, guidance_batch=args.guidance_batch,
        guidance_checkpointing=args.guidance_checkpointing,
        region_strength=args.region_strength, append_missing_words=args.append_missing_words,
        attention_maps=args.attention_maps is not None,
    )
    for method in methods:  # each method's own checks (e.g. its schedule), before a slow model load
        validate_options(method, **{k: v for k, v in options.items() if k in KNOB_NAMES})
    files, grid, maps = plan_outputs(args, methods)
    strokes = load_image(args.strokes, what="stroke image") if args.strokes is not None else None
    background = load_image(args.background, what="background photo") if args.background is not None else None
    mask = load_image(args.mask, what="mask") if args.mask is not None else None
    edit = background is not None and not args.reimagine
    if background is not None and not guided and not edit:
        note("--background is not used by --method text when re-imagining; it is ignored")
        background = None
    if guided and background is None and is_blank(to_rgb(strokes)):
        raise ValueError(f"the stroke image '{args.strokes}' has nothing painted (only white or transparent "
                         "pixels); paint some strokes, add --background, or use --method text")
    if edit and mask is None and (strokes is None or not painted_area(strokes).any()):
        raise ValueError("nothing is painted, so an edit would return the background unchanged; paint over the part "
                         "to change, pass --mask, or --reimagine the whole image")
    regions = parse_region_flags(args.region, args.regions)
    if regions:
        check_region_words(regions, strokes, args.prompt, args.append_missing_words)
    options.update(background=background, regions=regions or None)
    if background is not None:
        options.update(edit=edit, mask=mask)
    return Plan(methods, strokes, options, files, grid, maps)


def check_region_words(assignments: dict, strokes, prompt: str, append_missing: bool) -> None:
    """Every colour names a painted region and every word is in the prompt (no model needed)."""
    from gradop.images import to_rgb
    from gradop.region_words import spec_from_colors, word_occurrences, word_span

    if strokes is None:
        raise ValueError("--region and --regions need --strokes: their colours are found in the stroke painting")
    for item in spec_from_colors(to_rgb(strokes), assignments):
        if not (append_missing and item.occurrence == 0 and word_occurrences(prompt, item.word) == 0):
            word_span(prompt, item.word, item.occurrence)


def plan_outputs(args, methods) -> tuple[dict[str, list[Path]], Path | None, Path | None]:
    """Every file the run will write, checked: .png names, no two outputs at one path, never an
    input, existing files only with --force, and folders that exist (or are created) and take a file."""
    from gradop.metadata import image_paths
    from gradop.outputs import check_outputs

    out = args.out.expanduser()
    maps = args.attention_maps.expanduser() if args.attention_maps is not None else None
    for flag, path in (("--out", out), ("--attention-maps", maps)):
        if path is not None and path.suffix.lower() != ".png":
            raise ValueError(f"{flag} '{path}' must end in .png (the parameters are stored as PNG text)")
    if args.compare:
        files = {m: image_paths(out.with_name(f"{out.stem}_{m.replace('+', '_plus')}.png"), args.num_images)
                 for m in methods}
        grid = out
    else:
        files, grid = {methods[0]: image_paths(out, args.num_images)}, None
    outputs = [("--out", path) for paths in files.values() for path in paths]
    outputs += [("--out", p) for p in (grid,) if p is not None] + [("--attention-maps", p) for p in (maps,) if p]
    inputs = [(flag, path) for flag, path in (("--strokes", args.strokes), ("--background", args.background),
                                               ("--mask", args.mask), ("--regions", args.regions)) if path is not None]
    check_outputs(outputs, inputs, args.force)
    return files, grid, maps


def generate(args) -> int:
    from tqdm import tqdm

    from gradop.grid import labelled_grid
    from gradop.models import small_model_size
    from gradop.outputs import Writer
    from gradop.pipeline import GradopPipeline
    from gradop.sharing import SharedPasses

    plan = plan_generation(args)  # fails here, before a slow model load, or not at all
    quiet_libraries()
    pipe = GradopPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                          allow_pickle=args.allow_pickle, config=args.config,
                                          tiny_decoder=args.tiny_decoder, vae_slicing=args.vae_slicing,
                                          vae_tiling=args.vae_tiling, cpu_offload=args.cpu_offload,
                                          compile_decoder=args.compile_decoder, compile_unet=args.compile_unet)
    options, strokes = plan.options, plan.strokes
    # With a background the pipeline fits the photo's shape to the model's size itself.
    if strokes is not None and options.get("background") is None and args.height is None and args.width is None:
        fitted = small_model_size(pipe.default_size, strokes.size)
        if fitted is not None and fitted != (strokes.height, strokes.width):
            options["height"], options["width"] = fitted
            note(f"'{args.model}' is a small model made for {pipe.default_size} px: generating "
                 f"{fitted[1]}x{fitted[0]} from the {strokes.width}x{strokes.height} strokes "
                 "(pass --height and --width to choose the size)")
    if options["seed"] is None:  # one seed for every method of a comparison, recorded in each PNG
        options["seed"] = secrets.randbelow(2**32)
    writer = Writer()
    results = {}
    shared = SharedPasses()  # the methods of --compare compute their common text-only steps once
    try:
        for method in plan.methods:
            with tqdm(desc=method, unit="step", leave=True) as bar:
                def advance(progress, bar=bar):
                    bar.total = progress.total
                    bar.update(progress.step - bar.n)

                result = pipe.generate(method, args.prompt, strokes, callback=advance, shared=shared, **options)
            results[method] = result
            for index, (image, path) in enumerate(zip(result.images, plan.files[method])):
                writer.write(image, path, result.image_params(index))  # saved as soon as it exists
            if plan.maps is not None:
                grids = [r.attention_maps for r in results.values()]
                maps = grids[0] if len(grids) == 1 else labelled_grid(grids, list(results), columns=1)
                writer.write(maps, plan.maps, {"attention_maps": list(results)}, final=method == plan.methods[-1])
        if plan.grid is not None:
            images, labels = ([strokes.convert("RGB")], ["strokes"]) if strokes is not None else ([], [])
            if options.get("background") is not None:  # the photo and the strokes over it, at the output size
                from gradop.editing import prepare_edit

                size = next(iter(results.values())).images[0].size
                painted = prepare_edit(strokes, options["background"], size, edit=False)
                images, labels = [painted.background, painted.composite], ["photo", "painted"]
            for method, result in results.items():
                images += result.images
                labels += [method] * len(result.images)
            writer.write(labelled_grid(images, labels), plan.grid,
                         {"compare": [result.params for result in results.values()]})
    except BaseException as error:
        error.gradop_saved = writer.saved  # main() names what is kept
        raise
    return 1 if writer.rescued else 0


def list_regions(args) -> int:
    from gradop.images import load_image
    from gradop.regions import find_regions

    if not 0 <= args.min_area < 1:
        raise ValueError(f"--min-area must be a fraction of the image in [0, 1) (got {args.min_area})")
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


# ----------------------------------------------------------------------------- messages

def note(text: str, kind: str = "note") -> None:
    from tqdm import tqdm

    tqdm.write(f"gradop: {kind}: {text}", file=sys.stderr)  # on its own line, above a running progress bar


def quiet_libraries() -> None:
    """diffusers' and transformers' loading bars and warnings are not the user's business."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    for library in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):  # their import-time warnings, too
        os.environ.setdefault(library, "error")
    args = build_parser().parse_args(argv)
    from gradop.quality.command import run_quality

    handlers = {"generate": generate, "regions": list_regions, "info": show_info, "bench": run_quality}
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        # torch.compile (--compile-unet) traces diffusers' cached version checks and says so each time.
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        return run_command(handlers[args.command], args, argv)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line like gradop's notes (not Python's two lines with a source path)."""
    note(first_line(message if isinstance(message, Warning) else category(message)), "warning")


def run_command(handler, args, argv: list[str] | None) -> int:
    try:
        return handler(args)
    except KeyboardInterrupt as error:
        saved = getattr(error, "gradop_saved", [])
        kept = f" (already saved: {', '.join(map(str, saved))})" if saved else ""
        print(f"gradop: cancelled{kept}", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure is one line; tracebacks go to the log
        code, line = explain(error, argv)
        saved = getattr(error, "gradop_saved", [])
        kept = f" (already saved: {', '.join(map(str, saved))})" if saved else ""
        print(f"gradop: {line}{kept}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
