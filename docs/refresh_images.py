"""Copy the app's pictures into docs/ (run by hand when the README's pictures should change).

    python -m pytest tests/test_e2e_browser.py                                   # the scribble
    python bench/bench_app.py --quick --screenshot test-artifacts/app-demo.png   # the app on the demo model
    python docs/refresh_images.py

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


def main() -> int:
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
