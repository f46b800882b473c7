"""Labelled image grids (method comparisons, attention maps)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def labelled_grid(images: list[Image.Image], labels: list[str], columns: int | None = None,
                  cell: int | None = None) -> Image.Image:
    """Images side by side (wrapping after `columns`), each with its label above it.

    Small images are upscaled (nearest neighbour, so pixels stay honest) to `cell` pixels,
    by default at least 128, so labels stay readable.
    """
    if not images or len(images) != len(labels):
        raise ValueError("a grid needs one label per image and at least one image")
    columns = columns or len(images)
    cell = cell or max(128, max(max(image.size) for image in images))
    font = ImageFont.load_default()
    label_height = 16
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * (cell + label_height)), "white")
    draw = ImageDraw.Draw(grid)
    for index, (image, label) in enumerate(zip(images, labels)):
        x, y = (index % columns) * cell, (index // columns) * (cell + label_height)
        scale = cell / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        grid.paste(image.convert("RGB").resize(size, Image.Resampling.NEAREST), (x, y + label_height))
        draw.text((x + 3, y + 2), label[: max(4, cell // 7)], fill="black", font=font)
    return grid
