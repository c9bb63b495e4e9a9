"""Numerical clones, semi-synthetic: how often the pipeline calls a real trisomy's gain, cell by cell and in 20-cell
specimens, and what its recount rule for doubtful gains costs there.

    python benchmarks/semisynthetic_gains.py [--images 366] [--cells-cache /tmp/karyohf-cells.jsonl] [--threads 2]

Normal validation metaphases (held-out specimens) are given a third copy of one autosome in the image itself: one
annotated chromosome of the class (+8, the commonest trisomy of myeloid neoplasia, and +21) is cut
(`extract_chromosome`) and laid again, turned at random, where the field is empty (`add_to_metaphase`). Each such
metaphase goes through the whole `KaryotypePipeline`; its record is `benchmarks/cell_calls.py`'s, so the pipeline's
count, quality and recount rules are rebuilt from it as there. Per cell: the gain shown (the counted copies of the
class are three), set aside for a recount, otherwise not analysable. 20-cell specimens (of one sex) mix k such cells
with normal ones (the unmodified analysable validation cells of `cell_calls.py`'s cache, never the same metaphase
twice) and go through `specimen_calls.py`'s `specimen` (the pipeline's own aggregation); a specimen is called when
its karyotype holds the gain as a clone. Both with the recount rule for gains and without it (`cell_quality` given
no doubtful objects), so the rule's cost is measured, not argued. A pasted copy is a proxy for a real trisomy's
third chromosome: it is a real chromosome of the same cell, with no neighbour touching it.
Writes benchmarks/results/semisynthetic_gains.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from karyohf.crops import extract_chromosome
from karyohf.data import load_metaphases, split_metaphases
from karyohf.images import as_gray_uint8
from karyohf.pipeline import KaryotypePipeline
from karyohf.synthesis import add_to_metaphase
from cell_calls import NAMES, analyse, counted_labels, read_cache
from specimen_calls import annotated_sex, operating_points, specimen_with_referrals

GAINED = ("8", "21")
CLONE_CELLS = (2, 4, 6, 10, 20)
CELLS = 20
MARGIN = 6  # pixels of empty field kept between the added copy and every annotated chromosome
DARKER = 40  # grey levels under the field's background that count as something already lying there


def with_extra_copy(example, chromosome: str, rng: np.random.Generator) -> np.ndarray | None:
    """The metaphase with one more copy of an annotated `chromosome`, laid where no annotated box is near; None when
    the class is absent or the field has no room."""
    labels = [NAMES[c] for c in example["chromosomes"]]
    boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
    # A copy whose box others barely reach into, so that its cut holds no piece of a neighbour.
    copies = [i for i, label in enumerate(labels) if label == chromosome
              and np.delete(covered_share(boxes, boxes[i]), i).max(initial=0.0) < 0.1]
    if not copies:
        return None
    gray = as_gray_uint8(example["image"])
    crop = extract_chromosome(gray, example["boxes"][int(rng.choice(copies))])
    angle = float(rng.uniform(0, 360))
    turned = np.asarray(crop.rotate(angle, expand=True, fillcolor=255)) < 250
    rows, cols = np.nonzero(turned)
    half = np.array([rows.max() - rows.min(), cols.max() - cols.min()]) / 2 + MARGIN
    background = float(np.median(gray))  # most of a metaphase image is empty field
    for _ in range(300):
        centre = rng.uniform(half, np.array(gray.shape) - half)
        y0, x0 = centre - half
        y1, x1 = centre + half
        # Empty field: no annotated box, and nothing dark either (nuclei and debris carry no box).
        field = gray[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
        if not covered_share(boxes, (x0, y0, x1, y1)).any() and np.mean(field < background - DARKER) < 0.01:
            return add_to_metaphase(gray, crop, tuple(centre), angle)
    return None


def covered_share(boxes: np.ndarray, box) -> np.ndarray:
    """The share of `box` (xyxy) that each of `boxes` covers."""
    x0, y0, x1, y1 = box
    width = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
    height = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
    return width * height / max((x1 - x0) * (y1 - y0), 1e-6)


def collect(cache: Path, images: int, threads: int) -> None:
    records = [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []
    done = {(r["image_id"], r["gained"]) for r in records}
    validation = split_metaphases(load_metaphases())["validation"]
    normal = validation.filter(lambda s: s == "normal", input_columns="karyotype_status").shuffle(seed=0)
    normal = normal.select(range(min(images, len(normal))))
    torch.set_num_threads(threads)
    pipe = KaryotypePipeline.from_pretrained()
    with cache.open("a") as out:
        for example in normal:
            for chromosome in GAINED:
                if (example["image_id"], chromosome) in done:
                    continue
                rng = np.random.default_rng([int(example["image_id"]), NAMES.index(chromosome)])
                image = with_extra_copy(example, chromosome, rng)
                if image is None:
                    continue
                gained = {**example, "image": image,
                          "chromosomes": [*example["chromosomes"], NAMES.index(chromosome)]}
                out.write(json.dumps(analyse(pipe, gained, "validation") | {"gained": chromosome}) + "\n")
                out.flush()


def shown(record: dict, chromosome: str) -> bool:
    return counted_labels(record).count(chromosome) == 3


def cell_rates(records: list[dict], chromosome: str) -> dict:
    rows = [r for r in records if r["gained"] == chromosome]
    analysable = [r for r in rows if r["quality"] == "analysable"]
    return {"metaphases": len(rows), "analysable": len(analysable),
            "gain shown, among analysable": float(np.mean([shown(r, chromosome) for r in analysable] or [np.nan])),
            "gain shown and analysable, of all": float(np.mean([shown(r, chromosome) and r["quality"] == "analysable"
                                                              for r in rows] or [np.nan])),
            "set aside for a recount": float(np.mean([r["quality"].startswith("recount") for r in rows] or [np.nan])),
            "not analysable otherwise": float(np.mean([r["quality"] not in ("analysable",) and
                                                       not r["quality"].startswith("recount") for r in rows]
                                                      or [np.nan]))}


def specimen_rates(gains: list[dict], normals: list[dict], chromosome: str, thresholds: dict, draws: int) -> dict:
    """20-cell constitutional specimens of one sex: k cells with the gain, analysable or asking for a recount, and
    normal analysable ones (never the same metaphase twice). Per k, the share whose karyotype shows `+chromosome` as
    a clone (from the analysable cells, as the pipeline aggregates), and the share that shows it as a clone or is
    referred as a possible one (recounts doubting that gain and cells showing it, two or more together:
    `KaryotypePipeline.specimen`'s referral)."""
    rng = np.random.default_rng(0)
    by_sex = {sex: ([r for r in gains if r["gained"] == chromosome and annotated_sex(r) == sex
                     and (r["quality"] == "analysable" or r["quality"].startswith("recount"))],
                    [r for r in normals if r["quality"] == "analysable" and annotated_sex(r) == sex])
              for sex in ("XX", "XY")}
    out = {}
    for k in CLONE_CELLS:
        called = flagged = tried = 0
        for draw in range(draws):
            pool_gain, pool_normal = by_sex[("XX", "XY")[draw % 2]]
            if len(pool_gain) < k:
                continue
            cells = [pool_gain[i] for i in rng.choice(len(pool_gain), k, replace=False)]
            used = {r["image_id"] for r in cells}
            others = [r for r in pool_normal if r["image_id"] not in used]
            cells += [others[i] for i in rng.choice(len(others), CELLS - k, replace=False)]
            summary, referred = specimen_with_referrals(cells, thresholds)
            clone = any(f.iscn == f"+{chromosome}" and f.clonal for f in summary.findings)
            called += clone
            flagged += clone or f"+{chromosome}" in referred
            tried += 1
        out[f"{k} of {CELLS} cells"] = ({"called": round(called / tried, 4),
                                         "called or referred": round(flagged / tried, 4)} if tried else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=366, help="normal validation metaphases given a third copy")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/karyohf-gains.jsonl"))
    parser.add_argument("--cells-cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"),
                        help="benchmarks/cell_calls.py's cache: the normal cells of the specimens")
    parser.add_argument("--draws", type=int, default=1000, help="specimens drawn per clone size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "semisynthetic_gains.json")
    args = parser.parse_args()
    collect(args.cache, args.images, args.threads)
    thresholds = operating_points()
    result = {"split": "validation (grouped by specimen)", "gained": list(GAINED)}
    for rule, gain_doubt in (("with the recount rule for gains (shipped)", True), ("without it", False)):
        gains = read_cache(args.cache, gain_doubt)
        normals = [r for r in read_cache(args.cells_cache, gain_doubt)
                   if r["split"] == "validation" and r["status"] == "normal"]
        result[rule] = {chromosome: {"cells": cell_rates(gains, chromosome),
                                     "20-cell specimens, the gain in k cells":
                                         specimen_rates(gains, normals, chromosome, thresholds, args.draws)}
                        for chromosome in GAINED}
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
