"""The 24 chromosome classes, their Denver groups and normal copy numbers.

The index of a chromosome in `CHROMOSOMES` is the class id that every model uses.
"""

from numbers import Integral

CHROMOSOMES: tuple[str, ...] = tuple(str(n) for n in range(1, 23)) + ("X", "Y")

# Classic size/shape groups; some datasets label chromosomes only by group.
DENVER_GROUPS: dict[str, tuple[str, ...]] = {
    "A": ("1", "2", "3"),
    "B": ("4", "5"),
    "C": ("6", "7", "8", "9", "10", "11", "12", "X"),
    "D": ("13", "14", "15"),
    "E": ("16", "17", "18"),
    "F": ("19", "20"),
    "G": ("21", "22", "Y"),
}

# Chromosomes with satellited short arms (ISCN); Y has no satellites and is not listed.
ACROCENTRIC: tuple[str, ...] = ("13", "14", "15", "21", "22")
SEX_CHROMOSOMES: tuple[str, ...] = ("X", "Y")
SEXES: tuple[str, ...] = ("XX", "XY")


def normalize_chromosome(x: int | str) -> str:
    """Canonical name of a chromosome: 5, "5", "chr5", "Chr5" -> "5"; "x", "chrX" -> "X"."""
    if isinstance(x, Integral) and not isinstance(x, bool):
        text = str(int(x))
    elif isinstance(x, str):
        text = x.strip()
        if text[:3].lower() == "chr":
            text = text[3:]
        text = text.upper()
        # "05" and "5" both mean chromosome 5; "+5" or "5.0" do not.
        if text.isascii() and text.isdigit():
            text = str(int(text))
    else:
        raise ValueError(f"chromosome must be an int or a str, got {type(x).__name__} {x!r}")
    if text not in CHROMOSOMES:
        raise ValueError(f"not a human chromosome: {x!r} (expected 1-22, X or Y, optionally prefixed 'chr')")
    return text


def chromosome_index(name: int | str) -> int:
    """Class id of a chromosome: "1" -> 0, "22" -> 21, "X" -> 22, "Y" -> 23."""
    return CHROMOSOMES.index(normalize_chromosome(name))


def denver_group(name: int | str) -> str:
    """Denver group letter ("A"-"G") of a chromosome."""
    chrom = normalize_chromosome(name)
    return next(group for group, members in DENVER_GROUPS.items() if chrom in members)


def expected_copies(name: int | str, sex: str) -> int:
    """Copies of a chromosome in a normal cell of the given sex ("XX" or "XY")."""
    chrom = normalize_chromosome(name)
    sex_key = sex.strip().upper() if isinstance(sex, str) else sex
    if sex_key not in SEXES:
        raise ValueError(f"sex must be 'XX' or 'XY', got {sex!r}")
    if chrom in SEX_CHROMOSOMES:
        return sex_key.count(chrom)
    return 2
