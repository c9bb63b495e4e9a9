"""Scoring a detector on annotated metaphases: COCO AP through pycocotools, recall, precision and count error.

AP50 and AP50:95 rank every detection by score; recall, precision and the per-image count error
|n_pred − n_true| are taken at the detector's operating point (detections scoring ≥ `score_threshold`),
since a karyotype is built from the boxes a detector actually returns.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from .boxes import Detections

CATEGORY = {"id": 1, "name": "chromosome"}
# Ranking for AP needs the low-scoring detections too: detectors are scored with this score threshold, and recall,
# precision and counts at their operating point separately.
AP_SCORE_FLOOR = 0.01


def coco_ground_truth(true_boxes: list[np.ndarray], sizes: list[tuple[int, int]], names: list[str] | None = None) -> dict:
    """COCO ground truth for images 1..N; `sizes` are (height, width), boxes xyxy pixels."""
    images, annotations = [], []
    for image_id, (boxes, (height, width)) in enumerate(zip(true_boxes, sizes), start=1):
        images.append({"id": image_id, "height": int(height), "width": int(width),
                       "file_name": names[image_id - 1] if names else str(image_id)})
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORY["id"],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [CATEGORY]}


def coco_results(detections: list[Detections]) -> list[dict]:
    """COCO detection results for images 1..N."""
    return [
        {"image_id": image_id, "category_id": CATEGORY["id"], "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
         "score": float(score)}
        for image_id, found in enumerate(detections, start=1)
        for (x0, y0, x1, y1), score in zip(found.boxes, found.scores)
    ]


def coco_average_precision(ground_truth: dict, results: list[dict]) -> tuple[float, float]:
    """(AP at IoU 0.5, AP averaged over IoU 0.5:0.95), COCO-style, with room for every detection of an image."""
    if not results:
        return 0.0, 0.0
    most_per_image = np.bincount([result["image_id"] for result in results]).max()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes([dict(result) for result in results]), iouType="bbox")  # loadRes edits its input
        evaluator.params.maxDets = [1, 10, max(100, int(most_per_image))]
        evaluator.evaluate()
        evaluator.accumulate()
    # Read AP off the precision table at the largest detection budget: COCOeval.summarize() hard-codes 100
    # detections per image for AP50:95 and reports -1 when a metaphase needs more.
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # (IoU thresholds, recall points), all areas
    at_50 = precision[0][precision[0] > -1]
    every = precision[precision > -1]
    return (float(at_50.mean()) if at_50.size else 0.0), (float(every.mean()) if every.size else 0.0)


def match_boxes(predicted: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one matches (prediction index, true index), predictions taken in the given (score) order, each to the
    free true box it overlaps most."""
    if len(predicted) == 0 or len(truth) == 0:
        return []
    overlaps = box_iou(torch.as_tensor(predicted, dtype=torch.float32), torch.as_tensor(truth, dtype=torch.float32))
    free = torch.ones(len(truth), dtype=torch.bool)
    pairs = []
    for i, row in enumerate(overlaps):
        row = torch.where(free, row, -1.0)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            free[best] = False
            pairs.append((i, best))
    return pairs


def count_matches(predicted: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> int:
    """How many predictions `match_boxes` pairs with a true box."""
    return len(match_boxes(predicted, truth, iou_threshold))


def score_detections(
    true_boxes: list[np.ndarray], detections: list[Detections], sizes: list[tuple[int, int]], score_threshold: float = 0.0,
    names: list[str] | None = None,
) -> tuple[dict, dict, list[dict]]:
    """Metrics, COCO ground truth and COCO results for one detection per image (`detections[i]` for `true_boxes[i]`)."""
    if not len(true_boxes) == len(detections) == len(sizes):
        raise ValueError(f"{len(true_boxes)} annotated images, {len(detections)} detections, {len(sizes)} sizes")
    ground_truth, results = coco_ground_truth(true_boxes, sizes, names), coco_results(detections)
    ap50, ap50_95 = coco_average_precision(ground_truth, results)
    operating = [found.above(score_threshold) for found in detections]
    true_counts = np.array([len(np.asarray(boxes).reshape(-1, 4)) for boxes in true_boxes])
    predicted_counts = np.array([len(found) for found in operating])
    matched = sum(count_matches(found.boxes, np.asarray(boxes).reshape(-1, 4)) for found, boxes in zip(operating, true_boxes))
    count_error = np.abs(predicted_counts - true_counts)
    metrics = {
        "images": len(true_boxes),
        "chromosomes": int(true_counts.sum()),
        "detections": int(predicted_counts.sum()),
        "score_threshold": score_threshold,
        "ap50": ap50,
        "ap50_95": ap50_95,
        "recall50": matched / max(int(true_counts.sum()), 1),
        "precision50": matched / max(int(predicted_counts.sum()), 1),
        "count_error_median": float(np.median(count_error)),
        "count_error_mean": float(count_error.mean()),
    }
    return metrics, ground_truth, results


def evaluate_detector(detector, dataset, score_threshold: float, output_dir: Path | None = None) -> dict:
    """Run `detector` on every metaphase of `dataset` and score it; writes the COCO files and metrics.json if asked."""
    true_boxes, detections, sizes, names, seconds = [], [], [], [], 0.0
    for example in dataset:
        image = example["image"]  # decoded here, outside the timing
        started = time.perf_counter()
        detections.append(detector(image))
        seconds += time.perf_counter() - started
        true_boxes.append(np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4))
        sizes.append((example["height"], example["width"]))
        names.append(f"{example['image_id']}.jpg")
    metrics, ground_truth, results = score_detections(true_boxes, detections, sizes, score_threshold, names)
    metrics["seconds_per_image"] = seconds / max(len(dataset), 1)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "ground_truth.json").write_text(json.dumps(ground_truth))
        (output_dir / "results.json").write_text(json.dumps(results))
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def format_table(rows: dict[str, dict]) -> str:
    """A markdown table, one row per detector."""
    lines = ["| detector | images | AP50 | AP50:95 | recall@0.5 | precision@0.5 | count error median / mean | s/image |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['images']} | {m['ap50']:.3f} | {m['ap50_95']:.3f} | {m['recall50']:.3f} | "
                     f"{m['precision50']:.3f} | {m['count_error_median']:.1f} / {m['count_error_mean']:.2f} | "
                     f"{m['seconds_per_image']:.2f} |")
    return "\n".join(lines)
