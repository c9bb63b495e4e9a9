"""Chromosome detection: every chromosome in a metaphase as a box (xyxy, the image's pixels) with a score.

`ChromosomeDetector` runs a detector checkpoint of either family behind one call: the CenterNet of
`karyohf.models.centernet` (the shipped `checkpoints/centernet-chromosomes`) or an OWLv2 with the single query
"chromosomes" (`owlv2`: the paper's model, for anyone with a pretrained OWLv2 to finetune). `OtsuBaselineDetector` is
the threshold-and-components baseline both must beat. All return `Detections`; `evaluation` scores them (COCO AP,
recall, count error) and `centernet` makes the CenterNet's training crops.
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
