"""Choose each aberration head's cell-level operating point on real validation metaphases free of it, for specimens.

    python train/calibrate_specimen_calls.py [--cells-cache /tmp/karyohf-cells.jsonl] [--false-call-rate 0.005]
    python train/calibrate_specimen_calls.py --heads topvit-t9-22     # only the head that changed

The heads flag 1-3% of real normal 5s, 9s and 22s; a 20-cell specimen has 40 homologs of each, so at a per-chromosome
operating point two cells cross the clone rule by chance in many normal specimens. Here the cell score (the
pipeline's `aberration_scores`, from `benchmarks/cell_calls.py`'s cache) of every validation metaphase known to lack
the aberration gives the per-cell false-call rate: the normal ones, the numerical ones (whole-chromosome changes) and
the structural ones whose abnormal pairs are not the head's chromosomes, whatever the pipeline's verdict on the cell.
Cells set aside as crowded or for a recount do not enter a specimen's calls, but their chromosomes are the same kind of
normal 5s, 9s and 22s, cut from more crowded spreads: they are harder negatives, not other ones, and with them about
380 cells rather than about 220 choose the point, which otherwise rests on whichever one or two analysable cells
the overlap-cluster rule happens to keep. The most cells m that may be called is the largest for which a 20-cell
specimen has two or more called cells with probability <= `--false-call-rate` (binomial in m/n), and the threshold
sits midway, on the logit scale, between the m-th highest score (called) and the next (not called). Any threshold in
that gap calls the same cells; its top end (the highest score, as before) throws away the aberrant cells in the gap,
which is where many synthesized derivatives score. With two aberrations at 0.5% each, >= 99% of normal specimens get
no structural call. Because the same cells choose the threshold and would measure it, each specimen is also scored
under the threshold chosen without it (leave one specimen out): that per-cell rate, over all these cells and over the
analysable ones that specimens are made of, and the specimen false-call probability it implies, are the honest
figures, written beside the threshold into `operating_point.json` in each head's checkpoint folder
(`AberrationHead` reads it).
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


def specimen_probability(rate: float) -> float:
    """P(a 20-cell specimen has >= 2 cells called) at a per-cell false-call rate."""
    return float(binom.sf(CLONE - 1, CELLS, rate))


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def chosen_threshold(scores: np.ndarray, false_call_rate: float) -> tuple[float, float, float]:
    """(threshold, per-cell rate, specimen false-call probability) of the rule in the module docstring; a cell is
    called when its score is >= the threshold."""
    ranked = np.sort(np.asarray(scores, np.float64))[::-1]
    n, called = len(ranked), 0
    if n == 0:
        raise ValueError("no normal cell scores to choose an operating point on")
    while called < n and specimen_probability((called + 1) / n) <= false_call_rate:
        called += 1
    while 0 < called < n and ranked[called - 1] <= ranked[called]:  # tied scores are called together or not at all
        called -= 1
    upper = ranked[called - 1] if called else 1.0
    lower = ranked[called] if called < n else 0.0
    threshold = float(1 / (1 + np.exp(-(logit(lower) + logit(upper)) / 2)))
    if not lower < threshold <= upper:  # scores too close to 0 or 1 for the logit: just above the one not called
        threshold = float(np.nextafter(lower, np.inf))
    rate = called / n
    return threshold, rate, specimen_probability(rate)


def left_out_calls(scores: np.ndarray, specimens: np.ndarray, false_call_rate: float) -> np.ndarray:
    """Which cells reach the threshold chosen without their own specimen."""
    if len(np.unique(specimens)) < 2:
        raise ValueError("leaving one specimen out needs cells of at least two specimens")
    called = np.zeros(len(scores), bool)
    for specimen in np.unique(specimens):
        own = specimens == specimen
        called[own] = scores[own] >= chosen_threshold(scores[~own], false_call_rate)[0]
    return called


def free_of(record: dict, chromosomes: set[str]) -> bool:
    """Whether a metaphase is known to lack a structural change of `chromosomes`: its image-level status is normal or
    numerical, or structural in other pairs only."""
    pairs = {pair.strip() for pair in record["abnormal_pairs"].split(",")}
    return record["status"] != "structural" or not pairs & chromosomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells-cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"))
    parser.add_argument("--false-call-rate", type=float, default=0.005,
                        help="largest chance that a normal 20-cell specimen gets this aberration called")
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--heads", nargs="+", default=None,
                        help="checkpoint folder names of the heads to recalibrate (default: every head)")
    args = parser.parse_args()
    validation = [r for r in read_cache(args.cells_cache) if r["split"] == "validation"]
    root = resolve_checkpoints(args.checkpoints)
    heads = KaryotypePipeline.from_pretrained(root).heads
    unknown = set(args.heads or ()) - {head.name for head in heads}
    if unknown:
        parser.error(f"no such head in {root}: {', '.join(sorted(unknown))} (have {', '.join(h.name for h in heads)})")
    for head in heads if args.heads is None else [h for h in heads if h.name in args.heads]:
        point = {"cell_threshold": {}, "chosen_on": {}}
        for key in head.aberrations:
            chromosomes = {chromosome for aberration, chromosome in head.targets.values() if aberration == key}
            cells = [r for r in validation if free_of(r, chromosomes)]
            scores = np.asarray([r["aberration_scores"][key] for r in cells])
            specimens = np.asarray([r["specimen_id"] for r in cells])
            analysable = np.asarray([r["quality"] == "analysable" for r in cells])
            threshold, rate, specimen = chosen_threshold(scores, args.false_call_rate)
            held_out = left_out_calls(scores, specimens, args.false_call_rate)
            held_out_rate, held_out_analysable = float(held_out.mean()), float(held_out[analysable].mean())
            point["cell_threshold"][key] = threshold  # unrounded: a rounded one may call other cells
            point["chosen_on"][key] = {
                f"validation metaphases free of {key} (any quality)": len(scores),
                "of them analysable": int(analysable.sum()), "specimens": len(set(specimens)),
                "cells called": int(np.sum(scores >= threshold)),
                "analysable cells called": int(np.sum(scores[analysable] >= threshold)),
                "per-cell false-call rate": rate, "20-cell specimen false-call probability": specimen,
                "per-cell false-call rate, leave one specimen out": held_out_rate,
                "20-cell specimen false-call probability, leave one specimen out":
                    specimen_probability(held_out_rate),
                "per-cell false-call rate of analysable cells, leave one specimen out": held_out_analysable,
                "20-cell specimen false-call probability of analysable cells, leave one specimen out":
                    specimen_probability(held_out_analysable),
                "target": args.false_call_rate, "command": "python train/calibrate_specimen_calls.py"}
            print(f"{head.name} {key}: cell threshold {threshold:.4f} on {len(scores)} cells free of it, {rate:.4f} "
                  f"called ({held_out_rate:.4f} leaving each specimen out, {held_out_analysable:.4f} of the "
                  f"analysable ones), P(normal 20-cell specimen called) {specimen:.4f}")
        (root / head.name / OPERATING_POINT_FILE).write_text(json.dumps(point, indent=2) + "\n")


if __name__ == "__main__":
    main()
