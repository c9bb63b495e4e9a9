"""Synthetic G-banded chromosomes for tests that must not depend on the real data."""

import numpy as np
from PIL import Image, ImageDraw


def banded_rod(length: int = 60, width: int = 12, bands: int = 6) -> Image.Image:
    """An upright dark rod with alternating dark and pale bands on white ("L")."""
    rod = Image.new("L", (width + 8, length + 8), 255)
    draw = ImageDraw.Draw(rod)
    step = length / bands
    for k in range(bands):
        shade = 40 if k % 2 == 0 else 140
        draw.rectangle([4, 4 + k * step, 4 + width - 1, 4 + (k + 1) * step - 1], fill=shade)
    return rod


def metaphase_with(rods, size=(240, 200), background: int = 220):
    """Paste (rod, (x, y), angle) onto a gray field; returns the image and each rod's box (xyxy)."""
    field = Image.new("L", size, background)
    boxes = []
    for rod, (x, y), angle in rods:
        turned = rod.rotate(angle, expand=True, fillcolor=255, resample=Image.BILINEAR)
        ink = np.asarray(turned) < 200
        field.paste(turned, (x, y), Image.fromarray((ink * 255).astype(np.uint8)))
        rows, cols = np.nonzero(ink)
        boxes.append((x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1))
    return field, boxes
