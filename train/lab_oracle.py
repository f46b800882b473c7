"""Where does a perfect photo of the painted scene land on faithfulness and realism?

Promise 1 (GradOP+ more realistic than SDEdit at equal faithfulness) is attainable in a lab only
if some photo is about as close to the strokes as SDEdit is. On the tuning scenes of
bench/eval_guidance_quality.py (even: the world's stroke renderer; odd: the app-style
renderer), this prints blurred L2 to the strokes (the benchmark's f) and the judge's realism of:

- the world's own photo of the scene;
- that photo's detail with the strokes' colours below sigma px (photo - blur(photo) + blur(strokes));
- world 3 only: the photo with every class's palette pulled all the way to its painted colour.

    .venv/bin/python train/lab_oracle.py --world 2 --judge pretrained_models/gradop-demo/judge2
    .venv/bin/python train/lab_oracle.py --world 3 --judge pretrained_models/gradop-demo/judge3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.images import pil_to_tensor  # noqa: E402
from gradop.painting import gaussian_blur, make_painting_fn  # noqa: E402
from gradop.quality.scenes import tuning_painting  # noqa: E402
from gradop.world import DEFAULT_WORLD, render_photo  # noqa: E402
from gradop.world.judge import JUDGES, load_judge  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, choices=(2, 3), default=DEFAULT_WORLD, help="default: the shipped model's")
    parser.add_argument("--judge", default=None, help="judge folder (default: the shipped judge of --world)")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[2, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.judge = args.judge or str(JUDGES[args.world])
    judge, paint = load_judge(args.judge), make_painting_fn("blur", 64, 64)
    rows: dict[str, list[tuple[float, float]]] = {}

    def score(name: str, image: torch.Tensor, strokes: torch.Tensor) -> None:
        l2 = float(((paint(image) - paint(strokes)) ** 2).mean())
        rows.setdefault(name, []).append((l2, float(judge.realism(image)[0])))

    for index in range(args.scenes):
        scene, painting = tuning_painting(index, args.world)
        strokes = pil_to_tensor(painting)
        photo = torch.from_numpy(render_photo(scene)).permute(2, 0, 1)[None]
        score("scene photo", photo, strokes)
        for sigma in args.sigmas:
            kernel = 2 * int(3 * sigma) + 1
            mixed = photo - gaussian_blur(photo, kernel, sigma) + gaussian_blur(strokes, kernel, sigma)
            score(f"photo detail + strokes' colours below sigma {sigma:g}", mixed.clamp(0, 1), strokes)
        if args.world == 3:
            full = scene | {"palette_pull": {name: 1.0 for name in scene["palette_pull"]}}
            score("photo with the palette pulled fully", torch.from_numpy(render_photo(full)).permute(2, 0, 1)[None],
                  strokes)
    print(f"{args.scenes} tuning scenes of world {args.world}, judge {args.judge}")
    print("| image | blurred L2 to the strokes | judge realism |\n|---|---|---|")
    for name, values in rows.items():
        l2, real = np.mean(values, axis=0)
        print(f"| {name} | {l2:.4f} | {real:.3f} |")


if __name__ == "__main__":
    main()
