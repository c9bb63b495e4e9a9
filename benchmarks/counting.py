"""How exactly the detector counts a metaphase, by how crowded it is: the count every karyotype rests on.

On every validation metaphase and a seeded 200 of the training metaphases (where no decoding setting was tuned),
the shipped detector runs once with its score floor for AP (0.01); its operating point (the checkpoint's threshold)
is the subset above it. Metaphases are split into terciles of crowding: the share of annotated chromosomes whose box
overlaps another annotated box by more than a fifth of the smaller one (touching and crossing chromosomes). Per
tercile and overall: exact-count rate, over- and under-count rates, |error| <= 1 rate, mean |error|, recall and
precision at IoU 0.5 at the operating point, AP50 and AP50:95 at the floor, and the detector's latency: the whole
call as the pipeline makes it (down to its candidate floor), on the first --timed metaphases of each split, 2 threads
by default, on an otherwise idle machine.

With --pipeline the same metaphases also go through the pipeline's object stage (`KaryotypePipeline.objects`, every
object down to the candidate floor, identified), its object verifier (`karyohf.counting`) and its count
(`pipeline_count`: labelled within the cell, unsure extra copies left out): the "pipeline" rows count what the
pipeline counts (recall and precision of those objects), and their AP ranks every object by the verifier's
P(chromosome).

    python benchmarks/counting.py [--detector checkpoints/centernet-chromosomes] [--train 200] [--threads 2]
    python benchmarks/counting.py --pipeline --threads 1     # also the pipeline's count (~3 s a metaphase)
Writes benchmarks/results/counting.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.boxes import Detections
from karyohf.detection.evaluation import AP_SCORE_FLOOR, count_matches, score_detections
from karyohf.images import as_gray_uint8
from karyohf.pipeline import KaryotypePipeline, detect_candidates, pipeline_count

TOUCHING = 0.2  # intersection over the smaller box above which two annotated chromosomes touch or cross


def crowding(boxes: np.ndarray) -> float:
    """The share of a metaphase's annotated chromosomes that touch or cross another (see TOUCHING)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) < 2:
        return 0.0
    x0, y0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0]), np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1, y1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2]), np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ratio = inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-6)
    np.fill_diagonal(ratio, 0)
    return float((ratio.max(1) > TOUCHING).mean())


def count_metrics(truth: list[np.ndarray], found: list, threshold: float, sizes) -> dict:
    metrics, _, _ = score_detections(truth, found, sizes, threshold)
    true_counts = np.array([len(b) for b in truth])
    counted = np.array([len(f.above(threshold)) for f in found])
    error = counted - true_counts
    return {"metaphases": len(truth), "exact_count": round(float((error == 0).mean()), 4),
            "over_count": round(float((error > 0).mean()), 4), "under_count": round(float((error < 0).mean()), 4),
            "within_one": round(float((np.abs(error) <= 1).mean()), 4),
            "mean_abs_error": round(float(np.abs(error).mean()), 3),
            "recall50": round(metrics["recall50"], 4), "precision50": round(metrics["precision50"], 4),
            "ap50": round(metrics["ap50"], 4), "ap50_95": round(metrics["ap50_95"], 4),
            "missed_per_image": round(float(sum(len(t) - count_matches(f.above(threshold).boxes, t)
                                                for t, f in zip(truth, found)) / len(truth)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="checkpoints/centernet-chromosomes")
    parser.add_argument("--train", type=int, default=200, help="seeded training metaphases scored beside validation")
    parser.add_argument("--limit", type=int, default=None, help="at most this many validation metaphases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timed", type=int, default=50, help="metaphases per split timed at the pipeline's call")
    parser.add_argument("--pipeline", action="store_true", help="also count with the pipeline's object verifier")
    parser.add_argument("--checkpoints", default=None, help="the pipeline's checkpoints (default: the shipped ones)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/counting.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = ChromosomeDetector.from_pretrained(args.detector)
    threshold = detector.score_threshold
    pipe = KaryotypePipeline.from_pretrained(args.checkpoints) if args.pipeline else None
    if pipe is not None and pipe.verifier is None:
        parser.error("--pipeline: the pipeline's detector has no object verifier (train/fit_object_verifier.py)")
    splits = split_metaphases(load_metaphases())
    validation = splits["validation"]
    if args.limit:
        validation = validation.select(range(min(args.limit, len(validation))))
    train = splits["train"].shuffle(seed=args.seed).select(range(min(args.train, len(splits["train"]))))
    results = {}
    for split, dataset in (("validation", validation), ("train (nothing tuned)", train)):
        truth, found, verified, sizes, crowd, latency = [], [], [], [], [], []
        for example in dataset:
            gray = as_gray_uint8(example["image"])
            if len(latency) < args.timed:
                started = time.perf_counter()
                detect_candidates(detector, gray)
                latency.append(time.perf_counter() - started)
            found.append(detector(gray, score_threshold=AP_SCORE_FLOOR))
            if pipe is not None:
                objects = pipe.objects(gray)
                p = pipe.verifier(objects.features, objects.identification.probabilities)
                counted, _ = pipeline_count(objects.identification.probabilities, objects.scores,
                                            p >= pipe.verifier.threshold)
                # Counted objects rank above every other (so the count is those above 1), by P within each group.
                verified.append(Detections(boxes=objects.boxes, scores=np.where(counted, 1 + p, p) / 2))
            truth.append(np.asarray(example["boxes"], np.float32).reshape(-1, 4))
            sizes.append((example["height"], example["width"]))
            crowd.append(crowding(truth[-1]))
        crowd = np.asarray(crowd)
        edges = np.quantile(crowd, [1 / 3, 2 / 3])
        tercile = np.digitize(crowd, edges, right=True)
        rows = {"detector": (found, threshold)}
        if pipe is not None:
            rows["pipeline"] = (verified, 0.5)
        entry = {}
        for kind, (detections, at) in rows.items():
            entry[kind] = {"all": count_metrics(truth, detections, at, sizes)}
            for k, name in enumerate(("least crowded third", "middle third", "most crowded third")):
                chosen = np.flatnonzero(tercile == k)
                entry[kind][name] = {
                    "crowding": [round(float(crowd[chosen].min()), 3), round(float(crowd[chosen].max()), 3)],
                    **count_metrics([truth[i] for i in chosen], [detections[i] for i in chosen], at,
                                    [sizes[i] for i in chosen])}
        if latency:  # --timed 0: none timed
            entry["latency_ms"] = {"median": round(1000 * float(np.median(latency)), 1),
                                   "p90": round(1000 * float(np.percentile(latency, 90)), 1)}
        results[split] = entry
        print(split, entry.get("latency_ms", ""), flush=True)
        for kind in rows:
            print(f" {kind}: {json.dumps(entry[kind]['all'])}", flush=True)
            for name in ("least crowded third", "middle third", "most crowded third"):
                row = entry[kind][name]
                print(f"  {name:20s} exact {row['exact_count']:.3f}  over {row['over_count']:.3f}  under "
                      f"{row['under_count']:.3f}  recall {row['recall50']:.3f}  precision {row['precision50']:.3f}  "
                      f"AP50 {row['ap50']:.3f}  missed/image {row['missed_per_image']}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "detector": args.detector, "score_threshold": threshold, "ap_score_floor": AP_SCORE_FLOOR,
        # What the verifier is and was fitted on; its trees' node tables stay in its object_verifier.json.
        "verifier": ({k: v for k, v in pipe.verifier.to_dict().items() if k not in ("trees", "first", "second")}
                     if pipe is not None else None),
        "threads": args.threads, "touching": TOUCHING, "seed": args.seed,
        "goals": {"exact_count": 0.85, "within_one": 0.98, "ap50": 0.99, "ap50_95": 0.80, "median_ms": 150},
        "results": results}, indent=1))


if __name__ == "__main__":
    main()
