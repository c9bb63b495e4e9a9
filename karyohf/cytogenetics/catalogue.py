"""The recurrent aberrations of the paper's Table 4, with what each does to the chromosomes."""

from dataclasses import dataclass

import numpy as np

from .classes import normalize_chromosome
from .derivatives import Derivative, deletion, inversion, translocation

KINDS = ("deletion", "translocation", "inversion")


@dataclass(frozen=True)
class Aberration:
    """One ISCN structural aberration, e.g. key "t(9;22)" with breakpoints ("q34", "q11.2").

    `alternatives` hold the same aberration with other clinically common breakpoints
    (e.g. del(5)(q31q33)); each is a full Aberration with the same key.
    """

    key: str
    kind: str  # one of KINDS
    chromosomes: tuple[str, ...]
    breakpoints: tuple[str, ...]
    fusion: str | None  # gene fusion or rearrangement, e.g. "BCR::ABL1"; None for del(5q)
    note: str  # clinical context from the paper's Table 4
    alternatives: tuple["Aberration", ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"aberration {self.key!r}: kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "chromosomes", tuple(normalize_chromosome(c) for c in self.chromosomes))
        expected = 2 if self.kind == "translocation" else 1
        if len(self.chromosomes) != expected or len(self.breakpoints) != 2:
            raise ValueError(
                f"aberration {self.key!r}: a {self.kind} needs {expected} chromosome(s) and 2 breakpoints, "
                f"got {self.chromosomes} and {self.breakpoints}"
            )

    @property
    def iscn(self) -> str:
        """Short ISCN form, e.g. "t(9;22)(q34;q11.2)", "del(5)(q13q33)", "inv(16)(p13.1q22)"."""
        if self.kind == "translocation":
            return f"t({';'.join(self.chromosomes)})({';'.join(self.breakpoints)})"
        prefix = "del" if self.kind == "deletion" else "inv"
        return f"{prefix}({self.chromosomes[0]})({''.join(self.breakpoints)})"

    @property
    def forms(self) -> tuple["Aberration", ...]:
        """This form followed by its alternatives."""
        return (self,) + self.alternatives

    def derivatives(self, rng: np.random.Generator | None = None) -> tuple[Derivative, ...]:
        """The abnormal chromosomes it produces; breakpoints jittered within their bands given an rng."""
        if self.kind == "translocation":
            return translocation(*self.chromosomes, *self.breakpoints, rng=rng)
        if self.kind == "deletion":
            return (deletion(self.chromosomes[0], *self.breakpoints, rng=rng),)
        return (inversion(self.chromosomes[0], *self.breakpoints, rng=rng),)


_DEL5Q_NOTE = "MDS with isolated del(5q) (good prognosis, lenalidomide); 10-40% of myeloid neoplasms."

CATALOGUE: dict[str, Aberration] = {
    a.key: a
    for a in (
        Aberration(
            "del(5q)", "deletion", ("5",), ("q13", "q33"), None, _DEL5Q_NOTE,
            alternatives=(
                Aberration("del(5q)", "deletion", ("5",), ("q14", "q34"), None, _DEL5Q_NOTE),
                Aberration("del(5q)", "deletion", ("5",), ("q31", "q33"), None, _DEL5Q_NOTE),
            ),
        ),
        Aberration(
            "t(9;22)", "translocation", ("9", "22"), ("q34", "q11.2"), "BCR::ABL1",
            "Philadelphia chromosome: 100% of CML, 25% of adult B-ALL; tyrosine kinase inhibitors.",
        ),
        Aberration(
            "t(9;11)", "translocation", ("9", "11"), ("p21.3", "q23.3"), "KMT2A::MLLT3",
            "9-12% of paediatric and 2% of adult AML; intermediate prognosis.",
        ),
        Aberration(
            "inv(16)", "inversion", ("16",), ("p13.1", "q22"), "CBFB::MYH11",
            "Pericentric; 5-8% of AML, good prognosis; subtle and hard to see.",
        ),
        Aberration(
            "inv(3)", "inversion", ("3",), ("q21", "q26.2"), "MECOM (EVI1) rearrangement",
            "Paracentric; 1-2% of AML, <1% of MDS; poor prognosis.",
        ),
        Aberration(
            "t(11;19)", "translocation", ("11", "19"), ("q23.3", "p13.1"), "KMT2A::ELL",
            "<1% of myeloid neoplasms; poor prognosis.",
            alternatives=(
                Aberration(
                    "t(11;19)", "translocation", ("11", "19"), ("q23", "p13.3"), "KMT2A::MLLT1",
                    "<1% of myeloid neoplasms; poor prognosis.",
                ),
            ),
        ),
        Aberration(
            "t(15;17)", "translocation", ("15", "17"), ("q24", "q21"), "PML::RARA",
            "Acute promyelocytic leukaemia, 5-8% of AML; good prognosis with ATRA-based therapy.",
        ),
        Aberration(
            "t(8;21)", "translocation", ("8", "21"), ("q22", "q22"), "RUNX1::RUNX1T1",
            "1-5% of AML; good prognosis.",
        ),
        Aberration(
            "t(6;9)", "translocation", ("6", "9"), ("p23", "q34.1"), "DEK::NUP214",
            "<2% of AML; poor prognosis.",
        ),
    )
}


def get_aberration(key_or_iscn: str) -> Aberration:
    """Look up by key ("t(9;22)", "del(5q)") or by the ISCN of any form ("del(5)(q31q33)")."""
    text = key_or_iscn.replace(" ", "") if isinstance(key_or_iscn, str) else key_or_iscn
    if text in CATALOGUE:
        return CATALOGUE[text]
    for aberration in CATALOGUE.values():
        for form in aberration.forms:
            if form.iscn == text:
                return form
    raise ValueError(f"unknown aberration {key_or_iscn!r}; known keys: {', '.join(CATALOGUE)}")
