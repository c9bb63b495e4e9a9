"""A specimen's karyotype from its cells: ISCN clone rules, cell lines and their order.

A clone is at least 2 cells with the same gain or structural change, or at least 3 with the same loss (random loss
during slide preparation is common). A finding in fewer cells is non-clonal: reported apart, never in the karyotype.
Each analysed cell joins the line of the clonal changes it shows; a combination seen in too few cells to be a clone
itself is folded into the largest line it contains (the normal line at worst). Neoplasia: every line carries its
cell count, the largest abnormal line first and the normal line last. Constitutional: a single line carries no count;
several lines are a mosaic, `mos 47,XX,+21[4]/46,XX[16]`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .cells import Abnormality, check_study, format_line, sort_abnormalities

# Cells that must share a change for it to be clonal (ISCN 2024).
CLONE_CELLS = {"gain": 2, "structural": 2, "loss": 3}


def reference_sex(sex_counts) -> str:
    """The constitutional complement behind a specimen's cells, from each cell's (X copies, Y copies).

    Male when a Y is seen in at least 30% of the cells (so one misidentified Y among 20 female cells does not make a
    man, and a clone that lost its Y does not make a woman), or when most cells have one X and some have a Y."""
    sex_counts = list(sex_counts)
    with_y = sum(1 for _, y in sex_counts if y > 0)
    single_x = sum(1 for x, _ in sex_counts if x == 1)
    if (with_y and with_y >= 0.3 * len(sex_counts)) or (with_y and single_x > len(sex_counts) / 2):
        return "XY"
    return "XX"


# Why a cell is set aside when its sex chromosomes contradict the specimen's (`sex_inconsistent`).
FEMALE_WITH_Y = "a Y in a female specimen (most cells XX)"
MALE_AS_XX = "XX in a male specimen (most cells XY)"


def sex_inconsistent(abnormalities, reference_sex: str) -> str | None:
    """Why a cell cannot be analysed with the specimen's sex, or None. A female specimen's cell cannot gain a Y, and
    a male specimen's cell that shows an X in place of its Y (`+X` with `-Y`) has most likely had its Y
    misidentified (or the specimen is mixed, a chimera or a transplant), so the cell is set aside rather than
    written as `+Y` or `+X,-Y`. A loss of the Y alone, common in older men's marrow, stays."""
    gained = {a.chromosome for a in abnormalities if a.kind == "gain"}
    lost = {a.chromosome for a in abnormalities if a.kind == "loss"}
    if reference_sex == "XX" and "Y" in gained:
        return f"{FEMALE_WITH_Y}: a misidentified object, or a mixed specimen"
    if reference_sex == "XY" and "X" in gained and "Y" in lost:
        return f"{MALE_AS_XX}: a Y misidentified as an X, or a mixed specimen"
    return None


@dataclass(frozen=True)
class Finding:
    """One change seen in a specimen: its ISCN, kind, the cells that show it, whether it is clonal, and a score."""

    iscn: str
    kind: str
    chromosome: str
    cells: tuple[str, ...]
    clonal: bool
    score: float

    def to_dict(self) -> dict:
        return {"iscn": self.iscn, "kind": self.kind, "chromosome": self.chromosome, "cells": list(self.cells),
                "clonal": self.clonal, "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class Line:
    """One cell line of the karyotype: its clonal changes, the cells in it, and its ISCN text with `[n]`."""

    abnormalities: tuple[Abnormality, ...]
    cells: tuple[str, ...]
    text: str

    @property
    def normal(self) -> bool:
        return not self.abnormalities


@dataclass(frozen=True)
class SpecimenKaryotype:
    karyotype: str | None
    reference_sex: str
    lines: tuple[Line, ...]
    findings: tuple[Finding, ...]  # clonal
    non_clonal: tuple[Finding, ...]


def _occurrences(abnormalities) -> list[tuple[Abnormality, int]]:
    """Each item with its copy number among equal items: `+21,+21` is (+21, 1), (+21, 2)."""
    seen: Counter = Counter()
    out = []
    for item in abnormalities:
        seen[item] += 1
        out.append((item, seen[item]))
    return out


def _contains(larger: Counter, smaller: Counter) -> bool:
    return all(larger[item] >= n for item, n in smaller.items())


def _cells_needed(abnormalities) -> int:
    """Cells a line needs to stand as a clone: 3 when all it shows are losses, else 2 (none for the normal line)."""
    if not abnormalities:
        return 0
    return CLONE_CELLS["loss"] if all(a.kind == "loss" for a in abnormalities) else CLONE_CELLS["gain"]


def aggregate(cells, reference_sex: str, study: str = "neoplasia", scores: dict[str, float] | None = None
              ) -> SpecimenKaryotype:
    """The specimen karyotype from `cells`, a list of (cell name, its abnormalities) for every analysed cell.

    `scores` may give a specimen-level score per ISCN (e.g. a structural call's evidence); a finding's score is
    otherwise the fraction of analysed cells that show it."""
    check_study(study)
    cells = [(str(name), sort_abnormalities(items)) for name, items in cells]
    if not cells:
        return SpecimenKaryotype(None, reference_sex, (), (), ())
    showing: dict[tuple[Abnormality, int], list[str]] = {}
    for name, items in cells:
        for occurrence in _occurrences(items):
            showing.setdefault(occurrence, []).append(name)
    clonal = {occ for occ, names in showing.items() if len(names) >= CLONE_CELLS[occ[0].kind]}

    def finding(occurrence, names, is_clonal):
        item, copy = occurrence
        iscn = ",".join([item.iscn] * copy) if copy > 1 else item.iscn
        score = (scores or {}).get(item.iscn, len(names) / len(cells))
        return Finding(iscn, item.kind, item.chromosome, tuple(names), is_clonal, score)

    ordered = sorted(showing.items(), key=lambda kv: (kv[0][0].order, kv[0][1]))
    findings = tuple(finding(occ, names, True) for occ, names in ordered if occ in clonal)
    non_clonal = tuple(finding(occ, names, False) for occ, names in ordered if occ not in clonal)

    groups: dict[tuple[Abnormality, ...], list[str]] = {}
    for name, items in cells:
        kept = tuple(item for item, copy in _occurrences(items) if (item, copy) in clonal)
        groups.setdefault(kept, []).append(name)
    groups = _fold_small_lines(groups)
    lines = sorted(groups.items(), key=lambda kv: (not kv[0], -len(kv[1]), [a.order for a in kv[0]]))
    single_constitutional = study == "constitutional" and len(lines) == 1
    built = tuple(Line(items, tuple(names), format_line(items, reference_sex, study,
                                                        None if single_constitutional else len(names)))
                  for items, names in lines)
    karyotype = "/".join(line.text for line in built)
    if study == "constitutional" and len(built) > 1:
        karyotype = "mos " + karyotype
    return SpecimenKaryotype(karyotype, reference_sex, built, findings, non_clonal)


def _fold_small_lines(groups: dict) -> dict:
    """Move the cells of every combination seen in too few cells into the largest line whose changes it contains."""
    groups = {items: list(names) for items, names in groups.items()}
    while True:
        small = [items for items, names in groups.items() if items and len(names) < _cells_needed(items)]
        if not small:
            return groups
        items = min(small, key=lambda key: (len(groups[key]), len(key)))
        mine = Counter(items)
        hosts = [key for key in groups if key != items and _contains(mine, Counter(key))
                 and (not key or len(groups[key]) >= _cells_needed(key))]
        host = max(hosts, key=lambda key: (len(key), len(groups[key])), default=())
        groups.setdefault(host, []).extend(groups.pop(items))
