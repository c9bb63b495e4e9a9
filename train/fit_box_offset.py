"""Fit a detector's `box_offset`: the annotation convention its flips and quarter turns in training averaged away.

The annotated boxes of the Tseng et al. metaphases are not centred on their chromosomes: around each chromosome's
threshold mask they leave a median 6 px above and 2 px below, 5 px left and 4 px right. A detector trained under
random flips and quarter turns (`CenterNetCollator`) cannot learn a convention that a flip reverses, so it centres
its boxes, and every box it returns sits ~2 px below its annotation: at IoU 0.5 that costs nothing, at 0.9 it costs
half the boxes. The offset is the median, per side, of (annotated - detected) over the detector's boxes at its
threshold matched one to one (IoU >= 0.5) on training metaphases: those after the seeded 200 that
`benchmarks/counting.py` scores, as `train/fit_object_verifier.py` takes them. It is written into the checkpoint's
config.json (`box_offset`); the matched boxes' IoU before and after is printed for those and for the validation split.
The pipeline still cuts each chromosome from the centred box (`KaryotypePipeline.centred_boxes`), where all of it lies.

    python train/fit_box_offset.py [--detector checkpoints/centernet-chromosomes] [--metaphases 400]

Everything that reads the detector's boxes (the object verifier's cache, the counts and calls) is re-measured after.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from karyohf.data import fitting_metaphases, load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.evaluation import match_boxes
from karyohf.images import as_gray_uint8


def matched_offsets(detector: ChromosomeDetector, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(annotated - detected) per side, and the detected boxes, of every box matched one to one at IoU >= 0.5."""
    offsets, boxes = [], []
    for example in dataset:
        found = detector(as_gray_uint8(example["image"]))
        truth = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        for i, j in match_boxes(found.boxes, truth):
            offsets.append(truth[j] - found.boxes[i])
            boxes.append(found.boxes[i])
    return np.asarray(offsets, np.float32).reshape(-1, 4), np.asarray(boxes, np.float32).reshape(-1, 4)


def iou_summary(boxes: np.ndarray, offsets: np.ndarray, shift) -> dict:
    """Mean IoU of the matched boxes moved by `shift` with their annotations, and the shares at 0.75 and 0.9."""
    truth = torch.as_tensor(boxes + offsets)
    moved = torch.as_tensor(boxes + np.asarray(shift, np.float32))
    iou = box_iou(moved, truth).diagonal().numpy() if len(boxes) else np.zeros(0)
    return {"boxes": len(iou), "mean_iou": round(float(iou.mean()), 4), "iou_0.75": round(float((iou >= 0.75).mean()), 4),
            "iou_0.9": round(float((iou >= 0.9).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, default=Path("checkpoints/centernet-chromosomes"))
    parser.add_argument("--metaphases", type=int, default=400, help="training metaphases to fit on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    detector = ChromosomeDetector.from_pretrained(args.detector, box_offset=(0.0, 0.0, 0.0, 0.0))
    splits = split_metaphases(load_metaphases())
    train = fitting_metaphases(splits, args.metaphases, args.seed)
    offsets, boxes = matched_offsets(detector, train)
    if not len(offsets):
        raise SystemExit("no detected box matched an annotation: nothing to fit")
    shift = np.round(np.median(offsets.astype(np.float64), axis=0), 2)
    report = {"fitted on": f"{len(train)} training metaphases", "box_offset": shift.tolist(),
              "spread (median absolute deviation)": np.round(np.median(np.abs(offsets - shift), 0), 2).tolist()}
    val_offsets, val_boxes = matched_offsets(detector, splits["validation"])
    for name, (o, b) in (("training (fitted)", (offsets, boxes)), ("validation", (val_offsets, val_boxes))):
        report[name] = {"without": iou_summary(b, o, (0, 0, 0, 0)), "with": iou_summary(b, o, shift),
                        "its own median": np.round(np.median(o.astype(np.float64), 0), 2).tolist()}
    print(json.dumps(report, indent=1))
    config_path = args.detector / "config.json"
    config = json.loads(config_path.read_text())
    config["box_offset"] = [float(v) for v in shift]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print("wrote box_offset", shift.tolist(), "to", config_path)


if __name__ == "__main__":
    main()
