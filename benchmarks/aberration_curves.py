"""The paper's Fig. 3B: how aberration heads scale with the number of training examples, finetuned vs from scratch.

For every (aberration, target chromosome) pair of the shipped heads (`karyohf.aberrations.SHIPPED_HEADS`: del(5q) on
chromosome 5, both derivatives of t(9;22), der(9) on 9 and der(22) on 22): heads trained on N balanced examples
(N/2 normal, N/2 aberrant, drawn from the training cases) for a fixed number of steps, started from the identity
model or from random initialisation with the same geometry, all scored on the same held-out cases. Small N are
repeated with several seeds (different examples drawn). Writes <output-dir>/aberration_curves.json and
aberration_curves.png.

    python train/make_aberration_data.py          # once
    python benchmarks/aberration_curves.py [--heads del5q t9-22] [--output-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from karyohf.aberrations import SHIPPED_HEADS, aberration_probabilities, label_names
from karyohf.head_training import (
    FINETUNE_LEARNING_RATE,
    SCRATCH_LEARNING_RATE,
    aberration_classifier,
    train_aberration_classifier,
)
from karyohf.metrics import aberration_aucs
from karyohf.synthesis import balanced_subset, load_aberration_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", choices=list(SHIPPED_HEADS), default=list(SHIPPED_HEADS),
                        help="the shipped heads whose (aberration, chromosome) pairs to measure")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--identity", default="checkpoints/topvit-chromid")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    parser.add_argument("--seeds", type=int, default=2, help="repeats for sizes <= --repeat-below")
    parser.add_argument("--repeat-below", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for key, target in [pair for head in args.heads for pair in SHIPPED_HEADS[head]]:
        names = label_names(key, target)
        train = load_aberration_dataset(target, key, "train", args.data_dir)
        validation = load_aberration_dataset(target, key, "validation", args.data_dir)
        is_aberrant = np.asarray(validation["label"]) == 1
        for size in args.sizes:
            for seed in range(args.seeds if size <= args.repeat_below else 1):
                subset = balanced_subset(train, size // 2, seed)
                for pretrained in (True, False):
                    started = time.time()
                    model, processor = aberration_classifier(names, args.identity, pretrained=pretrained)
                    rate = FINETUNE_LEARNING_RATE if pretrained else SCRATCH_LEARNING_RATE
                    model = train_aberration_classifier(model, processor, subset, args.steps, rate, seed=seed)
                    scores = aberration_probabilities(model, processor, validation["image"], validation["cell_scale"])[:, 1]
                    run = {"derivative": names[1], "chromosome": target, "examples": size, "seed": seed,
                           "init": "finetuned" if pretrained else "scratch", **aberration_aucs(is_aberrant, scores),
                           "seconds": round(time.time() - started, 1)}
                    runs.append(run)
                    print(json.dumps(run), flush=True)
    summary = summarise(runs)
    result = {"steps": args.steps, "identity": args.identity, "test": "validation split (held-out cases)",
              "runs": runs, "summary": summary}
    (args.output_dir / "aberration_curves.json").write_text(json.dumps(result, indent=2))
    plot(summary, args.output_dir / "aberration_curves.png")
    for row in summary:
        print(row)


def summarise(runs: list[dict]) -> list[dict]:
    """Mean PR-AUC and ROC-AUC over seeds per (derivative, examples, init)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["derivative"], run["examples"], run["init"]), []).append(run)
    return [{"derivative": d, "examples": n, "init": i, "seeds": len(g),
             "pr_auc": float(np.mean([r["pr_auc"] for r in g])), "roc_auc": float(np.mean([r["roc_auc"] for r in g]))}
            for (d, n, i), g in groups.items()]


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    derivatives = list(dict.fromkeys(row["derivative"] for row in summary))
    colours = dict(zip(derivatives, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for axis, metric in zip(axes, ("pr_auc", "roc_auc")):
        for derivative in derivatives:
            for init, style in (("finetuned", "-o"), ("scratch", "--s")):
                rows = sorted((r for r in summary if r["derivative"] == derivative and r["init"] == init),
                              key=lambda r: r["examples"])
                axis.plot([r["examples"] for r in rows], [r[metric] for r in rows], style, color=colours[derivative],
                          label=f"{derivative} {init}", markersize=4)
        axis.set(xscale="log", xlabel="training examples (balanced)", ylabel=metric.replace("_", "-").upper(),
                 ylim=(0.4, 1.01))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle("Aberration heads vs training examples: finetuned from topvit-chromid (solid) vs scratch (dashed)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
