"""Aberration synthesis: cytogenetically exact aberrant chromosomes made from real normal ones.

`synthesize` builds the derivative chromosome of a catalogue aberration from a real crop (and a
real partner for translocations), `paste_into_metaphase` puts one back into a metaphase;
`aberration_dataset` pairs real normal crops with synthesized aberrant ones, split by case;
`AberrationHead` is a trained head as the pipeline runs it; `geometry` measures chromosomes along
their medial axis.
"""

from .dataset import NORMAL, aberration_dataset, balanced_subset, dataset_folder, label_names, load_aberration_dataset
from .geometry import Centromere, MedialAxis, Strip, estimate_centromere, medial_axis, p_arm_up, straighten
from .denovo import DeNovoIndex
from .heads import (
    AberrationHead,
    aberration_classifier,
    aberration_probabilities,
    specimen_score,
    train_aberration_classifier,
    with_lora,
)
from .synthesis import SynthesizedChromosome, paste_into_metaphase, resample_normal, synthesize

__all__ = [
    "AberrationHead",
    "DeNovoIndex",
    "NORMAL",
    "aberration_classifier",
    "aberration_probabilities",
    "balanced_subset",
    "dataset_folder",
    "load_aberration_dataset",
    "paste_into_metaphase",
    "specimen_score",
    "train_aberration_classifier",
    "with_lora",
    "Centromere",
    "MedialAxis",
    "Strip",
    "SynthesizedChromosome",
    "aberration_dataset",
    "estimate_centromere",
    "label_names",
    "medial_axis",
    "p_arm_up",
    "resample_normal",
    "straighten",
    "synthesize",
]
