"""The karyogram sheet: rows by class, p arm up, centromeres aligned, flags outlined, title band."""

import time

import numpy as np
import pytest
from PIL import Image

from karyohf.cytogenetics.classes import CHROMOSOMES
from karyohf.karyogram import TITLE_HEIGHT, orient, render_karyogram


def chromosome(length: int = 120, width: int = 16, waist_at: float = 0.3, top: int | None = None) -> Image.Image:
    """A paper-format crop (199x99 "L"): a dark banded rod with rounded tips and a narrow waist (the centromere)
    `waist_at` of its length from its top tip."""
    canvas = np.full((199, 99), 255, np.uint8)
    top = (199 - length) // 2 if top is None else top
    rows = np.arange(length)
    widths = width * (1 - 0.45 * np.exp(-(((rows / (length - 1) - waist_at) * length / 3.0) ** 2)))
    widths *= np.sqrt(np.minimum(1, np.minimum(rows + 1, length - rows) / (width / 2)))
    for r, w in zip(rows, widths):
        canvas[top + r, int(round(49.5 - w / 2)) : int(round(49.5 + w / 2))] = 80 + 60 * (r // 10 % 2)
    return Image.fromarray(canvas)


def waist_row(gray: np.ndarray) -> int:
    """Row of the narrowest point of the chromosome in `gray` (its tips excluded)."""
    widths = (gray < 200).sum(axis=1)
    rows = np.nonzero(widths)[0]
    first, last = rows.min(), rows.max()
    margin = int(0.15 * (last - first))
    return int(first + margin + np.argmin(widths[first + margin : last - margin + 1]))


def red(sheet: Image.Image) -> np.ndarray:
    rgb = np.asarray(sheet).astype(int)
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)


def first_row_blobs(sheet: Image.Image) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The grey of the sheet's first row (above its first black baseline) and the column spans of its chromosomes."""
    rgb = np.asarray(sheet)
    baseline = int(np.nonzero((rgb == 0).all(-1).sum(axis=1) >= 20)[0][0])
    neutral = (rgb[:baseline] == rgb[:baseline, :, :1]).all(-1)  # not the red flags nor the blue guide
    gray = np.where(neutral, rgb[:baseline, :, 1], 255)
    columns = (gray < 200).any(axis=0)
    edges = np.diff(np.concatenate([[0], columns.astype(int), [0]]))
    return gray, list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def test_title_adds_a_band_with_text():
    crops = [chromosome(), chromosome(length=90)]
    plain = render_karyogram(crops, ["1", "2"])
    titled = render_karyogram(crops, ["1", "2"], title="cell 170512.jpg · 2 chromosomes · 46,XY")
    assert titled.mode == plain.mode == "RGB"
    assert titled.height == plain.height + TITLE_HEIGHT
    band = np.asarray(titled)[:TITLE_HEIGHT]
    assert (band < 100).all(-1).any()  # the title is written
    assert (np.asarray(plain)[0, 0] == 255).all()  # white background


def test_a_flagged_chromosome_is_outlined_in_red_and_the_others_are_not():
    crops = [chromosome(waist_at=0.27), chromosome(length=100, waist_at=0.39)]
    assert not red(render_karyogram(crops, ["5", "2"])).any()
    sheet = render_karyogram(crops, ["5", "2"], flags={0: "del(5q) 0.93"})
    gray, blobs = first_row_blobs(sheet)
    reds = red(sheet)
    # Row 1 holds "2" (second cell) left of "5" (fifth): the flagged chromosome is the right-hand blob.
    (left2, right2), (left5, right5) = blobs[0], blobs[-1]
    rows5 = np.nonzero((gray[:, left5:right5] < 200).any(axis=1))[0]
    ring = reds[rows5.min() - 4 : rows5.max() + 5, left5 - 4 : right5 + 4]
    assert ring[:, :4].any() and ring[:, -4:].any() and ring[:4].any()  # outlined on its left, right and top
    assert reds[rows5.max() + 4 :, left5 - 40 : right5 + 40].sum() > 10  # its call written in red under it
    rows2 = np.nonzero((gray[:, left2:right2] < 200).any(axis=1))[0]
    assert not reds[rows2.min() - 4 : rows2.max() + 5, left2 - 4 : right2 + 4].any()


def test_an_upside_down_chromosome_is_flipped_p_arm_up():
    upside_down = chromosome(length=130, waist_at=0.73)  # chr5's short arm at the bottom
    image, centromere = orient(upside_down, "5")
    gray = np.asarray(image)
    assert waist_row(gray) < 0.4 * gray.shape[0]
    assert abs(centromere - waist_row(gray)) <= 2
    upright = np.asarray(upside_down)
    rows, cols = np.nonzero(upright < 250)
    assert (gray[::-1] == upright[rows.min() - 2 : rows.max() + 3, cols.min() - 2 : cols.max() + 3]).all()  # only flipped

    p_up, _ = orient(chromosome(length=130, waist_at=0.27), "5")
    assert waist_row(np.asarray(p_up)) < 0.4 * p_up.height  # already p arm up: left as it is
    metacentric, _ = orient(chromosome(length=130, waist_at=0.6), "1")  # the ideogram cannot tell: as it is
    assert waist_row(np.asarray(metacentric)) > 0.5 * metacentric.height


def test_centromeres_in_a_row_share_one_line():
    crops = [chromosome(length=150, waist_at=0.27, top=10),  # "4", p arm up, high on its canvas
             chromosome(length=100, waist_at=0.72, top=90)]  # "5", upside down and low on its canvas
    sheet = render_karyogram(crops, ["4", "5"])
    gray, blobs = first_row_blobs(sheet)
    assert len(blobs) == 2
    waists = [waist_row(gray[:, left:right]) for left, right in blobs]
    assert abs(waists[0] - waists[1]) <= 2
    rgb = np.asarray(sheet).astype(int)
    guide = (rgb[:, :, 2] > rgb[:, :, 0] + 20).sum(axis=1)  # the faint blue centromere line
    assert abs(int(np.argmax(guide)) - waists[0]) <= 2
    # the upside-down "5" came out with its short arm on top
    rows = np.nonzero((gray[:, blobs[1][0] : blobs[1][1]] < 200).any(axis=1))[0]
    assert waists[1] - rows.min() < 0.4 * (rows.max() - rows.min())


def test_crops_the_geometry_cannot_read_still_render():
    blank = Image.new("L", (99, 199), 255)
    dot = Image.new("L", (99, 199), 255)
    dot.putpixel((50, 100), 0)
    image, centromere = orient(blank, "9")
    assert centromere == pytest.approx((image.height - 1) / 2)
    sheet = render_karyogram([blank, dot, chromosome()], ["9", "9", "Y"])
    assert sheet.mode == "RGB"


def test_bad_inputs_raise():
    crops = [chromosome(), chromosome(length=80)]
    with pytest.raises(ValueError, match="2 crops but 1 labels"):
        render_karyogram(crops, ["1"])
    with pytest.raises(ValueError, match="labels must be among"):
        render_karyogram(crops, ["1", "23"])
    for index in (2, -1):
        with pytest.raises(ValueError, match=f"flag index {index}"):
            render_karyogram(crops, ["1", "2"], flags={index: "del(5q) 0.93"})


def test_a_whole_cell_renders_quickly():
    rng = np.random.default_rng(0)
    labels = [name for name in CHROMOSOMES[:22] for _ in range(2)] + ["X", "Y"]
    crops = [chromosome(length=int(170 - 5.5 * k), waist_at=float(rng.uniform(0.25, 0.75)))
             for k in range(22) for _ in range(2)] + [chromosome(length=110), chromosome(length=40)]
    start = time.perf_counter()
    sheet = render_karyogram(crops, labels, scores=rng.random(len(crops)), flags={8: "del(5q) 0.93"},
                             title="46 chromosomes · 46,XY")
    assert time.perf_counter() - start < 5.0
    assert sheet.width > 300 and sheet.height > 300
