"""Build the normal-vs-aberrant datasets per target chromosome and the realism contact sheet.

Each dataset pairs real normal crops of one chromosome (karyogram crops and crops cut from
metaphases) with aberrant ones synthesized from other real crops (`karyohf.synthesis`), on both
sides of the split (by case and specimen), and is saved
with `Dataset.save_to_disk` as <output-dir>/<name>/<split>, the name made
shell-safe (der(9)t(9;22) -> der_9_t_9_22). The contact sheet shows, for every
aberration in the catalogue, real normal chromosomes beside synthesized aberrant ones.

    python train/make_aberration_data.py                       # del(5q), der(9), der(22) + sheet
    python train/make_aberration_data.py --all                 # every derivative in the catalogue
    python train/make_aberration_data.py --sheet-only --per-row 4   # just the sheet, in seconds
"""

from __future__ import annotations

import argparse
from pathlib import Path

from karyohf.aberrations import SHIPPED_HEADS, label_names
from karyohf.cytogenetics import CATALOGUE
from karyohf.data import load_karyogram_crops, split_karyogram_crops
from karyohf.synthesis import aberration_dataset, contact_sheet, dataset_folder

# The shipped heads' targets (the paper's main heads): del(5q) on 5, and the two derivatives of t(9;22).
DEFAULT_TARGETS = tuple(pair for pairs in SHIPPED_HEADS.values() for pair in pairs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--sheet", type=Path, default=Path("docs/aberrations_contact_sheet.png"))
    parser.add_argument("--sheet-only", action="store_true", help="write the contact sheet and stop")
    parser.add_argument("--per-row", type=int, default=5, help="real and synthesized crops per sheet row")
    parser.add_argument("--all", action="store_true", help="a dataset for every derivative in the catalogue")
    parser.add_argument("--limit", type=int, default=None, help="at most this many examples per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None, help="data folder (default: $KARYOHF_DATA or ../shared/data)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    karyogram_validation = split_karyogram_crops(load_karyogram_crops(args.data_root))["validation"]
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(karyogram_validation, per_row=args.per_row, seed=args.seed).save(args.sheet)
    print(f"contact sheet -> {args.sheet}")
    if args.sheet_only:
        return
    targets = [(key, c) for key, a in CATALOGUE.items() for c in a.chromosomes] if args.all else DEFAULT_TARGETS
    for key, target in targets:
        name = label_names(key, target)[1]
        for split in ("train", "validation"):
            dataset = aberration_dataset(target, key, split, root=args.data_root, limit=args.limit, seed=args.seed)
            path = dataset_folder(args.output_dir, key, target) / split
            dataset.save_to_disk(str(path))
            counts = dataset.to_pandas()["label"].value_counts().sort_index().tolist()
            print(f"{name} on chromosome {target}, {split}: normal/aberrant = {counts} -> {path}")


if __name__ == "__main__":
    main()
