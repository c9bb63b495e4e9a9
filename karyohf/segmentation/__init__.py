"""Masks for detected chromosomes: one boolean mask per box.

`ThresholdSegmenter` (no weights) and `SamSegmenter` (a user's SAM checkpoint) share one call:
`segmenter(image, boxes) -> (N, height, width) bool`, in full-image coordinates, ready for
`karyohf.crops.extract_chromosome(image, box, mask=masks[i])`.
"""

from .sam import SamSegmenter
from .threshold import ThresholdSegmenter, segment_in_box

__all__ = ["SamSegmenter", "ThresholdSegmenter", "segment_in_box"]
