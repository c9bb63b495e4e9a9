"""How often the shipped aberration heads call a real normal chromosome aberrant, by crop source.

The heads were trained on karyogram crops (real normals, synthesized aberrants). The pipeline feeds them crops cut
from metaphases. This measures that gap on chromosomes known to be normal: the annotated boxes of held-out
metaphases whose karyotype is `normal`, against held-out karyogram crops, both through `extract_chromosome`.

    python benchmarks/head_false_positives.py [--metaphases 40] [--karyogram-crops 300]

Writes benchmarks/results/head_false_positives.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

import karyohf  # noqa: F401  (registers the Auto classes)
from karyohf.aberrations import SHIPPED_HEADS, aberration_probabilities, head_folder, screened_chromosomes
from karyohf.crops import karyogram_crops, metaphase_crops
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import load_karyogram_crops, load_metaphases, split_karyogram_crops, split_metaphases
from karyohf.pipeline import resolve_checkpoints

CHECKPOINTS = resolve_checkpoints()
# The shipped heads' folders and the chromosomes each screens.
HEADS = {head_folder(name): screened_chromosomes(name) for name in SHIPPED_HEADS}
THRESHOLD = 0.5  # P(aberrant) above which a head calls a chromosome aberrant


def normal_crops(args) -> dict[str, list[dict]]:
    """Paper-format crops of the heads' chromosomes, from normal held-out metaphases and held-out karyogram cases."""
    wanted = {CHROMOSOMES.index(name) for names in HEADS.values() for name in names}
    metaphases = split_metaphases(load_metaphases())["validation"]
    metaphases = metaphases.filter(lambda status: status == "normal", input_columns="karyotype_status")
    metaphases = metaphases.shuffle(seed=args.seed).select(range(min(args.metaphases, len(metaphases))))
    karyograms = split_karyogram_crops(load_karyogram_crops())["validation"]
    rows = [i for i, c in enumerate(karyograms["chromosome"]) if c in wanted][: args.karyogram_crops]
    return {
        "metaphase": [c for c in metaphase_crops(metaphases) if c["chromosome"] in wanted],
        "karyogram": list(karyogram_crops(karyograms.select(rows))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metaphases", type=int, default=40, help="normal held-out metaphases")
    parser.add_argument("--karyogram-crops", type=int, default=300, help="held-out karyogram crops of 5, 9 and 22")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "head_false_positives.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops = normal_crops(args)
    results = {}
    for head, chromosomes in HEADS.items():
        model = AutoModelForImageClassification.from_pretrained(CHECKPOINTS / head).eval()
        processor = AutoImageProcessor.from_pretrained(CHECKPOINTS / head)
        for chromosome in chromosomes:
            for source, pool in crops.items():
                images = [c["image"] for c in pool if c["chromosome"] == CHROMOSOMES.index(chromosome)]
                with torch.no_grad():
                    aberrant = 1 - aberration_probabilities(model, processor, images)[:, 0]
                results[f"{head} on {chromosome}, {source} crops"] = {
                    "normal_chromosomes": len(images),
                    "false_positive_rate": float((aberrant > THRESHOLD).mean()),
                    "median_p_aberrant": float(np.median(aberrant)),
                }
                print(f"{head} on normal {chromosome}s from {source} crops: n {len(images)}, "
                      f"false positives {results[f'{head} on {chromosome}, {source} crops']['false_positive_rate']:.1%}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"threshold": THRESHOLD, "seed": args.seed, "results": results}, indent=2))


if __name__ == "__main__":
    main()
