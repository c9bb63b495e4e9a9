"""Normal-vs-aberrant datasets per target chromosome, and a contact sheet to judge them by eye.

No real chromosome carries an aberration label, so the aberrant class is synthesized from real
normal crops. Within each cell the copies of the target chromosome are shared out: one stays
normal, the next becomes the source of an aberrant one, as in a patient's cell where one homologue
carries the change. Nothing crosses the train/validation split (by case or specimen), and no
real chromosome is used twice.

Both kinds of real crop take part, in both classes: karyogram crops (upright, p arm on top) and
crops cut from metaphases (either way up, so their orientation is read off the centromere). Heads
trained on karyogram crops alone called one in five real normal 9s cut from metaphases der(9).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw

from ..aberrations.labels import NORMAL, label_names
from ..augmentation import augment_crop
from ..crops import extract_chromosome
from ..cytogenetics import CATALOGUE, CHROMOSOMES, get_aberration, normalize_chromosome
from ..data import chromosome_crops
from .chromosomes import resample_normal, synthesize


def dataset_folder(data_dir: str | os.PathLike, aberration_key: str, target_chromosome: int | str) -> Path:
    """Where `train/make_aberration_data.py` saves a target's dataset: <data_dir>/<name made shell-safe>
    (der(9)t(9;22) -> der_9_t_9_22), with one `save_to_disk` folder per split inside."""
    name = label_names(aberration_key, target_chromosome)[1]
    return Path(data_dir) / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def load_aberration_dataset(
    target_chromosome: int | str, aberration_key: str, split: str, data_dir: str | os.PathLike | None = None, **kwargs
) -> datasets.Dataset:
    """The saved dataset of `dataset_folder` when `data_dir` holds it, else built now by `aberration_dataset`."""
    if data_dir is not None:
        folder = dataset_folder(data_dir, aberration_key, target_chromosome) / split
        if folder.is_dir():
            return datasets.load_from_disk(str(folder))
    return aberration_dataset(target_chromosome, aberration_key, split, **kwargs)


def balanced_subset(dataset: datasets.Dataset, per_class: int, seed: int = 0) -> datasets.Dataset:
    """`per_class` examples of each label (normal, aberrant), drawn without replacement with `seed`: the small
    training sets of learning curves, cross-validation pools and few-shot finetuning."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset["label"])
    picked = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < per_class:
            raise ValueError(f"asked for {per_class} examples of label {label}, the dataset has {len(rows)}")
        picked.append(rng.choice(rows, per_class, replace=False))
    return dataset.select(np.concatenate(picked).tolist())


def dataset_features(names: list[str]) -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "iscn": datasets.Value("string"),  # "normal" or the derivative, e.g. "der(22)t(9;22)(q34;q11.2)"
            "chromosome": datasets.Value("string"),
            # "real", "resampled" (a normal crop through the synthesis path) or "synthesized"
            "source": datasets.Value("string"),
            "cell_id": datasets.Value("string"),
            "case_id": datasets.Value("string"),
            "partner_cell_id": datasets.Value("string"),  # translocations: the cell the partner came from
            "cell_scale": datasets.Value("float32"),  # the target's cell's `karyohf.crops.cell_scale`
        }
    )


def aberration_dataset(
    target_chromosome: int | str,
    aberration_key: str,
    split: str = "train",
    crops: datasets.Dataset | None = None,
    root: str | os.PathLike | None = None,
    resampled_fraction: float = 0.5,
    augment: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Real normal crops of `target_chromosome` and aberrant ones synthesized from other real crops.

    Args:
        target_chromosome: the chromosome the classifier looks at (5 for del(5q); 9 or 22 for t(9;22)).
        aberration_key: a catalogue key ("del(5q)", "t(9;22)", ...); every breakpoint form is used.
        split: "train" or "validation" side of `karyohf.data.chromosome_crops` (karyogram crops by
            case, metaphase crops by specimen); ignored when `crops` is given.
        crops: rows (image, chromosome class index, cell_id, case_id, and optionally source:
            "metaphase" for a crop cut from a metaphase, either way up; otherwise a karyogram crop,
            p arm on top) to use instead of the split's crops from `root`.
        resampled_fraction: share of normal crops passed through the synthesis path without a
            rearrangement, so that resampling traces cannot tell the classes apart.
        augment: pass every image of both classes through `augment_crop` (training usually
            augments on the fly instead).
        limit: at most this many examples per class.
        seed: drives the sharing out, breakpoints, forms and augmentation; the same seed gives
            the same dataset.

    Returns:
        A Dataset with columns image (paper-format crop), label (ClassLabel `label_names`), iscn,
        chromosome, source, cell_id, case_id, partner_cell_id, cell_scale (1.0 where `crops` has none).
    """
    names = label_names(aberration_key, target_chromosome)
    aberration = get_aberration(aberration_key)
    target = normalize_chromosome(target_chromosome)
    if crops is None:
        crops = chromosome_crops(split, root).rename_column("group_id", "case_id")
    rng = np.random.default_rng(seed)
    columns = _id_columns(crops)
    normal_rows, aberrant_rows = _share_out(columns, target, rng)
    partners = [c for c in aberration.chromosomes if c != target]
    partner_finder = _PartnerFinder(crops, columns, partners[0], rng) if partners else None
    normal_rows, aberrant_rows = normal_rows[:limit], aberrant_rows[:limit]

    rows: dict[str, list] = defaultdict(list)

    def add(image: Image.Image, label: int, iscn: str, source: str, example: dict, partner_cell: str) -> None:
        rows["image"].append(augment_crop(image, rng) if augment else image)
        rows["label"].append(label)
        rows["iscn"].append(iscn)
        rows["chromosome"].append(target)
        rows["source"].append(source)
        rows["cell_id"].append(example["cell_id"])
        rows["case_id"].append(example["case_id"])
        rows["partner_cell_id"].append(partner_cell)
        rows["cell_scale"].append(float(example.get("cell_scale", 1.0)))

    for index in normal_rows:
        example = crops[index]
        image = example["image"]
        if rng.random() < resampled_fraction:
            add(resample_normal(image, target, p_arm_up=_p_arm_up(example)), 0, NORMAL, "resampled", example, "")
        else:
            add(extract_chromosome(image, (0, 0, image.width, image.height)), 0, NORMAL, "real", example, "")
    for index in aberrant_rows:
        example = crops[index]
        partner, partner_cell = partner_finder.find(example) if partner_finder else (None, "")
        # One orientation for both pieces: known only when both are karyogram crops, else read off each centromere.
        p_arm_up = _p_arm_up(example) and (partner is None or _p_arm_up(partner))
        result = synthesize(example["image"], aberration, target, partner and partner["image"], rng=rng, p_arm_up=p_arm_up)
        add(result.image, 1, result.iscn, "synthesized", example, partner_cell)
    return datasets.Dataset.from_dict(dict(rows), features=dataset_features(names))


def _p_arm_up(example: dict) -> bool | None:
    """True for a karyogram crop (p arm on top); None (to be estimated) for a crop cut from a metaphase."""
    return None if example.get("source") == "metaphase" else True


def _id_columns(crops: datasets.Dataset) -> dict[str, list]:
    """chromosome, cell_id and case_id of every row as plain lists (without decoding any image)."""
    return crops.select_columns(["chromosome", "cell_id", "case_id"]).to_dict()


def _share_out(columns: dict[str, list], target: str, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Row indices of the target chromosome, alternately normal and aberrant source within each cell."""
    target_class = CHROMOSOMES.index(target)
    by_cell: dict[str, list[int]] = defaultdict(list)
    for index, (chromosome, cell) in enumerate(zip(columns["chromosome"], columns["cell_id"])):
        if chromosome == target_class:
            by_cell[cell].append(index)
    normal, aberrant = [], []
    for cell in sorted(by_cell):
        copies = list(rng.permutation(by_cell[cell]))
        first_normal = bool(rng.integers(2))  # a cell with one copy gives it to either class
        for k, index in enumerate(copies):
            (normal if (k % 2 == 0) == first_normal else aberrant).append(int(index))
    return list(rng.permutation(normal)), list(rng.permutation(aberrant))


class _PartnerFinder:
    """A real partner chromosome for a translocation: from the same cell if it has one, else the
    same case, else anywhere on this side of the split."""

    def __init__(self, crops: datasets.Dataset, columns: dict[str, list], partner: str, rng: np.random.Generator):
        self.crops, self.rng = crops, rng
        partner_class = CHROMOSOMES.index(partner)
        self.by_cell, self.by_case, self.everywhere = defaultdict(list), defaultdict(list), []
        rows = zip(columns["chromosome"], columns["cell_id"], columns["case_id"])
        for index, (chromosome, cell, case) in enumerate(rows):
            if chromosome == partner_class:
                self.by_cell[cell].append(index)
                self.by_case[case].append(index)
                self.everywhere.append(index)
        if not self.everywhere:
            raise ValueError(f"no chromosome {partner} on this side of the split to take a partner segment from")

    def find(self, example: dict) -> tuple[dict, str]:
        """The partner's row and its cell."""
        pool = self.by_cell.get(example["cell_id"]) or self.by_case.get(example["case_id"]) or self.everywhere
        partner = self.crops[int(self.rng.choice(pool))]
        return partner, partner["cell_id"]


def contact_sheet(crops: datasets.Dataset, per_row: int = 5, seed: int = 0, zoom: int = 2) -> Image.Image:
    """For every derivative of every catalogue aberration, a row of real normal crops of that
    chromosome next to synthesized aberrant ones (each from a different real crop and a same-cell
    partner where there is one), labelled, at `zoom` times the native scale."""
    rng = np.random.default_rng(seed)
    columns = _id_columns(crops)
    rows = []
    for aberration in CATALOGUE.values():
        for target in aberration.chromosomes:
            normal, aberrant = _share_out(columns, target, rng)
            partners = [c for c in aberration.chromosomes if c != target]
            finder = _PartnerFinder(crops, columns, partners[0], rng) if partners else None
            real = [crops[i]["image"] for i in normal[:per_row]]
            real = [extract_chromosome(image, (0, 0, image.width, image.height)) for image in real]
            made = []
            for index in aberrant[:per_row]:
                example = crops[index]
                partner, _ = finder.find(example) if finder else (None, "")
                made.append(synthesize(example["image"], aberration, target, partner and partner["image"], rng=rng,
                                       p_arm_up=True))
            title = f"chr {target}: {label_names(aberration.key, target)[1]}"
            rows.append(_sheet_row(title, real, made, zoom))
    width = max(row.width for row in rows)
    sheet = Image.new("L", (width, sum(row.height for row in rows)), 255)
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    return sheet


def _sheet_row(title: str, real: list[Image.Image], made: list, zoom: int) -> Image.Image:
    """Title, then the real crops, a gap, and the synthesized ones captioned with their ISCN."""
    tiles = real + [result.image for result in made]
    ink_rows = [np.nonzero((np.asarray(tile) < 235).any(axis=1))[0] for tile in tiles]
    top = min(r.min() for r in ink_rows if r.size) - 2
    bottom = max(r.max() for r in ink_rows if r.size) + 3
    tile_w, tile_h, caption = 60 * zoom, (bottom - top) * zoom, 12
    gap = tile_w // 2
    row = Image.new("L", (tile_w * len(tiles) + gap, tile_h + 16 + caption), 255)
    draw = ImageDraw.Draw(row)
    draw.text((4, 2), f"{title}    left: real normal    right: synthesized", fill=0)
    for k, tile in enumerate(tiles):
        x = k * tile_w + (gap if k >= len(real) else 0)
        piece = tile.crop((20, top, 79, bottom)).resize((tile_w, tile_h), Image.Resampling.BICUBIC)
        row.paste(piece, (x, 16))
        if k >= len(real):
            iscn = made[k - len(real)].iscn
            draw.text((x + 2, 16 + tile_h), iscn.split(")", 1)[1] if iscn.startswith("der") else iscn, fill=90)
    draw.line([(len(real) * tile_w + gap // 2, 16), (len(real) * tile_w + gap // 2, 16 + tile_h)], fill=200)
    return row
