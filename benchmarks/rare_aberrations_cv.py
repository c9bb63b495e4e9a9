"""The paper's Fig. 4A/B: rare aberrations, fewer than 50 examples each, scored by 10-fold cross-validation.

For each derivative of t(9;11), inv(16), inv(3) and t(11;19) (`--aberrations`): a pool of `--per-class` aberrant and
as many normal chromosomes (from both sides of the by-case split), folded by case with `GroupKFold` so no case is on
both sides of a fold; in each fold a head finetuned from the identity model on the other nine folds scores the
held-out one. Writes <output-dir>/rare_aberrations_cv.json and rare_aberrations_cv.png (box plots of PR-AUC and
ROC-AUC).

    python train/make_aberration_data.py --all    # once
    python benchmarks/rare_aberrations_cv.py [--output-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import torch
from sklearn.model_selection import GroupKFold

from karyohf.aberrations import aberration_probabilities, label_names
from karyohf.cytogenetics import CATALOGUE, get_aberration
from karyohf.head_training import FINETUNE_LEARNING_RATE, aberration_classifier, train_aberration_classifier
from karyohf.metrics import aberration_aucs
from karyohf.synthesis import balanced_subset, load_aberration_dataset

RARE = ("t(9;11)", "inv(16)", "inv(3)", "t(11;19)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aberrations", nargs="+", choices=list(CATALOGUE), default=list(RARE),
                        help="catalogue aberrations to cross-validate, each derivative on its own")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--identity", default="checkpoints/topvit-chromid")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--per-class", type=int, default=40, help="aberrant examples (and as many normal) per pool")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def pool(key: str, target: str, per_class: int, data_dir: Path, seed: int) -> datasets.Dataset:
    """`per_class` examples of each label, from both splits together."""
    both = datasets.concatenate_datasets([load_aberration_dataset(target, key, split, data_dir)
                                          for split in ("train", "validation")])
    return balanced_subset(both, per_class, seed)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for key in args.aberrations:
        for target in get_aberration(key).chromosomes:
            names = label_names(key, target)
            examples = pool(key, target, args.per_class, args.data_dir, args.seed)
            labels, cases = np.asarray(examples["label"]), np.asarray(examples["case_id"])
            folds = []
            for fold, (train_index, test_index) in enumerate(GroupKFold(args.folds).split(labels, labels, cases)):
                model, processor = aberration_classifier(names, args.identity, pretrained=True)
                model = train_aberration_classifier(model, processor, examples.select(train_index.tolist()),
                                                    args.steps, FINETUNE_LEARNING_RATE, seed=args.seed + fold)
                test = examples.select(test_index.tolist())
                scores = aberration_probabilities(model, processor, test["image"], test["cell_scale"])[:, 1]
                folds.append({"fold": fold, "test_normal": int((labels[test_index] == 0).sum()),
                              "test_aberrant": int((labels[test_index] == 1).sum()),
                              **aberration_aucs(labels[test_index] == 1, scores)})
            results[names[1]] = {"chromosome": target, "pool": len(examples), "folds": folds}
            pr = [f["pr_auc"] for f in folds]
            print(f"{names[1]} on {target}: PR-AUC median {np.nanmedian(pr):.3f} "
                  f"(IQR {np.nanpercentile(pr, 25):.3f}-{np.nanpercentile(pr, 75):.3f})", flush=True)
    output = {"per_class": args.per_class, "folds": args.folds, "steps": args.steps, "identity": args.identity,
              "results": results}
    (args.output_dir / "rare_aberrations_cv.json").write_text(json.dumps(output, indent=2))
    plot(results, args.output_dir / "rare_aberrations_cv.png", args.per_class)


def plot(results: dict, path: Path, per_class: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    names = list(results)
    for axis, metric in zip(axes, ("pr_auc", "roc_auc")):
        values = [[f[metric] for f in results[n]["folds"] if not np.isnan(f[metric])] for n in names]
        axis.boxplot(values, tick_labels=names)
        axis.set(ylabel=metric.replace("_", "-").upper(), ylim=(0, 1.02))
        axis.tick_params(axis="x", rotation=30, labelsize=8)
        axis.grid(alpha=0.3, axis="y")
    figure.suptitle(f"Rare aberrations: 10-fold cross-validation by case, {per_class} aberrant + {per_class} normal "
                    "chromosomes each, heads finetuned from topvit-chromid")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
