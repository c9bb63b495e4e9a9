"""Every validation metaphase (and every real `numerical` one) through `KaryotypePipeline`, cell by cell: the record
the specimen-level benchmarks build on, and the per-image aneuploidy calls.

    python benchmarks/cell_calls.py [--cache /tmp/karyohf-cells.jsonl] [--threads 1]

Per image it stores the annotated class counts and what the pipeline found (every object's label, identity
probabilities and detection score, the quality, each head's cell score and per-chromosome probabilities); counts
are rebuilt from them with the pipeline's own `counted_objects`, so the cache outlives a change of that rule. Then,
per image:
- aneuploidy: a cell is called numerically abnormal when its line (constitutional style, as these amniotic-fluid
  cells are) shows a gain or loss; sensitivity on the real `numerical` metaphases (exact line and any call), and
  specificity on the normal validation metaphases, and on the normal ones among a seeded 200 training metaphases
  (`karyohf.data.benchmarked_training_metaphases`, the same as `benchmarks/counting.py`'s: no rule or operating
  point was chosen on them, though the detector and the identity model were trained on them);
- sex chromosomes: the predicted sex field equals the annotated one.
Writes benchmarks/results/cell_calls.json. Re-running reuses the cache (delete it after changing a model).
"""

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from karyohf.aberrations import cell_aberration_scores
from karyohf.data import (BENCHMARKED_TRAINING_METAPHASES, benchmarked_training_metaphases, load_metaphases,
                          split_metaphases)
from karyohf.karyotype.cells import format_line, numerical_changes
from karyohf.karyotype.specimen import reference_sex
from karyohf.metrics import prediction_entropy
from karyohf.pipeline import KaryotypePipeline, cell_quality, counted_objects, doubtful_objects

NAMES = [str(n) for n in range(1, 23)] + ["X", "Y"]


def training_normals(splits) -> list:
    """The normal metaphases among the seeded training ones that `benchmarks/counting.py` scores."""
    train = benchmarked_training_metaphases(splits)
    return [example for example in train if example["karyotype_status"] == "normal"]


def line_of(class_counts: dict[str, int]) -> str | None:
    """Constitutional-style ISCN line of a cell from its class counts (None without sex chromosomes)."""
    sex = reference_sex([(class_counts.get("X", 0), class_counts.get("Y", 0))])
    try:
        return format_line(numerical_changes(class_counts, sex), sex, "constitutional")
    except ValueError:
        return None


def counted_mask(record: dict) -> np.ndarray:
    """Which of a cached record's objects the pipeline counts (`counted_objects`)."""
    labels = record["labels"]
    if not labels:
        return np.zeros(0, dtype=bool)
    return counted_objects(labels, np.asarray(record["probabilities"]), np.asarray(record["detection_scores"]),
                           np.zeros(len(labels), dtype=bool))


def counted_labels(record: dict) -> list[str]:
    """The cell's chromosomes as the pipeline counts them, from a cached record."""
    return [label for label, keep in zip(record["labels"], counted_mask(record)) if keep]


def doubtful_labels(record: dict) -> list[str]:
    """The counted objects of a cached record that may not be chromosomes (`doubtful_objects`)."""
    counted = counted_mask(record)
    verification = [np.nan if v is None else v for v in record.get("verification") or [np.nan] * len(counted)]
    doubt = doubtful_objects(record["detection_scores"], verification, counted, np.zeros(len(counted), dtype=bool))
    return [label for label, d in zip(record["labels"], doubt) if d]


def predicted_counts(record: dict) -> dict[str, int]:
    return dict(Counter(counted_labels(record)))


def quality(record: dict, low_confidence_entropy: float, gain_doubt: bool = True) -> str:
    """The pipeline's `cell_quality` of a cached record under the current rules (`gain_doubt=False`: as if a gain's
    doubtful copy did not ask for a recount, to measure what that rule costs)."""
    probabilities = np.asarray(record["probabilities"]).reshape(-1, 24)
    return cell_quality(counted_labels(record), np.asarray(record["boxes"]),
                        prediction_entropy(probabilities) > low_confidence_entropy, record.get("possibly_missed", ()),
                        doubtful_labels(record) if gain_doubt else ())


def read_cache(path: Path, gain_doubt: bool = True) -> list[dict]:
    """The cached records, each with its quality (`quality`) and aberration scores under the pipeline's current rules
    (the scores from the cached per-chromosome head probabilities, `cell_aberration_scores`)."""
    cutoff = KaryotypePipeline.from_pretrained().low_confidence_entropy
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r | {"quality": quality(r, cutoff, gain_doubt), "aberration_scores": rescored(r)} for r in records]


def rescored(record: dict) -> dict[str, float]:
    """A cached cell's aberration scores under the current rule, from its heads' per-chromosome probabilities."""
    if not record.get("head_probabilities"):
        return record["aberration_scores"]
    return cell_aberration_scores(record["head_probabilities"])


def analyse(pipe, example, split) -> dict:
    started = time.perf_counter()
    cell = pipe.analyze_cell(example["image"], name=example["image_id"], study="constitutional")
    seconds = time.perf_counter() - started
    annotated = Counter(NAMES[c] for c in example["chromosomes"])
    return {
        "image_id": example["image_id"], "specimen_id": example["specimen_id"], "split": split,
        "status": example["karyotype_status"], "abnormal_pairs": example["abnormal_pairs"],
        "annotated_counts": dict(annotated),
        "quality": cell.quality, "seconds": seconds, "aberration_scores": cell.aberration_scores,
        "head_probabilities": {name: [None if not np.isfinite(p) else float(p) for p in values]
                               for name, values in cell.head_probabilities.items()},
        "labels": cell.labels, "denovo_outliers": [cell.labels[i] for i in np.flatnonzero(cell.denovo_outliers)],
        "boxes": np.round(cell.boxes, 1).tolist(), "detection_scores": np.round(cell.scores, 3).tolist(),
        "probabilities": np.round(cell.probabilities, 4).tolist(), "karyotype": cell.karyotype,
        "possibly_missed": cell.possibly_missed, "count_range": list(cell.count_range),
        "verification": [None if not np.isfinite(v) else round(float(v), 4) for v in cell.verification],
    }


def collect(cache: Path, threads: int) -> None:
    """Run the pipeline on every image the cache lacks, appending a record per image."""
    done = {json.loads(line)["image_id"] for line in cache.read_text().splitlines()} if cache.is_file() else set()
    splits = split_metaphases(load_metaphases())
    todo = [(ex, "validation") for ex in splits["validation"]]
    todo += [(ex, "train") for ex in splits["train"].filter(lambda s: s == "numerical",
                                                              input_columns="karyotype_status")]
    todo += [(ex, "train") for ex in training_normals(splits)]
    torch.set_num_threads(threads)
    pipe = KaryotypePipeline.from_pretrained()
    with cache.open("a") as out:
        for example, split in todo:
            if example["image_id"] in done:
                continue
            out.write(json.dumps(analyse(pipe, example, split)) + "\n")
            out.flush()


def summarise(records: list[dict]) -> dict:
    def rates(rows):
        truth = [line_of(r["annotated_counts"]) for r in rows]
        predicted = [line_of(predicted_counts(r)) for r in rows]
        return truth, predicted

    def normal_calls(normal):
        truth, predicted = rates(normal)
        analysable = [p for p, r in zip(predicted, normal) if r["quality"] == "analysable"]
        return {
            "images": len(normal),
            "specificity (no gain or loss called)": float(np.mean([p in ("46,XX", "46,XY") for p in predicted])),
            "analysable": len(analysable),
            "specificity among analysable": float(np.mean([p in ("46,XX", "46,XY") for p in analysable])),
            "set aside for a recount": int(sum(r["quality"].startswith("recount") for r in normal)),
            "annotated count within count_range": float(np.mean(
                [r["count_range"][0] <= sum(r["annotated_counts"].values()) <= r["count_range"][1] for r in normal]))
            if all("count_range" in r for r in normal) else None,
            "sex chromosomes right": float(np.mean([(p or "").split(",")[1:2] == (t or "").split(",")[1:2]
                                                    for p, t in zip(predicted, truth)])),
            "count exact": float(np.mean([sum(predicted_counts(r).values()) == sum(r["annotated_counts"].values())
                                          for r in normal])),
            "objects found = annotated count (before the extra-copy rule)": float(np.mean(
                [len(r["labels"]) == sum(r["annotated_counts"].values()) for r in normal])),
        }

    result = {}
    for split, name in (("validation", "normal validation metaphases"),
                        ("train", f"normal training metaphases (of the seeded {BENCHMARKED_TRAINING_METAPHASES}, "
                                  "nothing tuned)")):
        normal = [r for r in records if r["split"] == split and r["status"] == "normal"]
        if normal:
            result[name] = normal_calls(normal)
    for split in ("validation", "train", "all"):
        rows = [r for r in records if r["status"] == "numerical" and split in (r["split"], "all")]
        truth, predicted = rates(rows)
        result[f"numerical metaphases ({split} split)"] = {
            "images": len(rows),
            "sensitivity (exact annotated line)": float(np.mean([p == t for p, t in zip(predicted, truth)])),
            "sensitivity (any gain or loss called)": float(np.mean([p not in ("46,XX", "46,XY") for p in predicted])),
            "sex chromosomes right": float(np.mean([(p or "").split(",")[1:2] == (t or "").split(",")[1:2]
                                                    for p, t in zip(predicted, truth)])),
            "analysable": int(sum(r["quality"] == "analysable" for r in rows)),
            "sensitivity among analysable (exact annotated line)": float(np.mean(
                [p == t for p, t, r in zip(predicted, truth, rows) if r["quality"] == "analysable"] or [np.nan])),
            "set aside for a recount": int(sum(r["quality"].startswith("recount") for r in rows)),
            "cells": [{"image_id": r["image_id"], "annotated": t, "predicted": p, "quality": r["quality"]}
                      for r, t, p in zip(rows, truth, predicted)],
        }
    result["median seconds per metaphase (shared CPU, not a timing run)"] = float(np.median([r["seconds"] for r in records]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "cell_calls.json")
    args = parser.parse_args()
    collect(args.cache, args.threads)
    result = summarise(read_cache(args.cache))
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "cells"} if isinstance(v, dict) else v
                      for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
