"""How many chromosomes have no candidate box of their own: the ceiling on any count made from the candidates.

The pipeline counts among the detector's candidates (`karyohf.pipeline.detect_candidates`: every box down to a score
floor, suppressed at an IoU looser than the detector's own); the object verifier can only keep or drop them. A
chromosome that no candidate matches one to one (IoU >= 0.5, strongest candidate first, each to the free
annotated box it overlaps most) cannot be counted by any verifier. Per (floor, suppression IoU) setting, on every
validation metaphase and a seeded 200 training metaphases (the ones `benchmarks/counting.py` scores): such
chromosomes, the share of metaphases with at least one, and the candidates per metaphase (what the identity stage
pays for). The detector runs once per metaphase with no suppression; each setting suppresses its boxes afresh,
which is what a call with that setting returns.

    python benchmarks/candidate_ceiling.py [--train 200] [--threads 2]
Writes benchmarks/results/candidate_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.boxes import non_maximum_suppression
from karyohf.detection.evaluation import count_matches
from karyohf.images import as_gray_uint8
from karyohf.pipeline import CANDIDATE_FLOOR, CANDIDATE_NMS_IOU, MAX_CANDIDATES

# (score floor, suppression IoU): the detector's own operating suppression, the pipeline's, and looser ones.
SETTINGS = ((0.05, 0.6), (0.02, 0.6), (0.05, 0.75), (0.02, 0.75), (0.05, 0.9), (0.02, 0.9))


def ceiling(detector: ChromosomeDetector, dataset) -> dict:
    rows = {setting: {"without a box": 0, "metaphases with one": 0, "candidates": 0} for setting in SETTINGS}
    chromosomes = 0
    lowest = min(floor for floor, _ in SETTINGS)
    for example in dataset:
        gray = as_gray_uint8(example["image"])
        truth = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        chromosomes += len(truth)
        found = detector(gray, score_threshold=lowest, nms_iou=1.0, max_detections=100_000)
        boxes, scores = torch.as_tensor(found.boxes), torch.as_tensor(found.scores)
        for floor, iou in SETTINGS:
            above = torch.nonzero(scores > floor).flatten()  # as the detector keeps them
            kept = above[non_maximum_suppression(boxes[above], scores[above], iou)][:MAX_CANDIDATES]
            missing = len(truth) - count_matches(boxes[kept].numpy(), truth)
            row = rows[(floor, iou)]
            row["without a box"] += missing
            row["metaphases with one"] += int(missing > 0)
            row["candidates"] += len(kept)
    n = len(dataset)
    return {"metaphases": n, "chromosomes": chromosomes, "settings": {
        f"floor {floor}, suppression IoU {iou}": {
            "chromosomes without a candidate of their own": row["without a box"],
            "share of chromosomes": round(row["without a box"] / chromosomes, 5),
            "share of metaphases with one": round(row["metaphases with one"] / n, 4),
            "candidates per metaphase": round(row["candidates"] / n, 1),
            "the pipeline's": (floor, iou) == (CANDIDATE_FLOOR, CANDIDATE_NMS_IOU),
        } for (floor, iou), row in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="checkpoints/centernet-chromosomes")
    parser.add_argument("--train", type=int, default=200, help="seeded training metaphases (as benchmarks/counting.py)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "candidate_ceiling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = ChromosomeDetector.from_pretrained(args.detector)
    splits = split_metaphases(load_metaphases())
    train = splits["train"].shuffle(seed=0)
    result = {"detector": args.detector, "matching": "one to one, IoU >= 0.5, strongest candidate first",
              "validation": ceiling(detector, splits["validation"]),
              f"train (seeded {args.train})": ceiling(detector, train.select(range(min(args.train, len(train)))))}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
