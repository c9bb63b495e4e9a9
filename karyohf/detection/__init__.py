"""Chromosome detection: every chromosome in a metaphase as a box (xyxy, the image's pixels) with a score.

`ChromosomeDetector` runs an OWLv2 checkpoint with the single query "chromosomes";
`OtsuBaselineDetector` is the threshold-and-components baseline it must beat. Both return `Detections`.
"""

from .baseline import OtsuBaselineDetector
from .boxes import Detections, non_maximum_suppression, padded_cxcywh_to_xyxy, xyxy_to_padded_cxcywh
from .detector import ChromosomeDetector

__all__ = [
    "ChromosomeDetector",
    "Detections",
    "OtsuBaselineDetector",
    "non_maximum_suppression",
    "padded_cxcywh_to_xyxy",
    "xyxy_to_padded_cxcywh",
]
