"""Segment arithmetic for structurally rearranged (derivative) chromosomes.

A derivative is a list of segments of normal chromosomes, ordered from the derivative's own
short-arm end to its long-arm end, so that the chromosome whose centromere it keeps reads
pter -> qter (p arm on top, as in a karyogram). A segment whose start lies below its end is
read upside down relative to its source chromosome (inversions, and segments translocated onto
a short arm).
"""

import re
from dataclasses import dataclass, field

import numpy as np

from .bands import TERMINI, band_at, breakpoint_fraction, centromere_fraction, chromosome_length, split_band
from .classes import CHROMOSOMES, normalize_chromosome


@dataclass(frozen=True)
class Segment:
    """Part of a normal chromosome between two fractions of its length (direction matters).

    start_band/end_band are the ISCN names written at each end (e.g. "q34"); when omitted they
    are derived from the position ("pter", "qter" or the finest band containing it).
    """

    chromosome: str
    start_fraction: float
    end_fraction: float
    start_band: str | None = None
    end_band: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "chromosome", normalize_chromosome(self.chromosome))
        for value in (self.start_fraction, self.end_fraction):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"segment of chromosome {self.chromosome}: fraction {value!r} is outside [0, 1]")
        if self.start_fraction == self.end_fraction:
            raise ValueError(f"segment of chromosome {self.chromosome} has zero length at {self.start_fraction!r}")

    @property
    def is_reversed(self) -> bool:
        return self.start_fraction > self.end_fraction

    @property
    def length_bp(self) -> float:
        return abs(self.end_fraction - self.start_fraction) * chromosome_length(self.chromosome)

    def flipped(self) -> "Segment":
        """The same stretch of chromosome read in the opposite direction."""
        return Segment(self.chromosome, self.end_fraction, self.start_fraction, self.end_band, self.start_band)

    def contains(self, fraction: float) -> bool:
        return min(self.start_fraction, self.end_fraction) <= fraction <= max(self.start_fraction, self.end_fraction)

    def end_names(self) -> tuple[str, str]:
        """ISCN names of the start and end, e.g. ("pter", "q11.2")."""
        return _position_name(self.chromosome, self.start_fraction, self.start_band), _position_name(
            self.chromosome, self.end_fraction, self.end_band
        )


def _position_name(chrom: str, fraction: float, band: str | None) -> str:
    if band is not None:
        return band
    if fraction == 0.0:
        return "pter"
    if fraction == 1.0:
        return "qter"
    return band_at(chrom, fraction).name


@dataclass(frozen=True)
class Derivative:
    """A rearranged chromosome, e.g. Derivative("der(22)", segments, "t(9;22)(q34;q11.2)").

    The name's chromosome (22 in der(22), 5 in del(5)) is the one whose centromere it keeps.
    """

    name: str
    segments: tuple[Segment, ...]
    rearrangement: str = ""
    chromosome: str = field(init=False)

    def __post_init__(self) -> None:
        match = re.fullmatch(r"[a-z]+\((\w+)\)", self.name)
        object.__setattr__(self, "chromosome", normalize_chromosome(match.group(1) if match else self.name))
        object.__setattr__(self, "segments", tuple(self.segments))
        if not self.segments:
            raise ValueError(f"derivative {self.name!r} has no segments")
        self._centromere_position()  # a derivative without its centromere is not a chromosome

    @property
    def iscn(self) -> str:
        """Short ISCN form, e.g. "der(22)t(9;22)(q34;q11.2)" or "del(5)(q13q33)"."""
        return self.name + self.rearrangement

    @property
    def length_bp(self) -> float:
        return sum(segment.length_bp for segment in self.segments)

    def length_relative_to(self, chrom: int | str) -> float:
        """Length as a fraction of the normal chromosome `chrom`."""
        return self.length_bp / chromosome_length(chrom)

    def _centromere_position(self) -> float:
        centromere = centromere_fraction(self.chromosome)
        offset = 0.0
        for segment in self.segments:
            if segment.chromosome == self.chromosome and segment.contains(centromere):
                return offset + abs(centromere - segment.start_fraction) * chromosome_length(segment.chromosome)
            offset += segment.length_bp
        raise ValueError(f"derivative {self.name!r} lacks the centromere of chromosome {self.chromosome}")

    @property
    def centromere_fraction(self) -> float:
        """Where the centromere lies along the derivative, as a fraction of its length from its p end."""
        return self._centromere_position() / self.length_bp

    def describe(self) -> str:
        """ISCN long form, e.g. "22pter→22q11.2::9q34→9qter".

        ISCN starts at the short-arm end of the centromere's chromosome; when that end was
        exchanged it starts at its long-arm end instead (der(9)t(9;11): "9qter→9p21.3::11q23.3→11qter").
        """
        segments = self.segments
        first, last = segments[0], segments[-1]
        keeps_pter = first.chromosome == self.chromosome and first.start_fraction == 0.0
        keeps_qter = last.chromosome == self.chromosome and last.end_fraction == 1.0
        if not keeps_pter and keeps_qter:
            segments = tuple(segment.flipped() for segment in reversed(segments))
        parts = []
        for segment in segments:
            start, end = segment.end_names()
            parts.append(f"{segment.chromosome}{start}→{segment.chromosome}{end}")
        text = "::".join(parts)
        # A single colon marks a break with no joined segment (terminal deletion).
        if segments[0].start_fraction not in (0.0, 1.0):
            text = ":" + text
        if segments[-1].end_fraction not in (0.0, 1.0):
            text = text + ":"
        return text


def _arm_band(chrom: int | str, band: str) -> tuple[str, str]:
    chrom, name = split_band(chrom, band)
    if name in TERMINI:
        raise ValueError(f"breakpoint {band!r} on chromosome {chrom} must be a band on an arm, not {name!r}")
    return chrom, name


def translocation(
    chrom_a: int | str,
    chrom_b: int | str,
    band_a: str,
    band_b: str,
    rng: np.random.Generator | None = None,
) -> tuple[Derivative, Derivative]:
    """(der(a), der(b)) of a reciprocal translocation: the segments distal to the breakpoints swap.

    Breakpoints sit at band midpoints, or uniformly within the bands when an rng is given.
    """
    (a, name_a), (b, name_b) = _arm_band(chrom_a, band_a), _arm_band(chrom_b, band_b)
    if a == b:
        raise ValueError(f"a translocation needs two different chromosomes, got {chrom_a!r} twice")
    break_a, break_b = breakpoint_fraction(a, name_a, rng), breakpoint_fraction(b, name_b, rng)
    # ISCN lists the sex chromosome or lower-numbered autosome first.
    first, second = sorted([(a, name_a), (b, name_b)], key=lambda pair: CHROMOSOMES.index(pair[0]))
    rearrangement = f"t({first[0]};{second[0]})({first[1]};{second[1]})"

    def derivative(own: str, own_band: str, own_break: float, other: str, other_band: str, other_break: float):
        # The distal piece of `other`, read from its breakpoint out to its telomere.
        other_telomere = 0.0 if other_band.startswith("p") else 1.0
        incoming = Segment(other, other_break, other_telomere, other_band, None)
        if own_band.startswith("q"):
            segments = (Segment(own, 0.0, own_break, None, own_band), incoming)
        else:
            # The incoming telomere now caps the derivative's short-arm end.
            segments = (incoming.flipped(), Segment(own, own_break, 1.0, own_band, None))
        return Derivative(f"der({own})", segments, rearrangement)

    return (
        derivative(a, name_a, break_a, b, name_b, break_b),
        derivative(b, name_b, break_b, a, name_a, break_a),
    )


def _ordered_breaks(
    chrom: str, name_1: str, name_2: str, rng: np.random.Generator | None
) -> tuple[float, float]:
    break_1, break_2 = breakpoint_fraction(chrom, name_1, rng), breakpoint_fraction(chrom, name_2, rng)
    if break_1 >= break_2:
        raise ValueError(
            f"breakpoints {name_1!r} and {name_2!r} on chromosome {chrom} "
            "must be distinct and written from pter to qter"
        )
    return break_1, break_2


def deletion(
    chrom: int | str, band_1: str, band_2: str | None = None, rng: np.random.Generator | None = None
) -> Derivative:
    """del(chrom)(band_1band_2): interstitial between two breakpoints, or terminal beyond one."""
    chrom, name_1 = _arm_band(chrom, band_1)
    if band_2 is None:
        break_1 = breakpoint_fraction(chrom, name_1, rng)
        if name_1.startswith("q"):
            segments = (Segment(chrom, 0.0, break_1, None, name_1),)
        else:
            segments = (Segment(chrom, break_1, 1.0, name_1, None),)
        return Derivative(f"del({chrom})", segments, f"({name_1})")
    _, name_2 = _arm_band(chrom, band_2)
    break_1, break_2 = _ordered_breaks(chrom, name_1, name_2, rng)
    if break_1 < centromere_fraction(chrom) < break_2:
        raise ValueError(f"del({chrom})({name_1}{name_2}) would remove the centromere")
    segments = (Segment(chrom, 0.0, break_1, None, name_1), Segment(chrom, break_2, 1.0, name_2, None))
    return Derivative(f"del({chrom})", segments, f"({name_1}{name_2})")


def inversion(chrom: int | str, band_1: str, band_2: str, rng: np.random.Generator | None = None) -> Derivative:
    """inv(chrom)(band_1band_2): the segment between the breakpoints turned end over end.

    Paracentric (both breakpoints on one arm) keeps the centromere in place; pericentric (one on
    each arm) moves it, since the centromere lies in the reversed segment.
    """
    chrom, name_1 = _arm_band(chrom, band_1)
    _, name_2 = _arm_band(chrom, band_2)
    break_1, break_2 = _ordered_breaks(chrom, name_1, name_2, rng)
    segments = (
        Segment(chrom, 0.0, break_1, None, name_1),
        Segment(chrom, break_2, break_1, name_2, name_1),
        Segment(chrom, break_2, 1.0, name_2, None),
    )
    return Derivative(f"inv({chrom})", segments, f"({name_1}{name_2})")
