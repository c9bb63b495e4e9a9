"""The real data as `datasets.Dataset`s, and splits grouped so that no specimen is on both sides.

Two collections live under the data root (`KARYOHF_DATA`, default `../shared/data` beside the
repository; see its README):
- `tseng2023/`: G-banded metaphases with 24-class chromosome boxes (Tseng et al. 2023).
- `karyogram_crops/crops.parquet`: single-chromosome crops cut from karyograms.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import os
from collections import defaultdict
from pathlib import Path

import datasets

from .cytogenetics.classes import CHROMOSOMES

DATA_ENV = "KARYOHF_DATA"
# `../shared/data` beside the checkout, the working directory (the library never looks outside its package on its own).
_DEFAULT_ROOT = Path("..") / "shared" / "data"
METAPHASES = "tseng2023"
KARYOGRAM_CROPS = "karyogram_crops/crops.parquet"
# Karyogram cells whose labels are wrong: the crops of a karyogram are labelled by their place in it, and in these
# cells the places slipped. Found as the cells where the identity model called many crops the class just before their
# label (12 of 45, 11 of 46 and 12 of 36 crops; no other of the 612 cells has more than 3), then checked by eye. They
# are left out of both splits.
MISLABELED_KARYOGRAM_CELLS = {
    "97002569.11": "no second 18, and every label after it one place late: the crops labelled 19-22 are 18-21, "
                   "those labelled X are 22s and the one labelled Y is an X",
    "97002302.18": "labels one place late from 13 on: the two crops labelled Y are the X chromosomes, those "
                   "labelled X are 22s",
    "97002319.8": "an incomplete karyogram (36 crops) labelled one place late from 13 on: no 13, three 18s",
}


class DataNotFoundError(FileNotFoundError):
    """The real data is not where karyohf looked for it."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given, else $KARYOHF_DATA, else ../shared/data beside the repository."""
    path = Path(root or os.environ.get(DATA_ENV) or _DEFAULT_ROOT).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"karyohf data folder not found at {path}. Set {DATA_ENV}=/path/to/data "
            f"(the folder holding {METAPHASES}/ and karyogram_crops/)."
        )
    return path


def _required(path: Path) -> Path:
    if not path.exists():
        raise DataNotFoundError(f"expected {path} inside the karyohf data folder; is {DATA_ENV} pointing at the right place?")
    return path


def specimen_of(image_id: str) -> str:
    """The dataset's image ids share all but their last digit within a specimen."""
    return str(image_id)[:-1]


def metaphase_features() -> datasets.Features:
    return datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "specimen_id": datasets.Value("string"),
            "image": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "chromosomes": datasets.List(datasets.ClassLabel(names=list(CHROMOSOMES))),
            "karyotype_status": datasets.Value("string"),
            "chromosome_count": datasets.Value("int32"),
            "abnormal_pairs": datasets.Value("string"),
        }
    )


def load_metaphases(root: str | os.PathLike | None = None) -> datasets.Dataset:
    """All metaphases: image, boxes (xyxy pixels), chromosome labels and image-level karyotype status."""
    folder = data_root(root) / METAPHASES
    boxes_by_image: dict[str, list[list[float]]] = defaultdict(list)
    labels_by_image: dict[str, list[int]] = defaultdict(list)
    with open(_required(folder / "boxes.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            boxes_by_image[row["image_id"]].append([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels_by_image[row["image_id"]].append(CHROMOSOMES.index(row["chromosome"]))
    columns: dict[str, list] = defaultdict(list)
    with open(_required(folder / "images.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            image_id = row["image_id"]
            columns["image_id"].append(image_id)
            columns["specimen_id"].append(specimen_of(image_id))
            columns["image"].append(str(_required(folder / "images" / f"{image_id}.jpg")))
            columns["width"].append(int(row["width"]))
            columns["height"].append(int(row["height"]))
            columns["boxes"].append(boxes_by_image.get(image_id, []))
            columns["chromosomes"].append(labels_by_image.get(image_id, []))
            columns["karyotype_status"].append(row["karyotype_status"])
            columns["chromosome_count"].append(int(row["chromosome_count"]))
            columns["abnormal_pairs"].append(row["abnormal_pairs"])
    return datasets.Dataset.from_dict(dict(columns), features=metaphase_features())


def validation_metaphases(limit: int | None = None, root: str | os.PathLike | None = None, seed: int = 0,
                          status: str | None = None) -> datasets.Dataset:
    """The held-out metaphases (of one `karyotype_status` if given), or a seeded random `limit` of them (the first N
    would be a few specimens only): the subset every benchmark and training script scores on."""
    validation = split_metaphases(load_metaphases(root))["validation"]
    if status is not None:
        validation = validation.filter(lambda value: value == status, input_columns="karyotype_status")
    if limit:
        validation = validation.shuffle(seed=seed).select(range(min(limit, len(validation))))
    return validation


# The first of the seeded training permutation are what the benchmarks score on the training side (counts, cell
# calls): nothing is fitted on them. What is fitted on training metaphases (the object verifier, the detector's box
# offset) takes the ones after them.
BENCHMARKED_TRAINING_METAPHASES = 200


def benchmarked_training_metaphases(splits: datasets.DatasetDict, seed: int = 0) -> datasets.Dataset:
    """The training metaphases the benchmarks score, where nothing is fitted (the first of the seeded permutation)."""
    train = splits["train"].shuffle(seed=seed)
    return train.select(range(min(BENCHMARKED_TRAINING_METAPHASES, len(train))))


def fitting_metaphases(splits: datasets.DatasetDict, count: int, seed: int = 0) -> datasets.Dataset:
    """`count` training metaphases to fit a rule or setting on: those after `benchmarked_training_metaphases`."""
    train = splits["train"].shuffle(seed=seed)
    first = min(BENCHMARKED_TRAINING_METAPHASES, len(train))
    return train.select(range(first, min(first + count, len(train))))


def load_karyogram_crops(root: str | os.PathLike | None = None) -> datasets.Dataset:
    """The karyogram crops: `image` (grayscale PNG), `chromosome` (ClassLabel 1..22, X, Y), `cell_id`, `case_id`;
    without the cells in `MISLABELED_KARYOGRAM_CELLS`."""
    path = _required(data_root(root) / KARYOGRAM_CROPS)
    crops = datasets.load_dataset("parquet", data_files=str(path), split="train")
    return crops.filter(lambda cell: cell not in MISLABELED_KARYOGRAM_CELLS, input_columns="cell_id")


def in_validation(group: str, validation_fraction: float = 0.15, seed: int = 0) -> bool:
    """Deterministic group assignment from a hash: stable across runs, machines and dataset order."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < validation_fraction


def split_by_group(
    dataset: datasets.Dataset, group_column: str, validation_fraction: float = 0.15, seed: int = 0
) -> datasets.DatasetDict:
    """Train/validation split in which every group (specimen, case) lands wholly on one side."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if group_column not in dataset.column_names:
        raise ValueError(f"no column {group_column!r}; columns are {dataset.column_names}")
    groups = dataset[group_column]
    validation = [i for i, group in enumerate(groups) if in_validation(str(group), validation_fraction, seed)]
    chosen = set(validation)
    train = [i for i in range(len(groups)) if i not in chosen]
    return datasets.DatasetDict(train=dataset.select(train), validation=dataset.select(validation))


def split_metaphases(dataset: datasets.Dataset, validation_fraction: float = 0.15, seed: int = 0) -> datasets.DatasetDict:
    return split_by_group(dataset, "specimen_id", validation_fraction, seed)


def split_karyogram_crops(dataset: datasets.Dataset, validation_fraction: float = 0.15, seed: int = 0) -> datasets.DatasetDict:
    return split_by_group(dataset, "case_id", validation_fraction, seed)


def crop_features() -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "chromosome": datasets.ClassLabel(names=list(CHROMOSOMES)),
            "cell_id": datasets.Value("string"),
            "group_id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "cell_scale": datasets.Value("float32"),  # `karyohf.crops.cell_scale` of the crop's cell
        }
    )


# The two collections chromosome crops come from: cut from annotated metaphases, or a lab's karyogram cells.
CROP_SOURCES = ("metaphase", "karyogram")


def _crops_of_jobs(jobs: list[tuple[str, str, str, list[int]]], crop_code: str):
    """Generator for `Dataset.from_generator`: each worker gets a share of the (root, split, source, indices) jobs.

    `crop_code` is unused here: it is the source of the crop path, passed so that `datasets` fingerprints it and
    rebuilds the cache when the crop code changes instead of serving crops made by older code.
    """
    from .crops import karyogram_crops, metaphase_crops

    for root, split, source, indices in jobs:
        if source == "metaphase":
            yield from metaphase_crops(split_metaphases(load_metaphases(root))[split].select(indices))
        else:
            yield from karyogram_crops(split_karyogram_crops(load_karyogram_crops(root))[split].select(indices))


def _shard_of(cell: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(str(cell).encode()).digest()[:4], "big") % shards


def chromosome_crops(
    split: str, root: str | os.PathLike | None = None, num_proc: int = 2, shards: int = 16
) -> datasets.Dataset:
    """Paper-format crops of every chromosome on one side of the split, from both collections.

    Metaphase crops come from the annotated boxes through `karyohf.crops.extract_chromosome`, the
    same path the pipeline uses on detected boxes; karyogram crops go through the same function.
    Built once (a few minutes) and cached by `datasets` under its usual cache folder.
    """
    from . import crops as crops_module
    from .segmentation import threshold as segmentation_module

    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    root = str(data_root(root))
    # Whole cells per job, so each crop's cell scale is computed over its whole cell.
    cells = {"metaphase": split_metaphases(load_metaphases(root))[split]["image_id"],
             "karyogram": split_karyogram_crops(load_karyogram_crops(root))[split]["cell_id"]}
    jobs = [(root, split, source, [i for i, cell in enumerate(cells[source]) if _shard_of(cell, shards) == k])
            for source in cells for k in range(shards)]
    return datasets.Dataset.from_generator(
        _crops_of_jobs,
        features=crop_features(),
        gen_kwargs={"jobs": jobs, "crop_code": inspect.getsource(crops_module) + inspect.getsource(segmentation_module)},
        num_proc=num_proc,
    )
