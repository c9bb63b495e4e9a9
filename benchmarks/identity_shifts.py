"""Chromosome identity under another microscope: validation cells re-imaged at other magnifications and focus.

Each cell is shifted as a whole, as another lab's microscope would shift it: the metaphase image (or each karyogram
chromosome of the cell) resized by the magnification factor (antialiased), then blurred with a Gaussian of sigma
pixels. Metaphase chromosomes are then cut from the annotated boxes (scaled with the image) as the pipeline cuts them,
and every cell goes through `ChromosomeIdentifier.identify_cell`, the path the pipeline uses: a model trained on
cell-normalised crops sees the cell rescaled to its reference length, a native-scale model sees the crops as they
are. Reported per identity checkpoint, per shift and per source: top-1 of each crop alone, top-1 with cell context
(`assign_within_cell`), and per-class accuracy with cell context (its worst class named).

    python benchmarks/identity_shifts.py --identity checkpoints/topvit-chromid runs/chromid-cellscale
Writes benchmarks/results/identity_shifts.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from karyohf.crops import isolate_chromosome
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import load_karyogram_crops, split_karyogram_crops, validation_metaphases
from karyohf.identification import ChromosomeIdentifier

# (magnification, blur sigma): our own images, the magnifications the issue names, blur alone, and combinations.
SHIFTS = [(1.0, 0.0), (0.5, 0.0), (0.75, 0.0), (1.5, 0.0), (2.0, 0.0), (1.0, 1.0), (1.0, 1.5), (1.0, 2.0),
          (0.75, 1.5), (1.5, 1.5), (2.0, 2.0), (0.5, 1.0)]


def shifted(image: Image.Image, magnification: float, sigma: float) -> Image.Image:
    gray = image.convert("L")
    if magnification != 1.0:
        size = (max(1, round(gray.width * magnification)), max(1, round(gray.height * magnification)))
        gray = gray.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    if sigma > 0:
        gray = gray.filter(ImageFilter.GaussianBlur(sigma))
    return gray


def metaphase_cells(metaphases, magnification: float, sigma: float):
    """(isolated chromosomes, true classes) of each metaphase under the shift."""
    for example in metaphases:
        image = shifted(example["image"], magnification, sigma)
        tight, truth = [], []
        for box, chromosome in zip(example["boxes"], example["chromosomes"]):
            try:
                tight.append(isolate_chromosome(image, [v * magnification for v in box]))
                truth.append(chromosome)
            except ValueError:  # a box under 2 pixels at 0.5x: nothing to cut, as in the pipeline
                continue
        yield tight, truth


def karyogram_cells(cells, magnification: float, sigma: float):
    for crops in cells:
        tight = []
        for example in crops:
            image = shifted(example["image"], magnification, sigma)
            tight.append(isolate_chromosome(image, (0, 0, image.width, image.height)))
        yield tight, [example["chromosome"] for example in crops]


def validation_karyogram_cells(count: int, seed: int) -> list[list[dict]]:
    """A seeded `count` of the validation karyogram cells, each as its list of crops."""
    crops = split_karyogram_crops(load_karyogram_crops())["validation"]
    chosen = sorted(set(crops["cell_id"]))
    chosen = [chosen[i] for i in np.random.default_rng(seed).permutation(len(chosen))[:count]]
    rows_of = {cell: [] for cell in chosen}
    for index, cell in enumerate(crops["cell_id"]):
        if cell in rows_of:
            rows_of[cell].append(index)
    return [[crops[i] for i in rows] for rows in rows_of.values()]


def score(identifier: ChromosomeIdentifier, cells) -> dict:
    truth, alone, within = [], [], []
    for tight, classes in cells:
        if not tight:
            continue
        found = identifier.identify_cell(tight, isolated=True)
        truth.extend(classes)
        alone.extend(found.probabilities.argmax(-1))
        within.extend(found.predictions)
    truth, alone, within = np.asarray(truth), np.asarray(alone), np.asarray(within)
    per_class = {CHROMOSOMES[k]: round(float((within[truth == k] == k).mean()), 4)
                 for k in range(len(CHROMOSOMES)) if (truth == k).sum() >= 5}
    worst = min(per_class, key=per_class.get)
    return {"crops": int(len(truth)), "top1": round(float((alone == truth).mean()), 4),
            "top1_within_cell": round(float((within == truth).mean()), 4),
            "worst_class": worst, "worst_class_within_cell": per_class[worst], "per_class_within_cell": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identity", nargs="+", default=["checkpoints/topvit-chromid"])
    parser.add_argument("--metaphases", type=int, default=40, help="validation metaphases (seeded subset)")
    parser.add_argument("--karyogram-cells", type=int, default=40, help="validation karyogram cells (seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/identity_shifts.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    metaphases = list(validation_metaphases(args.metaphases, seed=args.seed))
    cells = validation_karyogram_cells(args.karyogram_cells, args.seed)
    identifiers = {path: ChromosomeIdentifier.from_pretrained(path) for path in args.identity}
    results = {path: {} for path in identifiers}
    for magnification, sigma in SHIFTS:
        name = f"magnification {magnification}x, blur sigma {sigma}"
        started = time.time()
        # Cut once per shift; every model reads the same isolated chromosomes.
        cut = {"metaphase": list(metaphase_cells(metaphases, magnification, sigma)),
               "karyogram": list(karyogram_cells(cells, magnification, sigma))}
        for path, identifier in identifiers.items():
            results[path][name] = {source: score(identifier, source_cells) for source, source_cells in cut.items()}
            line = "  ".join(f"{s} {r['top1']:.3f}/{r['top1_within_cell']:.3f} (worst {r['worst_class']} "
                             f"{r['worst_class_within_cell']:.2f})" for s, r in results[path][name].items())
            print(f"{path:40s} {name:36s} {line}", flush=True)
        print(f"  ({time.time() - started:.0f} s)", flush=True)
    summary = {path: {"lowest_top1_within_cell": min(min(r["top1_within_cell"] for r in by_source.values())
                                                     for by_source in shifts.values())}
               for path, shifts in results.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "split": "validation (grouped by specimen / case)", "metaphases": len(metaphases),
        "karyogram_cells": len(cells), "seed": args.seed,
        "cell_normalised": {p: i.cell_reference_length is not None for p, i in identifiers.items()},
        "summary": summary, "results": results}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
