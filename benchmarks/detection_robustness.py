"""The shipped detector on the held-out metaphases as another lab might acquire them.

All the training and validation metaphases come from one lab: one stain, one microscope, one camera. Held-out
scoring may not. Each validation metaphase is re-acquired here in one way at a time, its annotated boxes moved
with it, and scored as `benchmarks/eval_detection.py` scores (pycocotools AP over detections ≥ 0.01; recall, precision
and count error at the detector's 0.3 operating point):
- camera resolution 0.6× and 1.6× (the image resampled: chromosomes ~50 px or ~135 px long instead of ~85);
- a paler stain (ink contrast × 0.6) and a heavier one (ink^0.7: pale bands darkened);
- uneven illumination (a brightness ramp across the field, 25% of the ink range);
- JPEG re-encoding at quality 40.

    python benchmarks/detection_robustness.py [--limit 381] [--threads 2]

Writes benchmarks/results/detection_robustness.json.
"""

import argparse
import io
import json
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.detector import DEFAULT_SCORE_THRESHOLD
from karyohf.detection.evaluation import AP_SCORE_FLOOR, score_detections
from karyohf.images import as_gray_uint8

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "centernet-chromosomes"


def resampled(factor: float):
    def acquire(gray, boxes):
        height, width = gray.shape
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR)), boxes * factor
    return acquire


def restained(ink_map):
    def acquire(gray, boxes):
        ink = 1.0 - gray.astype(np.float32) / 255.0
        return (255.0 * (1.0 - ink_map(ink).clip(0, 1))).round().astype(np.uint8), boxes
    return acquire


def uneven_illumination(gray, boxes):
    ramp = np.linspace(-0.125, 0.125, gray.shape[1], dtype=np.float32)[None]  # brighter on one side
    return (gray.astype(np.float32) + 255.0 * ramp).clip(0, 255).round().astype(np.uint8), boxes


def jpeg(gray, boxes, quality: int = 40):
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)), boxes


ACQUISITIONS = {
    "as acquired": lambda gray, boxes: (gray, boxes),
    "camera resolution 0.6x": resampled(0.6),
    "camera resolution 1.6x": resampled(1.6),
    "paler stain (ink x 0.6)": restained(lambda ink: 0.6 * ink),
    "heavier stain (ink ^ 0.7)": restained(lambda ink: ink**0.7),
    "uneven illumination (25% ramp)": uneven_illumination,
    "JPEG quality 40": jpeg,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="a seeded random subset of the validation metaphases")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "detection_robustness.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    validation = split_metaphases(load_metaphases())["validation"]
    if args.limit:
        validation = validation.shuffle(seed=0).select(range(min(args.limit, len(validation))))
    metaphases = [(as_gray_uint8(example["image"]), np.asarray(example["boxes"], np.float32).reshape(-1, 4))
                  for example in validation]
    detector = ChromosomeDetector.from_pretrained(SHIPPED, score_threshold=AP_SCORE_FLOOR)
    results = {}
    for name, acquire in ACQUISITIONS.items():
        acquired = [acquire(gray, boxes) for gray, boxes in metaphases]
        detections = [detector(gray) for gray, _ in acquired]
        metrics, _, _ = score_detections([boxes for _, boxes in acquired], detections,
                                         [gray.shape for gray, _ in acquired], DEFAULT_SCORE_THRESHOLD)
        results[name] = metrics
        print(f"{name:32s} AP50 {metrics['ap50']:.3f}  AP50:95 {metrics['ap50_95']:.3f}  recall {metrics['recall50']:.3f}  "
              f"precision {metrics['precision50']:.3f}  count error median {metrics['count_error_median']:.0f} / mean "
              f"{metrics['count_error_mean']:.2f}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metaphases": len(metaphases), "machine": platform.processor() or platform.machine(),
                                       "results": results}, indent=2))


if __name__ == "__main__":
    main()
