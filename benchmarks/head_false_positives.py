"""How often the aberration heads call a real normal chromosome aberrant, and how well they still find synthesized
derivatives, on validation cells re-imaged as another lab's microscope would image them.

The shifts are `identity_shifts.py`'s: each cell resized by a magnification factor and blurred, then cut as the
pipeline cuts it. Normal chromosomes are the 5s, 9s and 22s of normal validation metaphases (annotated boxes) and of
validation karyogram cells; each cell's crops are rescaled by the cell's own `cell_scale`, measured on the shifted
cell, when a head reads cell-normalised crops (a native-scale head reads them as they are). Derivatives are the
validation aberration datasets (`train/make_aberration_data.py`), shifted crop by crop; their cell's scale is the
unshifted one times the median change this shift makes to the real cells' scale.

Reported per head, chromosome, shift and source: the share of normal chromosomes at P(aberrant) > 0.5 and at the
head's operating point (its `operating_point.json` cell threshold, the pipeline's), the share of normal cells the
pipeline would call, and ROC-AUC on the derivatives against the same dataset's normal crops.

    python benchmarks/head_false_positives.py [--heads checkpoints/topvit-del5q checkpoints/topvit-t9-22]
Writes benchmarks/results/head_false_positives.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from identity_shifts import karyogram_cells, metaphase_cells, shifted, validation_karyogram_cells
from karyohf.aberrations import AberrationHead, aberration_probabilities
from karyohf.crops import cell_scale, isolate_chromosome
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import validation_metaphases
from karyohf.synthesis import load_aberration_dataset

SHIFTS = [(1.0, 0.0), (0.5, 0.0), (0.75, 0.0), (1.5, 0.0), (2.0, 0.0), (1.0, 1.5), (1.0, 2.0), (0.75, 1.5),
          (0.5, 1.0)]
THRESHOLD = 0.5  # P(aberrant) above which a chromosome counts as called, whatever the cell threshold


def normal_cells(cells) -> list[dict]:
    """Each shifted cell as its chromosomes as cut (the pipeline's `CellResult.chromosomes`), labels and own
    measured `cell_scale`."""
    out = []
    for tight, truth in cells:
        if tight:
            out.append({"crops": list(tight), "labels": [CHROMOSOMES[k] for k in truth],
                        "scale": cell_scale(tight)})
    return out


def score_normals(head: AberrationHead, cells: list[dict]) -> dict:
    """Per aberrant label's chromosome: normal copies called at 0.5 and at the operating point; cells called."""
    p_by_label = {name: [] for name in head.label_names[1:]}
    cell_called = {key: 0 for key in head.aberrations}
    for cell in cells:
        found = head(cell["crops"], cell["labels"], cell["scale"])
        for name, p in found.items():
            p_by_label[name].extend(p[np.isfinite(p)].tolist())
        for key, value in head.cell_scores(found).items():
            cell_called[key] += value >= head.cell_thresholds[key]
    out = {}
    for index, (key, chromosome) in head.targets.items():
        p = np.asarray(p_by_label[head.label_names[index]])
        out[chromosome] = {"normal_chromosomes": int(len(p)),
                           "false_positive_rate_at_0.5": round(float((p > THRESHOLD).mean()), 4),
                           "false_positive_rate_at_operating_point":
                               round(float((p >= head.cell_thresholds[key]).mean()), 4),
                           "median_p": round(float(np.median(p)), 5)}
    out["cells"] = {key: {"cells": len(cells), "called": int(n), "rate": round(n / max(1, len(cells)), 4)}
                    for key, n in cell_called.items()}
    return out


def derivative_auc(head: AberrationHead, datasets: dict, magnification: float, sigma: float,
                   scale_change: float) -> dict:
    """ROC-AUC of P(derivative) on each validation dataset (its normals against its derivatives), shifted."""
    out = {}
    for index, (key, chromosome) in head.targets.items():
        data = datasets[key, chromosome]
        crops, scales = [], []
        for image, scale in zip(data["image"], data["cell_scale"]):
            image = shifted(image, magnification, sigma)
            crops.append(isolate_chromosome(image, (0, 0, image.width, image.height)))
            scales.append(scale * scale_change)
        p = aberration_probabilities(head.model, head.processor, crops, scales)[:, index]
        labels = np.asarray(data["label"])
        out[chromosome] = {"derivatives": int(labels.sum()), "normals": int((labels == 0).sum()),
                           "roc_auc": round(float(roc_auc_score(labels, p)), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=["checkpoints/topvit-del5q", "checkpoints/topvit-t9-22"])
    parser.add_argument("--metaphases", type=int, default=100, help="normal validation metaphases (seeded subset)")
    parser.add_argument("--karyogram-cells", type=int, default=100, help="validation karyogram cells (seeded)")
    parser.add_argument("--derivatives", type=int, default=300, help="validation dataset crops per derivative")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/head_false_positives.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heads = {path: AberrationHead.from_pretrained(path) for path in args.heads}
    metaphases = list(validation_metaphases(args.metaphases, seed=args.seed, status="normal"))
    karyograms = validation_karyogram_cells(args.karyogram_cells, args.seed)
    derivatives = {}
    for head in heads.values():
        for key, chromosome in head.targets.values():
            if (key, chromosome) not in derivatives:
                data = load_aberration_dataset(chromosome, key, "validation", args.data_dir).shuffle(seed=args.seed)
                derivatives[key, chromosome] = data.select(range(min(args.derivatives, len(data))))
    unshifted = None
    results = {path: {} for path in heads}
    for magnification, sigma in SHIFTS:
        name = f"magnification {magnification}x, blur sigma {sigma}"
        started = time.time()
        cells = {"metaphase": normal_cells(metaphase_cells(metaphases, magnification, sigma)),
                 "karyogram": normal_cells(karyogram_cells(karyograms, magnification, sigma))}
        scales = np.asarray([c["scale"] for source in cells.values() for c in source])
        unshifted = scales if unshifted is None else unshifted
        scale_change = float(np.median(scales / unshifted))
        for path, head in heads.items():
            entry = {source: score_normals(head, source_cells) for source, source_cells in cells.items()}
            entry["synthesized derivatives"] = derivative_auc(head, derivatives, magnification, sigma, scale_change)
            results[path][name] = entry
            line = "  ".join(
                f"{chromosome}: FP {entry['metaphase'][chromosome]['false_positive_rate_at_0.5']:.3f}/"
                f"{entry['karyogram'][chromosome]['false_positive_rate_at_0.5']:.3f} "
                f"AUC {entry['synthesized derivatives'][chromosome]['roc_auc']:.3f}"
                for chromosome in sorted({c for _, c in head.targets.values()}))
            print(f"{Path(path).name:24s} {name:36s} {line}", flush=True)
        print(f"  ({time.time() - started:.0f} s)", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "split": "validation (grouped by specimen / case)", "normal_metaphases": len(metaphases),
        "karyogram_cells": len(karyograms), "derivatives_per_dataset": args.derivatives, "seed": args.seed,
        "threshold": THRESHOLD,
        "operating_points": {p: h.cell_thresholds for p, h in heads.items()},
        "cell_normalised": {p: getattr(h.processor, "cell_reference_length", None) is not None
                            for p, h in heads.items()},
        "results": results}, indent=1))


if __name__ == "__main__":
    main()
