"""The aberration stage of the pipeline: screening identified chromosomes for structural aberrations.

`AberrationHead` is a trained head as the pipeline runs it: a TopViT classifier whose labels ("normal", then the
aberrations it knows; `labels`) say which chromosomes it screens, with one score per aberration per cell and the
operating point it is called at. `DeNovoIndex` is the zero-shot screen: how far a chromosome's embedding lies from
the normal ones of its class. `SHIPPED_HEADS` lists the heads the project trains and ships.

Inference only. The training side lives apart and imports this package, never the reverse: aberrant training
chromosomes and datasets in `karyohf.synthesis`, head finetuning and LoRA in `karyohf.head_training`, chromosome
geometry in `karyohf.geometry`.
"""

import importlib
import warnings

from .denovo import DeNovoIndex
from .heads import OPERATING_POINT_FILE, AberrationHead, aberration_probabilities, cell_aberration_scores, specimen_score
from .labels import NORMAL, head_label_names, label_names, label_target
from .registry import SHIPPED_HEADS, head_folder, head_labels, screened_chromosomes

__all__ = [
    "NORMAL",
    "OPERATING_POINT_FILE",
    "SHIPPED_HEADS",
    "AberrationHead",
    "DeNovoIndex",
    "aberration_probabilities",
    "cell_aberration_scores",
    "head_folder",
    "head_label_names",
    "head_labels",
    "label_names",
    "label_target",
    "screened_chromosomes",
    "specimen_score",
]

# Names this package exported before the training side moved out (karyohf 0.2). They still resolve, on first use
# only (so screening imports no training code), with a DeprecationWarning naming their new home.
_MOVED = {
    **dict.fromkeys(("SynthesizedChromosome", "paste_into_metaphase", "resample_normal", "synthesize",
                     "aberration_dataset", "balanced_subset", "dataset_folder", "load_aberration_dataset"),
                    "karyohf.synthesis"),
    **dict.fromkeys(("aberration_classifier", "train_aberration_classifier", "with_lora"), "karyohf.head_training"),
    **dict.fromkeys(("Centromere", "MedialAxis", "Strip", "estimate_centromere", "medial_axis", "p_arm_up",
                     "straighten"), "karyohf.geometry"),
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"karyohf.aberrations.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
