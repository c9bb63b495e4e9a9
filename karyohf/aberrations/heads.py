"""Aberration heads as the pipeline runs them: which chromosomes each screens, their probabilities, a cell's score.

A head is a TopViT image classifier whose labels are "normal" plus the aberrations it knows (`labels`): its own
labels say which chromosomes it screens (del(5q) -> 5; der(9)t(9;22), der(22)t(9;22) -> 9 and 22), so a new head is
a new checkpoint folder, no code. Inference only: training a head is `karyohf.head_training`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..crops import normalised_crops
from .labels import NORMAL, label_target


@torch.inference_mode()
def aberration_probabilities(model, processor, images, cell_scales=None, batch_size: int = 256) -> np.ndarray:
    """(N, num_labels) class probabilities of paper-format crops; column 0 is "normal", so 1 - p[:, 0] is the
    probability that a chromosome is aberrant in any way the head knows.

    A head trained on cell-normalised crops (its processor's `cell_reference_length`, inherited from the identity
    model) needs each crop's `cell_scale` (`karyohf.crops.cell_scale` of its cell) to rescale it as in training."""
    images = list(images)
    if not images:
        raise ValueError("no chromosome crops to score")
    reference = getattr(processor, "cell_reference_length", None)
    if reference is not None:
        if cell_scales is None:
            raise ValueError("this head reads cell-normalised crops: pass each crop's cell_scale "
                             "(karyohf.crops.cell_scale of its cell)")
        images = normalised_crops(images, cell_scales, reference)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images[start : start + batch_size], return_tensors="pt")["pixel_values"].to(device)
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # as ChromosomeIdentifier: a faster stem
        out.append(model(pixel_values=pixels).logits.float().softmax(-1).cpu().numpy())
    return np.concatenate(out)


# Where a head's cell-level calls are made (`karyohf.aberrations.calibration`): chosen on validation metaphases free of
# the aberration by train/calibrate_specimen_calls.py, or on a lab's own by `karyohf calibrate`, into the head's folder.
OPERATING_POINT_FILE = "operating_point.json"
DEFAULT_CELL_THRESHOLD = 0.5


class AberrationHead:
    """A trained head as the pipeline uses it: which chromosomes it screens (read from its own labels), their
    per-chromosome probabilities, and one score per aberration per cell.

    A cell's score for an aberration is `cell_aberration_scores` of its chromosomes' probabilities: per derivative
    the highest probability among the chromosomes of that derivative's class, then either derivative's evidence
    (noisy-OR). The cell is called when its score reaches the head's `cell_thresholds` (its `operating_point.json`)."""

    def __init__(self, model, processor, name: str, cell_thresholds: dict[str, float] | None = None):
        self.model, self.processor, self.name = model.eval().to(memory_format=torch.channels_last), processor, name
        self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if self.label_names[0] != NORMAL:
            raise ValueError(f"aberration head {name}: label 0 must be {NORMAL!r}, got {self.label_names}")
        self.targets = {index: label_target(label) for index, label in enumerate(self.label_names) if index}
        self.aberrations = sorted({key for key, _ in self.targets.values()})
        thresholds = cell_thresholds or {}
        self.cell_thresholds = {key: float(thresholds.get(key, DEFAULT_CELL_THRESHOLD)) for key in self.aberrations}

    @property
    def screened(self) -> set[str]:
        return {chromosome for _, chromosome in self.targets.values()}

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | None = None, backend: str = "torch",
                        precision: str = "fp32") -> "AberrationHead":
        """A head checkpoint folder; `backend`/`precision` say where its network runs (`karyohf.backends`)."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from ..backends import load_network

        folder = Path(folder)
        model = load_network(folder, AutoModelForImageClassification, backend, precision, device)
        point = folder / OPERATING_POINT_FILE
        thresholds = json.loads(point.read_text())["cell_threshold"] if point.is_file() else None
        return cls(model, AutoImageProcessor.from_pretrained(folder, backend="pil"), folder.name, thresholds)

    def __call__(self, crops, labels, cell_scale: float = 1.0) -> dict[str, np.ndarray]:
        """Per aberrant label, each chromosome's probability of being that derivative; NaN for chromosomes whose
        label is not the derivative's class (they were not screened). `crops` are one cell's chromosomes at their
        native scale, best as cut (`karyohf.crops.isolate_chromosome`: a canvas crop has already shrunk a chromosome
        too long for it), and `cell_scale` that cell's factor (`karyohf.crops.cell_scale`), used if the head is
        cell-normalised."""
        scores = {self.label_names[i]: np.full(len(labels), np.nan, dtype=np.float32) for i in self.targets}
        chosen = [k for k, label in enumerate(labels) if label in self.screened]
        if chosen:
            probabilities = aberration_probabilities(self.model, self.processor, [crops[k] for k in chosen],
                                                     [cell_scale] * len(chosen))
            for index, (_, chromosome) in self.targets.items():
                for row, k in enumerate(chosen):
                    if labels[k] == chromosome:
                        scores[self.label_names[index]][k] = probabilities[row, index]
        return scores

    def cell_scores(self, scores: dict[str, np.ndarray]) -> dict[str, float]:
        """One score per aberration for a cell, from `__call__`'s output (see the class docstring)."""
        return cell_aberration_scores(scores)


def cell_aberration_scores(probabilities: dict[str, "np.ndarray | list"]) -> dict[str, float]:
    """One score per aberration from each aberrant label's per-chromosome probabilities (NaN or None where a
    chromosome was not screened): the chance that at least one of its derivatives is there, each derivative's the
    highest among its chromosomes. A reciprocal translocation makes two, but the pipeline often misses one (a small,
    pale der(22) goes uncounted in most semi-synthetic t(9;22) cells), and the mean of the two (the previous rule)
    then capped such a cell at half the scale; the operating point, set on normal cells, keeps the false calls."""
    derivatives: dict[str, list[float]] = {}
    for label, values in probabilities.items():
        values = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        derivatives.setdefault(label_target(label)[0], []).append(float(np.nanmax(values, initial=0.0)))
    return {key: float(1.0 - np.prod([1.0 - p for p in maxima])) for key, maxima in derivatives.items()}


def specimen_score(cell_scores, threshold: float) -> float:
    """A specimen's evidence for one aberration from its cells' scores: how many cells are called at `threshold`
    (the clone rule counts cells), then the second-best cell's score (a clone needs two) to order specimens with
    the same count."""
    scores = np.sort(np.asarray(cell_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        return 0.0
    second = scores[1] if scores.size > 1 else 0.0
    return float(np.sum(scores >= threshold) + second)
