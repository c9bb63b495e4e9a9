"""Karyogram: a cell's chromosome crops laid out by identity as cytogeneticists print them.

Rows 1-5 / 6-12 / 13-18 / 19-22, X, Y; homologs side by side above their class number, p arm up,
and within each row the centromeres on one faint guide line. Each chromosome is shown as its crop
is, only trimmed and, when upside down, flipped: the geometry decides the flip and finds the
centromere but never resamples what is displayed. Flagged chromosomes (e.g. an aberration head's
call) are outlined in red with the call written under them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .cytogenetics.classes import CHROMOSOMES, normalize_chromosome
from .geometry import OVERSAMPLE, Strip, estimate_centromere, p_arm_up
from .images import as_gray_uint8

# The usual layout of a printed karyogram (Denver groups kept together).
ROWS = (("1", "2", "3", "4", "5"), ("6", "7", "8", "9", "10", "11", "12"), ("13", "14", "15", "16", "17", "18"),
        ("19", "20", "21", "22", "X", "Y"))
LABEL_HEIGHT = 16
TITLE_HEIGHT = 24
INK = 250  # grey levels below this are chromosome (crops have a white background)
GUIDE = (200, 214, 240)
FLAG = (210, 20, 20)
LABEL_SIZE, FLAG_SIZE, TITLE_SIZE = 11, 9, 13


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size)


def _trim(gray: np.ndarray) -> np.ndarray:
    """Cut a white-background crop down to its chromosome, keeping a 2-pixel margin."""
    rows, cols = np.nonzero(gray < INK)
    if rows.size == 0:
        return gray
    return gray[max(rows.min() - 2, 0) : rows.max() + 3, max(cols.min() - 2, 0) : cols.max() + 3]


def _upright_strip(gray: np.ndarray) -> Strip:
    """The crop read as a straight Strip (each row across the chromosome, at the strip's OVERSAMPLE scale).

    Crops stand with their long axis vertical, so the row-wise width profile stands in for the
    medial-axis one of `straighten` at a twentieth of its cost (which would otherwise be most of a
    karyogram's): on 800 karyogram crops, arranged p arm up, it called 5 upside down where
    `straighten` called 6, and its centromeres lay a median half pixel from straighten's.
    """
    # Filled so a pale band inside the outline does not read as a constriction.
    filled = ndimage.binary_fill_holes(gray < INK)
    ink, mask = (np.repeat(np.repeat(a, OVERSAMPLE, axis=0), OVERSAMPLE, axis=1) for a in (255.0 - gray, filled))
    return Strip(ink, mask)


def orient(crop, chromosome: int | str) -> tuple[Image.Image, float]:
    """The trimmed crop with its p arm up, and the row of its centromere in it.

    Flipped vertically when the width profile says the chromosome is upside down (`p_arm_up`
    False), left as it is when that cannot tell. The centromere row is the constriction
    (`estimate_centromere`), else the class's p/q ratio when the orientation is known, else the
    middle. Any failure of the geometry falls back to unflipped and the middle; only an unknown
    `chromosome` raises.
    """
    name = normalize_chromosome(chromosome)
    gray = _trim(as_gray_uint8(crop))
    row = (gray.shape[0] - 1) / 2
    try:
        up = p_arm_up(_upright_strip(gray), name)
        oriented = gray[::-1] if up is False else gray
        centromere = estimate_centromere(_upright_strip(oriented), name)
        # Strip row -> crop row: pixel k covers strip rows k*OVERSAMPLE .. k*OVERSAMPLE + OVERSAMPLE - 1.
        found = (centromere.row - (OVERSAMPLE - 1) / 2) / OVERSAMPLE
        gray = oriented
        # Without a constriction the p/q ratio is only meaningful where the orientation is known.
        if (centromere.constricted or up is not None) and 0 <= found < gray.shape[0]:
            row = found
    except Exception:  # one crop's odd shape must not cost the whole karyogram
        pass
    return Image.fromarray(np.ascontiguousarray(gray)), float(row)


@dataclass(frozen=True)
class _Placed:
    image: Image.Image
    centromere: int  # row in `image` that goes on the row's guide line
    call: tuple[str, ...]  # the flag's lines; empty when not flagged

    @property
    def width(self) -> int:
        """Width of its slot: the chromosome, or its call where that is wider."""
        text = max((_font(FLAG_SIZE).getlength(line) for line in self.call), default=0)
        return max(self.image.width + (4 if self.call else 0), int(np.ceil(text)))


def render_karyogram(crops, labels, scores=None, gap: int = 6, flags: dict[int, str] | None = None,
                     title: str | None = None) -> Image.Image:
    """Lay crops out as a printed karyogram, each above its class label ("1".."22", "X", "Y").

    Args:
        crops: one chromosome each, paper format (PIL images or arrays, dark on white, long axis vertical).
        labels: the class of each crop.
        scores: optional per-crop scores (e.g. identification confidence); within a class, highest first.
        gap: spacing unit in pixels.
        flags: crop index -> a short call, e.g. {12: "del(5q) 0.93"}: that chromosome is outlined in red
            and the call written under it (", " starts a new line).
        title: a line across the top, e.g. "cell 170512.jpg · 46 chromosomes · 46,XY".

    Returns:
        An RGB image: white background, chromosomes in their own grey, p arm up (see `orient`),
        each row's centromeres on its faint guide line.
    """
    if len(crops) != len(labels):
        raise ValueError(f"{len(crops)} crops but {len(labels)} labels")
    unknown = sorted({str(label) for label in labels} - set(CHROMOSOMES))
    if unknown:
        raise ValueError(f"labels must be among {CHROMOSOMES}, got {unknown}")
    if scores is not None and len(scores) != len(crops):
        raise ValueError(f"{len(crops)} crops but {len(scores)} scores")
    flags = dict(flags or {})
    for index in flags:
        if not isinstance(index, Integral) or not 0 <= index < len(crops):
            raise ValueError(f"flag index {index!r} is out of range for {len(crops)} crops")
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable") if scores is not None else range(len(crops))
    by_class: dict[str, list[_Placed]] = {name: [] for name in CHROMOSOMES}
    for index in order:
        label = str(labels[index])
        image, centromere = orient(crops[index], label)
        call = tuple(str(flags[index]).split(", ")) if index in flags else ()
        by_class[label].append(_Placed(image, int(round(centromere)), call))

    def cell_width(name: str) -> int:
        members = by_class[name]
        return max(sum(p.width for p in members) + gap * max(len(members) - 1, 0), 24)

    flag_line = FLAG_SIZE + 2
    layouts = []  # per row: cell widths, height above the guide line, below it, and of the calls
    for row in ROWS:
        members = [p for name in row for p in by_class[name]]
        above = max((p.centromere for p in members), default=0)
        below = max((p.image.height - p.centromere for p in members), default=0)
        lines = max((len(p.call) for p in members), default=0)
        calls = lines * flag_line + 3 if lines else 0
        layouts.append(([cell_width(name) for name in row], above, below, calls))
    width = max(sum(widths) + gap * 3 * (len(widths) + 1) for widths, *_ in layouts)
    if title:
        width = max(width, int(np.ceil(_font(TITLE_SIZE).getlength(title))) + gap * 6)
    heights = [gap * 2 + above + below + calls + LABEL_HEIGHT for _, above, below, calls in layouts]
    top = TITLE_HEIGHT if title else 0
    sheet = Image.new("RGB", (width, top + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap * 3, (TITLE_HEIGHT - TITLE_SIZE) // 2), title, fill="black", font=_font(TITLE_SIZE))
    for row, (widths, above, below, calls), row_height in zip(ROWS, layouts, heights):
        guide = top + gap + above
        baseline = guide + below + calls + gap
        if any(by_class[name] for name in row):
            draw.line([(gap * 3, guide), (gap * 3 + sum(widths) + gap * 3 * (len(widths) - 1), guide)], fill=GUIDE)
        left = gap * 3
        for name, cell in zip(row, widths):
            x = left
            for placed in by_class[name]:
                image, y = placed.image, guide - placed.centromere
                px = x + (placed.width - image.width) // 2
                # Pasted through its own ink so the guide line runs on behind it.
                sheet.paste(image.convert("RGB"), (px, y), image.point(lambda v: 255 if v < INK else 0))
                if placed.call:
                    draw.rectangle([px - 2, y - 2, px + image.width + 1, y + image.height + 1], outline=FLAG)
                    font = _font(FLAG_SIZE)
                    for k, line in enumerate(placed.call):
                        text_x = x + (placed.width - font.getlength(line)) / 2
                        draw.text((text_x, y + image.height + 3 + k * flag_line), line, fill=FLAG, font=font)
                x += placed.width + gap
            draw.line([(left, baseline + 1), (left + cell, baseline + 1)], fill="black")
            label_x = left + (cell - _font(LABEL_SIZE).getlength(name)) / 2
            draw.text((label_x, baseline + 3), name, fill="black", font=_font(LABEL_SIZE))
            left += cell + gap * 3
        top += row_height
    return sheet
