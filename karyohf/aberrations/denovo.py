"""De novo (zero-shot) aberration detection: how far a chromosome lies from the normal copies of its class.

The identity model's pre-logits embedding places every chromosome among the normal ones it learned from. A
chromosome that no normal chromosome of its (predicted) class resembles is suspect, whatever its aberration, with no
aberrant training example at all (the paper's §3.2, Fig. 4D). The score is the Euclidean distance to the N-th nearest
normal embedding of the class (N = 50 in the paper): the N-th rather than the nearest, so that one odd normal
chromosome in the index does not vouch for a similar aberrant one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

INDEX_FILE = "denovo_index.safetensors"


class DeNovoIndex:
    """Normal chromosomes' embeddings grouped by class; `score` gives each query its N-th-neighbour distance."""

    def __init__(self, embeddings: np.ndarray, classes: np.ndarray, class_names: list[str], neighbours: int = 50):
        embeddings, classes = np.asarray(embeddings, dtype=np.float32), np.asarray(classes, dtype=np.int64)
        if embeddings.ndim != 2 or len(embeddings) != len(classes) or len(classes) == 0:
            raise ValueError(f"need (N, D) embeddings and N classes, got {embeddings.shape} and {classes.shape}")
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        self.embeddings, self.classes = embeddings, classes
        self.class_names, self.neighbours = list(class_names), int(neighbours)

    def score(self, embeddings: np.ndarray, predicted_classes: np.ndarray) -> np.ndarray:
        """Distance of each embedding to the N-th nearest normal of its predicted class (the farthest one when the
        class holds fewer than N); infinite for a class with no normal chromosome in the index."""
        embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        predicted_classes = np.asarray(predicted_classes)
        if embeddings.shape[-1] != self.embeddings.shape[1] or len(embeddings) != len(predicted_classes):
            raise ValueError(f"expected N x {self.embeddings.shape[1]} embeddings and N classes, "
                             f"got {tuple(embeddings.shape)} and {predicted_classes.shape}")
        scores = np.full(len(embeddings), np.inf, dtype=np.float32)
        for label in np.unique(predicted_classes):
            normals = torch.as_tensor(self.embeddings[self.classes == label])
            if len(normals) == 0:
                continue
            rows = np.flatnonzero(predicted_classes == label)
            distances = torch.cdist(embeddings[rows], normals)
            k = min(self.neighbours, len(normals))
            scores[rows] = distances.kthvalue(k, dim=1).values.numpy()
        return scores

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write `denovo_index.safetensors` into `folder` (beside the identity checkpoint it was built with)."""
        path = Path(folder) / INDEX_FILE
        tensors = {"embeddings": torch.from_numpy(self.embeddings).half(), "classes": torch.from_numpy(self.classes)}
        save_file(tensors, str(path), metadata={"class_names": json.dumps(self.class_names),
                                                "neighbours": str(self.neighbours)})
        return path

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "DeNovoIndex":
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {INDEX_FILE} in {folder}: build one with train/build_denovo_index.py")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        return cls(tensors["embeddings"].float().numpy(), tensors["classes"].numpy(),
                   json.loads(metadata["class_names"]), int(metadata["neighbours"]))
