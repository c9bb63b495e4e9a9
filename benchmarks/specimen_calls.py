"""Specimen-level karyotypes from real cells: how often a normal specimen gets a false clone, and what the real
numerical specimens get.

    python benchmarks/specimen_calls.py [--cells-cache /tmp/karyohf-cells.jsonl] [--draws 2000]

Built on `benchmarks/cell_calls.py`'s cache (every validation metaphase, and every real `numerical` one, through
`KaryotypePipeline`): each cell's changes are rebuilt from its labels and its heads' cell scores at the shipped
operating points, exactly as `CellResult.abnormalities` makes them, and specimens go through the pipeline's own
`karyohf.karyotype.specimen.aggregate`.
- Normal specimens: 20 analysable normal validation metaphases of one (annotated) sex drawn at random, many times
  (the validation specimens hold 1-10 metaphases each, so a 20-cell specimen is a draw across specimens). Reported:
  the fraction whose karyotype is the normal line alone, with any false numerical or structural clone, and the most
  frequent false clones; in the neoplasia and the constitutional study. The same from the normal training cells
  of `cell_calls.py` (where no rule or operating point was chosen). And how often a normal specimen whose 20 cells
  include recounts is referred for a possible numerical clone (the recounts doubting a change, with the cells
  showing it, reach the clone rule).
- Real numerical specimens: the `numerical` metaphases grouped by specimen (1-6 metaphases each), aggregated as a
  constitutional study (amniotic fluid); their karyotype against the annotated one.
Writes benchmarks/results/specimen_calls.json.
"""

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

import karyohf.pipeline
from karyohf.cytogenetics import get_aberration
from karyohf.karyotype.cells import Abnormality, numerical_changes
from karyohf.karyotype.specimen import aggregate, reference_sex, sex_inconsistent
from karyohf.pipeline import KaryotypePipeline, doubtful_changes, possible_clones
from cell_calls import counted_labels, doubtful_labels, predicted_counts, read_cache

CELLS = 20


def abnormalities(record: dict, sex: str, thresholds: dict[str, float]) -> tuple:
    structural = [Abnormality("structural", get_aberration(key).chromosomes[0], get_aberration(key).iscn)
                  for key, score in record["aberration_scores"].items() if score >= thresholds[key]]
    return tuple(numerical_changes(predicted_counts(record), sex) + structural)


def specimen(records: list[dict], study: str, thresholds: dict[str, float]):
    counts = [predicted_counts(r) for r in records]
    sex = reference_sex([(c.get("X", 0), c.get("Y", 0)) for c in counts])
    cells = [(r["image_id"], abnormalities(r, sex, thresholds)) for r in records]
    cells = [(name, items) for name, items in cells if not sex_inconsistent(items, sex)]  # as the pipeline does
    return aggregate(cells, sex, study), sex


def specimen_with_referrals(records: list[dict], thresholds: dict[str, float], study: str = "constitutional"):
    """`specimen` of the analysable records among `records`, and the changes the pipeline would refer as possible
    clones (`karyohf.pipeline.possible_clones`: its recounts with the cells that show the change)."""
    analysable = [r for r in records if r["quality"] == "analysable"]
    summary, sex = specimen(analysable, study, thresholds)
    recounts = [doubtful_changes(counted_labels(r), r.get("possibly_missed", ()), doubtful_labels(r))
                for r in records if r["quality"].startswith("recount")]
    shown = [[a.iscn for a in numerical_changes(predicted_counts(r), sex)] for r in analysable]
    return summary, {change for change, _, _ in possible_clones(recounts, shown, {f.iscn for f in summary.findings})}


def operating_points() -> dict[str, float]:
    """The shipped heads' cell thresholds, by aberration: where the pipeline calls each in a cell."""
    return {key: t for head in KaryotypePipeline.from_pretrained().heads for key, t in head.cell_thresholds.items()}


def annotated_sex(record: dict) -> str:
    return "XY" if record["annotated_counts"].get("Y", 0) else "XX"


def normal_specimens(records, thresholds, draws: int, study: str, split: str = "validation") -> dict:
    rng = np.random.default_rng(0)
    by_sex = defaultdict(list)
    for r in records:
        if r["split"] == split and r["status"] == "normal" and r["quality"] == "analysable":
            by_sex[annotated_sex(r)].append(r)
    normal_only = numerical = structural = sex_right = 0
    false_clones = Counter()
    for draw in range(draws):
        sex = ("XX", "XY")[draw % 2]
        cells = [by_sex[sex][i] for i in rng.choice(len(by_sex[sex]), CELLS, replace=False)]
        summary, called_sex = specimen(cells, study, thresholds)
        kinds = {f.kind for f in summary.findings}
        normal_only += not summary.findings
        numerical += bool(kinds & {"gain", "loss"})
        structural += "structural" in kinds
        sex_right += called_sex == sex
        false_clones.update(f.iscn for f in summary.findings)
    return {
        "specimens": draws, "analysable normal metaphases": {sex: len(rows) for sex, rows in by_sex.items()},
        "karyotype is the normal line alone": normal_only / draws,
        "with a false numerical clone": numerical / draws, "with a false structural clone": structural / draws,
        "sex right": sex_right / draws,
        "most frequent false clones (share of specimens)": {k: v / draws for k, v in false_clones.most_common(8)},
    }


def normal_referrals(records, thresholds, draws: int, split: str = "validation") -> dict:
    """Normal 20-cell specimens drawn among the analysable cells and those asking for a recount (a lab's 20 analysed
    cells hold both): how often one is referred for a possible numerical clone (`specimen_with_referrals`)."""
    rng = np.random.default_rng(1)
    by_sex = defaultdict(list)
    for r in records:
        if r["split"] == split and r["status"] == "normal" and (
                r["quality"] == "analysable" or r["quality"].startswith("recount")):
            by_sex[annotated_sex(r)].append(r)
    referred = Counter()
    for draw in range(draws):
        pool = by_sex[("XX", "XY")[draw % 2]]
        _, changes = specimen_with_referrals([pool[i] for i in rng.choice(len(pool), CELLS, replace=False)],
                                             thresholds)
        referred.update(changes)
        referred["any"] += bool(changes)
    return {"specimens": draws, "cells drawn from (analysable or recount)": {sex: len(r) for sex, r in by_sex.items()},
            "referred for a possible numerical clone": referred.pop("any", 0) / draws,
            "most frequent (share of specimens)": {k: v / draws for k, v in referred.most_common(6)}}


def numerical_specimens(records, thresholds) -> list[dict]:
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "numerical":
            groups[r["specimen_id"]].append(r)
    out = []
    for specimen_id, rows in sorted(groups.items()):
        analysable = [r for r in rows if r["quality"] == "analysable"]
        annotated = Counter()
        for r in rows:
            sex = annotated_sex(r)
            annotated[",".join(a.iscn for a in numerical_changes(r["annotated_counts"], sex)) or "normal"] += 1
        summary, _ = specimen(analysable, "constitutional", thresholds) if analysable else (None, None)
        out.append({"specimen": specimen_id, "split": rows[0]["split"], "metaphases": len(rows),
                    "analysable": len(analysable), "status": rows[0]["abnormal_pairs"],
                    "annotated changes per metaphase": dict(annotated),
                    "karyotype": summary.karyotype if summary else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells-cache", type=Path, default=Path("/tmp/karyohf-cells.jsonl"))
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "specimen_calls.json")
    parser.add_argument("--max-clustered", type=int, default=None,
                        help="judge cells under another overlap-cluster limit than the pipeline's MAX_CLUSTERED")
    args = parser.parse_args()
    if args.max_clustered is not None:
        karyohf.pipeline.MAX_CLUSTERED = args.max_clustered
    records = read_cache(args.cells_cache)
    thresholds = operating_points()
    result = {"cell thresholds": thresholds,
              "normal 20-cell specimens, neoplasia": normal_specimens(records, thresholds, args.draws, "neoplasia"),
              "normal 20-cell specimens, constitutional": normal_specimens(records, thresholds, args.draws,
                                                                           "constitutional"),
              # Operating points and cell rules were chosen on the validation cells; these were never looked at.
              "normal 20-cell specimens of training cells (nothing tuned), constitutional": normal_specimens(
                  records, thresholds, args.draws, "constitutional", split="train"),
              "normal 20-cell specimens, recounts among the cells: possible-clone referrals": normal_referrals(
                  records, thresholds, args.draws),
              "real numerical specimens (constitutional)": numerical_specimens(records, thresholds)}
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
