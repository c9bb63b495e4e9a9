"""One cell's abnormalities relative to a constitutional sex, and the ISCN line that writes them.

A cell is reduced to what a karyotype states about it: which chromosomes it has too many or too few of and which
structural changes it shows. Everything is relative to a reference complement ("XX" or "XY"), so the same loss of Y
is one item in every cell that shows it, and the clone rules of `karyohf.karyotype.specimen` can count cells per item.
How a sex-chromosome change is written depends on the study (ISCN 2024): acquired changes in neoplasia keep the
constitutional complement and list the change (`45,X,-Y`, `47,XX,+X`); constitutional ones are written in the sex
field (`45,X`, `47,XXY`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..cytogenetics.classes import CHROMOSOMES, SEX_CHROMOSOMES, normalize_chromosome

STUDIES = ("neoplasia", "constitutional")
KINDS = ("gain", "loss", "structural")


def check_study(study: str) -> str:
    if study not in STUDIES:
        raise ValueError(f"study must be one of {STUDIES}, got {study!r}")
    return study


@dataclass(frozen=True)
class Abnormality:
    """One item of a karyotype line: `+8` (gain), `-7` (loss), `del(5)(q13q33)` (structural, on chromosome 5)."""

    kind: str
    chromosome: str
    iscn: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "chromosome", normalize_chromosome(self.chromosome))

    @property
    def order(self) -> tuple[int, int, str]:
        """ISCN order: sex chromosomes first (X before Y), then autosomes ascending; numerical before structural."""
        return CHROMOSOMES.index(self.chromosome) - 100 * (self.chromosome in SEX_CHROMOSOMES), \
            int(self.kind == "structural"), self.iscn

    @classmethod
    def gain(cls, chromosome: str) -> "Abnormality":
        return cls("gain", chromosome, f"+{normalize_chromosome(chromosome)}")

    @classmethod
    def loss(cls, chromosome: str) -> "Abnormality":
        return cls("loss", chromosome, f"-{normalize_chromosome(chromosome)}")


def numerical_changes(class_counts: dict[str, int], reference_sex: str) -> list[Abnormality]:
    """Gains and losses of a cell whose chromosomes were counted per class, against a normal cell of `reference_sex`
    (one item per copy: two extra 21s are `+21,+21`)."""
    if reference_sex not in ("XX", "XY"):
        raise ValueError(f"reference_sex must be 'XX' or 'XY', got {reference_sex!r}")
    unknown = set(class_counts) - set(CHROMOSOMES)
    if unknown:
        raise ValueError(f"class counts name unknown chromosomes: {sorted(unknown)}")
    changes = []
    for name in CHROMOSOMES:
        expected = reference_sex.count(name) if name in SEX_CHROMOSOMES else 2
        delta = int(class_counts.get(name, 0)) - expected
        changes += [Abnormality.gain(name) if delta > 0 else Abnormality.loss(name)] * abs(delta)
    return changes


def sort_abnormalities(abnormalities) -> tuple[Abnormality, ...]:
    return tuple(sorted(abnormalities, key=lambda a: a.order))


def line_count(abnormalities) -> int:
    """Chromosomes in a line: 46 plus gains minus losses (structural changes written without +/- change nothing)."""
    kinds = Counter(a.kind for a in abnormalities)
    return 46 + kinds["gain"] - kinds["loss"]


def format_line(abnormalities, reference_sex: str, study: str, cells: int | None = None) -> str:
    """The ISCN text of one cell line, e.g. `47,XY,+8[3]`, `45,X,-Y` (neoplasia) or `47,XXY` (constitutional)."""
    check_study(study)
    items = sort_abnormalities(abnormalities)
    sex_changes, rearranged = Counter(), Counter()
    for item in items:
        if item.chromosome in SEX_CHROMOSOMES:
            if item.kind == "structural":  # written in its own field, not in the sex field: 46,Y,i(X)(q10)
                rearranged[item.chromosome] += 1
            else:
                sex_changes[item.chromosome] += 1 if item.kind == "gain" else -1
    if study == "constitutional":
        # The observed complement is the sex field; sex-chromosome gains and losses are not listed again.
        sex = "".join(name * (reference_sex.count(name) + sex_changes[name] - rearranged[name])
                      for name in SEX_CHROMOSOMES)
        items = tuple(a for a in items if a.chromosome not in SEX_CHROMOSOMES or a.kind == "structural")
    else:
        # Acquired: the remaining constitutional complement, then the change itself (`45,X,-Y`, `47,XX,+X`).
        sex = "".join(name * (reference_sex.count(name) + min(sex_changes[name], 0) - rearranged[name])
                      for name in SEX_CHROMOSOMES)
    if "X" not in sex and not rearranged["X"]:
        raise ValueError(f"a line without an X cannot be written in ISCN ({reference_sex} reference, "
                         f"changes {[a.iscn for a in items]})")
    text = ",".join([str(line_count(abnormalities)), sex, *(a.iscn for a in items)])
    return text if cells is None else f"{text}[{cells}]"
