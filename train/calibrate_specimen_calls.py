"""Choose each aberration head's cell-level operating point on real normal validation metaphases, for specimens.

    python train/calibrate_specimen_calls.py [--cells-cache /tmp/karyohf-cells.jsonl] [--false-call-rate 0.005]

The heads flag 1-3% of real normal 5s, 9s and 22s; a 20-cell specimen has 40 homologs of each, so at a per-chromosome
operating point two cells cross the clone rule by chance in many normal specimens. Here the cell score of every
analysable normal validation metaphase (the pipeline's `aberration_scores`, from `benchmarks/cell_calls.py`'s
cache) gives the per-cell false-call rate p(t) at each threshold t, and the chosen t is the lowest at which a
20-cell normal specimen has two or more called cells with probability <= `--false-call-rate` (binomial in p(t)).
With two aberrations at 0.5% each, >= 99% of normal specimens get no structural call. Writes `operating_point.json`
into each head's checkpoint folder; `AberrationHead` reads it.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

from karyohf.aberrations import OPERATING_POINT_FILE
from karyohf.pipeline import KaryotypePipeline, resolve_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cell_calls import read_cache  # noqa: E402  (the cache's reader, with the pipeline's quality rules)

CELLS = 20
CLONE = 2


def chosen_threshold(scores: np.ndarray, false_call_rate: float) -> tuple[float, float, float]:
    """(threshold, per-cell rate, specimen false-call probability) for the lowest threshold meeting the rate."""
    for threshold in np.unique(np.concatenate([scores, [1.0]])):
        rate = float(np.mean(scores >= threshold))
        specimen = float(binom.sf(CLONE - 1, CELLS, rate))
        if specimen <= false_call_rate:
            # Midway to the next lower normal score would still call the same cells; keep the observed one.
            return float(threshold), rate, specimen
    return 1.0, 0.0, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells-cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"))
    parser.add_argument("--false-call-rate", type=float, default=0.005,
                        help="largest chance that a normal 20-cell specimen gets this aberration called")
    parser.add_argument("--checkpoints", default=None)
    args = parser.parse_args()
    records = read_cache(args.cells_cache)
    normal = [r for r in records if r["split"] == "validation" and r["status"] == "normal" and
              r["quality"] == "analysable"]
    root = resolve_checkpoints(args.checkpoints)
    for head in KaryotypePipeline.from_pretrained(root).heads:
        point = {"cell_threshold": {}, "chosen_on": {}}
        for key in head.aberrations:
            scores = np.asarray([r["aberration_scores"][key] for r in normal])
            threshold, rate, specimen = chosen_threshold(scores, args.false_call_rate)
            point["cell_threshold"][key] = round(threshold, 4)
            point["chosen_on"][key] = {
                "normal validation metaphases (analysable)": len(scores), "cells called": int(np.sum(scores >= threshold)),
                "per-cell false-call rate": rate, "20-cell specimen false-call probability": specimen,
                "target": args.false_call_rate, "command": "python train/calibrate_specimen_calls.py"}
            print(f"{head.name} {key}: cell threshold {threshold:.4f}, {rate:.4f} of normal cells called, "
                  f"P(normal 20-cell specimen called) {specimen:.4f}")
        (root / head.name / OPERATING_POINT_FILE).write_text(json.dumps(point, indent=2) + "\n")


if __name__ == "__main__":
    main()
