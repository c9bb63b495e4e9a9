"""Aberration synthesis on rods drawn from the ideogram itself, where the right answer is known.

A rod's rows follow the hg38 bands of its chromosome (gneg pale ... gpos100 dark) at a fixed
number of pixels per base pair, with a narrowing at the centromere, so a derivative's expected
length and band pattern follow from the cytoband table alone.
"""

import io

import numpy as np
import pytest
from PIL import Image

from karyohf.aberrations import label_names
from karyohf.crops import CANVAS_SIZE, extract_chromosome
from karyohf.cytogenetics import (
    band_at,
    breakpoint_fraction,
    centromere_fraction,
    chromosome_length,
    get_aberration,
    stain_intensity,
)
from karyohf.geometry import OVERSAMPLE, chromosome_mask, estimate_centromere, medial_axis, p_arm_up, straighten
from karyohf.synthesis import aberration_dataset, resample_normal, synthesize

PX_PER_MB = 0.8  # chromosome 5 (181 Mb) is 145 px long, 22 (51 Mb) 41 px


def ideogram_rod(chrom, width=16.0, constriction_at="hg38", depth=0.4, ink_gain=1.0, bend=0.0, px_per_mb=PX_PER_MB):
    """An upright chromosome drawn from its bands; `bend` bows its middle sideways by that many pixels."""
    length = int(round(chromosome_length(chrom) / 1e6 * px_per_mb))
    centre_at = centromere_fraction(chrom) if constriction_at == "hg38" else constriction_at
    margin = int(abs(bend)) + int(width) + 6
    rows, cols = np.mgrid[0 : length + 12, 0 : 2 * margin]
    y = rows - 6 + 0.5
    f = np.clip(y / length, 0, 1)
    darkness = np.array([stain_intensity(band_at(chrom, min(v, 1.0)).stain) for v in f[:, 0]])[:, None]
    half = width / 2 * (1 - depth * np.exp(-(((f - centre_at) / 0.03) ** 2)))
    # Rounded telomeres: the half-width shrinks like a half-disc over the last half-width.
    to_end = np.minimum(y, length - y)
    half = np.where(to_end < width / 2, np.sqrt(np.clip(to_end * (width - to_end), 0, None)), half)
    half = np.where((y < 0) | (y > length), 0, half)
    middle = margin + bend * np.sin(np.pi * f)
    coverage = np.clip(half - np.abs(cols + 0.5 - middle) + 0.5, 0, 1)
    ink = coverage * ink_gain * (70 + 160 * darkness)
    return Image.fromarray((255 - ink).round().astype(np.uint8))


def ink_length(image) -> float:
    """Arc length between the tips, pixels."""
    strip, _ = straighten(image)
    first, last = strip.extent
    return (last - first) / OVERSAMPLE


def band_profile(image, samples=200) -> np.ndarray:
    """Mean ink per row of the straightened chromosome, tip to tip, resampled to `samples` points."""
    strip, _ = straighten(image)
    first, last = strip.extent
    ink = (strip.ink * strip.mask).sum(axis=1) / np.maximum(strip.mask.sum(axis=1), 1)
    return np.interp(np.linspace(first, last, samples), np.arange(len(ink)), ink)


def piece(profile: np.ndarray, start: float, end: float, samples=60) -> np.ndarray:
    """The profile between two fractions of its length (reversed when start > end)."""
    positions = np.linspace(start, end, samples) * (len(profile) - 1)
    return np.interp(positions, np.arange(len(profile)), profile)


def correlation(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# --- geometry -------------------------------------------------------------------------------


def test_medial_axis_length_of_straight_and_bent_rods():
    straight = ideogram_rod("5")
    assert ink_length(straight) == pytest.approx(145, abs=2)
    bent = ideogram_rod("5", bend=14)
    # Arc length of the drawn centre line x = 14 sin(pi y / L).
    y = np.linspace(0, 145, 2000)
    arc = np.sum(np.hypot(np.diff(y), np.diff(14 * np.sin(np.pi * y / 145))))
    assert medial_axis(chromosome_mask(bent)).length == pytest.approx(arc, rel=0.04)
    assert ink_length(bent) == pytest.approx(arc, rel=0.03)


def test_centromere_estimate_finds_the_drawn_constriction():
    expected = centromere_fraction("5")
    found = estimate_centromere(straighten(ideogram_rod("5"))[0], "5")
    assert found.constricted and found.fraction == pytest.approx(expected, abs=0.03)
    shifted = estimate_centromere(straighten(ideogram_rod("5", constriction_at=expected + 0.07))[0], "5")
    assert shifted.constricted and shifted.fraction == pytest.approx(expected + 0.07, abs=0.03)
    # No constriction to see: fall back to the hg38 position.
    plain = estimate_centromere(straighten(ideogram_rod("5", depth=0.0))[0], "5")
    assert not plain.constricted and plain.fraction == expected


def test_orientation_check_against_the_ideogram():
    rod = ideogram_rod("9")
    assert p_arm_up(straighten(rod)[0], "9") is True
    assert p_arm_up(straighten(rod.rotate(180))[0], "9") is False
    assert p_arm_up(straighten(ideogram_rod("1"))[0], "1") is None  # metacentric: cannot tell


def test_resampling_without_rearrangement_keeps_the_chromosome():
    rod = ideogram_rod("5", bend=10)
    original = 255.0 - np.asarray(extract_chromosome(rod, (0, 0, rod.width, rod.height)), dtype=float)
    resampled = 255.0 - np.asarray(resample_normal(rod, "5"), dtype=float)
    assert correlation(original.ravel(), resampled.ravel()) > 0.9


# --- synthesis ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["del(5)(q13q33)", "del(5)(q14q34)", "del(5)(q31q33)"])
def test_deletion_removes_the_right_stretch(form):
    rod = ideogram_rod("5", bend=8)
    result = synthesize(rod, "del(5q)", rng=np.random.default_rng(1), form=form)
    (_, start), (_, end) = result.breakpoints
    assert result.iscn == form and result.derivative == "del(5)"
    assert ink_length(result.image) / ink_length(rod) == pytest.approx(1 - (end - start), abs=0.05)
    # What is left reads 5pter -> 5q13 then 5q33 -> 5qter.
    before, after = band_profile(rod), band_profile(result.image)
    kept_p_side = int(round(len(after) * start / (start + 1 - end)))
    expected = np.concatenate([piece(before, 0, start, kept_p_side), piece(before, end, 1, len(after) - kept_p_side)])
    assert correlation(after, expected) > 0.8


def test_translocation_derivatives_have_the_band_arithmetic_lengths():
    nine, twenty_two = ideogram_rod("9", width=18), ideogram_rod("22", width=14)
    der9 = synthesize(nine, "t(9;22)", chromosome=9, partner_image=twenty_two, rng=3)
    der22 = synthesize(twenty_two, "t(9;22)", chromosome=22, partner_image=nine, rng=3)
    assert (der9.derivative, der22.derivative) == ("der(9)", "der(22)")
    assert der9.iscn == "der(9)t(9;22)(q34;q11.2)" and der22.iscn == "der(22)t(9;22)(q34;q11.2)"
    assert der9.breakpoints == der22.breakpoints  # one event, two products
    derivatives = {d.chromosome: d for d in get_aberration("t(9;22)").derivatives(np.random.default_rng(3))}
    ratio9 = ink_length(der9.image) / ink_length(nine)
    ratio22 = ink_length(der22.image) / ink_length(twenty_two)
    assert ratio9 > 1 and ratio22 < 1
    assert ratio9 == pytest.approx(derivatives["9"].length_relative_to(9), rel=0.08)
    assert ratio22 == pytest.approx(derivatives["22"].length_relative_to(22), rel=0.08)


def test_seam_shows_no_step_in_width_or_ink():
    # The partner is thinner and paler than the source; the join must not show it.
    nine, twenty_two = ideogram_rod("9", width=18), ideogram_rod("22", width=12, ink_gain=0.7)
    result = synthesize(nine, "t(9;22)", chromosome=9, partner_image=twenty_two)
    strip, _ = straighten(result.image)
    first, last = strip.extent
    (_, break9), (_, break22) = result.breakpoints
    kept, added = break9 * chromosome_length(9), (1 - break22) * chromosome_length(22)
    seam = first + (last - first) * kept / (kept + added)
    near = slice(int(seam - 6 * OVERSAMPLE), int(seam + 6 * OVERSAMPLE))
    widths = strip.mask.sum(axis=1) / OVERSAMPLE
    assert np.abs(np.diff(widths[near][::OVERSAMPLE])).max() <= 1.5
    assert widths[near].min() >= 0.85 * 18
    # Ink: the incoming 22q comes out about as dark as the 9 (drawn with the same gain), and the
    # rows across the seam stay within the source's own band levels: no pale gap, no dark line.
    source_strip, _ = straighten(nine)
    source_ink = source_strip.ink[source_strip.mask]
    added_rows = slice(int(seam + 3 * OVERSAMPLE), last - 2 * OVERSAMPLE)
    assert np.median(strip.ink[added_rows][strip.mask[added_rows]]) >= 0.85 * np.median(source_ink)
    source_profile = band_profile(nine)[10:-10]
    rows_ink = (strip.ink * strip.mask).sum(axis=1) / np.maximum(strip.mask.sum(axis=1), 1)
    across = rows_ink[int(seam - 2 * OVERSAMPLE) : int(seam + 2 * OVERSAMPLE) + 1]
    assert 0.9 * source_profile.min() <= across.min() and across.max() <= 1.1 * source_profile.max()


@pytest.mark.parametrize("key,chrom", [("inv(3)", "3"), ("inv(16)", "16")])
def test_inversion_keeps_length_and_reverses_the_segment(key, chrom):
    rod = ideogram_rod(chrom)
    result = synthesize(rod, key, rng=5)
    (_, start), (_, end) = result.breakpoints
    assert ink_length(result.image) / ink_length(rod) == pytest.approx(1.0, abs=0.03)
    before, after = band_profile(rod), band_profile(result.image)
    inside = piece(after, start + 0.02, end - 0.02)
    reversed_corr = correlation(inside, piece(before, end - 0.02, start + 0.02))
    assert reversed_corr > 0.8
    assert reversed_corr > correlation(inside, piece(before, start + 0.02, end - 0.02)) + 0.3


def test_output_is_a_paper_format_crop():
    result = synthesize(ideogram_rod("5"), "del(5q)", rng=0)
    assert result.image.mode == "L" and result.image.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
    pixels = np.asarray(result.image)
    assert pixels[0].min() == 255 and pixels[-1].min() == 255 and pixels.min() < 100


def test_rng_reproducibility_and_jitter():
    rod = ideogram_rod("5")
    first, again = synthesize(rod, "del(5q)", rng=7), synthesize(rod, "del(5q)", rng=np.random.default_rng(7))
    assert first.breakpoints == again.breakpoints and first.image.tobytes() == again.image.tobytes()
    drawn = {synthesize(rod, "del(5q)", rng=seed).breakpoints for seed in range(6)}
    assert len(drawn) > 1
    # No rng: the main form, breakpoints at the band midpoints.
    plain = synthesize(rod, "del(5q)")
    assert plain.iscn == "del(5)(q13q33)"
    midpoints = [breakpoint_fraction(5, "q13"), breakpoint_fraction(5, "q33")]
    assert [f for _, f in plain.breakpoints] == pytest.approx(midpoints, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"aberration": "t(9;22)", "chromosome": 5}, "involves chromosome"),
        ({"aberration": "del(5q)", "chromosome": 9}, "involves chromosome"),
        ({"aberration": "t(9;22)"}, "pass chromosome="),
        ({"aberration": "t(9;22)", "chromosome": 9}, "needs partner_image"),
        ({"aberration": "del(5q)", "partner_image": "rod"}, "takes no partner_image"),
        ({"aberration": "del(7q)"}, "unknown aberration"),
        ({"aberration": "del(5q)", "form": "del(5)(q11q12)"}, "has no form"),
    ],
)
def test_wrong_chromosome_or_aberration_is_refused_clearly(kwargs, message):
    rod = ideogram_rod("5")
    if kwargs.get("partner_image") == "rod":
        kwargs["partner_image"] = rod
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        synthesize(rod, **kwargs)


def test_dataset_shares_out_copies_and_labels_them():
    import datasets

    rods = {c: ideogram_rod(c, width=w) for c, w in (("9", 18), ("22", 14))}
    rows = {"image": [], "chromosome": [], "cell_id": [], "case_id": []}
    for cell in range(3):
        for chrom in ("9", "9", "22", "22"):
            rows["image"].append(rods[chrom])
            rows["chromosome"].append(8 if chrom == "9" else 21)
            rows["cell_id"].append(f"c{cell}")
            rows["case_id"].append(f"k{cell // 2}")
    crops = datasets.Dataset.from_dict(rows, features=datasets.Features({
        "image": datasets.Image(), "chromosome": datasets.Value("int64"),
        "cell_id": datasets.Value("string"), "case_id": datasets.Value("string"),
    }))
    dataset = aberration_dataset(22, "t(9;22)", crops=crops, seed=0)
    assert dataset.features["label"].names == label_names("t(9;22)", 22) == ["normal", "der(22)t(9;22)"]
    labels = dataset["label"]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]  # one normal and one aberrant 22 per cell
    aberrant = [row for row in dataset if row["label"] == 1]
    assert all(row["iscn"] == "der(22)t(9;22)(q34;q11.2)" for row in aberrant)
    assert all(row["partner_cell_id"] == row["cell_id"] for row in aberrant)  # partner from the same cell
    assert {row["source"] for row in dataset if row["label"] == 0} <= {"real", "resampled"}


# --- real chromosomes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pairs(real_data_root):
    """A few cells' chromosomes 5, 9 and 22 from the karyogram crops (read straight from parquet)."""
    import pyarrow.parquet as pq

    from karyohf.data import KARYOGRAM_CROPS

    table = pq.read_table(real_data_root / KARYOGRAM_CROPS, filters=[("chromosome", "in", [4, 8, 21])])
    table = table.slice(0, 400).to_pydict()
    cells: dict[str, dict[int, Image.Image]] = {}
    for image, chromosome, cell in zip(table["image"], table["chromosome"], table["cell_id"]):
        cells.setdefault(cell, {})[chromosome] = Image.open(io.BytesIO(image["bytes"])).convert("L")
    complete = [found for found in cells.values() if len(found) == 3]
    if len(complete) < 4:
        pytest.skip("too few cells with chromosomes 5, 9 and 22 in the first rows")
    return complete[:6]


def test_real_chromosomes_give_derivatives_of_the_right_size(real_pairs):
    for k, cell in enumerate(real_pairs):
        five, nine, twenty_two = cell[4], cell[8], cell[21]
        deleted = synthesize(five, "del(5q)", rng=k, p_arm_up=True)
        der9 = synthesize(nine, "t(9;22)", 9, twenty_two, rng=k, p_arm_up=True)
        der22 = synthesize(twenty_two, "t(9;22)", 22, nine, rng=k, p_arm_up=True)
        for result in (deleted, der9, der22):
            assert result.image.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
        (_, start), (_, end) = deleted.breakpoints
        assert ink_length(deleted.image) / ink_length(five) == pytest.approx(1 - (end - start), abs=0.12)
        assert ink_length(der9.image) > ink_length(nine)
        assert ink_length(der22.image) < ink_length(twenty_two)


def test_orientation_is_read_off_the_centromere_for_crops_cut_from_metaphases(monkeypatch):
    """Karyogram crops have the p arm on top; a crop cut from a metaphase may be upside down, so its orientation is
    left to `synthesize` to estimate (`p_arm_up=None`), also when either piece of a translocation is one."""
    import datasets

    from karyohf.synthesis import dataset as dataset_module

    orientations = []

    def recording_synthesize(*args, p_arm_up=None, **kwargs):
        orientations.append(p_arm_up)
        return synthesize(*args, p_arm_up=p_arm_up, **kwargs)

    monkeypatch.setattr(dataset_module, "synthesize", recording_synthesize)
    rods = {"9": ideogram_rod("9", width=18), "22": ideogram_rod("22", width=14)}
    for sources, expected in ((["karyogram"] * 4, True), (["metaphase"] * 4, None), (["karyogram", "karyogram", "metaphase", "metaphase"], None)):
        orientations.clear()
        crops = datasets.Dataset.from_dict({
            "image": [rods["9"], rods["9"], rods["22"], rods["22"]], "chromosome": [8, 8, 21, 21],
            "cell_id": ["c"] * 4, "case_id": ["k"] * 4, "source": sources})
        aberration_dataset(9, "t(9;22)", crops=crops, seed=0)
        assert orientations == [expected], sources
