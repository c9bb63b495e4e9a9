"""Table 1, semi-synthetic: specimen-level del(5q) and t(9;22) calls on real metaphases carrying pasted derivatives.

    python benchmarks/semisynthetic_specimens.py [--images 150] [--cells-cache /tmp/karyohf-cells.jsonl]

Real normal validation metaphases (held-out specimens) are made aberrant in the image itself: one annotated 5 is
replaced by its del(5q) derivative, or one 9 and one 22 by der(9) and der(22) of t(9;22), each synthesized from the
chromosome it replaces (`karyohf.synthesis.synthesize`) and pasted over its mask (`paste_into_metaphase`). Every
such metaphase then goes through the whole `KaryotypePipeline` (detector, crops, identity, heads) like any other.
20-cell specimens mix k aberrant cells (clone fraction 10%-100%) with normal ones (the unmodified validation
metaphases of `benchmarks/cell_calls.py`'s cache); negatives are 20 normal cells. The specimen score is
`specimen_score` (cells called at the head's operating point, then the second-best cell's score), as the pipeline
reports it. Pasted derivatives are a proxy for real aberrant chromosomes: no real metaphase here carries one.

Writes benchmarks/results/semisynthetic_specimens.json: per aberration, PR-AUC over all fractions (the paper's
Table 1: 0.938 del(5q), 0.944 t(9;22)) and per fraction, and the sensitivity (clone called) at the operating point.
The normal specimens are made of cells that helped choose the operating point, so their false-call rate is
in-sample; the leave-one-specimen-out rate of `train/calibrate_specimen_calls.py` is reported beside it.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from karyohf.aberrations import OPERATING_POINT_FILE, SHIPPED_HEADS, screened_chromosomes, specimen_score
from karyohf.crops import extract_chromosome
from karyohf.data import load_metaphases, split_metaphases
from karyohf.images import as_gray_uint8
from karyohf.pipeline import KaryotypePipeline, resolve_checkpoints
from karyohf.synthesis import paste_into_metaphase, synthesize
from cell_calls import read_cache, rescored

# The shipped heads' aberrations and the chromosomes whose derivatives are pasted: del(5q) -> 5, t(9;22) -> 9, 22.
ABERRATIONS = {key: screened_chromosomes(name) for name, pairs in SHIPPED_HEADS.items()
               for key in dict.fromkeys(key for key, _ in pairs)}
FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
CELLS_PER_SPECIMEN = 20


def aberrant_metaphase(example, key: str, rng: np.random.Generator) -> tuple[np.ndarray, dict] | None:
    """The metaphase with one copy of each chromosome the aberration involves replaced by its derivative, and the
    replaced chromosomes' annotated boxes."""
    names = [str(n) for n in range(1, 23)] + ["X", "Y"]
    labels = [names[c] for c in example["chromosomes"]]
    gray = as_gray_uint8(example["image"])
    chosen = {}
    for chromosome in ABERRATIONS[key]:
        candidates = [i for i, label in enumerate(labels) if label == chromosome]
        if not candidates:
            return None
        chosen[chromosome] = int(rng.choice(candidates))
    crops = {c: extract_chromosome(gray, example["boxes"][i]) for c, i in chosen.items()}
    seed = int(rng.integers(1 << 30))  # the same draw for both derivatives: one pair of breakpoints
    out = gray
    for chromosome, index in chosen.items():
        partner = next((crops[c] for c in crops if c != chromosome), None)
        derivative = synthesize(crops[chromosome], key, chromosome=chromosome, partner_image=partner, rng=seed)
        out = paste_into_metaphase(out, example["boxes"][index], derivative.image)
    return out, {chromosome: example["boxes"][index] for chromosome, index in chosen.items()}


def derivative_found(cell, box) -> dict:
    """Whether the pipeline counted the pasted derivative and how it labelled it: of the counted boxes lying at
    least half inside the replaced chromosome's box, the one centred nearest the box's centre (the derivative is
    laid over the original's centre)."""
    x0, y0, x1, y1 = box
    nearest, label = np.inf, None
    for (a0, b0, a1, b1), name, counted in zip(cell.boxes, cell.labels, cell.counted):
        if not counted:  # an unsure extra copy, left out of the count
            continue
        inside = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
        if inside < 0.5 * max((a1 - a0) * (b1 - b0), 1e-6):
            continue
        distance = np.hypot((a0 + a1 - x0 - x1) / 2, (b0 + b1 - y0 - y1) / 2)
        if distance < nearest:
            nearest, label = distance, name
    return {"counted": label is not None, "label": label}


def collect(cache: Path, images: int, threads: int) -> list[dict]:
    records = [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []
    done = {(r["image_id"], r["aberration"]) for r in records}
    validation = split_metaphases(load_metaphases())["validation"]
    normal = validation.filter(lambda s: s == "normal", input_columns="karyotype_status").shuffle(seed=0)
    normal = normal.select(range(min(images, len(normal))))
    torch.set_num_threads(threads)
    pipe = KaryotypePipeline.from_pretrained()
    with cache.open("a") as out:
        for example in normal:
            for key in ABERRATIONS:
                if (example["image_id"], key) in done:
                    continue
                rng = np.random.default_rng([int(example["image_id"]), len(key)])
                made = aberrant_metaphase(example, key, rng)
                if made is None:
                    continue
                image, replaced = made
                cell = pipe.analyze_cell(image, name=example["image_id"], study="constitutional")
                record = {"image_id": example["image_id"], "aberration": key, "quality": cell.quality,
                          "aberration_scores": cell.aberration_scores, "labels_counts": len(cell.labels),
                          "derivatives": {c: derivative_found(cell, box) for c, box in replaced.items()},
                          "head_probabilities": {name: [None if not np.isfinite(p) else float(p) for p in values]
                                                 for name, values in cell.head_probabilities.items()},
                          "labels": cell.labels}
                out.write(json.dumps(record) + "\n")
                out.flush()
                records.append(record)
    return records


def specimens(aberrant: list[float], normal: list[float], k: int, draws: int, rng) -> np.ndarray:
    """`draws` specimens of k aberrant and 20 - k normal cells' scores, each row one specimen."""
    rows = []
    for _ in range(draws):
        rows.append(np.concatenate([rng.choice(aberrant, k, replace=False),
                                    rng.choice(normal, CELLS_PER_SPECIMEN - k, replace=False)]))
    return np.asarray(rows)


def evaluate(records: list[dict], normal_cells: list[dict], thresholds: dict[str, float], draws: int) -> dict:
    rng = np.random.default_rng(0)
    result = {}
    for key in ABERRATIONS:
        # Only cells the pipeline would analyse enter a specimen, as in `KaryotypePipeline.specimen`.
        aberrant = [r["aberration_scores"][key] for r in records if r["aberration"] == key and
                    r["quality"] == "analysable"]
        normal = [r["aberration_scores"][key] for r in normal_cells if r["quality"] == "analysable"]
        threshold = thresholds[key]
        negatives = specimens(aberrant, normal, 0, draws, rng)
        negative_scores = [specimen_score(s, threshold) for s in negatives]
        called_negative = float(np.mean([np.sum(s >= threshold) >= 2 for s in negatives]))
        per_fraction, all_positive = {}, []
        for fraction in FRACTIONS:
            k = max(1, round(fraction * CELLS_PER_SPECIMEN))
            positives = specimens(aberrant, normal, k, draws, rng)
            scores = [specimen_score(s, threshold) for s in positives]
            all_positive += scores
            per_fraction[f"{fraction:.0%} ({k} cells)"] = {
                "pr_auc": float(average_precision_score([1] * draws + [0] * draws, scores + negative_scores)),
                "sensitivity at the operating point": float(np.mean([np.sum(s >= threshold) >= 2 for s in positives])),
            }
        # All fractions pooled against as many negatives as positives (the negatives re-drawn for the pool).
        pooled_negatives = [specimen_score(s, threshold)
                            for s in specimens(aberrant, normal, 0, len(all_positive), rng)]
        # Where aberrant cells are lost before any head: the pasted derivative not counted, or counted under
        # another label (a head screens only its own chromosomes).
        found = [r["derivatives"] for r in records if r["aberration"] == key and r["quality"] == "analysable" and
                 "derivatives" in r]
        derivatives = {chromosome: {
            "counted": float(np.mean([f[chromosome]["counted"] for f in found])) if found else None,
            "counted and labelled as its chromosome": float(np.mean(
                [f[chromosome]["label"] == chromosome for f in found])) if found else None,
        } for chromosome in ABERRATIONS[key]}
        result[key] = {
            "aberrant metaphases": len(aberrant), "normal metaphases": len(normal), "cell threshold": threshold,
            "pasted derivative, by the chromosome it replaced": derivatives,
            "cell-level: aberrant cells called": float(np.mean(np.asarray(aberrant) >= threshold)),
            "cell-level: normal cells called": float(np.mean(np.asarray(normal) >= threshold)),
            "pr_auc (all fractions pooled)": float(average_precision_score(
                [1] * len(all_positive) + [0] * len(pooled_negatives), all_positive + pooled_negatives)),
            "normal specimens with a structural call": called_negative,
            "per clone fraction": per_fraction,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150, help="normal validation metaphases made aberrant")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/karyohf-semisynthetic.jsonl"))
    parser.add_argument("--cells-cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"),
                        help="benchmarks/cell_calls.py's cache: the unmodified metaphases")
    parser.add_argument("--draws", type=int, default=2000, help="specimens drawn per clone fraction")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "semisynthetic_specimens.json")
    args = parser.parse_args()
    records = [r | {"aberration_scores": rescored(r)} for r in collect(args.cache, args.images, args.threads)]
    normal_cells = read_cache(args.cells_cache)
    normal_cells = [r for r in normal_cells if r["split"] == "validation" and r["status"] == "normal"]
    pipe_heads = KaryotypePipeline.from_pretrained().heads
    thresholds = {key: head.cell_thresholds[key] for head in pipe_heads for key in head.aberrations}
    result = evaluate(records, normal_cells, thresholds, args.draws)
    # The negatives above helped choose the threshold (train/calibrate_specimen_calls.py); its leave-one-specimen-out
    # figure for the analysable cells that specimens are made of is the honest false-call rate.
    for head in pipe_heads:
        point = resolve_checkpoints(None) / head.name / OPERATING_POINT_FILE
        chosen = json.loads(point.read_text())["chosen_on"] if point.is_file() else {}
        for key in head.aberrations:
            held_out = chosen.get(key, {}).get(
                "20-cell specimen false-call probability of analysable cells, leave one specimen out")
            result[key]["normal specimens with a structural call, leave one specimen out"] = held_out
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
