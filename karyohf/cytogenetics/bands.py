"""G-band coordinates from the UCSC hg38 cytoband table, and ISCN band names mapped onto them.

Positions along a chromosome are fractions of its length in base pairs, 0 at the end of the
short arm (pter) and 1 at the end of the long arm (qter). This is how a breakpoint such as 9q34
maps onto a chromosome image, approximately: condensation is not uniform along a chromosome.
"""

import difflib
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import CHROMOSOMES, normalize_chromosome

# pyryotype 0.0.7 ships hg38 bands for chr1-22 only. These are the UCSC hg38 cytoBand rows for
# X and Y (same source and format); they are used only for chromosomes the packaged table lacks.
_SEX_CHROMOSOME_ROWS = """\
chrX	0	4400000	p22.33	gneg
chrX	4400000	6100000	p22.32	gpos50
chrX	6100000	9600000	p22.31	gneg
chrX	9600000	17400000	p22.2	gpos50
chrX	17400000	19200000	p22.13	gneg
chrX	19200000	21900000	p22.12	gpos50
chrX	21900000	24900000	p22.11	gneg
chrX	24900000	29300000	p21.3	gpos100
chrX	29300000	31500000	p21.2	gneg
chrX	31500000	37800000	p21.1	gpos100
chrX	37800000	42500000	p11.4	gneg
chrX	42500000	47600000	p11.3	gpos75
chrX	47600000	50100000	p11.23	gneg
chrX	50100000	54800000	p11.22	gpos25
chrX	54800000	58100000	p11.21	gneg
chrX	58100000	61000000	p11.1	acen
chrX	61000000	63800000	q11.1	acen
chrX	63800000	65400000	q11.2	gneg
chrX	65400000	68500000	q12	gpos50
chrX	68500000	73000000	q13.1	gneg
chrX	73000000	74700000	q13.2	gpos50
chrX	74700000	76800000	q13.3	gneg
chrX	76800000	85400000	q21.1	gpos100
chrX	85400000	87000000	q21.2	gneg
chrX	87000000	92700000	q21.31	gpos100
chrX	92700000	94300000	q21.32	gneg
chrX	94300000	99100000	q21.33	gpos75
chrX	99100000	103300000	q22.1	gneg
chrX	103300000	104500000	q22.2	gpos50
chrX	104500000	109400000	q22.3	gneg
chrX	109400000	117400000	q23	gpos75
chrX	117400000	121800000	q24	gneg
chrX	121800000	129500000	q25	gpos100
chrX	129500000	131300000	q26.1	gneg
chrX	131300000	134500000	q26.2	gpos25
chrX	134500000	138900000	q26.3	gneg
chrX	138900000	141200000	q27.1	gpos75
chrX	141200000	143000000	q27.2	gneg
chrX	143000000	148000000	q27.3	gpos100
chrX	148000000	156040895	q28	gneg
chrY	0	300000	p11.32	gneg
chrY	300000	600000	p11.31	gpos50
chrY	600000	10300000	p11.2	gneg
chrY	10300000	10400000	p11.1	acen
chrY	10400000	10600000	q11.1	acen
chrY	10600000	12400000	q11.21	gneg
chrY	12400000	17100000	q11.221	gpos50
chrY	17100000	19600000	q11.222	gneg
chrY	19600000	23800000	q11.223	gpos50
chrY	23800000	26600000	q11.23	gneg
chrY	26600000	57227415	q12	gvar
"""

# Points rather than bands: the two chromosome ends and the centromere.
TERMINI = ("pter", "qter", "cen")

_BAND_RE = re.compile(r"(?:chr)?(\d{1,2}|[XY])?(pter|qter|cen|[pq]\d+(?:\.\d+)?)", re.IGNORECASE)

# Darkness for drawing: heterochromatin (gvar) stains variably but mostly dark with G-banding,
# the centromere is drawn mid-grey, and the satellite stalks are pale threads.
_STAIN_INTENSITY = {"gneg": 0.0, "acen": 0.5, "gvar": 0.7, "stalk": 0.1}


@dataclass(frozen=True)
class Band:
    """One band of the hg38 table; start/end in base pairs from pter."""

    chromosome: str
    name: str
    start: int
    end: int
    stain: str

    @property
    def arm(self) -> str:
        return self.name[0]

    @property
    def fraction(self) -> tuple[float, float]:
        length = chromosome_length(self.chromosome)
        return self.start / length, self.end / length


def _cytoband_file() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in matplotlib).
    spec = importlib.util.find_spec("pyryotype")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pyryotype is not installed; it provides the hg38 cytoband table")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "cytobands_hg38.bed"


def _parse_rows(text: str) -> dict[str, list[Band]]:
    table: dict[str, list[Band]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or not fields[0].startswith("chr") or fields[0][3:] not in CHROMOSOMES:
            continue  # alt/random contigs and blank lines
        chrom, start, end, name, stain = fields[0][3:], int(fields[1]), int(fields[2]), fields[3], fields[4]
        table.setdefault(chrom, []).append(Band(chrom, name, start, end, stain))
    return table


@functools.cache
def _band_table() -> dict[str, tuple[Band, ...]]:
    table = _parse_rows(_SEX_CHROMOSOME_ROWS) | _parse_rows(_cytoband_file().read_text())
    missing = [c for c in CHROMOSOMES if c not in table]
    if missing:
        raise RuntimeError(f"cytoband table {_cytoband_file()} lacks chromosomes {missing}")
    return {c: tuple(sorted(table[c], key=lambda band: band.start)) for c in CHROMOSOMES}


def bands(chrom: int | str) -> tuple[Band, ...]:
    """All bands of a chromosome, ordered from pter to qter."""
    return _band_table()[normalize_chromosome(chrom)]


def chromosome_length(chrom: int | str) -> int:
    """Length of a chromosome in base pairs (hg38)."""
    return bands(chrom)[-1].end


def centromere_fraction(chrom: int | str) -> float:
    """p/q boundary (between the two acen bands) as a fraction of the length from pter."""
    p_acen = [b for b in bands(chrom) if b.stain == "acen" and b.arm == "p"]
    return p_acen[-1].end / chromosome_length(chrom)


def band_at(chrom: int | str, fraction: float) -> Band:
    """The band containing a position; a position on a boundary belongs to the band below it."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    position = fraction * chromosome_length(chrom)
    all_bands = bands(chrom)
    return next((b for b in all_bands if b.start <= position < b.end), all_bands[-1])


def split_band(chrom: int | str | None, band: str) -> tuple[str, str]:
    """("9", "q34") from ("9", "q34"), (9, "9q34") or (None, "chr9q34"); names lower-case."""
    match = _BAND_RE.fullmatch(band.strip()) if isinstance(band, str) else None
    if match is None:
        raise ValueError(f"not an ISCN band name: {band!r} (expected e.g. 'q34', '9q34', '22q11.2', 'pter', 'cen')")
    prefix, name = match.group(1), match.group(2).lower()
    if prefix is None and chrom is None:
        raise ValueError(f"band {band!r} names no chromosome; pass the chromosome separately")
    if prefix is not None and chrom is not None and normalize_chromosome(prefix) != normalize_chromosome(chrom):
        raise ValueError(f"band {band!r} is on chromosome {prefix}, not on chromosome {chrom}")
    return normalize_chromosome(prefix if prefix is not None else chrom), name


@functools.cache
def _valid_names(chrom: str) -> frozenset[str]:
    # A band may be named at any resolution coarser than the table: q11.21 -> q11.2 -> q11.
    names = set(TERMINI)
    for band in bands(chrom):
        name = band.name
        names.add(name)
        while "." in name:
            name = name[:-1].rstrip(".")
            names.add(name)
    return frozenset(names)


@functools.cache
def _interval(chrom: str, name: str) -> tuple[float, float]:
    if name not in _valid_names(chrom):
        close = difflib.get_close_matches(name, sorted(_valid_names(chrom)), n=6, cutoff=0.5)
        hint = f"; close valid names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown band {name!r} on chromosome {chrom}{hint}")
    if name in TERMINI:
        point = {"pter": 0.0, "qter": 1.0, "cen": centromere_fraction(chrom)}[name]
        return point, point
    # Sub-bands extend their parent's name (q34 -> q34.1 -> q34.11), so a prefix match is a union.
    members = [b for b in bands(chrom) if b.name.startswith(name)]
    length = chromosome_length(chrom)
    return members[0].start / length, members[-1].end / length


def band_interval(chrom: int | str | None, band: str) -> tuple[float, float]:
    """(start, end) fractions of a band at any resolution: "9q34" is the union of q34.11-q34.3.

    "pter", "qter" and "cen" are points and give a zero-width interval.
    """
    return _interval(*split_band(chrom, band))


def breakpoint_fraction(chrom: int | str | None, band: str, rng: np.random.Generator | None = None) -> float:
    """Where a breakpoint "in band X" lies: the band's midpoint, or uniform within it given an rng."""
    start, end = band_interval(chrom, band)
    if rng is None:
        return (start + end) / 2
    return float(rng.uniform(start, end))


def stain_intensity(stain: str) -> float:
    """Grey-level darkness in [0, 1] for drawing a band: gneg 0, gpos25 0.25, ..., gpos100 1."""
    if stain in _STAIN_INTENSITY:
        return _STAIN_INTENSITY[stain]
    match = re.fullmatch(r"gpos(\d{1,3})", stain)
    if match is None or int(match.group(1)) > 100:
        raise ValueError(f"unknown Giemsa stain {stain!r} (expected gneg, gposN, acen, gvar or stalk)")
    return int(match.group(1)) / 100
