"""Score a chromosome detector on held-out metaphases: AP50, AP50:95 (pycocotools), recall and precision at IoU 0.5, count error.

    python benchmarks/eval_detection.py checkpoints/centernet-chromosomes --limit 60
    python benchmarks/eval_detection.py --baseline --limit 60          # Otsu + connected components

The validation split is the one training holds out (whole specimens). Writes ground_truth.json and
results.json (COCO format) and metrics.json to --output-dir, and prints a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from karyohf.data import validation_metaphases
from karyohf.detection import ChromosomeDetector, OtsuBaselineDetector
from karyohf.detection.detector import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD
from karyohf.detection.evaluation import AP_SCORE_FLOOR, evaluate_detector, format_table
from karyohf.models.centernet import MIRROR_FLIPS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", help="OWLv2 checkpoint folder or Hub id")
    parser.add_argument("--baseline", action="store_true", help="score the Otsu + connected-components baseline instead")
    parser.add_argument("--limit", type=int, default=None, help="score a seeded random subset of this many metaphases")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="operating point for recall, precision and counts (default: the detector's own for OWLv2, every blob for the baseline)")
    parser.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU)
    parser.add_argument("--test-time-flips", nargs="*", choices=list(MIRROR_FLIPS), default=None,
                        help="CenterNet: average over these mirror images (default: the checkpoint's own setting)")
    parser.add_argument("--off-peak-weight", type=float, default=None,
                        help="CenterNet: weight of heatmap cells off the peaks (0: peaks only; default: the checkpoint's own)")
    parser.add_argument("--data-root", default=None, help="data folder (default: $KARYOHF_DATA or ../shared/data)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: runs/eval-detection/<detector>")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.baseline == bool(args.checkpoint):
        parser.error("give either a checkpoint or --baseline")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.baseline:
        name, detector = "otsu-baseline", OtsuBaselineDetector()
        score_threshold = 0.0 if args.score_threshold is None else args.score_threshold
    else:
        name = Path(args.checkpoint).name
        detector = ChromosomeDetector.from_pretrained(args.checkpoint, device=args.device,
                                                      score_threshold=AP_SCORE_FLOOR, nms_iou=args.nms_iou,
                                                      test_time_flips=args.test_time_flips,
                                                      off_peak_weight=args.off_peak_weight)
        score_threshold = DEFAULT_SCORE_THRESHOLD if args.score_threshold is None else args.score_threshold
    output_dir = args.output_dir or Path("runs/eval-detection") / name
    metrics = evaluate_detector(detector, validation_metaphases(args.limit, args.data_root), score_threshold, output_dir)
    print(format_table({name: metrics}))
    print(f"written to {output_dir}/")


if __name__ == "__main__":
    main()
