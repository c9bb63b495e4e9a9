"""`ChromosomeDetector`: every chromosome in a metaphase, as boxes in the image's own pixels with scores.

Wraps an OWLv2 checkpoint (ours, trained from scratch, or a finetune of the public one) and its
processor. The query's text embedding is computed when the detector is built; each call then runs
the vision tower once, keeps patches whose score passes `score_threshold`, and removes duplicates
by non-maximum suppression (OWLv2's own post-processing has none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..images import as_gray_uint8
from .boxes import Detections, non_maximum_suppression, padded_cxcywh_to_xyxy
from .owlv2 import load_owlv2, pixel_values, predict, query_embedding

DEFAULT_SCORE_THRESHOLD = 0.3


class ChromosomeDetector:
    def __init__(self, model, processor, score_threshold: float = DEFAULT_SCORE_THRESHOLD, nms_iou: float = 0.5):
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        self.model = model.eval()
        self.processor = processor
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.query = query_embedding(model, processor)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, **kwargs) -> "ChromosomeDetector":
        """Load an OWLv2 checkpoint folder (model, processor and tokenizer) or Hub id; kwargs go to the constructor."""
        folder = Path(path)
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} holds no config.json: not a saved detector checkpoint")
        model, processor = load_owlv2(str(path))
        if device is not None:
            model.to(device)
        return cls(model, processor, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

    @torch.inference_mode()
    def __call__(self, image) -> Detections:
        """Detect chromosomes in one image: PIL, numpy (gray, RGB, 16-bit, float) or a path."""
        gray = as_gray_uint8(image)
        height, width = gray.shape
        device = self.query.device
        pixels = pixel_values(self.processor, [gray]).to(device=device, dtype=self.model.dtype)
        logits, boxes = predict(self.model, pixels, self.query)
        scores = logits[0].float().sigmoid()
        keep = scores > self.score_threshold
        boxes = padded_cxcywh_to_xyxy(boxes[0][keep].float(), height, width)
        scores = scores[keep]
        # Boxes that the clipping squeezed below a pixel lay (almost) wholly in the padding.
        real = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[real], scores[real]
        kept = non_maximum_suppression(boxes, scores, self.nms_iou)
        return Detections(boxes=boxes[kept].cpu().numpy().astype(np.float32), scores=scores[kept].cpu().numpy())
