"""Detector latency per metaphase on this CPU: the whole `ChromosomeDetector` call (grey conversion, padding,
resize, forward, peak decoding, NMS) on real validation metaphases of every size in the data, 360-1360 px.

Rows: the shipped detector (checkpoints/centernet-chromosomes) as shipped and, when its config asks for them, without
the chromosome-length rescaling and as one plain forward at its fixed input size; for comparison, a random-init OWLv2 at the
geometry a from-scratch ViT detector would need (512 px, patch 16, width 256 x 6 layers; latency does not depend on
the weights). Goal: <= 300 ms per metaphase for the shipped one on 2 cores.

    python benchmarks/detection.py [--threads 2] [--images 30]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from karyohf.data import load_metaphases, split_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.owlv2 import owlv2_from_scratch
from karyohf.images import as_gray_uint8
from karyohf.pipeline import CANDIDATE_FLOOR, CANDIDATE_NMS_IOU, detect_candidates

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "centernet-chromosomes"


def time_detector(detector, images, repeats: int) -> dict:
    detector(images[0])  # warm-up: first-call allocations
    per_image = []
    for image in images:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            detector(image)
            runs.append(time.perf_counter() - started)
        per_image.append(min(runs))
    per_image = np.array(per_image) * 1000
    return {"median_ms": float(np.median(per_image)), "mean_ms": float(per_image.mean()),
            "p90_ms": float(np.percentile(per_image, 90)), "max_ms": float(per_image.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "detection.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    validation = split_metaphases(load_metaphases())["validation"].shuffle(seed=0)
    images = [as_gray_uint8(image) for image in validation.select(range(args.images))["image"]]
    sizes = [image.shape for image in images]
    rows = {}
    if (SHIPPED / "config.json").is_file():
        shipped = ChromosomeDetector.from_pretrained(SHIPPED)
        detectors = {"as shipped": shipped}
        if shipped.chromosome_length:  # also without the measuring pass, every metaphase at image_size
            detectors[f"{shipped.model.config.image_size} px square"] = ChromosomeDetector.from_pretrained(
                SHIPPED, chromosome_length=0)
        if shipped.test_time_flips or shipped.chromosome_length:
            detectors["one plain forward"] = ChromosomeDetector.from_pretrained(
                SHIPPED, test_time_flips=(), chromosome_length=0)
        for setting, detector in detectors.items():
            views = " + ".join(("plain",) + detector.test_time_flips)
            scale = f", rescaled to {detector.chromosome_length:g} px chromosomes" if detector.chromosome_length else ""
            rows[f"shipped {detector.model.config.model_type}, {setting} ({views}{scale})"] = {
                "parameters": detector.model.num_parameters(), **time_detector(detector, images, args.repeats)}
        # The pipeline calls it down to its candidate floor: more boxes to decode and suppress.
        rows[f"shipped, as the pipeline calls it (boxes down to {CANDIDATE_FLOOR}, NMS IoU {CANDIDATE_NMS_IOU})"] = {
            "parameters": shipped.model.num_parameters(),
            **time_detector(lambda image: detect_candidates(shipped, image), images, args.repeats)}
    torch.manual_seed(0)
    model, processor = owlv2_from_scratch(image_size=512, patch_size=16, vision_width=256, vision_layers=6)
    rows["owlv2 512px w256x6 (random init)"] = {
        "parameters": model.num_parameters(), **time_detector(ChromosomeDetector(model, processor), images, args.repeats)}
    result = {"threads": args.threads, "images": args.images, "image_sizes": [f"{h}x{w}" for h, w in sizes],
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "detectors": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    for name, row in rows.items():
        print(f"{name}: {row['parameters']:,} parameters, median {row['median_ms']:.0f} ms, "
              f"p90 {row['p90_ms']:.0f} ms per metaphase")


if __name__ == "__main__":
    main()
