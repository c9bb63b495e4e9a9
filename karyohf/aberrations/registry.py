"""The shipped aberration heads: each head's name and the (aberration, target chromosome) pairs it learns.

What a head screens is written in its own labels, and that is what the pipeline reads (`AberrationHead.screened`):
a new head needs no entry here. This registry is the one list of the heads the project trains and ships, for the
scripts around them: `train/train_aberration.py --head NAME` trains NAME's pairs, and the benchmarks measure each
shipped head's folder on the chromosomes it screens. tests/test_shipped_checkpoints.py keeps the shipped
checkpoints' labels equal to it.
"""

from __future__ import annotations

from .labels import head_label_names

# name -> (aberration key, target chromosome) pairs, in the order of the head's labels after "normal".
SHIPPED_HEADS: dict[str, tuple[tuple[str, str], ...]] = {
    "del5q": (("del(5q)", "5"),),
    "t9-22": (("t(9;22)", "9"), ("t(9;22)", "22")),
}
# A shipped head's checkpoint folder, e.g. checkpoints/topvit-del5q.
HEAD_FOLDER_PREFIX = "topvit-"


def head_folder(name: str) -> str:
    """The folder a shipped head lives in, inside the checkpoints folder: "del5q" -> "topvit-del5q"."""
    _check(name)
    return HEAD_FOLDER_PREFIX + name


def head_labels(name: str) -> list[str]:
    """The shipped head's labels in index order: "normal", then its aberrant labels."""
    _check(name)
    return head_label_names(SHIPPED_HEADS[name])


def screened_chromosomes(name: str) -> tuple[str, ...]:
    """The chromosomes the shipped head screens, in the order of its labels: "t9-22" -> ("9", "22")."""
    _check(name)
    return tuple(dict.fromkeys(target for _, target in SHIPPED_HEADS[name]))


def _check(name: str) -> None:
    if name not in SHIPPED_HEADS:
        raise KeyError(f"no shipped aberration head {name!r}; the shipped heads are {', '.join(SHIPPED_HEADS)}")
