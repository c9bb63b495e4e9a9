"""Seconds per metaphase on this CPU for the pipeline `karyohf demo` runs, stage by stage: detection
(`ChromosomeDetector`), masks (`ThresholdSegmenter`, shown to the user), crops (`extract_chromosome`, each box cut
on its own as the models' training crops were) and identity (`ChromosomeIdentifier`, as shipped and as one plain
view), on real validation metaphases. Goal: about 1 s.

    python benchmarks/pipeline.py [--threads 2] [--images 20]

Writes benchmarks/results/pipeline.json.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from karyohf.crops import extract_chromosome
from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.identification import ChromosomeIdentifier
from karyohf.images import as_gray_uint8
from karyohf.segmentation import ThresholdSegmenter

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "pipeline.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    metaphases = split_metaphases(load_metaphases())["validation"].shuffle(seed=0).select(range(args.images))
    detector = ChromosomeDetector.from_pretrained(CHECKPOINTS / "owlv2-chromosomes")
    segmenter = ThresholdSegmenter()
    identifier = ChromosomeIdentifier.from_pretrained(str(CHECKPOINTS / "topvit-chromid"))
    flips = identifier.model.config.test_time_flips
    stages = {"detection": [], "masks": [], "crops": [], "identity": [], "identity, one view": []}
    for example in metaphases:
        gray = as_gray_uint8(example["image"])
        started = time.perf_counter()
        boxes = detector(gray).boxes
        stages["detection"].append(time.perf_counter() - started)
        started = time.perf_counter()
        segmenter(gray, boxes)
        stages["masks"].append(time.perf_counter() - started)
        started = time.perf_counter()
        crops = [extract_chromosome(gray, box) for box in boxes]
        stages["crops"].append(time.perf_counter() - started)
        for stage, views in (("identity", flips), ("identity, one view", ())):
            identifier.model.config.test_time_flips = views
            started = time.perf_counter()
            identifier(crops)
            stages[stage].append(time.perf_counter() - started)
        identifier.model.config.test_time_flips = flips
    total = np.sum([stages[s] for s in ("detection", "masks", "crops", "identity")], axis=0)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
        "metaphases": args.images,
        "identity_test_time_flips": list(flips),
        "median_seconds": {stage: float(np.median(times)) for stage, times in stages.items()},
        "median_seconds_total": float(np.median(total)),
        "p90_seconds_total": float(np.percentile(total, 90)),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
