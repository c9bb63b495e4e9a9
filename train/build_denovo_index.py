"""Build the de novo index of an identity checkpoint: pre-logits embeddings of normal training chromosomes, saved
beside the weights as `denovo_index.safetensors` (what `KaryotypePipeline` scores each chromosome against).

    python train/build_denovo_index.py                        # -> checkpoints/topvit-chromid/denovo_index.safetensors
    python benchmarks/denovo.py                               # then measure it (Figs 3A and 4D, the real check)

The index holds karyogram crops of the training cases and crops of normal training metaphases, at most
--per-class of each class from each collection, each read as the identity model reads it (rescaled with its cell
when the model was trained on cell-normalised crops). Rebuild it whenever the identity weights change.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from itertools import islice

import numpy as np
import torch

from karyohf.aberrations import DeNovoIndex
from karyohf.crops import karyogram_crops, metaphase_crops
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import load_karyogram_crops, load_metaphases, split_karyogram_crops, split_metaphases
from karyohf.identification import ChromosomeIdentifier


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identity", default="checkpoints/topvit-chromid")
    parser.add_argument("--neighbours", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=500, help="index chromosomes per class and collection")
    parser.add_argument("--index-metaphases", type=int, default=150, help="normal training metaphases in the index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def capped_by_class(crops, per_class: int) -> tuple[list, list]:
    """Crop dicts and classes of an iterable of crop dicts, at most `per_class` of each class."""
    kept, classes, counts = [], [], defaultdict(int)
    for crop in crops:
        if counts[crop["chromosome"]] < per_class:
            counts[crop["chromosome"]] += 1
            kept.append(crop)
            classes.append(crop["chromosome"])
    return kept, classes


def model_inputs(identifier, crops: list[dict]) -> list:
    """Crop dicts as the identity model reads them (rescaled per cell if it was trained so)."""
    return identifier.model_inputs([c["image"] for c in crops], [c["cell_scale"] for c in crops])


def build_index(identifier, args) -> DeNovoIndex:
    karyograms = split_karyogram_crops(load_karyogram_crops())["train"].shuffle(seed=args.seed)
    metaphases = split_metaphases(load_metaphases())["train"]
    normal = metaphases.filter(lambda status: status == "normal", input_columns="karyotype_status")
    normal = normal.shuffle(seed=args.seed).select(range(min(args.index_metaphases, len(normal))))
    crops, classes = capped_by_class(islice(karyogram_crops(karyograms), 30 * args.per_class), args.per_class)
    more_crops, more_classes = capped_by_class(metaphase_crops(normal), args.per_class)
    embeddings = identifier(model_inputs(identifier, crops + more_crops)).embeddings
    print(f"index: {len(crops)} karyogram and {len(more_crops)} metaphase chromosomes")
    return DeNovoIndex(embeddings, np.array(classes + more_classes), list(CHROMOSOMES), args.neighbours)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    identifier = ChromosomeIdentifier.from_pretrained(args.identity)
    print(f"index -> {build_index(identifier, args).save_pretrained(args.identity)}")


if __name__ == "__main__":
    main()
