"""Training data for the aberration heads: cytogenetically exact aberrant chromosomes made from real normal ones.

No real chromosome carries an aberration label, so the aberrant class is made. `synthesize` builds the derivative
chromosome of a catalogue aberration from a real crop (and a real partner for translocations) by hg38 band
arithmetic along its medial axis (`karyohf.geometry`); `paste_into_metaphase` puts one back into a metaphase and
`add_to_metaphase` adds a copy (the semi-synthetic specimens of the benchmarks); `aberration_dataset` pairs real
normal crops with synthesized aberrant ones, split by case, labelled as the heads name their labels
(`karyohf.aberrations.labels`).

Training code: the pipeline never imports this package. The heads trained on it are finetuned by
`karyohf.head_training` and screen chromosomes in `karyohf.aberrations`.
"""

from .chromosomes import SynthesizedChromosome, add_to_metaphase, paste_into_metaphase, resample_normal, synthesize
from .dataset import (
    aberration_dataset,
    balanced_subset,
    contact_sheet,
    dataset_features,
    dataset_folder,
    load_aberration_dataset,
)

__all__ = [
    "SynthesizedChromosome",
    "aberration_dataset",
    "balanced_subset",
    "contact_sheet",
    "dataset_features",
    "dataset_folder",
    "load_aberration_dataset",
    "add_to_metaphase",
    "paste_into_metaphase",
    "resample_normal",
    "synthesize",
]
