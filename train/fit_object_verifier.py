"""Fit the object verifier (`karyohf.counting`): which of the detector's objects are chromosomes.

Training metaphases outside the seeded 200 that `benchmarks/counting.py` scores (nothing is tuned on those), and
not `numerical` (`benchmarks/cell_calls.py` measures aneuploidy calls on those), go through the pipeline's object stage (`KaryotypePipeline.objects`: detection down to the candidate floor, each
object cut and identified in its cell's scale); each object is labelled a chromosome when it matches an annotated
box one to one (IoU >= 0.5, strongest first). A logistic regression on `OBJECT_FEATURES` is fitted on them, its
threshold chosen on those same training metaphases for the exact-count rate, and it is written beside the detector
as object_verifier.json. Validation metaphases (grouped by specimen) are scored for the record, never fitted.

    python train/fit_object_verifier.py [--metaphases 600] [--cache runs/verifier] [--output checkpoints/centernet-chromosomes]
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torchvision.ops import box_iou

from karyohf.counting import OBJECT_FEATURES, ObjectVerifier, object_features
from karyohf.data import load_metaphases, split_metaphases
from karyohf.images import as_gray_uint8
from karyohf.pipeline import KaryotypePipeline

BENCHMARKED_TRAIN = 200  # the first of the seeded training permutation: benchmarks/counting.py scores them


def matched(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per object: it matches a free annotated box at IoU >= 0.5, objects taken strongest first."""
    out = np.zeros(len(boxes), dtype=bool)
    if not len(boxes) or not len(truth):
        return out
    overlaps = box_iou(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(truth, dtype=torch.float32))
    free = torch.ones(len(truth), dtype=torch.bool)
    for i in np.argsort(-scores, kind="stable"):
        row = torch.where(free, overlaps[i], -1.0)
        best = int(row.argmax())
        if row[best] >= 0.5:
            free[best], out[i] = False, True
    return out


def extract(pipe: KaryotypePipeline, dataset, path: Path) -> list[dict]:
    """The objects of each metaphase, with their features and labels, cached at `path`."""
    if path.is_file():
        return pickle.loads(path.read_bytes())
    records, started = [], time.time()
    for n, example in enumerate(dataset):
        gray = as_gray_uint8(example["image"])
        objects = pipe.objects(gray)
        truth = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        records.append({"image_id": example["image_id"], "true_count": len(truth),
                        "features": objects.features, "scores": objects.scores,
                        "sure": objects.sure, "chromosome": matched(objects.boxes, objects.scores, truth)})
        if n % 50 == 0:
            print(f"  {path.stem}: {n + 1}/{len(dataset)} ({time.time() - started:.0f} s)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(records))
    return records


def count_rates(records, counted) -> dict:
    error = np.array([int(c.sum()) - r["true_count"] for r, c in zip(records, counted)])
    return {"exact_count": round(float((error == 0).mean()), 4), "within_one": round(float((np.abs(error) <= 1).mean()), 4),
            "over_count": round(float((error > 0).mean()), 4), "under_count": round(float((error < 0).mean()), 4),
            "mean_abs_error": round(float(np.abs(error).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=None, help="pipeline checkpoints (default: the shipped ones)")
    parser.add_argument("--metaphases", type=int, default=600, help="training metaphases to fit on")
    parser.add_argument("--cache", type=Path, default=Path("runs/verifier"))
    parser.add_argument("--output", type=Path, default=Path("checkpoints/centernet-chromosomes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = KaryotypePipeline.from_pretrained(args.checkpoints)
    pipe.verifier = None  # features of the raw objects, whatever verifier is installed
    splits = split_metaphases(load_metaphases())
    train = splits["train"].shuffle(seed=args.seed)
    train = train.select(range(BENCHMARKED_TRAIN, min(BENCHMARKED_TRAIN + args.metaphases, len(train))))
    fit = extract(pipe, train, args.cache / f"train-{args.metaphases}.pkl")
    validation = extract(pipe, splits["validation"], args.cache / "validation.pkl")

    # The real numerical training metaphases are where benchmarks/cell_calls.py measures aneuploidy sensitivity.
    numerical = set(train.filter(lambda s: s == "numerical", input_columns="karyotype_status")["image_id"])
    fit = [r for r in fit if r["image_id"] not in numerical]
    x = np.concatenate([r["features"] for r in fit])
    y = np.concatenate([r["chromosome"] for r in fit])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / scale, y)
    verifier = ObjectVerifier(mean, scale, model.coef_[0], model.intercept_[0])
    # The threshold: the exact-count rate on the fitting metaphases, over a coarse grid (robust, not tuned finely).
    grid = np.round(np.arange(0.3, 0.71, 0.05), 2)
    rates = {float(t): count_rates(fit, [verifier(r["features"]) >= t for r in fit])["exact_count"] for t in grid}
    verifier.threshold = max(rates, key=rates.get)

    report = {}
    for name, records in (("train (fitted)", fit), ("validation", validation)):
        report[name] = {
            "metaphases": len(records),
            "detector at its threshold": count_rates(records, [r["sure"] for r in records]),
            "verified objects": count_rates(records, [verifier(r["features"]) >= verifier.threshold for r in records]),
        }
        print(name, json.dumps(report[name], indent=1), flush=True)
    verifier.fitted_on = {"training metaphases": len(fit), "objects": int(len(y)), "chromosomes": int(y.sum()),
                          "threshold_exact_count_on_training": rates, "counts": report,
                          "command": "python train/fit_object_verifier.py"}
    print("coefficients", dict(zip(OBJECT_FEATURES, np.round(verifier.coefficients, 3))))
    print("saved", verifier.save(args.output))


if __name__ == "__main__":
    main()
