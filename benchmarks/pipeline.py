"""Seconds and memory of `KaryotypePipeline` itself on this CPU: per metaphase stage by stage, a 20-metaphase
specimen end to end (aggregation included), the load, and the peak resident memory.

    python benchmarks/pipeline.py [--threads 2] [--images 20] [--backend onnxruntime [--precision int8]]

A cell is detect -> masks -> crops -> identity (with cell context) -> heads -> de novo -> karyotype, drawing the
karyogram excluded; the stages are timed by wrapping the pipeline's own components, so what is timed is what users
run. The 20 metaphases are male validation metaphases (several patients: the validation specimens hold 1-10 each).
Goals (issue: the pipeline): a cell <= 0.6 s median, a 20-metaphase specimen <= 12 s, peak RSS <= 2.5 GB.
Writes benchmarks/results/pipeline.json.
"""

import argparse
import json
import platform
import resource
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from karyohf import KaryotypePipeline
from karyohf.aberrations import heads as heads_module
from karyohf.data import load_metaphases, split_metaphases


def timed(owner, attribute: str, bucket: list) -> None:
    """Replace owner.attribute (a callable) by one that appends each call's seconds to `bucket`."""
    original = getattr(owner, attribute)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - started)

    setattr(owner, attribute, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--one-view", action="store_true",
                        help="identity scores each crop once instead of with its half turn (the checkpoint's setting)")
    parser.add_argument("--backend", default="torch", help="torch or onnxruntime (karyohf.onnx_backend)")
    parser.add_argument("--precision", default="fp32", help="fp32, or int8 with onnxruntime")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "pipeline.json")
    args = parser.parse_args()
    if args.one_view and args.backend != "torch":
        parser.error("--one-view changes the torch model's config; an ONNX export has its views built in")
    torch.set_num_threads(args.threads)
    # One sex, as one patient's cells are (Y is class 23), so the specimen's karyotype is meaningful.
    validation = split_metaphases(load_metaphases())["validation"].filter(lambda c: 23 in c, input_columns="chromosomes")
    metaphases = validation.shuffle(seed=0).select(range(args.images))
    images = [example["image"].convert("L") for example in metaphases]
    started = time.perf_counter()
    pipe = KaryotypePipeline.from_pretrained(backend=args.backend, precision=args.precision)
    load_seconds = time.perf_counter() - started
    if args.one_view:
        pipe.identifier.model.config.test_time_flips = ()
    pipe.analyze_cell(images[0])  # warm-up: first-call allocations are not per-metaphase cost
    flips = list(pipe.identifier.model.config.test_time_flips)

    stages = defaultdict(list)
    timed(type(pipe.detector), "__call__", stages["detection"])  # on the class: the pipeline reads its attributes too
    timed(type(pipe.identifier), "__call__", stages["identity"])  # every object, sure and candidate, in one call
    timed(heads_module, "aberration_probabilities", stages["aberration heads"])
    timed(pipe, "_denovo", stages["de novo"])
    cells = []
    for image in images:
        started = time.perf_counter()
        pipe.analyze_cell(image)
        cells.append(time.perf_counter() - started)
    per_cell = {name: float(np.sum(times) / len(images)) for name, times in stages.items()}
    per_cell["masks, crops, karyotype (the rest)"] = float(np.mean(cells) - sum(per_cell.values()))

    started = time.perf_counter()
    specimen = pipe(images, study="neoplasia")
    specimen_seconds = time.perf_counter() - started
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
        "metaphases": args.images, "load_seconds": round(load_seconds, 2),
        "cell_seconds_median": float(np.median(cells)), "cell_seconds_p90": float(np.percentile(cells, 90)),
        "cell_seconds_mean_by_stage": per_cell,
        "specimen_seconds": specimen_seconds, "specimen_karyotype": specimen.karyotype,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "identity_test_time_flips": flips, "backend": args.backend, "precision": args.precision,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
