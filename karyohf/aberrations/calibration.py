"""Where a head calls a cell: its operating point, chosen on cells known to lack the aberration.

A specimen's structural call needs a 2-cell clone, and a 20-cell specimen has 40 homologs of each screened chromosome,
so a threshold set per chromosome lets two normal cells cross the clone rule by chance in many normal specimens.
`chosen_threshold` sets it for the specimen instead: the most cells m that may be called is the largest for which a
20-cell specimen has two or more called cells with probability <= the false-call rate (binomial in m/n), and the
threshold sits midway, on the logit scale, between the m-th highest score (called) and the next (not called). Any
threshold in that gap calls the same cells; its top end (the highest score) would throw away the aberrant cells in
the gap, which is where many score. Because the same cells choose the threshold and would measure it,
`left_out_calls` scores each specimen under the threshold chosen without it: the honest false-call rate.

`train/calibrate_specimen_calls.py` chooses the shipped points on this project's validation metaphases;
`karyohf calibrate` chooses a lab's own on its normal metaphases. Both write `operating_point.json`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from ..karyotype.specimen import CLONE_CELLS

# The metaphases a specimen's analysis counts (ISCN; `karyohf.pipeline.MINIMUM_CELLS`, which imports this package).
SPECIMEN_CELLS = 20


def specimen_probability(rate: float) -> float:
    """P(a 20-cell specimen has a structural clone's worth of called cells) at a per-cell false-call rate."""
    return float(binom.sf(CLONE_CELLS["structural"] - 1, SPECIMEN_CELLS, rate))


def fewest_cells(false_call_rate: float) -> int:
    """The fewest cells of which one may be called at `false_call_rate`; with fewer, the threshold sits above all."""
    n = 1
    while specimen_probability(1 / n) > false_call_rate:
        n += 1
    return n


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def chosen_threshold(scores: np.ndarray, false_call_rate: float) -> tuple[float, float, float]:
    """(threshold, per-cell rate, specimen false-call probability) of the rule in the module docstring, from the cell
    scores of cells known to lack the aberration; a cell is called when its score is >= the threshold."""
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
    scores, specimens = np.asarray(scores, np.float64), np.asarray(specimens)
    if len(np.unique(specimens)) < 2:
        raise ValueError("leaving one specimen out needs cells of at least two specimens")
    called = np.zeros(len(scores), bool)
    for specimen in np.unique(specimens):
        own = specimens == specimen
        called[own] = scores[own] >= chosen_threshold(scores[~own], false_call_rate)[0]
    return called


def operating_point(scores, specimens, false_call_rate: float, analysable=None) -> tuple[float, dict]:
    """The threshold `chosen_threshold` sets on these cells, and what `operating_point.json` records beside it: the
    cells called, the per-cell rate and the specimen false-call probability it implies, in-sample and with each
    specimen left out (given two or more), the latter also over the `analysable` cells (a boolean mask) if given:
    the cells that specimens are made of."""
    scores, specimens = np.asarray(scores, np.float64), np.asarray(specimens)
    threshold, rate, probability = chosen_threshold(scores, false_call_rate)
    summary = {"cells": len(scores), "specimens": len(set(specimens.tolist())),
               "cells called": int(np.sum(scores >= threshold)), "per-cell false-call rate": rate,
               "20-cell specimen false-call probability": probability}
    held_out = left_out_calls(scores, specimens, false_call_rate) if summary["specimens"] > 1 else None
    if held_out is not None:
        summary["per-cell false-call rate, leave one specimen out"] = float(held_out.mean())
        summary["20-cell specimen false-call probability, leave one specimen out"] = \
            specimen_probability(float(held_out.mean()))
    if analysable is not None:
        analysable = np.asarray(analysable, bool)
        summary["of them analysable"] = int(analysable.sum())
        summary["analysable cells called"] = int(np.sum(scores[analysable] >= threshold))
        if held_out is not None:
            rate_analysable = float(held_out[analysable].mean())
            summary["per-cell false-call rate of analysable cells, leave one specimen out"] = rate_analysable
            summary["20-cell specimen false-call probability of analysable cells, leave one specimen out"] = \
                specimen_probability(rate_analysable)
    return threshold, summary | {"target": false_call_rate}
