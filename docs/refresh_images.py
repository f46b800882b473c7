"""Copy the app's pictures into docs/ (run by hand when the README's pictures should change).

    python -m pytest tests/test_e2e_browser.py                                   # the scribble
    python bench/bench_app.py --quick --screenshot test-artifacts/app-demo.png   # the app on the demo model
    python docs/refresh_images.py
    python docs/refresh_images.py --examples W E   # the README's held-out inputs: world painting W, edit E
    python docs/refresh_images.py --denoised build/quality-fast  # docs/compare_denoised.png from a benchmark run
    python docs/refresh_images.py --regions 1 5 0 4  # docs/regions.png: region words on held-out ambiguous paintings

`--examples` writes the inputs of the README's two comparison pictures from the quality
benchmark's held-out paintings of the demo model's world (docs/compare_strokes.png; and
docs/edit_photo.png with docs/edit_strokes.png) and prints their prompts for the README's
`gradop generate` commands, which make docs/compare.png and docs/edit.png.

Both write only to test-artifacts/ (tests never write tracked files). This script turns the
benchmark's finished page ("Compare all" on the embedded demo model, not the browser test's
random-weight model) into docs/app.png (scaled to 1100 px, 256 colours) and copies the scribble
that Chromium drew in the browser test to docs/scribble.png.
"""

import io
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def readme_screenshot(source: Path, target: Path, width: int = 1100) -> None:
    image = Image.open(source).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    target.write_bytes(buffer.getvalue())


def write_examples(world_index: int, edit_index: int) -> None:
    from gradop.quality.scenes import edit_painting, world_painting

    painting = world_painting(world_index)
    painting.image.save(ROOT / "docs" / "compare_strokes.png")
    print(f"docs/compare_strokes.png: {painting.name} (seed {painting.seed}): {painting.caption}")
    edit = edit_painting(edit_index)
    edit.background.save(ROOT / "docs" / "edit_photo.png")
    edit.image.save(ROOT / "docs" / "edit_strokes.png")
    print(f"docs/edit_photo.png, docs/edit_strokes.png: {edit.name} (seed {edit.seed}, colour {edit.colour}, "
          f"word {edit.meanings[0][1]}): {edit.caption}")


DENOISED_COLUMNS = {"strokes": "strokes", "sdedit_0.7": "SDEdit 0.7", "gradop+": "GradOP+ release",
                    "gradop+_denoised_it20_lr0.03": "GradOP+ denoised", "gradop+_fast_lr0.04": "denoised-fast",
                    "sdedit_0.9": "SDEdit 0.9",
                    "text2img": "text only"}


def write_denoised_comparison(run: Path) -> None:
    """docs/compare_denoised.png: the quality benchmark's saved outputs (the first seed of the first
    three world and app paintings, all it saves) of SDEdit 0.7, GradOP+ with the release's step
    and with the denoised and denoised-fast ones at about SDEdit 0.7's blurred L2, SDEdit 0.9 and
    text-only (`bash bench/run_quality.sh fast` or the full run saves them all)."""
    from gradop.grid import labelled_grid

    rows = [run / "images" / f"{kind}-{i:03d}" for kind in ("world", "app") for i in range(3)]
    images = [Image.open(row / f"{name}.png") for row in rows for name in DENOISED_COLUMNS]
    labels = [row.name if name == "strokes" else label
              for row in rows for name, label in DENOISED_COLUMNS.items()]
    labelled_grid(images, labels, columns=len(DENOISED_COLUMNS)).save(ROOT / "docs" / "compare_denoised.png")
    print("updated docs/compare_denoised.png")


def write_region_words(indices: list[int], strength: float = 0.5, seed: int = 0) -> None:
    """docs/regions.png: held-out ambiguous paintings of the quality benchmark (one colour, two
    possible classes, a caption naming both), text2img on the demo model without region words and
    with each word given to the colour at the default strength, the same seed throughout."""
    from gradop.grid import labelled_grid
    from gradop.pipeline import GradopPipeline
    from gradop.quality.scenes import ambiguous_painting

    pipe = GradopPipeline.from_pretrained("gradop-demo")
    images, labels = [], []
    for index in indices:
        painting = ambiguous_painting(index)
        images.append(painting.image)
        labels.append(painting.name)
        for word in [None] + [w for _, w in painting.meanings]:
            extra = {"regions": {painting.colour: word}, "region_strength": strength} if word else {}
            images.append(pipe.generate("text", painting.caption, painting.image, seed=seed, **extra).images[0])
            labels.append(f"{painting.colour}={word}" if word else "no region word")
        print(f"{painting.name}: {painting.caption}")
    labelled_grid(images, labels, columns=4).save(ROOT / "docs" / "regions.png")
    print("updated docs/regions.png")


def main() -> int:
    if sys.argv[1:2] == ["--examples"]:
        write_examples(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["--regions"]:
        write_region_words([int(i) for i in sys.argv[2:]])
        return 0
    if sys.argv[1:2] == ["--denoised"]:
        write_denoised_comparison(Path(sys.argv[2]))
        return 0
    page, scribble = ARTIFACTS / "app-demo.png", ARTIFACTS / "scribble.png"
    missing = [str(p) for p in (page, scribble) if not p.is_file()]
    if missing:
        print(f"missing {', '.join(missing)}: run the two commands in this script's docstring first", file=sys.stderr)
        return 2
    readme_screenshot(page, ROOT / "docs" / "app.png")
    shutil.copyfile(scribble, ROOT / "docs" / "scribble.png")
    print("updated docs/app.png and docs/scribble.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
