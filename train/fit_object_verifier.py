"""Fit the object verifier (`karyohf.counting`): which of the detector's objects are chromosomes.

Training metaphases outside the seeded 200 that `benchmarks/counting.py` scores (nothing is tuned on those), and not
`numerical` ones (`benchmarks/cell_calls.py` measures aneuploidy calls on those), go through the pipeline's object
stage (`KaryotypePipeline.objects`: detection down to the candidate floor, each object cut and identified in its
cell's scale); an object is a chromosome when it matches an annotated box one to one (IoU >= 0.5, strongest first).
Logistic regressions, gradient-boosted trees, and two stages of trees (the second also weighing what the first
believes of the whole cell: its expected count, the copies of each class it holds) on `OBJECT_FEATURES` (`MODELS`)
are fitted on them, and the one with the lowest out-of-fold log-loss is kept.
Its threshold is judged on the pipeline's own count of the objects it keeps (labelled within the cell, unsure extra
copies left out) in out-of-fold metaphases: the most exact counts among the thresholds under which a lost autosome
(simulated) still shows at least as often as with the detector's threshold, since weak objects kept too freely fill
the gap a real loss leaves. It is written beside the detector as object_verifier.json. Adding
the identity model's 128-d embedding of each object to the features gained nothing out of fold (docs/pipeline.md).
Validation metaphases (grouped by specimen) are scored for the record, never fitted.

    python train/fit_object_verifier.py [--metaphases 400] [--cache runs/verifier] [--output checkpoints/centernet-chromosomes]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from torchvision.ops import box_iou

from karyohf.counting import (CONTEXT_FEATURES, OBJECT_FEATURES, LogisticVerifier, ObjectVerifier, StackedVerifier,
                              TreeVerifier, context_features, object_features)
from karyohf.data import fitting_metaphases, load_metaphases, split_metaphases
from karyohf.detection.evaluation import match_boxes
from karyohf.images import as_gray_uint8
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.pipeline import IDENTIFIER_FOLDER, KaryotypePipeline, pipeline_count, resolve_checkpoints

# The models tried, out of fold: logistic at three inverse L2 strengths, and boosted trees (which see interactions
# a logistic model cannot, e.g. a high score that means less inside a stronger box).
MODELS = {
    "logistic C=0.03": {"C": 0.03}, "logistic C=0.1": {"C": 0.1}, "logistic C=1": {"C": 1.0},
    "trees 200x15": {"max_iter": 200, "max_leaf_nodes": 15, "learning_rate": 0.05, "min_samples_leaf": 40},
    "trees 300x15 l2=1": {"max_iter": 300, "max_leaf_nodes": 15, "learning_rate": 0.05, "min_samples_leaf": 40,
                          "l2_regularization": 1.0},
    # Two stages of these trees: the second also reads what the first believes of the cell (`context_features`),
    # learnt from the first stage's out-of-fold beliefs, as it will meet them on unseen metaphases.
    "stacked trees 200x15": {"stages": "trees 200x15"},
}
THRESHOLDS = tuple(round(0.1 + 0.02 * k, 2) for k in range(16)) + (0.5,)  # 0.1, 0.12, ... 0.4, 0.5


def matched(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per object: it matches a free annotated box at IoU >= 0.5, objects taken strongest first (`match_boxes`)."""
    out = np.zeros(len(boxes), dtype=bool)
    order = np.argsort(-np.asarray(scores), kind="stable")
    for i, _ in match_boxes(np.asarray(boxes)[order].reshape(-1, 4), truth):
        out[order[i]] = True
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
        # Everything the features are made of, so that a change of features needs no second pass.
        records.append({"image_id": example["image_id"], "true_count": len(truth), "shape": gray.shape,
                        "boxes": objects.boxes, "scores": objects.scores, "sure": objects.sure,
                        "ink": objects.ink,
                        "probabilities": objects.identification.probabilities.astype(np.float32),
                        "chromosome": matched(objects.boxes, objects.scores, truth)})
        if n % 50 == 0:
            print(f"  {path.stem}: {n + 1}/{len(dataset)} ({time.time() - started:.0f} s)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(records))
    return records


def with_current_features(records, sure_threshold: float) -> list[dict]:
    """The records with `object_features` recomputed from what they cached, so a cache outlives a change of
    features (it must be rebuilt when the detector or identity weights change)."""
    return [{**r, "features": object_features(r["boxes"], r["scores"], r["probabilities"], r["shape"], sure_threshold,
                                              r["ink"])} for r in records]


def fit_verifier(records, name: str) -> ObjectVerifier:
    """The verifier `MODELS[name]` fitted on these records' objects."""
    if "stages" in MODELS[name]:
        return fit_stacked(records, MODELS[name]["stages"])
    x = np.concatenate([r["features"] for r in records])
    y = np.concatenate([r["chromosome"] for r in records])
    if name.startswith("logistic"):
        mean, scale = x.mean(0), x.std(0) + 1e-6
        model = LogisticRegression(C=MODELS[name]["C"], max_iter=3000).fit((x - mean) / scale, y)
        return LogisticVerifier(mean, scale, model.coef_[0], model.intercept_[0])
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **MODELS[name]).fit(x, y)
    return tree_verifier(model)


def fit_stacked(records, stage: str) -> StackedVerifier:
    """Two stages of `MODELS[stage]` trees: the second fitted on the first's beliefs out of fold (4 folds of whole
    metaphases), the first then refitted on all the records."""
    folds = np.arange(len(records)) % 4
    beliefs = [None] * len(records)
    for fold in range(4):
        first = fit_verifier([r for r, f in zip(records, folds) if f != fold], stage)
        for i in np.flatnonzero(folds == fold):
            beliefs[i] = first(records[i]["features"])
    x = np.concatenate([np.column_stack([r["features"], context_features(b, r["probabilities"])])
                        for r, b in zip(records, beliefs)])
    y = np.concatenate([r["chromosome"] for r in records])
    second = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **MODELS[stage]).fit(x, y)
    return StackedVerifier(fit_verifier(records, stage), tree_verifier(second, len(OBJECT_FEATURES) + len(CONTEXT_FEATURES)))


def tree_verifier(model: HistGradientBoostingClassifier, columns: int = len(OBJECT_FEATURES)) -> TreeVerifier:
    """A fitted binary HistGradientBoostingClassifier as a `TreeVerifier` (its node tables, read from the pinned
    scikit-learn's predictors; the tests check that both give the same probabilities)."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf, index = nodes["is_leaf"].astype(bool), np.arange(len(nodes))
        trees.append({"feature": np.where(leaf, 0, nodes["feature_idx"]),
                      "threshold": np.where(leaf, 0.0, nodes["num_threshold"]),
                      "left": np.where(leaf, index, nodes["left"]), "right": np.where(leaf, index, nodes["right"]),
                      "value": np.where(leaf, nodes["value"], 0.0)})
    return TreeVerifier(float(np.ravel(model._baseline_prediction)[0]), trees, columns=columns)


def pipeline_rates(records, kept) -> dict:
    """Count rates of the pipeline's count (`pipeline_count`) of each record's kept objects."""
    error = np.array([len(pipeline_count(r["probabilities"], r["scores"], k)[1]) - r["true_count"]
                      for r, k in zip(records, kept)])
    return {"exact_count": round(float((error == 0).mean()), 4),
            "within_one": round(float((np.abs(error) <= 1).mean()), 4),
            "over_count": round(float((error > 0).mean()), 4), "under_count": round(float((error < 0).mean()), 4)}


def loss_visibility(records, kept, seed: int = 0) -> dict:
    """How often a lost autosome would still show: in each metaphase one confidently detected, annotated autosome is
    taken away (with every object overlapping it at IoU >= 0.3), and the pipeline's count of the rest must lack one
    copy of that class. The other objects keep the features they had beside it (an approximation)."""
    rng = np.random.default_rng(seed)
    shown = tried = 0
    for record, keep in zip(records, kept):
        present = np.flatnonzero(record["chromosome"] & record["sure"])
        if not len(present):
            continue
        gone = rng.choice(present)
        lost = CHROMOSOMES[int(record["probabilities"][gone].argmax())]
        if lost in ("X", "Y"):
            continue
        others = box_iou(torch.as_tensor(record["boxes"][gone : gone + 1]),
                         torch.as_tensor(record["boxes"])).numpy()[0] < 0.3
        before = pipeline_count(record["probabilities"], record["scores"], keep)[1].count(lost)
        after = pipeline_count(record["probabilities"][others], record["scores"][others], keep[others])[1].count(lost)
        shown += after == before - 1
        tried += 1
    return {"loss_shown": round(shown / max(tried, 1), 4), "losses_simulated": tried}


def with_extra_copy(record, sure_threshold: float, rng: np.random.Generator) -> tuple[dict, str] | None:
    """The record with one more copy of a confidently detected, annotated autosome, as a trisomy's third copy would
    come: the same object (size, score, identity probabilities) again where it overlaps no other box, and every
    object's features recomputed beside it. None when the metaphase has no such autosome or no room."""
    present = [i for i in np.flatnonzero(record["chromosome"] & record["sure"])
               if CHROMOSOMES[int(record["probabilities"][i].argmax())] not in ("X", "Y")]
    if not present:
        return None
    copied = int(rng.choice(present))
    x0, y0, x1, y1 = record["boxes"][copied]
    rows, cols = record["shape"]
    boxes = torch.as_tensor(record["boxes"])
    for _ in range(200):
        left, top = rng.uniform(0, max(cols - (x1 - x0), 1)), rng.uniform(0, max(rows - (y1 - y0), 1))
        box = np.array([[left, top, left + x1 - x0, top + y1 - y0]], np.float32)
        if not len(boxes) or float(box_iou(torch.as_tensor(box), boxes).max()) == 0.0:
            break
    else:
        return None
    grown = {**record, "boxes": np.concatenate([record["boxes"], box]),
             "scores": np.append(record["scores"], record["scores"][copied]),
             "probabilities": np.concatenate([record["probabilities"], record["probabilities"][copied : copied + 1]]),
             "sure": np.append(record["sure"], True), "chromosome": np.append(record["chromosome"], True),
             "ink": np.concatenate([record["ink"], record["ink"][copied : copied + 1]])}
    grown["ink"][-1, 0] = 1.0  # where it lies, no other object's ink covers it
    grown["features"] = object_features(grown["boxes"], grown["scores"], grown["probabilities"], grown["shape"],
                                        sure_threshold, grown["ink"])
    return grown, CHROMOSOMES[int(record["probabilities"][copied].argmax())]


def gain_visibility(records, keep, sure_threshold: float, seed: int = 0) -> dict:
    """How often a gained autosome would show: `with_extra_copy` in each metaphase, and the pipeline's count of
    what `keep(record)` (a boolean per object) keeps must hold one more copy of that class than without it. The
    verifier's copies feature and the pipeline's rule for unsure extra copies both weigh against a third copy."""
    rng = np.random.default_rng(seed)
    shown = tried = 0
    for record in records:
        made = with_extra_copy(record, sure_threshold, rng)
        if made is None:
            continue
        grown, gained = made
        before = pipeline_count(record["probabilities"], record["scores"], keep(record))[1].count(gained)
        after = pipeline_count(grown["probabilities"], grown["scores"], keep(grown))[1].count(gained)
        shown += after == before + 1
        tried += 1
    return {"gain_shown": round(shown / max(tried, 1), 4), "gains_simulated": tried}


def count_rates(records, counted) -> dict:
    error = np.array([int(c.sum()) - r["true_count"] for r, c in zip(records, counted)])
    return {"exact_count": round(float((error == 0).mean()), 4), "within_one": round(float((np.abs(error) <= 1).mean()), 4),
            "over_count": round(float((error > 0).mean()), 4), "under_count": round(float((error < 0).mean()), 4),
            "mean_abs_error": round(float(np.abs(error).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=None, help="pipeline checkpoints (default: the shipped ones)")
    parser.add_argument("--metaphases", type=int, default=400, help="training metaphases to fit on")
    parser.add_argument("--cache", type=Path, default=Path("runs/verifier"))
    parser.add_argument("--output", type=Path, default=Path("checkpoints/centernet-chromosomes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = KaryotypePipeline.from_pretrained(args.checkpoints, verifier=False)  # the raw objects, whatever is installed
    splits = split_metaphases(load_metaphases())
    train = fitting_metaphases(splits, args.metaphases, args.seed)
    sure = pipe.detector.score_threshold
    fit = with_current_features(extract(pipe, train, args.cache / f"train-{args.metaphases}.pkl"), sure)
    validation = with_current_features(extract(pipe, splits["validation"], args.cache / "validation.pkl"), sure)

    # The real numerical training metaphases are where benchmarks/cell_calls.py measures aneuploidy sensitivity.
    numerical = set(train.filter(lambda s: s == "numerical", input_columns="karyotype_status")["image_id"])
    fit = [r for r in fit if r["image_id"] not in numerical]
    # Out of fold (4 folds of whole metaphases): the model with the lowest log-loss, then the threshold.
    folds = np.arange(len(fit)) % 4
    held_out, losses = {}, {}
    for name in MODELS:
        held_out[name] = [None] * len(fit)
        for fold in range(4):
            model = fit_verifier([r for r, f in zip(fit, folds) if f != fold], name)
            for i in np.flatnonzero(folds == fold):
                held_out[name][i] = model(fit[i]["features"], fit[i]["probabilities"])
        p = np.clip(np.concatenate(held_out[name]), 1e-6, 1 - 1e-6)
        y = np.concatenate([r["chromosome"] for r in fit])
        losses[name] = round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 5)
        print(f"  {name}: out-of-fold log-loss {losses[name]}", flush=True)
    chosen = min(losses, key=losses.get)
    held = held_out[chosen]
    # The threshold is judged on the count the pipeline makes of what the verifier keeps (labelled within the cell,
    # unsure extra copies left out), and on whether a lost chromosome still shows: the most exact counts among the
    # thresholds that show simulated losses at least as often as the detector's own threshold does.
    baseline = {**pipeline_rates(fit, [r["sure"] for r in fit]), **loss_visibility(fit, [r["sure"] for r in fit])}
    candidates = {}
    for t in THRESHOLDS:
        kept = [p >= t for p in held]
        candidates[t] = {**pipeline_rates(fit, kept), **loss_visibility(fit, kept)}
    allowed = [t for t, r in candidates.items() if r["loss_shown"] >= baseline["loss_shown"]]
    threshold = max(allowed or [max(THRESHOLDS)], key=lambda t: candidates[t]["exact_count"])
    verifier = fit_verifier(fit, chosen)
    verifier.threshold = float(threshold)

    report = {}
    for name, records in (("train (fitted)", fit), ("validation", validation)):
        sure = [r["sure"] for r in records]
        kept = [verifier(r["features"], r["probabilities"]) >= verifier.threshold for r in records]
        report[name] = {
            "metaphases": len(records),
            "detector at its threshold, then the pipeline's count": {
                **pipeline_rates(records, sure), **loss_visibility(records, sure),
                **gain_visibility(records, lambda r: r["sure"], pipe.detector.score_threshold)},
            "verified objects, then the pipeline's count": {
                **pipeline_rates(records, kept), **loss_visibility(records, kept),
                **gain_visibility(records, lambda r: verifier(r["features"], r["probabilities"]) >= verifier.threshold,
                                  pipe.detector.score_threshold)},
            "verified objects alone": count_rates(records, kept),
        }
        print(name, json.dumps(report[name], indent=1), flush=True)
    labels = np.concatenate([r["chromosome"] for r in fit])
    verifier.fitted_on = {"training metaphases": len(fit), "objects": int(len(labels)),
                          "chromosomes": int(labels.sum()), "model": chosen, "model_parameters": MODELS[chosen],
                          "out_of_fold_log_loss": losses,
                          "out_of_fold_by_threshold": {"detector": baseline, **{f"{t:g}": r for t, r in
                                                                                 candidates.items()}},
                          "counts": report,
                          "identity weights (sha256, first 16)": hashlib.sha256(
                              (resolve_checkpoints(args.checkpoints) / IDENTIFIER_FOLDER / "model.safetensors")
                              .read_bytes()).hexdigest()[:16],
                          "command": "python train/fit_object_verifier.py"}
    print("chosen", chosen, threshold, candidates[threshold])
    print("saved", verifier.save(args.output))


if __name__ == "__main__":
    main()
