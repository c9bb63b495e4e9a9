"""Choose each aberration head's cell-level operating point on real validation metaphases free of it, for specimens.

    python train/calibrate_specimen_calls.py [--cells-cache /tmp/karyohf-cells.jsonl] [--false-call-rate 0.005]
    python train/calibrate_specimen_calls.py --heads topvit-t9-22     # only the head that changed

The rule is `karyohf.aberrations.calibration.chosen_threshold` (as many cells called as keep a normal 20-cell
specimen's chance of a 2-cell clone <= `--false-call-rate`, the threshold mid-gap on the logit scale). Its cells are
the pipeline's scores (`aberration_scores`, from `benchmarks/cell_calls.py`'s cache) of every validation metaphase
known to lack the aberration: the normal ones, the numerical ones (whole-chromosome changes) and the structural ones
whose abnormal pairs are not the head's chromosomes, whatever the pipeline's verdict on the cell. Cells set aside as
crowded or for a recount do not enter a specimen's calls, but their chromosomes are the same kind of normal 5s, 9s
and 22s, cut from more crowded spreads: they are harder negatives, not other ones, and with them about 380 cells
rather than about 220 choose the point, which otherwise rests on whichever one or two analysable cells the
overlap-cluster rule happens to keep. With two aberrations at 0.5% each, >= 99% of normal specimens get no structural
call. Each specimen is also scored under the threshold chosen without it (`left_out_calls`): that per-cell rate, over
all these cells and over the analysable ones that specimens are made of, and the specimen false-call probability it
implies, are the honest figures, written beside the threshold into `operating_point.json` in each head's checkpoint
folder (`AberrationHead` reads it).
"""

import argparse
import json
import sys
from pathlib import Path

from karyohf.aberrations import OPERATING_POINT_FILE
from karyohf.aberrations.calibration import operating_point
from karyohf.pipeline import KaryotypePipeline, resolve_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cell_calls import read_cache  # noqa: E402  (the cache's reader, with the pipeline's quality rules)


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
            threshold, chosen = operating_point([r["aberration_scores"][key] for r in cells],
                                                [r["specimen_id"] for r in cells], args.false_call_rate,
                                                analysable=[r["quality"] == "analysable" for r in cells])
            point["cell_threshold"][key] = threshold  # unrounded: a rounded one may call other cells
            point["chosen_on"][key] = ({"cells chosen on": f"validation metaphases free of {key}, any quality"}
                                       | chosen | {"command": "python train/calibrate_specimen_calls.py"})
            print(f"{head.name} {key}: cell threshold {threshold:.4f} on {chosen['cells']} cells free of it, "
                  f"{chosen['per-cell false-call rate']:.4f} called "
                  f"({chosen['per-cell false-call rate, leave one specimen out']:.4f} leaving each specimen out, "
                  f"{chosen['per-cell false-call rate of analysable cells, leave one specimen out']:.4f} of the "
                  f"analysable ones)")
        (root / head.name / OPERATING_POINT_FILE).write_text(json.dumps(point, indent=2) + "\n")


if __name__ == "__main__":
    main()
