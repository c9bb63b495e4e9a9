"""Aberration heads: TopViT classifiers that tell a normal chromosome from its aberrant derivatives.

Each head is a `TopViTForImageClassification` whose labels are "normal" plus the aberrations it knows (e.g.
["normal", "del(5q)"], or ["normal", "der(9)t(9;22)", "der(22)t(9;22)"]), so it loads, runs and finetunes like any
transformers image classifier. The paper's recipe starts it from the identity model (`checkpoints/topvit-chromid`):
the backbone already reads banding, only the head is new, and a small learning rate adapts the rest. The same
geometry from random initialisation is the comparison (`pretrained=False`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from ..models.topvit import ChromosomeImageProcessor, TopViTConfig, TopViTForImageClassification
from ..training import CropCollator
from .dataset import NORMAL, label_target

# Learning rates per start: the pretrained backbone needs only nudging, a random one must learn banding first.
FINETUNE_LEARNING_RATE = 3e-4
SCRATCH_LEARNING_RATE = 1e-3


def aberration_classifier(
    label_names: list[str], identity_checkpoint: str, pretrained: bool = True
) -> tuple[TopViTForImageClassification, ChromosomeImageProcessor]:
    """A head over `label_names` (first "normal") with the identity checkpoint's geometry and processor; its backbone
    weights too when `pretrained` (the 24-way classifier is dropped, a new one initialised)."""
    if not label_names or label_names[0] != NORMAL or len(set(label_names)) != len(label_names):
        raise ValueError(f'label_names must start with "{NORMAL}" and be distinct, got {label_names}')
    labels = {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}
    processor = ChromosomeImageProcessor.from_pretrained(identity_checkpoint)
    if pretrained:
        model = TopViTForImageClassification.from_pretrained(
            identity_checkpoint, ignore_mismatched_sizes=True, **labels
        )
    else:
        config = TopViTConfig.from_pretrained(identity_checkpoint, **labels)
        model = TopViTForImageClassification(config)
    return model, processor


def train_aberration_classifier(
    model: TopViTForImageClassification,
    processor: ChromosomeImageProcessor,
    train_dataset,
    steps: int,
    learning_rate: float,
    batch_size: int = 32,
    seed: int = 0,
    log_steps: int = 0,
) -> TopViTForImageClassification:
    """Train on an aberration dataset (`image`, integer `label`) with the identity model's augmentation, through the
    Trainer (warmup, cosine decay); returns the model in eval mode on the CPU."""
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="aberration-trainer-"),
        max_steps=steps,
        per_device_train_batch_size=min(batch_size, len(train_dataset)),
        learning_rate=learning_rate,
        weight_decay=0.05,
        warmup_steps=max(1, steps // 20),
        lr_scheduler_type="cosine",
        logging_steps=log_steps or steps,
        disable_tqdm=not log_steps,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
    )
    collator = CropCollator(processor, augment=True, seed=seed, label_column="label")
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator)
    trainer.train()
    return trainer.model.float().cpu().eval()


@torch.inference_mode()
def aberration_probabilities(model, processor, images, batch_size: int = 256) -> np.ndarray:
    """(N, num_labels) class probabilities of paper-format crops; column 0 is "normal", so 1 - p[:, 0] is the
    probability that a chromosome is aberrant in any way the head knows."""
    images = list(images)
    if not images:
        raise ValueError("no chromosome crops to score")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images[start : start + batch_size], return_tensors="pt")["pixel_values"].to(device)
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # as ChromosomeIdentifier: a faster stem
        out.append(model(pixel_values=pixels).logits.float().softmax(-1).cpu().numpy())
    return np.concatenate(out)


# Where a head's cell-level calls are made: chosen on validation specimens by benchmarks/structural_calls.py.
OPERATING_POINT_FILE = "operating_point.json"
DEFAULT_CELL_THRESHOLD = 0.5


class AberrationHead:
    """A trained head as the pipeline uses it: which chromosomes it screens (read from its own labels), their
    per-chromosome probabilities, and one score per aberration per cell.

    A cell's score for an aberration is the mean, over the derivatives the head knows, of the highest probability
    among the chromosomes of that derivative's class: a reciprocal translocation shows both derivatives, so der(9)
    and der(22) evidence count together and one odd chromosome alone reaches half the scale. The cell is called
    when its score reaches the head's `cell_thresholds` (its `operating_point.json`)."""

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

    def __call__(self, crops, labels) -> dict[str, np.ndarray]:
        """Per aberrant label, each chromosome's probability of being that derivative; NaN for chromosomes whose
        label is not the derivative's class (they were not screened)."""
        scores = {self.label_names[i]: np.full(len(labels), np.nan, dtype=np.float32) for i in self.targets}
        chosen = [k for k, label in enumerate(labels) if label in self.screened]
        if chosen:
            probabilities = aberration_probabilities(self.model, self.processor, [crops[k] for k in chosen])
            for index, (_, chromosome) in self.targets.items():
                for row, k in enumerate(chosen):
                    if labels[k] == chromosome:
                        scores[self.label_names[index]][k] = probabilities[row, index]
        return scores

    def cell_scores(self, scores: dict[str, np.ndarray]) -> dict[str, float]:
        """One score per aberration for a cell, from `__call__`'s output (see the class docstring)."""
        out = {}
        for key in self.aberrations:
            derivatives = [self.label_names[i] for i, (k, _) in self.targets.items() if k == key]
            out[key] = float(np.mean([np.nanmax(scores[d], initial=0.0) for d in derivatives]))
        return out


def specimen_score(cell_scores, threshold: float) -> float:
    """A specimen's evidence for one aberration from its cells' scores: how many cells are called at `threshold`
    (the clone rule counts cells), then the second-best cell's score (a clone needs two) to order specimens with
    the same count."""
    scores = np.sort(np.asarray(cell_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        return 0.0
    second = scores[1] if scores.size > 1 else 0.0
    return float(np.sum(scores >= threshold) + second)


# Attention projections of every TopViT layer: where LoRA adapts the identity backbone.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def with_lora(model: TopViTForImageClassification, rank: int = 8, alpha: int = 16, dropout: float = 0.0):
    """A peft LoRA wrapper of a head: low-rank updates on the attention projections, the new classifier trained
    and saved in full (`modules_to_save`), everything else frozen. Teaching a new aberration from a handful of
    examples then trains and ships only a few thousand parameters.

    The conv stem's BatchNorm statistics are frozen too (momentum 0): they live outside the adapter, so updating
    them would make the shared adapter disagree with the model it was trained in."""
    from peft import LoraConfig, get_peft_model

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGET_MODULES),
                        modules_to_save=["classifier"])
    return get_peft_model(model, config)
