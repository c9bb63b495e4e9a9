"""Which crops the shipped models should be fed: identity top-1 and aberration-head false positives by crop source.

The identity model and the heads were trained on crops that `extract_chromosome` cut from each annotated box on
its own (the chromosome segmented inside its box). The segmentation stage can instead hand it a mask per box from
the whole metaphase (`ThresholdSegmenter`: shared pixels resolved between neighbours, nuclei removed). On held-out
metaphases this scores four sources: annotated or detected boxes (`ChromosomeDetector`, each matched to the
annotated box it overlaps most at IoU >= 0.5 for its true class), each cut alone or with the metaphase-wide mask.

Identity: top-1 of `ChromosomeIdentifier` (as shipped) per crop. Heads: the share of 5s, 9s and 22s of metaphases
whose karyotype is normal that a head calls aberrant (P(aberrant) > 0.5).

    python benchmarks/crop_sources.py [--metaphases 80] [--threads 2]

Writes benchmarks/results/crop_sources.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou
from transformers import AutoImageProcessor, AutoModelForImageClassification

import karyohf  # noqa: F401  (registers the Auto classes)
from karyohf.aberrations import SHIPPED_HEADS, aberration_probabilities, head_folder, screened_chromosomes
from karyohf.crops import cell_scale, extract_chromosome
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import validation_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.identification import ChromosomeIdentifier
from karyohf.images import as_gray_uint8
from karyohf.pipeline import resolve_checkpoints
from karyohf.segmentation import ThresholdSegmenter

CHECKPOINTS = resolve_checkpoints()
# The shipped heads' folders and the chromosomes each screens.
HEADS = {head_folder(name): screened_chromosomes(name) for name in SHIPPED_HEADS}
THRESHOLD = 0.5  # P(aberrant) above which a head calls a chromosome aberrant
SOURCES = ("annotated box, cut alone", "annotated box, metaphase mask", "detected box, cut alone",
           "detected box, metaphase mask")


def crops_by_source(gray, truth_boxes, detector, segmenter) -> dict[str, tuple[list, np.ndarray]]:
    """Each source's crops of one metaphase, with the index of the annotated box each shows."""
    found = detector(gray).boxes
    overlap = box_iou(torch.as_tensor(found), torch.as_tensor(truth_boxes)).numpy()
    matched = np.flatnonzero(overlap.max(1, initial=0) >= 0.5)
    found_masks, truth_masks = segmenter(gray, found), segmenter(gray, truth_boxes)
    everyone = np.arange(len(truth_boxes))
    return {
        SOURCES[0]: ([extract_chromosome(gray, box) for box in truth_boxes], everyone),
        SOURCES[1]: ([extract_chromosome(gray, box, mask=mask) for box, mask in zip(truth_boxes, truth_masks)], everyone),
        SOURCES[2]: ([extract_chromosome(gray, found[k]) for k in matched], overlap[matched].argmax(1)),
        SOURCES[3]: ([extract_chromosome(gray, found[k], mask=found_masks[k]) for k in matched], overlap[matched].argmax(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metaphases", type=int, default=80, help="a seeded random subset of the validation metaphases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "crop_sources.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    metaphases = validation_metaphases(args.metaphases, seed=args.seed)
    detector = ChromosomeDetector.from_pretrained(CHECKPOINTS / "centernet-chromosomes")
    segmenter = ThresholdSegmenter()
    identifier = ChromosomeIdentifier.from_pretrained(str(CHECKPOINTS / "topvit-chromid"))
    heads = {name: (AutoModelForImageClassification.from_pretrained(CHECKPOINTS / name).eval(),
                    AutoImageProcessor.from_pretrained(CHECKPOINTS / name)) for name in HEADS}
    correct = {source: 0 for source in SOURCES}
    crops_seen = {source: 0 for source in SOURCES}
    head_scores = {(head, chromosome, source): [] for head, names in HEADS.items() for chromosome in names
                   for source in SOURCES}
    for example in metaphases:
        gray = as_gray_uint8(example["image"])
        truth = np.asarray(example["chromosomes"])
        for source, (crops, shown) in crops_by_source(gray, np.asarray(example["boxes"], np.float32).reshape(-1, 4),
                                                      detector, segmenter).items():
            if not crops:
                continue
            # Per crop, without cell context, but rescaled with its cell as the pipeline's identity model reads it.
            scale = cell_scale(crops)
            readable = identifier.model_inputs(crops, [scale] * len(crops))
            correct[source] += int((identifier(readable).predictions == truth[shown]).sum())
            crops_seen[source] += len(crops)
            if example["karyotype_status"] != "normal":
                continue
            for head, (model, processor) in heads.items():
                for chromosome in HEADS[head]:
                    chosen = [crop for crop, k in zip(crops, shown) if truth[k] == CHROMOSOMES.index(chromosome)]
                    if chosen:
                        head_scores[head, chromosome, source].extend(
                            1 - aberration_probabilities(model, processor, chosen, [scale] * len(chosen))[:, 0])
    result = {
        "metaphases": len(metaphases),
        "identity_top1": {source: {"crops": crops_seen[source], "top1": correct[source] / max(crops_seen[source], 1)}
                          for source in SOURCES},
        "head_false_positive_rate": {
            f"{head} on normal {chromosome}s, {source}": {"chromosomes": len(scores),
                                                         "false_positive_rate": float(np.mean(np.asarray(scores) > THRESHOLD))}
            for (head, chromosome, source), scores in head_scores.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
