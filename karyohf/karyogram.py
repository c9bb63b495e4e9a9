"""Karyogram: a cell's chromosome crops laid out by identity in the conventional rows."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .cytogenetics.classes import CHROMOSOMES

# The usual layout of a printed karyogram (Denver groups kept together).
ROWS = (("1", "2", "3", "4", "5"), ("6", "7", "8", "9", "10", "11", "12"), ("13", "14", "15", "16", "17", "18"),
        ("19", "20", "21", "22", "X", "Y"))
LABEL_HEIGHT = 16


def _trim(crop: Image.Image) -> Image.Image:
    """Cut a white-background crop down to its chromosome, keeping a 2-pixel margin."""
    array = np.asarray(crop.convert("L"))
    rows, cols = np.nonzero(array < 250)
    if rows.size == 0:
        return crop.convert("L")
    return Image.fromarray(array[max(rows.min() - 2, 0) : rows.max() + 3, max(cols.min() - 2, 0) : cols.max() + 3])


def render_karyogram(crops, labels, scores=None, gap: int = 6) -> Image.Image:
    """Arrange crops (paper-format PIL images) under their class labels ("1".."22", "X", "Y").

    Within a class, crops are sorted by `scores` (e.g. identification confidence), highest first.
    """
    if len(crops) != len(labels):
        raise ValueError(f"{len(crops)} crops but {len(labels)} labels")
    unknown = sorted({str(label) for label in labels} - set(CHROMOSOMES))
    if unknown:
        raise ValueError(f"labels must be among {CHROMOSOMES}, got {unknown}")
    order = np.argsort(-np.asarray(scores, dtype=float)) if scores is not None else np.arange(len(crops))
    by_class: dict[str, list[Image.Image]] = {name: [] for name in CHROMOSOMES}
    for index in order:
        by_class[str(labels[index])].append(_trim(crops[index]))

    def cell(name: str) -> tuple[int, int]:
        members = by_class[name]
        width = sum(c.width for c in members) + gap * max(len(members) - 1, 0)
        return max(width, 24), max((c.height for c in members), default=0)

    row_sizes = [[cell(name) for name in row] for row in ROWS]
    width = max(sum(w for w, _ in sizes) + gap * 3 * (len(sizes) + 1) for sizes in row_sizes)
    heights = [max(h for _, h in sizes) + LABEL_HEIGHT + gap * 2 for sizes in row_sizes]
    sheet = Image.new("L", (width, sum(heights)), 255)
    draw = ImageDraw.Draw(sheet)
    top = 0
    for row, sizes, row_height in zip(ROWS, row_sizes, heights):
        left = gap * 3
        baseline = top + row_height - LABEL_HEIGHT
        for name, (cell_width, _) in zip(row, sizes):
            x = left
            for crop in by_class[name]:
                sheet.paste(crop, (x, baseline - crop.height))  # chromosomes stand on a common line
                x += crop.width + gap
            draw.line([(left, baseline + 1), (left + cell_width, baseline + 1)], fill=0)
            draw.text((left + cell_width // 2 - 4, baseline + 3), name, fill=0)
            left += cell_width + gap * 3
        top += row_height
    return sheet
