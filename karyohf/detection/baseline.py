"""The number to beat: Otsu threshold plus connected components, one box per dark blob.

G-banded chromosomes are dark on a light field, so this finds isolated ones well; it fails where
detection is hard: touching or crossing chromosomes merge into one blob, pale bands split one
chromosome in two, and nuclei and debris count as objects. Same call signature as `ChromosomeDetector`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from ..images import as_gray_uint8
from .boxes import Detections


class OtsuBaselineDetector:
    def __init__(self, smoothing: float = 1.0, min_relative_area: float = 0.25, speck_area: int = 10):
        """Components smaller than `speck_area` pixels, or than `min_relative_area` × the median component, are dropped.

        The smallest chromosomes (21, 22, Y) cover about a third of the median chromosome's area, so
        anything under a quarter of it is a fragment or debris.
        """
        self.smoothing = smoothing
        self.min_relative_area = min_relative_area
        self.speck_area = speck_area

    def __call__(self, image) -> Detections:
        gray = ndimage.gaussian_filter(as_gray_uint8(image).astype(np.float32), self.smoothing)
        if float(gray.max() - gray.min()) < 1.0:  # a flat image holds nothing
            return Detections(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32))
        dark = ndimage.binary_fill_holes(gray < threshold_otsu(gray))
        labels, _ = ndimage.label(dark, structure=np.ones((3, 3), bool))
        areas = np.bincount(labels.ravel())[1:].astype(np.float32)
        slices = ndimage.find_objects(labels)
        kept = areas >= self.speck_area
        if kept.any():
            kept &= areas >= self.min_relative_area * np.median(areas[kept])
        boxes = np.array([[cols.start, rows.start, cols.stop, rows.stop] for (rows, cols), keep in zip(slices, kept) if keep],
                         dtype=np.float32).reshape(-1, 4)
        # Rank by how typical a blob's size is: merged clusters and nuclei are too big, fragments too small.
        areas = areas[kept]
        scores = np.exp(-np.abs(np.log(areas / np.median(areas)))) if len(areas) else areas
        order = np.argsort(-scores, kind="stable")
        return Detections(boxes=boxes[order], scores=scores[order].astype(np.float32))
