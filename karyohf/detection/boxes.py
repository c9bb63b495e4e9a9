"""Box coordinates between image pixels and OWLv2's frame, non-maximum suppression, and the flips and quarter
turns every detector trains with.

OWLv2 never sees a non-square image: the image is padded at the bottom and right to a square of
side max(height, width) and that square is resized to the model's input. Its boxes are therefore
(cx, cy, w, h) fractions of the padded square's side, not of the image's own width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms


@dataclass
class Detections:
    """What a detector found in one image: boxes (N, 4) as x0, y0, x1, y1 in the image's own pixels, and scores (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score_threshold: float) -> "Detections":
        keep = self.scores >= score_threshold
        return Detections(boxes=self.boxes[keep], scores=self.scores[keep])


def _as_boxes(boxes) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"expected boxes of shape (N, 4), got {tuple(boxes.shape)}")
    return boxes


def xyxy_to_padded_cxcywh(boxes, height: int, width: int) -> torch.Tensor:
    """Pixel (x0, y0, x1, y1) boxes of a height × width image -> (cx, cy, w, h) fractions of its padded square."""
    boxes = _as_boxes(boxes)
    side = float(max(height, width))
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1) / side


def padded_cxcywh_to_xyxy(boxes, height: int, width: int) -> torch.Tensor:
    """Inverse of `xyxy_to_padded_cxcywh`, clipped to the image: a box may reach into the padding."""
    boxes = _as_boxes(boxes) * float(max(height, width))
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    limits = corners.new_tensor([width, height, width, height])
    return torch.minimum(corners.clamp(min=0), limits)


def non_maximum_suppression(boxes, scores, iou_threshold: float, groups=None) -> torch.Tensor:
    """Indices of the boxes kept, best score first; boxes of different `groups` never suppress each other.

    A box is dropped when it overlaps a better-scoring box of its group by IoU > `iou_threshold`.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    boxes = _as_boxes(boxes)
    scores = torch.as_tensor(scores, dtype=torch.float32, device=boxes.device).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    groups = torch.zeros(len(boxes), dtype=torch.int64) if groups is None else torch.as_tensor(groups, dtype=torch.int64)
    return batched_nms(boxes, scores, groups.to(boxes.device), iou_threshold)


def random_dihedral(gray: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips and quarter turns, uniformly: a metaphase has no up, down, left or right.

    Draws from torch's generator, which the DataLoader seeds differently in every worker.
    """
    height, width = gray.shape
    x0, y0, x1, y1 = boxes.T
    if torch.rand(()) < 0.5:
        gray, x0, x1 = gray[:, ::-1], width - x1, width - x0
    if torch.rand(()) < 0.5:
        gray, y0, y1 = gray[::-1], height - y1, height - y0
    if torch.rand(()) < 0.5:
        gray, x0, y0, x1, y1 = gray.T, y0, x0, y1, x1
    return np.ascontiguousarray(gray), np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
