"""Chromosome identity (1-22, X, Y) for paper-format crops, with the pre-logits embeddings.

A thin wrapper over any `AutoModelForImageClassification` checkpoint of the TopViT family and
its `ChromosomeImageProcessor`, batched, used by evaluation and by the pipeline alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .metrics import prediction_entropy


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


class ChromosomeIdentifier:
    def __init__(self, model, processor, batch_size: int = 128):
        self.model = model.eval()
        self.processor = processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, **kwargs) -> "ChromosomeIdentifier":
        model = AutoModelForImageClassification.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
        if device is not None:
            model.to(device)
        return cls(model, processor, **kwargs)

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
            # Backbone and head called apart so the pooled pre-logits features come out with the logits.
            features = self.model.base_model(pixel_values=pixels.to(device)).pooler_output
            logits = self.model.classifier(features)
            probabilities.append(logits.float().softmax(-1).cpu().numpy())
            embeddings.append(features.flatten(1).float().cpu().numpy())
        names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        return Identification(np.concatenate(probabilities), np.concatenate(embeddings), names)
