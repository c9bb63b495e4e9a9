"""Training inputs for the CenterNet detector: metaphases shrunk once, then varied and cropped at model scale.

Chromosomes occupy a small part of a metaphase, so the fully convolutional detector trains on random crops of the
model-scale image rather than the whole padded square: the same pixels per second of CPU, many more chromosomes
seen per step, and no time spent on empty slide.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from ..images import as_gray_uint8
from ..models.centernet import CenterNetImageProcessor
from ..segmentation import segment_in_box
from .boxes import random_dihedral

# Training zooms each metaphase to between these multiples of its model scale.
ZOOM = (0.8, 1.25)


def median_chromosome_length(boxes: np.ndarray) -> float | None:
    """Median longest side of xyxy `boxes`, in their pixels; None without boxes."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    return float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))


def model_scale(shape: tuple[int, int], boxes: np.ndarray, image_size: int, chromosome_length: float | None = None) -> float:
    """Model input pixels per image pixel, as `ChromosomeDetector` resizes the image: its padded square to
    `image_size`, or, with `chromosome_length`, so that the median chromosome is that long."""
    length = median_chromosome_length(boxes) if chromosome_length else None
    return chromosome_length / length if length else image_size / max(shape)


def shrink_metaphase(example: dict, image_size: int = 512, chromosome_length: float | None = None) -> dict:
    """`datasets.map` function: a metaphase shrunk once, as far as the largest training zoom at model scale allows
    without upsampling, boxes scaled with it (never enlarged)."""
    gray = as_gray_uint8(example["image"])
    height, width = gray.shape
    boxes = np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4)
    scale = min(1.0, ZOOM[1] * model_scale(gray.shape, boxes, image_size, chromosome_length))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
    return {"image": Image.fromarray(gray), "boxes": (boxes * scale).tolist()}


def random_crop_at_model_scale(
    gray: np.ndarray, boxes: np.ndarray, scale: float, crop_size: int, zoom: tuple[float, float] = ZOOM,
    min_visible: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """A `crop_size` square of the metaphase resized by `scale` (model pixels per image pixel) times a random zoom,
    white beyond the image; boxes in that crop's pixels. Boxes less than `min_visible` inside are dropped, the rest
    clipped."""
    height, width = gray.shape
    factor = scale * float(np.exp(np.random.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    window = crop_size / factor  # source pixels
    origin = [np.random.uniform(min(0.0, side - window), max(0.0, side - window)) for side in (width, height)]
    extent = (origin[0], origin[1], origin[0] + window, origin[1] + window)
    crop = Image.fromarray(gray).transform((crop_size, crop_size), Image.Transform.EXTENT, extent,
                                           resample=Image.Resampling.BILINEAR, fillcolor=255)
    moved = (boxes - np.array(origin * 2, dtype=np.float32)) * factor
    clipped = moved.clip(0, crop_size)
    area = lambda b: (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)  # noqa: E731
    keep = area(clipped) >= min_visible * np.maximum(area(moved), 1e-6)
    return np.asarray(crop), clipped[keep]


def random_exposure(gray: np.ndarray) -> np.ndarray:
    """Contrast and gamma of the ink (255 - grey) varied, the white slide kept white: labs stain and expose differently."""
    gain, gamma = np.random.uniform(0.7, 1.3), np.random.uniform(0.75, 1.35)
    ink = ((255.0 - gray) / 255.0) ** gamma * gain
    return (255.0 - 255.0 * ink.clip(0, 1)).astype(np.uint8)


# Copy-paste pairs: share of training crops that get some, how many at most, how far the pasted chromosome's centre
# lies from its partner's (in half their summed lengths: small crosses it, large touches it), and what a pasted box
# may share with any other (above this one box would stand for two, which no annotator draws).
PASTE_PROBABILITY, MAX_PASTES = 0.5, 3
PASTE_DISTANCE = (0.2, 0.8)
PASTE_MAX_IOU = 0.6


def paste_overlapping_chromosomes(gray: np.ndarray, boxes: np.ndarray, count: int,
                                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` more touching and crossing pairs: a chromosome of this image, cut out by its threshold mask and
    turned, laid over or beside another one, its box added. The light passes through both (the pasted
    chromosome's transmission multiplies the image), so a crossing is darker than either chromosome, as on a slide.
    Chromosomes of the same image keep its scale and stain, and crowded pairs are what the detector misses."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    height, width = gray.shape
    # Whole chromosomes only: a box at the crop's edge may hold part of one.
    inside = np.nonzero((boxes[:, 0] >= 1) & (boxes[:, 1] >= 1) & (boxes[:, 2] <= width - 1) & (boxes[:, 3] <= height - 1)
                        & (np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 4))[0]
    if len(inside) < 2:
        return gray, boxes
    slide = float(np.percentile(gray, 95)) or 255.0
    light = gray.astype(np.float32)
    for _ in range(count):
        source, partner = boxes[rng.choice(inside, 2, replace=False)]
        x0, y0, x1, y1 = np.round(source).astype(int)
        patch = gray[y0:y1, x0:x1]
        mask = segment_in_box(gray, (x0, y0, x1, y1))
        if mask.sum() < 10:
            continue
        rows, cols = np.nonzero(mask)
        # The annotation's margin around the chromosome, kept around the pasted one.
        margin = np.array([cols.min(), rows.min(), x1 - x0 - cols.max() - 1, y1 - y0 - rows.max() - 1], dtype=np.float32)
        transmission = np.where(mask, np.minimum(patch / slide, 1.0), 1.0).astype(np.float32)
        angle = rng.uniform(0, 360)
        turned = np.asarray(Image.fromarray(transmission, mode="F").rotate(angle, Image.BILINEAR, expand=True, fillcolor=1.0))
        turned_mask = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").rotate(angle, Image.BILINEAR, expand=True)) > 0.5
        if not turned_mask.any():
            continue
        reach = (max(x1 - x0, y1 - y0) + max(partner[2] - partner[0], partner[3] - partner[1])) / 2
        heading = rng.uniform(0, 2 * np.pi)
        centre = (partner[:2] + partner[2:]) / 2 + rng.uniform(*PASTE_DISTANCE) * reach * np.array([np.cos(heading), np.sin(heading)])
        th, tw = turned.shape
        left, top = int(round(centre[0] - tw / 2)), int(round(centre[1] - th / 2))
        if left < 0 or top < 0 or left + tw > width or top + th > height:
            continue
        rows, cols = np.nonzero(turned_mask)
        box = np.array([left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1], dtype=np.float32)
        box = (box + margin * np.array([-1, -1, 1, 1])).clip(0, [width, height, width, height])
        if float(box_iou(torch.as_tensor(box[None]), torch.as_tensor(boxes)).max()) > PASTE_MAX_IOU:
            continue
        light[top:top + th, left:left + tw] *= np.where(turned_mask, turned, 1.0)
        boxes = np.concatenate([boxes, box[None]])
    return light.clip(0, 255).round().astype(np.uint8), boxes


class CenterNetCollator:
    """Metaphase examples (`image`, `boxes` xyxy pixels) -> `pixel_values` and `labels` for `CenterNetForObjectDetection`.

    With `augment`: a random flip or quarter turn, a crop of `crop_size` at model scale (`model_scale`, with the
    detector's `chromosome_length` if it has one) times a random zoom, on `paste_probability` of the crops up to
    `MAX_PASTES` more touching or crossing pairs (`paste_overlapping_chromosomes`), and an exposure change. Without it: the whole
    padded square at `image_size`. Label boxes are (cx, cy, w, h) fractions of the input.
    """

    def __init__(self, processor: CenterNetImageProcessor, augment: bool = False, crop_size: int = 384,
                 zoom: tuple[float, float] = ZOOM, chromosome_length: float | None = None,
                 paste_probability: float = PASTE_PROBABILITY, seed: int | None = None):
        self.processor, self.augment, self.crop_size, self.zoom = processor, augment, crop_size, zoom
        self.chromosome_length, self.paste_probability = chromosome_length, paste_probability
        self.rng = np.random.default_rng(seed)

    def __call__(self, examples) -> dict:
        side = self.processor.size
        pixels, labels = [], []
        for example in examples:
            gray = as_gray_uint8(example["image"])
            boxes = np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4)
            if self.augment:
                gray, boxes = random_dihedral(gray, boxes)
                scale = model_scale(gray.shape, boxes, side, self.chromosome_length)
                gray, boxes = random_crop_at_model_scale(gray, boxes, scale, self.crop_size, self.zoom)
                if self.rng.random() < self.paste_probability:
                    gray, boxes = paste_overlapping_chromosomes(gray, boxes, int(self.rng.integers(1, MAX_PASTES + 1)), self.rng)
                pixels.append(self.processor.normalize_ink(random_exposure(gray)))
            else:
                pixels.append(self.processor.square_input(gray))
                boxes = boxes * (side / max(gray.shape))
            x0, y0, x1, y1 = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).unbind(-1)
            height, width = pixels[-1].shape[-2:]
            cxcywh = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)
            cxcywh = cxcywh / torch.tensor([width, height, width, height], dtype=torch.float32)
            labels.append({"class_labels": torch.zeros(len(cxcywh), dtype=torch.int64), "boxes": cxcywh})
        return {"pixel_values": torch.as_tensor(np.stack(pixels)), "labels": labels}
