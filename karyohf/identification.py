"""Chromosome identity (1-22, X, Y) for paper-format crops, with the pre-logits embeddings.

A thin wrapper over any `AutoModelForImageClassification` checkpoint of the TopViT family and
its `TopViTImageProcessor`, batched, used by evaluation and by the pipeline alike; and the cell
context a crop-only model ignores: a cell holds two copies of each autosome, so one cell's crops are
labelled jointly (`assign_within_cell`), as a cytogeneticist arranging a karyogram would.

`identify_cell` takes one cell's chromosomes; a model trained on cell-normalised crops (its processor's
`cell_reference_length`) then sees them rescaled together to that median length, so another microscope's
magnification does not change what it reads. Calling the identifier on crops identifies each at its native scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .crops import cell_scale, isolate_chromosome, normalised_crops, rescale_chromosome
from .images import as_gray_uint8
from .metrics import prediction_entropy

# The sex-chromosome copies a normal cell holds without penalty: female XX or male XY (autosomes: 2). A cell is
# labelled under each and the cheaper labelling kept; allowing XX and Y at once would give a female cell a free Y
# and a male cell a free second X.
SEX_COMPLEMENTS = ({"X": 2, "Y": 0}, {"X": 1, "Y": 1})
# Nats a joint labelling pays for each copy beyond the expected ones (a trisomy pays once). Chosen on our
# validation cells (train/train_chromid.py reports both): 1-2 under-uses the context, 4-8 agree to 0.1%.
EXTRA_COPY_COST = 4.0


@dataclass
class Identification:
    probabilities: np.ndarray  # (N, num_labels)
    embeddings: np.ndarray  # (N, hidden): the pooled pre-logits features (UMAP, de novo detection)
    label_names: list[str]

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(-1)

    @property
    def labels(self) -> list[str]:
        return [self.label_names[i] for i in self.predictions]

    @property
    def entropy(self) -> np.ndarray:
        return prediction_entropy(self.probabilities)

    def within_cell(self, extra_copy_cost: float = EXTRA_COPY_COST) -> np.ndarray:
        """Class indices when these crops are one cell's chromosomes (see `assign_within_cell`)."""
        return assign_within_cell(self.probabilities, self.label_names, extra_copy_cost)


@dataclass
class CellIdentification(Identification):
    """One cell's chromosomes identified together: `labels` are jointly assigned (`assign_within_cell`),
    `crop_labels` each chromosome's own most probable class; `crops` are the images the model read and `scale` the
    factor they were rescaled by (1.0 for a model of native-scale crops)."""

    assigned: np.ndarray = None
    crops: list = None
    scale: float = 1.0

    @property
    def predictions(self) -> np.ndarray:
        return self.assigned

    @property
    def crop_labels(self) -> list[str]:
        return [self.label_names[i] for i in self.probabilities.argmax(-1)]


def assign_within_cell(probabilities, label_names, extra_copy_cost: float = EXTRA_COPY_COST) -> np.ndarray:
    """The most probable joint labelling of one cell's chromosomes under the expected copy numbers.

    Each crop takes one copy "slot" of a class; the first two slots of an autosome are free, and of the sex
    chromosomes those of XX or of XY (whichever labels the cell more cheaply); every further copy costs
    `extra_copy_cost` nats more than the last. Minimising the summed -log p over crops plus those
    costs (a linear assignment) fixes the typical crop-level error -- three 4s and one 5 -- while a trisomy or a
    missing chromosome that the crops clearly show is kept. Returns one class index per crop.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(label_names):
        raise ValueError(f"probabilities must be (crops, {len(label_names)}), got shape {probabilities.shape}")
    if extra_copy_cost < 0:
        raise ValueError(f"extra_copy_cost must be >= 0, got {extra_copy_cost}")
    cost, assigned = min((_assign(probabilities, label_names, extra_copy_cost, complement)
                          for complement in SEX_COMPLEMENTS), key=lambda result: result[0])
    return assigned


def _assign(probabilities, label_names, extra_copy_cost, free_copies) -> tuple[float, np.ndarray]:
    """(total cost, class per crop) of the best labelling when `free_copies` (else 2) copies of a class are free."""
    count = len(probabilities)
    slot_class, slot_cost = [], []
    for index, name in enumerate(label_names):
        free = free_copies.get(str(name), 2)
        # Enough slots that all crops could share one class: the assignment never runs out of room.
        for copy in range(max(free, count)):
            slot_class.append(index)
            slot_cost.append(extra_copy_cost * max(copy - free + 1, 0))
    cost = -np.log(np.clip(probabilities, 1e-12, 1.0))[:, slot_class] + np.asarray(slot_cost)[None, :]
    rows, slots = linear_sum_assignment(cost)
    assigned = np.empty(count, dtype=np.int64)
    assigned[rows] = np.asarray(slot_class)[slots]
    return float(cost[rows, slots].sum()), assigned


class ChromosomeIdentifier:
    def __init__(self, model, processor, batch_size: int = 128):
        # Channels-last runs the convolutional stem (most of the cost) ~25% faster on CPU; the results are the same.
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.processor = processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, backend: str = "torch", precision: str = "fp32",
                        **kwargs) -> "ChromosomeIdentifier":
        """An identity checkpoint (folder or Hub id); `backend`/`precision` say where its network runs
        (`karyohf.backends`), with the same pre- and post-processing."""
        from .backends import load_network

        model = load_network(path, AutoModelForImageClassification, backend, precision, device)
        processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        return cls(model, processor, **kwargs)

    @property
    def cell_reference_length(self) -> float | None:
        """The median chromosome length the model's cells were normalised to in training (None: native scale)."""
        return getattr(self.processor, "cell_reference_length", None)

    def model_inputs(self, crops, cell_scales) -> list:
        """Dataset crops (`karyohf.data.chromosome_crops`, `karyohf.crops.metaphase_crops` ...) as this model reads
        them: rescaled by their cells' `cell_scale` when it was trained on cell-normalised crops, else as they are."""
        return normalised_crops(crops, cell_scales, self.cell_reference_length)

    def scale_of(self, chromosomes) -> float:
        """The factor one cell's isolated chromosomes are rescaled by for this model (1.0 at native scale)."""
        reference = self.cell_reference_length
        return cell_scale(chromosomes, reference) if reference else 1.0

    def identify_cell(self, chromosomes, isolated: bool = False) -> CellIdentification:
        """One cell's chromosomes -> their identities, jointly assigned.

        Args:
            chromosomes: the cell's isolated chromosome images (dark on a light background, any magnification,
                either way up; PIL or arrays), e.g. a karyogram's chromosomes. With `isolated=True` they are
                already tight, upright and whitened (`karyohf.crops.isolate_chromosome`, as the pipeline cuts them).
        """
        chromosomes = list(chromosomes)
        if not chromosomes:
            raise ValueError("no chromosomes to identify")
        if not isolated:
            grays = [as_gray_uint8(image) for image in chromosomes]
            chromosomes = [isolate_chromosome(gray, (0, 0, gray.shape[1], gray.shape[0])) for gray in grays]
        scale = self.scale_of(chromosomes)
        crops = [rescale_chromosome(crop, scale) for crop in chromosomes]
        found = self(crops)
        return CellIdentification(found.probabilities, found.embeddings, found.label_names,
                                  assigned=found.within_cell(), crops=crops, scale=scale)

    @torch.inference_mode()
    def __call__(self, crops) -> Identification:
        """Identify a list of paper-format crops (PIL images or arrays, see `karyohf.crops.extract_chromosome`)."""
        crops = list(crops)
        if not crops:
            raise ValueError("no chromosome crops to identify")
        device = next(self.model.parameters()).device
        probabilities, embeddings = [], []
        for start in range(0, len(crops), self.batch_size):
            pixels = self.processor(crops[start : start + self.batch_size], return_tensors="pt")["pixel_values"]
            pixels = pixels.contiguous(memory_format=torch.channels_last)
            # The pooled pre-logits features come out with the logits (TopViT's own mirror views averaged in).
            if hasattr(self.model, "classify"):
                outputs, logits = self.model.classify(pixels.to(device))
                features = outputs.pooler_output
            else:  # another transformers classifier, e.g. the ResNet baseline
                features = self.model.base_model(pixel_values=pixels.to(device)).pooler_output
                logits = self.model.classifier(features)
            probabilities.append(logits.float().softmax(-1).cpu().numpy())
            embeddings.append(features.flatten(1).float().cpu().numpy())
        names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        return Identification(np.concatenate(probabilities), np.concatenate(embeddings), names)
