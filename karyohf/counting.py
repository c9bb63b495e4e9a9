"""Which detected objects are chromosomes: the count every karyotype rests on.

The detector alone counts a metaphase exactly in about a third of cases: most chromosomes it misses still have a
box scored under its threshold, and most of its false boxes are debris, a nucleus cut by the image edge, the
misplaced partner of a touching pair, or a duplicate. The pipeline therefore looks at every object down to a low
score floor and weighs each with what it knows beside the score: how much the box overlaps stronger ones, its size
and shape against the cell's chromosomes, whether the identity model can place it and how many copies of that class
the cell already has, whether it touches the image edge, whether its mask adds ink no stronger object's holds.
`ObjectVerifier` is a model over those `OBJECT_FEATURES` (logistic, gradient-boosted trees where their interactions
pay out of fold, or two stages of trees, the second weighing what the first believes of the whole cell), fitted on
the detector's own boxes in training metaphases (`train/fit_object_verifier.py`), and stored as JSON beside the
detector (`object_verifier.json`): P(object is a chromosome). Objects it is unsure of are the count's doubt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cytogenetics import CHROMOSOMES
from .metrics import prediction_entropy

VERIFIER_FILE = "object_verifier.json"
SEX_CLASSES = (CHROMOSOMES.index("X"), CHROMOSOMES.index("Y"))
# The features, in the order the verifier's coefficients are stored.
OBJECT_FEATURES = (
    "score_logit",  # the detector's confidence
    "overlap_stronger",  # largest IoU with a higher-scored object
    "inside_stronger",  # largest share of the box inside a higher-scored object's box
    "log_relative_area",  # box area against the median of the cell's confident boxes
    "log_elongation",  # long side over short side
    "identity_confidence",  # the identity model's top probability
    "identity_entropy",
    # Stronger objects the identity model gives the same class, X and Y one class as the count pools them (2 is a
    # full pair; a second Y beside X and Y is an extra copy, as a third 21 is).
    "copies_before_sex_pooled",
    "edge_distance",  # distance to the image edge, in median box sides (clipped at 1)
    "cell_excess",  # confident boxes in the cell minus 46, over 10 (clipped at +-1)
    # Against the stronger object it overlaps most (0 when it overlaps none): a duplicate box of one chromosome reads
    # as the same class at a lower score, the partner of a touching pair as another class.
    "same_identity_as_stronger",  # P(both objects are the same class), from their identity probabilities
    "score_against_stronger",  # log of its score over that object's
    "weaker_overlaps",  # weaker objects overlapping it at IoU > 0.3 (a real chromosome gathers stray boxes)
    # From its mask (`ink_measures`): a duplicate box adds no ink of its own, debris and nuclei stain differently.
    "new_ink",  # share of its mask that no stronger object's mask covers
    "log_relative_ink",  # its mean ink against the median of the cell's confident objects
    "log_relative_banding",  # the spread of its ink (bands) against the same median
    "mask_fill",  # share of its box its mask fills
)
INK_MEASURES = 4  # columns of `ink_measures`
# What a `StackedVerifier`'s second stage adds to each object's features: what its first stage believes of the cell.
CONTEXT_FEATURES = (
    "first_stage_probability",  # the first stage's P(chromosome) of the object
    "cell_expected_excess",  # the first stage's expected count of the cell minus 46, over 10
    "class_believed_before",  # expected copies of its class (X and Y pooled) among objects believed more than it
    "class_believed_others",  # expected copies of its class among all the cell's other objects
)


def _ranked_above(values) -> np.ndarray:
    """[i, j]: object j ranks above object i by `values` (ties broken by order, so of two equal objects exactly one
    is the weaker)."""
    order = np.argsort(-np.asarray(values, np.float64), kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[None, :] < rank[:, None]


def _same_pooled_class(probabilities) -> np.ndarray:
    """[i, j]: the identity model gives objects i and j the same class, X and Y one class as the count pools them."""
    labels = np.asarray(probabilities).argmax(1)
    pooled = np.where(labels == SEX_CLASSES[1], SEX_CLASSES[0], labels)
    return pooled[:, None] == pooled[None, :]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def ink_measures(gray: np.ndarray, masks, mask_boxes, scores) -> np.ndarray:
    """(N, INK_MEASURES) per object of a grey metaphase, from its box-local mask (`masks[i]` in the integer pixel box
    `mask_boxes[i]`): the share of its mask no stronger (higher-scored) object's mask covers, its mean ink
    (255 - gray), the spread of its ink, and the share of its box the mask fills."""
    out = np.zeros((len(masks), INK_MEASURES))
    covered = np.zeros(gray.shape[:2], dtype=bool)
    ink = 255.0 - np.asarray(gray, np.float64)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        x0, y0, x1, y1 = (int(v) for v in mask_boxes[i])
        mask = np.asarray(masks[i], dtype=bool)
        region = covered[y0:y1, x0:x1]
        if not mask.any():
            continue
        values = ink[y0:y1, x0:x1][mask]
        out[i] = (1 - (region & mask).sum() / mask.sum(), values.mean(), values.std(), mask.mean())
        region |= mask
    return out


def object_features(boxes, scores, probabilities, image_shape, sure_threshold: float, ink) -> np.ndarray:
    """(N, len(OBJECT_FEATURES)) features of one metaphase's objects: `boxes` (xyxy), detector `scores`, identity
    `probabilities` (N, classes) of each object's own crop, the image's (rows, cols), the detector's threshold
    (its confident boxes set the cell's typical size and count) and the objects' `ink_measures`."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    count = len(boxes)
    features = np.zeros((count, len(OBJECT_FEATURES)))
    if not count:
        return features
    scores = np.asarray(scores, np.float64).reshape(-1)
    probabilities = np.asarray(probabilities, np.float64).reshape(count, -1)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = np.maximum(widths * heights, 1.0)
    sure = scores >= sure_threshold
    typical = np.median(area[sure]) if sure.any() else np.median(area)
    side = np.sqrt(typical)
    x0, y0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0]), np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1, y1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2]), np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    iou = inter / (area[:, None] + area[None, :] - inter)
    inside = inter / area[:, None]
    stronger = _ranked_above(scores)  # of two equal boxes exactly one is the duplicate
    same = _same_pooled_class(probabilities)
    rows, cols = image_shape[:2]
    edge = np.minimum.reduce([boxes[:, 0], boxes[:, 1], cols - boxes[:, 2], rows - boxes[:, 3]])
    features[:, 0] = _logit(scores)
    features[:, 1] = np.where(stronger, iou, 0).max(1)
    features[:, 2] = np.where(stronger, inside, 0).max(1)
    features[:, 3] = np.log(area / typical)
    features[:, 4] = np.log(np.maximum(widths, heights).clip(1) / np.minimum(widths, heights).clip(1))
    features[:, 5] = probabilities.max(1)
    features[:, 6] = prediction_entropy(probabilities)
    features[:, 7] = np.minimum((stronger & same).sum(1), 4)
    features[:, 8] = np.clip(edge / side, 0, 1)
    features[:, 9] = np.clip((sure.sum() - 46) / 10, -1, 1)
    overlapped = np.where(stronger, iou, -1.0)
    partner = overlapped.argmax(1)
    overlaps_one = overlapped.max(1) > 0.05
    features[:, 10] = np.where(overlaps_one, (probabilities * probabilities[partner]).sum(1), 0.0)
    features[:, 11] = np.where(overlaps_one, np.log(np.clip(scores, 1e-4, 1) / np.clip(scores[partner], 1e-4, 1)), 0.0)
    features[:, 12] = (np.where(stronger.T, iou, 0) > 0.3).sum(1)
    ink = np.asarray(ink, np.float64).reshape(count, INK_MEASURES)
    typical_ink = np.median(ink[sure], 0) if sure.any() else np.median(ink, 0)
    features[:, 13] = ink[:, 0]
    features[:, 14] = np.log(np.clip(ink[:, 1], 1.0, None) / max(typical_ink[1], 1.0))
    features[:, 15] = np.log(np.clip(ink[:, 2], 0.5, None) / max(typical_ink[2], 0.5))
    features[:, 16] = ink[:, 3]
    return features


def context_features(first_probability, probabilities) -> np.ndarray:
    """(N, len(CONTEXT_FEATURES)) of one metaphase's objects, from a first stage's P(chromosome) of each and their
    identity `probabilities`: a weak object in a cell already believed to hold 46, or to hold two of its class,
    is more likely a duplicate or debris than one in a cell that lacks it."""
    p = np.asarray(first_probability, np.float64).reshape(-1)
    same = _same_pooled_class(np.asarray(probabilities).reshape(len(p), -1))
    believed_more = _ranked_above(p)
    return np.column_stack([p, np.full(len(p), (p.sum() - 46) / 10), np.where(same & believed_more, p, 0).sum(1),
                            np.where(same, p, 0).sum(1) - p])


class ObjectVerifier:
    """P(object is a chromosome) from `object_features`, with the threshold the pipeline counts at. Stored as JSON
    (`save`, `from_folder`) in one of three forms: `LogisticVerifier`, `TreeVerifier` or `StackedVerifier`."""

    kind = None

    def __init__(self, threshold: float = 0.5, fitted_on: dict = None):
        self.threshold = float(threshold)
        self.fitted_on = fitted_on or {}

    def log_odds(self, features: np.ndarray, probabilities=None) -> np.ndarray:
        raise NotImplementedError

    def parameters(self) -> dict:
        raise NotImplementedError

    def __call__(self, features, probabilities=None) -> np.ndarray:
        """P(chromosome) of one metaphase's objects from their `object_features` (and, for a verifier that weighs the
        cell's context, their identity `probabilities`)."""
        features = np.asarray(features, np.float64).reshape(-1, len(OBJECT_FEATURES))
        if not len(features):
            return np.zeros(0, np.float32)
        return (1 / (1 + np.exp(-self.log_odds(features, probabilities)))).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "features": list(OBJECT_FEATURES), **self.parameters(), "threshold": self.threshold,
                "fitted_on": self.fitted_on}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / VERIFIER_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ObjectVerifier | None":
        """The verifier stored beside a detector checkpoint, or None when it has none."""
        path = Path(folder) / VERIFIER_FILE
        if not path.is_file():
            return None
        stored = json.loads(path.read_text())
        if tuple(stored.get("features", ())) != OBJECT_FEATURES:
            raise ValueError(f"{path}: its features {stored.get('features')} are not this version's "
                             f"{list(OBJECT_FEATURES)}; refit it with train/fit_object_verifier.py")
        kinds = {kind.kind: kind for kind in (LogisticVerifier, TreeVerifier, StackedVerifier)}
        kind = stored.get("kind", LogisticVerifier.kind)  # files before trees were logistic
        if kind not in kinds:
            raise ValueError(f"{path}: unknown verifier kind {kind!r} (known: {sorted(kinds)})")
        try:
            return kinds[kind].from_parameters(stored, stored.get("threshold", 0.5), stored.get("fitted_on"))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a valid {kind} verifier ({error})") from error


class LogisticVerifier(ObjectVerifier):
    """A logistic model on standardised features."""

    kind = "logistic"

    def __init__(self, mean, scale, coefficients, intercept: float, threshold: float = 0.5, fitted_on: dict = None):
        super().__init__(threshold, fitted_on)
        self.mean, self.scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
        self.coefficients, self.intercept = np.asarray(coefficients, np.float64), float(intercept)
        if not (self.mean.shape == self.scale.shape == self.coefficients.shape == (len(OBJECT_FEATURES),)):
            raise ValueError(f"an object verifier needs {len(OBJECT_FEATURES)} means, scales and coefficients")

    def log_odds(self, features: np.ndarray, probabilities=None) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coefficients + self.intercept

    def parameters(self) -> dict:
        return {"mean": self.mean.round(6).tolist(), "scale": self.scale.round(6).tolist(),
                "coefficients": self.coefficients.round(6).tolist(), "intercept": round(self.intercept, 6)}

    @classmethod
    def from_parameters(cls, stored: dict, threshold: float, fitted_on: dict) -> "LogisticVerifier":
        return cls(stored["mean"], stored["scale"], stored["coefficients"], stored["intercept"], threshold, fitted_on)


class TreeVerifier(ObjectVerifier):
    """Gradient-boosted regression trees on the raw features: the log-odds are `baseline` plus one leaf value per tree.
    Each tree is a flat node table (`feature`, `threshold`, `left`, `right`, `value`; a leaf is its own child);
    an object goes left where its feature is <= the node's threshold. Evaluated here in numpy, so that the verifier
    is a small JSON file, not a pickled model."""

    kind = "trees"

    def __init__(self, baseline: float, trees: list[dict], threshold: float = 0.5, fitted_on: dict = None,
                 columns: int = len(OBJECT_FEATURES)):
        super().__init__(threshold, fitted_on)
        self.baseline, self.columns = float(baseline), int(columns)
        self.trees = [{key: list(tree[key]) for key in ("feature", "threshold", "left", "right", "value")}
                      for tree in trees]
        # All trees in one table: node ids offset per tree, every tree's root in `roots`.
        sizes = [len(tree["value"]) for tree in self.trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        table = {key: np.concatenate([np.asarray(tree[key]) for tree in self.trees]) if self.trees else np.zeros(0)
                 for key in ("feature", "threshold", "left", "right", "value")}
        self._feature = table["feature"].astype(np.int64)
        self._threshold = table["threshold"].astype(np.float64)
        owner = np.repeat(offsets, sizes)
        self._left = table["left"].astype(np.int64) + owner
        self._right = table["right"].astype(np.int64) + owner
        self._value = table["value"].astype(np.float64)
        self._roots = offsets
        if len(self._feature) and not (0 <= self._feature.min() and self._feature.max() < self.columns):
            raise ValueError(f"tree nodes must split on features 0-{self.columns - 1}")
        if len(self._left) and not (self._left.min() >= 0 and max(self._left.max(), self._right.max()) < len(owner)):
            raise ValueError("tree children must be nodes of their own tree")
        # Deep enough that every object has reached its leaf (a tree's depth is under its node count).
        self._depth = max(sizes, default=0)

    def log_odds(self, features: np.ndarray, probabilities=None) -> np.ndarray:
        nodes = np.broadcast_to(self._roots, (len(features), len(self._roots))).copy()
        rows = np.arange(len(features))[:, None]
        for _ in range(self._depth):
            left = features[rows, self._feature[nodes]] <= self._threshold[nodes]
            moved = np.where(left, self._left[nodes], self._right[nodes])
            if np.array_equal(moved, nodes):
                break
            nodes = moved
        return self.baseline + self._value[nodes].sum(1)

    def parameters(self) -> dict:
        return {"baseline": round(self.baseline, 8),
                "trees": [{"feature": [int(v) for v in t["feature"]], "threshold": [float(v) for v in t["threshold"]],
                           "left": [int(v) for v in t["left"]], "right": [int(v) for v in t["right"]],
                           "value": [round(float(v), 8) for v in t["value"]]} for t in self.trees]}

    @classmethod
    def from_parameters(cls, stored: dict, threshold: float, fitted_on: dict) -> "TreeVerifier":
        return cls(stored["baseline"], stored["trees"], threshold, fitted_on)


class StackedVerifier(ObjectVerifier):
    """Two stages of trees: `first` judges each object on its own features, `second` judges it again with
    `context_features` of what the first believes of the whole cell appended (its expected count, the copies of the
    object's class it already holds)."""

    kind = "stacked"

    def __init__(self, first: TreeVerifier, second: TreeVerifier, threshold: float = 0.5, fitted_on: dict = None):
        super().__init__(threshold, fitted_on)
        if first.columns != len(OBJECT_FEATURES) or second.columns != len(OBJECT_FEATURES) + len(CONTEXT_FEATURES):
            raise ValueError(f"a stacked verifier's stages read {len(OBJECT_FEATURES)} and "
                             f"{len(OBJECT_FEATURES) + len(CONTEXT_FEATURES)} features")
        self.first, self.second = first, second

    def log_odds(self, features: np.ndarray, probabilities=None) -> np.ndarray:
        if probabilities is None:
            raise ValueError("a stacked verifier weighs the cell: pass the objects' identity probabilities")
        context = context_features(self.first(features), probabilities)
        return self.second.log_odds(np.column_stack([features, context]))

    def parameters(self) -> dict:
        return {"context_features": list(CONTEXT_FEATURES), "first": self.first.parameters(),
                "second": self.second.parameters()}

    @classmethod
    def from_parameters(cls, stored: dict, threshold: float, fitted_on: dict) -> "StackedVerifier":
        if tuple(stored.get("context_features", ())) != CONTEXT_FEATURES:
            raise ValueError(f"its context features {stored.get('context_features')} are not {list(CONTEXT_FEATURES)}")
        first = TreeVerifier.from_parameters(stored["first"], 0.5, None)
        second = TreeVerifier(stored["second"]["baseline"], stored["second"]["trees"],
                              columns=len(OBJECT_FEATURES) + len(CONTEXT_FEATURES))
        return cls(first, second, threshold, fitted_on)


__all__ = ["CONTEXT_FEATURES", "INK_MEASURES", "OBJECT_FEATURES", "VERIFIER_FILE", "LogisticVerifier", "ObjectVerifier", "StackedVerifier", "TreeVerifier",
           "context_features", "ink_measures", "object_features"]
