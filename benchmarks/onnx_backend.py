"""The onnxruntime backend against torch: parity on the validation split, then speed, load time and memory.

    python benchmarks/onnx_backend.py parity [--metaphases N]   # all validation metaphases by default
    python benchmarks/onnx_backend.py speed [--threads 2]      # benchmarks/pipeline.py once per backend

Parity (issue: Hub-ready checkpoints and fast CPU inference), for onnxruntime fp32 and int8 against torch:
- identity: every annotated chromosome of every validation metaphase, each metaphase through `identify_cell` (the
  pipeline's path): label agreement with torch (gate >= 99.9%) and per-class accuracy against the annotation
  (gate: every class within 0.5 points of torch's);
- detection: AP50 (0.01 score floor) with each backend's detector (gate: within 0.002);
- cells: the whole pipeline (detector boxes) on a seeded subset of them (`--cell-metaphases`): the same cell
  karyotype as torch.
Speed: `benchmarks/pipeline.py` in a fresh process per backend (so load time and peak RSS are each its own), the
export cache warmed first; ratios to torch. Writes benchmarks/results/onnx_backend_{parity,speed}.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from karyohf import KaryotypePipeline
from karyohf.crops import isolate_chromosome
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.evaluation import score_detections
from karyohf.identification import ChromosomeIdentifier
from karyohf.pipeline import DETECTOR_FOLDER, IDENTIFIER_FOLDER, resolve_checkpoints

RESULTS = Path(__file__).parent / "results"
# torch int8 is optimum-quanto weight-only int8, measured side by side as the issue asks.
VARIANTS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("torch", "int8"))
AP_FLOOR = 0.01


def name_of(backend: str, precision: str) -> str:
    return "torch" if (backend, precision) == ("torch", "fp32") else f"{backend} {precision}"


def identity_parity(metaphases, root: Path) -> dict:
    isolated = [[isolate_chromosome(example["image"], box) for box in example["boxes"]] for example in metaphases]
    truth = np.concatenate([example["chromosomes"] for example in metaphases])
    labels = {}
    for backend, precision in VARIANTS:
        identifier = ChromosomeIdentifier.from_pretrained(str(root / IDENTIFIER_FOLDER), backend=backend,
                                                          precision=precision)
        labels[name_of(backend, precision)] = np.concatenate(
            [identifier.identify_cell(cell, isolated=True).predictions for cell in isolated])
    reference = labels["torch"]
    out = {}
    for name, predicted in labels.items():
        per_class = {CHROMOSOMES[k]: float((predicted[truth == k] == k).mean()) for k in range(len(CHROMOSOMES))
                     if (truth == k).any()}
        out[name] = {"chromosomes": int(len(truth)), "accuracy_within_cell": float((predicted == truth).mean()),
                     "agreement_with_torch": float((predicted == reference).mean()), "per_class": per_class}
    for name in out:
        gaps = {c: abs(out[name]["per_class"][c] - out["torch"]["per_class"][c]) for c in out["torch"]["per_class"]}
        out[name]["largest_per_class_gap_points"] = round(100 * max(gaps.values()), 3)
        out[name]["passes"] = out[name]["agreement_with_torch"] >= 0.999 and max(gaps.values()) <= 0.005
    return out


def detection_parity(metaphases, root: Path) -> dict:
    truth = [np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4) for example in metaphases]
    sizes = [(example["height"], example["width"]) for example in metaphases]
    out = {}
    for backend in ("torch", "onnxruntime"):  # the detector runs fp32 under either precision
        detector = ChromosomeDetector.from_pretrained(root / DETECTOR_FOLDER, backend=backend, score_threshold=AP_FLOOR)
        found = [detector(example["image"]) for example in metaphases]
        metrics, _, _ = score_detections(truth, found, sizes, score_threshold=0.3)
        out[backend] = {key: metrics[key] for key in ("images", "ap50", "ap50_95", "recall50", "precision50")}
    out["onnxruntime"]["ap50_gap"] = abs(out["onnxruntime"]["ap50"] - out["torch"]["ap50"])
    out["onnxruntime"]["passes"] = out["onnxruntime"]["ap50_gap"] <= 0.002
    return out


def cell_parity(metaphases, root: Path) -> dict:
    karyotypes = {}
    for backend, precision in VARIANTS:
        pipe = KaryotypePipeline.from_pretrained(root, backend=backend, precision=precision)
        karyotypes[name_of(backend, precision)] = [pipe.analyze_cell(example["image"]).karyotype for example in metaphases]
    reference = karyotypes["torch"]
    return {name: {"cells": len(found), "same_karyotype_as_torch": float(np.mean([a == b for a, b in zip(found, reference)])),
                   "differing": [m["image_id"] for m, a, b in zip(metaphases, found, reference) if a != b][:20]}
            for name, found in karyotypes.items()}


def parity(args) -> None:
    root = resolve_checkpoints(None)
    validation = split_metaphases(load_metaphases())["validation"]
    validation = validation.shuffle(seed=0)  # so the cell subset is a seeded draw; the order changes no figure
    if args.metaphases:
        validation = validation.select(range(min(args.metaphases, len(validation))))
    metaphases = list(validation)
    result = {"split": "validation (grouped by specimen)", "metaphases": len(metaphases), "threads": args.threads}
    cells = metaphases[: args.cell_metaphases]
    output = RESULTS / "onnx_backend_parity.json"
    if output.is_file():  # parts run separately (--parts) land in one file
        result = {**json.loads(output.read_text()), **result}
    for part, run, chosen in (("identity", identity_parity, metaphases), ("detection", detection_parity, metaphases),
                              ("cells", cell_parity, cells)):
        if part not in args.parts:
            continue
        started = time.time()
        result[part] = {"metaphases": len(chosen), **run(chosen, root)}
        print(part, f"({time.time() - started:.0f} s)", json.dumps(result[part], indent=1)[:3000], flush=True)
        output.write_text(json.dumps(result, indent=2))


def speed(args) -> None:
    for precision in ("fp32", "int8"):  # exports built here, so the timed loads are warm-cache loads
        KaryotypePipeline.from_pretrained(backend="onnxruntime", precision=precision)
    runs = {}
    for backend, precision in VARIANTS:
        output = RESULTS / f"pipeline_{backend}_{precision}.json"
        subprocess.run([sys.executable, str(Path(__file__).parent / "pipeline.py"), "--threads", str(args.threads),
                        "--images", str(args.images), "--backend", backend, "--precision", precision,
                        "--output", str(output)], check=True, stdout=subprocess.DEVNULL)
        runs[name_of(backend, precision)] = json.loads(output.read_text())
    base = runs["torch"]
    summary = {name: {"cell_seconds_median": run["cell_seconds_median"],
                      "speedup_vs_torch": base["cell_seconds_median"] / run["cell_seconds_median"],
                      "specimen_seconds": run["specimen_seconds"], "load_seconds": run["load_seconds"],
                      "peak_rss_gb": run["peak_rss_gb"], "by_stage": run["cell_seconds_mean_by_stage"]}
               for name, run in runs.items()}
    result = {"threads": args.threads, "metaphases": args.images, "summary": summary}
    (RESULTS / "onnx_backend_speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["parity", "speed"])
    parser.add_argument("--metaphases", type=int, default=None, help="parity on a seeded subset instead of all")
    parser.add_argument("--parts", nargs="+", choices=["identity", "detection", "cells"],
                        default=["identity", "detection", "cells"], help="parity: which gates to run")
    parser.add_argument("--cell-metaphases", type=int, default=100, help="parity: metaphases for the cell karyotypes")
    parser.add_argument("--images", type=int, default=20, help="speed: metaphases per backend")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    parity(args) if args.mode == "parity" else speed(args)


if __name__ == "__main__":
    main()
