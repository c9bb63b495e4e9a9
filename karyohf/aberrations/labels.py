"""How aberration heads name their labels: "normal" first, then each aberration (or derivative) the head knows.

Both sides read this one convention: the synthesis of training data writes it (`karyohf.synthesis`), and a trained
head's `AberrationHead` reads from its own labels which chromosomes it screens. Cytogenetics only, no model code.
"""

from __future__ import annotations

import re

from ..cytogenetics import get_aberration, normalize_chromosome

NORMAL = "normal"


def label_names(aberration_key: str, target_chromosome: int | str) -> list[str]:
    """["normal", name]: name is the key ("del(5q)", "inv(16)") or, for a translocation, the
    derivative on the target ("der(9)t(9;22)", "der(22)t(9;22)")."""
    aberration = get_aberration(aberration_key)
    target = normalize_chromosome(target_chromosome)
    if target not in aberration.chromosomes:
        involved = " and ".join(aberration.chromosomes)
        raise ValueError(f"{aberration.key} involves chromosome(s) {involved}, not chromosome {target}")
    name = f"der({target}){aberration.key}" if aberration.kind == "translocation" else aberration.key
    return [NORMAL, name]


def label_target(name: str) -> tuple[str, str]:
    """(catalogue key, screened chromosome) of a head's aberrant label, the inverse of `label_names`:
    "del(5q)" -> ("del(5q)", "5"), "der(22)t(9;22)" -> ("t(9;22)", "22")."""
    match = re.fullmatch(r"der\((\w+)\)(.+)", name)
    aberration = get_aberration(match.group(2) if match else name)
    if match:
        chromosome = normalize_chromosome(match.group(1))
        if chromosome not in aberration.chromosomes or aberration.kind != "translocation":
            raise ValueError(f"{name!r}: {aberration.key} makes no derivative of chromosome {chromosome}")
        return aberration.key, chromosome
    if aberration.kind == "translocation":
        raise ValueError(f"{name!r}: a translocation head's labels name their derivative, e.g. der(9){aberration.key}")
    return aberration.key, aberration.chromosomes[0]


def head_label_names(pairs) -> list[str]:
    """A head's labels for the (aberration key, target chromosome) pairs it learns: "normal", then each pair's
    aberrant label in order (t(9;22) on 9 and 22 -> normal, der(9)t(9;22), der(22)t(9;22))."""
    return [NORMAL] + [label_names(key, target)[1] for key, target in pairs]
