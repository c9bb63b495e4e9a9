"""Aberrant chromosomes made from real ones by the band arithmetic of the aberration.

A real crop is straightened along its medial axis (`karyohf.geometry`), cut where the hg38 breakpoint
fractions fall along its arc length (anchored at the centromere estimated from its width
profile), the derivative's segments are laid end to end (reversed for inversions, taken from a
real partner chromosome for translocations), and the result is bent back along the source's own
curve and put through the paper's crop format, so it looks like any other crop.

Seams: every piece carries a few rows of material beyond its cut and neighbouring pieces are
cross-faded over those rows; widths are matched by rescaling each piece across the axis, with the
correction fading out away from the seam; a partner chromosome is first rescaled to the source's
girth and exposure. Together these leave no line, step or notch at the join.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .. import geometry
from ..crops import extract_chromosome
from ..cytogenetics import (
    Aberration,
    Derivative,
    Segment,
    centromere_fraction,
    chromosome_length,
    get_aberration,
    normalize_chromosome,
)
from ..geometry import OVERSAMPLE, Centromere, MedialAxis, Strip
from ..images import as_gray_uint8

# Half-length of the cross-fade at a seam, in pixels; pieces carry PAD pixels beyond their cuts.
SEAM_BLEND = 2.0
PAD = 3.0
# A partner chromosome is rescaled to the source's width and ink level by at most these factors.
MAX_WIDTH_CHANGE = (0.7, 1.4)
MAX_GAIN_CHANGE = (0.6, 1.6)


@dataclass(frozen=True)
class SynthesizedChromosome:
    """One synthesized aberrant chromosome.

    image: paper-format crop (199x99 "L", upright, dark on white, native scale), in the same
        orientation as the input crop.
    iscn: the derivative in ISCN, e.g. "der(22)t(9;22)(q34;q11.2)", "del(5)(q14q34)".
    derivative: its name, e.g. "der(22)", "del(5)", "inv(16)".
    breakpoints: each cut as (chromosome band, fraction of that chromosome's length from pter),
        e.g. (("9q34", 0.962), ("22q11.2", 0.418)).
    """

    image: Image.Image
    iscn: str
    derivative: str
    breakpoints: tuple[tuple[str, float], ...]


def synthesize(
    chromosome_image,
    aberration: str | Aberration,
    chromosome: int | str | None = None,
    partner_image=None,
    rng: np.random.Generator | int | None = None,
    form: int | str | None = None,
    p_arm_up: bool | None = None,
) -> SynthesizedChromosome:
    """Make the aberrant counterpart of a real normal chromosome.

    Args:
        chromosome_image: one normal chromosome, dark on white (PIL image, uint8 array or path):
            a karyogram crop or a paper-format crop from `karyohf.crops.extract_chromosome`.
        aberration: a catalogue key ("del(5q)", "t(9;22)", "inv(16)", ...; see
            `karyohf.cytogenetics.CATALOGUE`), the ISCN of one breakpoint form ("del(5)(q31q33)"),
            or an `Aberration`.
        chromosome: what `chromosome_image` shows, by name (5, "5", "chr22", "X"; not a class
            index). It picks the derivative: for t(9;22), 9 gives der(9) and 22 gives der(22).
            Required for translocations; defaults to the aberration's chromosome otherwise.
        partner_image: translocations only: a normal crop of the other chromosome of the pair,
            ideally from the same cell; its segment distal to the breakpoint is joined on
            (rescaled to the source's scale, width and exposure).
        rng: a numpy Generator or an int seed: breakpoints are drawn uniformly within their bands
            and, unless `form` says otherwise, the breakpoint form uniformly among the
            aberration's forms. None: the aberration's main form with breakpoints at band midpoints.
        form: which breakpoint form: an index into `aberration.forms` or its ISCN
            ("del(5)(q14q34)"); overrides the random choice.
        p_arm_up: True if the crops have the p arm on top (karyogram crops), False if upside down;
            None checks each crop's constriction against the ideogram and flips only when that
            check is decided (it cannot be for metacentric chromosomes, which are taken as p-up).

    Returns:
        A SynthesizedChromosome (image, iscn, derivative, breakpoints).

    Raises:
        ValueError: unknown aberration or form, a chromosome the aberration does not involve, a
            translocation without `chromosome` or `partner_image`, a partner for a one-chromosome
            aberration, or an image without a chromosome in it.
    """
    generator = None if rng is None else np.random.default_rng(rng)  # a Generator passes through as is
    chosen = _choose_form(get_aberration(aberration) if isinstance(aberration, str) else aberration, form, generator)
    own = _own_chromosome(chosen, chromosome)
    derivative = next(d for d in chosen.derivatives(generator) if d.chromosome == own)
    others = {segment.chromosome for segment in derivative.segments} - {own}
    if others and partner_image is None:
        raise ValueError(
            f"{derivative.iscn} needs partner_image: a normal chromosome {others.pop()} (ideally from the same cell)"
        )
    if not others and partner_image is not None:
        raise ValueError(f"{chosen.iscn} involves only chromosome {own}; it takes no partner_image")
    source = _Chromosome.prepare(chromosome_image, own, p_arm_up)
    chromosomes = {own: source} | {other: _Chromosome.prepare(partner_image, other, p_arm_up) for other in others}
    image = _render(derivative, chromosomes, source)
    return SynthesizedChromosome(image, derivative.iscn, derivative.name, _cuts(chosen, derivative))


def resample_normal(chromosome_image, chromosome: int | str, p_arm_up: bool | None = None) -> Image.Image:
    """The crop through the same straighten -> bend -> crop-format path, without any rearrangement.

    Mixed into the normal class, it keeps a classifier from telling synthesized chromosomes by
    resampling traces instead of by their bands and lengths.
    """
    own = normalize_chromosome(chromosome)
    source = _Chromosome.prepare(chromosome_image, own, p_arm_up)
    return _render(Derivative(own, (Segment(own, 0.0, 1.0),)), {own: source}, source)


def _choose_form(aberration: Aberration, form: int | str | None, rng: np.random.Generator | None) -> Aberration:
    forms = aberration.forms
    if form is None:
        return forms[0] if rng is None else forms[int(rng.integers(len(forms)))]
    if isinstance(form, str):
        match = [f for f in forms if f.iscn == form.replace(" ", "")]
        if not match:
            raise ValueError(f"{aberration.key} has no form {form!r}; its forms are {[f.iscn for f in forms]}")
        return match[0]
    if not 0 <= form < len(forms):
        raise ValueError(f"{aberration.key} has {len(forms)} form(s); form index {form} is out of range")
    return forms[form]


def _own_chromosome(aberration: Aberration, chromosome: int | str | None) -> str:
    involved = aberration.chromosomes
    if chromosome is None:
        if len(involved) > 1:
            derivatives = " and ".join(f"der({c})" for c in involved)
            raise ValueError(
                f"{aberration.iscn} makes {derivatives}; pass chromosome={involved[0]} or {involved[1]} "
                "to say which chromosome the image shows"
            )
        return involved[0]
    own = normalize_chromosome(chromosome)
    if own not in involved:
        raise ValueError(
            f"{aberration.iscn} involves chromosome(s) {' and '.join(involved)}, not chromosome {own}"
        )
    return own


def _cuts(aberration: Aberration, derivative: Derivative) -> tuple[tuple[str, float], ...]:
    """The breakpoints in the order the ISCN writes them, with the fractions drawn for this derivative."""
    ends = {
        (segment.chromosome, band): fraction
        for segment in derivative.segments
        for band, fraction in ((segment.start_band, segment.start_fraction), (segment.end_band, segment.end_fraction))
    }
    chromosomes = aberration.chromosomes * (2 // len(aberration.chromosomes))
    return tuple((f"{c}{band}", round(ends[c, band], 4)) for c, band in zip(chromosomes, aberration.breakpoints))


@dataclass(frozen=True)
class _Chromosome:
    """A real chromosome ready to be cut: its strip (p arm first), axis, centromere and orientation,
    and per strip row its smoothed width and the offset of its middle from the axis (pixels)."""

    name: str
    strip: Strip
    axis: MedialAxis
    centromere: Centromere
    flipped: bool
    widths: np.ndarray
    centres: np.ndarray

    @classmethod
    def prepare(cls, image, name: str, p_arm_up: bool | None) -> "_Chromosome":
        gray = as_gray_uint8(image)
        strip, axis = geometry.straighten(gray)
        up = geometry.p_arm_up(strip, name) if p_arm_up is None else p_arm_up
        flipped = up is False
        if flipped:  # cut along a p-arm-up copy; the result is turned back at the end
            strip, axis = geometry.straighten(np.ascontiguousarray(gray[::-1, ::-1]))
        widths, centres = _row_profiles(strip)
        return cls(name, strip, axis, geometry.estimate_centromere(strip, name), flipped, widths, centres)

    def row_of(self, fraction: float) -> float:
        """Strip row of a position given as a fraction of the length from pter.

        Linear along each arm between the tips and the centromere: the arms condense differently.
        """
        first, last = self.strip.extent
        expected = centromere_fraction(self.name)
        if fraction <= expected:
            return first + (self.centromere.row - first) * fraction / expected
        return self.centromere.row + (last - self.centromere.row) * (fraction - expected) / (1.0 - expected)

    @property
    def rows_per_bp(self) -> float:
        first, last = self.strip.extent
        return (last - first) / chromosome_length(self.name)

    @property
    def girth(self) -> float:
        """Typical width in pixels."""
        return float(np.median(self.strip.widths[self.strip.widths > 0]))

    def girth_at(self, row: float) -> float:
        """Width around a cut, ignoring the tips: a cut close to a telomere still joins at full width."""
        first, last = self.strip.extent
        tip = self.girth / 2 * OVERSAMPLE
        lo, hi = max(row - 3 * OVERSAMPLE, first + tip), min(row + 3 * OVERSAMPLE, last - tip)
        widths = self.widths[int(np.ceil(lo)) : int(np.floor(hi)) + 1]
        return float(np.median(widths)) if widths.size else self.girth

    def profile(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Width and middle offset at (fractional) strip rows; zero beyond the strip."""
        index = np.arange(len(self.widths))
        return np.interp(rows, index, self.widths, 0, 0), np.interp(rows, index, self.centres, 0, 0)


def _row_profiles(strip: Strip) -> tuple[np.ndarray, np.ndarray]:
    """Per strip row: width and offset of the chromosome's middle from the axis (pixels), smoothed
    over a pixel so that the gap between sister chromatids does not count as a change."""
    offsets = (np.arange(strip.mask.shape[1]) - strip.centre) / OVERSAMPLE
    centres = (strip.mask * offsets).sum(axis=1) / np.maximum(strip.mask.sum(axis=1), 1)
    return ndimage.gaussian_filter1d(strip.widths, OVERSAMPLE), ndimage.gaussian_filter1d(centres, OVERSAMPLE)


@dataclass(frozen=True)
class _Piece:
    """A segment of a real chromosome as placed: strip rows a -> b (b < a: reversed), `rows` long,
    widened by `width_scale` and darkened by `gain` (both 1 for the source chromosome itself)."""

    chromosome: _Chromosome
    a: float
    b: float
    rows: int
    width_scale: float = 1.0
    gain: float = 1.0


def _render(derivative: Derivative, chromosomes: dict[str, _Chromosome], source: _Chromosome) -> Image.Image:
    strip = _assemble([_place(segment, chromosomes[segment.chromosome], source) for segment in derivative.segments])
    gray = geometry.bend(strip, source.axis.resized(strip.ink.shape[0]))
    if source.flipped:
        gray = np.ascontiguousarray(gray[::-1, ::-1])
    return extract_chromosome(gray, (0, 0, gray.shape[1], gray.shape[0]))


def _place(segment: Segment, chromosome: _Chromosome, source: _Chromosome) -> _Piece:
    a, b = chromosome.row_of(segment.start_fraction), chromosome.row_of(segment.end_fraction)
    if chromosome is source:
        return _Piece(chromosome, a, b, max(1, round(abs(b - a))))
    # Another chromosome: brought to the source's scale (bp -> rows), girth and exposure.
    rows = max(1, round(segment.length_bp * source.rows_per_bp))
    width = np.clip(source.girth / chromosome.girth, *MAX_WIDTH_CHANGE)
    gain = np.clip(source.strip.ink_level() / max(chromosome.strip.ink_level(), 1e-6), *MAX_GAIN_CHANGE)
    return _Piece(chromosome, a, b, rows, float(width), float(gain))


def _assemble(pieces: list[_Piece]) -> Strip:
    """The derivative's strip: the pieces end to end, seams cross-faded, widths and middles matched."""
    pad = int(round(PAD * OVERSAMPLE))
    starts = pad + np.concatenate([[0], np.cumsum([p.rows for p in pieces])])
    total = int(starts[-1]) + pad
    cols = max(p.chromosome.strip.ink.shape[1] for p in pieces)
    out_rows = np.arange(total, dtype=float)
    out_cols = (np.arange(cols, dtype=float) - (cols - 1) / 2) / OVERSAMPLE
    ink = np.zeros((total, cols))
    mask = np.zeros((total, cols))
    for i, piece in enumerate(pieces):
        chromosome = piece.chromosome
        source_rows = piece.a + (out_rows - starts[i]) * (piece.b - piece.a) / piece.rows
        widths, centres = chromosome.profile(source_rows)
        weight = ((out_rows >= starts[i] - pad) & (out_rows < starts[i + 1] + pad)).astype(float)
        target = widths * piece.width_scale
        centring = np.zeros(total)
        for neighbour, seam, side, here, there in _seams(pieces, starts, i):
            # Cross-fade: this piece fades out over the seam while its neighbour fades in.
            half = min(SEAM_BLEND * OVERSAMPLE, piece.rows / 2, neighbour.rows / 2)
            weight *= np.clip(0.5 + side * (out_rows - seam) / (2 * half), 0.0, 1.0)
            # Towards the seam both pieces take their mean girth there and are centred on the axis,
            # so neither a step in width nor a sideways jump shows. The correction fades over about
            # a width, but within half the piece, so that a real telomere keeps its shape.
            mine = chromosome.girth_at(here) * piece.width_scale
            meet = (mine + neighbour.chromosome.girth_at(there) * neighbour.width_scale) / 2
            fade = min(max(3.0, meet) * OVERSAMPLE, piece.rows / 2)
            ramp = np.clip(1.0 - np.abs(out_rows - seam) / fade, 0.0, 1.0)
            target += ramp * (meet - target)
            centring = 1.0 - (1.0 - centring) * (1.0 - ramp)
        # Beyond the tips (no width to speak of) the piece keeps its overall scale.
        scale = np.where(widths > 1.0, np.clip(target / np.maximum(widths, 1.0), 0.5, 3.0), piece.width_scale)
        shift = centring * centres
        source_cols = chromosome.strip.centre + OVERSAMPLE * (shift[:, None] + out_cols[None, :] / scale[:, None])
        coords = np.stack(np.broadcast_arrays(source_rows[:, None], source_cols))
        sampled = ndimage.map_coordinates(chromosome.strip.ink, coords, order=3, cval=0.0)
        inside = ndimage.map_coordinates(chromosome.strip.mask.astype(float), coords, order=1, cval=0.0)
        ink += weight[:, None] * np.clip(sampled, 0, 255) * piece.gain
        mask += weight[:, None] * inside
    return Strip(np.clip(ink, 0, 255), mask > 0.5)


def _seams(pieces: list[_Piece], starts: np.ndarray, i: int):
    """Per seam of piece i: (neighbour, output row of the seam, side, this piece's strip row there,
    the neighbour's strip row there); side is +1 for the seam at the piece's start, -1 at its end."""
    if i > 0:
        yield pieces[i - 1], float(starts[i]), 1.0, pieces[i].a, pieces[i - 1].b
    if i < len(pieces) - 1:
        yield pieces[i + 1], float(starts[i + 1]), -1.0, pieces[i].b, pieces[i + 1].a


FILL_MARGIN = 10  # pixels of field around the box that the fill of a removed chromosome continues


def paste_into_metaphase(image, box, chromosome_image) -> np.ndarray:
    """The metaphase with the chromosome in `box` replaced by `chromosome_image` (a paper-format crop cut from that
    box by `extract_chromosome`, e.g. its synthesized derivative). Semi-synthetic aberrant metaphases are made this
    way; pasted chromosomes are a proxy for real aberrant ones (the same background, no seam with neighbours).

    The original's mask is filled from its surroundings (biharmonic inpainting plus the background's own grain:
    a flat fill leaves a halo that the detector and the object verifier read as "not a chromosome"), and the new
    chromosome, turned back to the original's angle, is laid over its centre (`_lay`).
    """
    from skimage.restoration import inpaint_biharmonic

    from ..crops import pixel_box, upright_angle
    from ..segmentation import segment_in_box

    gray = as_gray_uint8(image).astype(np.float32)
    x0, y0, x1, y1 = pixel_box(box, gray.shape)
    mask = segment_in_box(gray.astype(np.uint8), (x0, y0, x1, y1))
    # The fill is solved in a window around the box: a tight box leaves too little field to continue.
    wy, wx = max(y0 - FILL_MARGIN, 0), max(x0 - FILL_MARGIN, 0)
    window = gray[wy : min(y1 + FILL_MARGIN, gray.shape[0]), wx : min(x1 + FILL_MARGIN, gray.shape[1])]
    original = np.zeros(window.shape, bool)
    original[y0 - wy : y1 - wy, x0 - wx : x1 - wx] = mask
    covered = ndimage.binary_dilation(original, iterations=2)
    if covered.all():  # nothing around the chromosome to fill from: the window's brightest level
        window[:] = np.percentile(window, 95)
    else:
        filled = inpaint_biharmonic(window / 255.0, covered) * 255.0
        ring = ndimage.binary_dilation(original, iterations=8) & ~covered
        grain = window - ndimage.gaussian_filter(window, 2.0)
        # The field's grain, robust to the edges of neighbours that reach into the ring.
        deviation = np.abs(grain[ring] - np.median(grain[ring])) if ring.sum() > 8 else np.zeros(1)
        spread = 1.4826 * float(np.median(deviation))
        rng = np.random.default_rng([x0, y0, x1, y1])  # the same metaphase, box and crop paste the same way
        noise = ndimage.gaussian_filter(rng.normal(size=window.shape), 0.7)
        noise *= spread / max(float(noise.std()), 1e-6)
        window[covered] = filled[covered] + noise[covered]
    mask_rows, mask_cols = np.nonzero(mask)
    return _lay(gray, chromosome_image, -upright_angle(mask), (mask_rows.mean() + y0, mask_cols.mean() + x0))


def add_to_metaphase(image, chromosome_image, centre: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    """The metaphase with one more chromosome: `chromosome_image` (an upright paper-format crop, e.g. another copy
    of one of its chromosomes for a simulated trisomy) turned by `angle` degrees and laid, as `paste_into_metaphase`
    lays one, with its centre at `centre` (row, column). Place it where the field is empty."""
    return _lay(as_gray_uint8(image).astype(np.float32), chromosome_image, angle, centre)


def _lay(gray: np.ndarray, chromosome_image, angle: float, centre) -> np.ndarray:
    """`chromosome_image` turned by `angle` and laid over float `gray` as a transmission (the whitened crop times
    the local background, `extract_chromosome`'s whitening undone), its centre at `centre`, its cut edge softened by
    the image's own blur so that it does not stand out as a pasted sticker."""
    crop = np.asarray(Image.fromarray(as_gray_uint8(chromosome_image)).rotate(
        angle, resample=Image.BILINEAR, expand=True, fillcolor=255), dtype=np.float32)
    ink = crop < 250
    if not ink.any():
        raise ValueError("chromosome_image holds no chromosome")
    transmission = crop / 255.0
    edge = ink & ~ndimage.binary_erosion(ink, iterations=2)
    near = ndimage.binary_dilation(ink, iterations=3)
    softened = ndimage.gaussian_filter(transmission, 1.0)
    transmission = np.where(near & ~(ink & ~edge), np.minimum(softened, 1.0), transmission)
    rows, cols = np.nonzero(ink)
    top, left = np.round(np.asarray(centre, dtype=np.float64) - (rows.mean(), cols.mean())).astype(int)
    rows, cols = np.nonzero(near)
    inside = (rows + top >= 0) & (rows + top < gray.shape[0]) & (cols + left >= 0) & (cols + left < gray.shape[1])
    rows, cols = rows[inside], cols[inside]
    gray[rows + top, cols + left] *= transmission[rows, cols]
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)
