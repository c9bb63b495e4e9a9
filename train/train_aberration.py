"""Train an aberration head from the identity model, score it on held-out cases, save it as a checkpoint.

    python train/train_aberration.py --head del5q  --output-dir checkpoints/topvit-del5q
    python train/train_aberration.py --head t9-22  --output-dir checkpoints/topvit-t9-22
    python train/train_aberration.py --head del5q --scratch --output-dir runs/del5q-scratch   # the comparison

A head's labels are "normal" plus its derivatives; a multi-derivative head (t(9;22): der(9) on chromosome 9 and
der(22) on chromosome 22) learns from the datasets of every target at once. Datasets come from
`train/make_aberration_data.py`'s folder when it exists (--data-dir), else are built on the fly; validation is the
held-out cases of the same split. Writes config, safetensors, processor, model card, metrics.json and PR/ROC plots.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import set_seed

from karyohf.aberrations import SHIPPED_HEADS, aberration_probabilities, head_label_names
from karyohf.augmentation import OPTICS
from karyohf.cards import write_model_card
from karyohf.head_training import (
    FINETUNE_LEARNING_RATE,
    SCRATCH_LEARNING_RATE,
    aberration_classifier,
    train_aberration_classifier,
)
from karyohf.metrics import aberration_aucs, plot_aberration_curves
from karyohf.synthesis import load_aberration_dataset

TARGET_PR_AUC = 0.95


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", choices=sorted(SHIPPED_HEADS), required=True,
                        help="a shipped head (karyohf.aberrations.SHIPPED_HEADS): which pairs it learns")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--identity", default="checkpoints/topvit-chromid", help="identity checkpoint to start from")
    parser.add_argument("--scratch", action="store_true", help="random initialisation with the identity geometry")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"default {FINETUNE_LEARNING_RATE:g} finetuned, {SCRATCH_LEARNING_RATE:g} from scratch")
    parser.add_argument("--optics", choices=sorted(OPTICS), default="standard",
                        help="how crops are re-imaged as other microscopes would (karyohf.augmentation.OPTICS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def head_datasets(pairs, split: str, data_dir: Path) -> tuple[datasets.Dataset, list[str]]:
    """One dataset for every (aberration, target) pair, relabelled to the head's labels: normal + each derivative."""
    names = head_label_names(pairs)
    parts = []
    for index, (key, target) in enumerate(pairs, start=1):
        part = load_aberration_dataset(target, key, split, data_dir)
        part = part.cast_column("label", datasets.Value("int64")).map(
            lambda label: {"label": label * index}, input_columns="label")
        parts.append(part)
    return datasets.concatenate_datasets(parts), names


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    pairs = SHIPPED_HEADS[args.head]
    train, names = head_datasets(pairs, "train", args.data_dir)
    learning_rate = args.learning_rate or (SCRATCH_LEARNING_RATE if args.scratch else FINETUNE_LEARNING_RATE)
    model, processor = aberration_classifier(names, args.identity, pretrained=not args.scratch)
    optics = OPTICS[args.optics]
    started = time.time()
    model = train_aberration_classifier(model, processor, train.shuffle(seed=args.seed), args.steps, learning_rate,
                                        args.batch_size, args.seed, log_steps=100, optics=optics)
    minutes = (time.time() - started) / 60
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)

    # Chromosome-level scores per target: P(that derivative) among the target's normal and derivative copies.
    results, curves = {}, {}
    for index, (key, target) in enumerate(pairs, start=1):
        validation = load_aberration_dataset(target, key, "validation", args.data_dir)
        probabilities = aberration_probabilities(model, processor, validation["image"], validation["cell_scale"])
        is_aberrant = np.asarray(validation["label"]) == 1
        name = names[index]
        results[name] = {"chromosome": target, "normal": int((~is_aberrant).sum()), "aberrant": int(is_aberrant.sum()),
                         **aberration_aucs(is_aberrant, probabilities[:, index]),
                         "accuracy": float((probabilities.argmax(1) == np.where(is_aberrant, index, 0)).mean())}
        curves[f"{name} on {target}"] = (is_aberrant, probabilities[:, index])
    plot_aberration_curves(curves, args.output_dir / "pr_roc.png", title=args.output_dir.name)
    metrics = {"head": args.head, "labels": names, "initialised_from": "random" if args.scratch else args.identity,
               "steps": args.steps, "learning_rate": learning_rate, "optics": args.optics,
               "training_examples": len(train),
               "training_minutes": round(minutes, 1), "device": f"cpu x{torch.get_num_threads()}", "validation": results}
    (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = "\n".join(f"| {name} | {r['chromosome']} | {r['normal']} / {r['aberrant']} | {r['pr_auc']:.3f} | "
                     f"{r['roc_auc']:.3f} | {r['accuracy']:.1%} |" for name, r in results.items())
    met = all(r["pr_auc"] >= TARGET_PR_AUC for r in results.values())
    write_model_card(
        args.output_dir, "topvit-aberration", name=args.output_dir.name, labels=", ".join(f"`{n}`" for n in names),
        targets=", ".join(f"{names[i]} on chromosome {t}" for i, (_, t) in enumerate(pairs, start=1)),
        init="random initialisation" if args.scratch else f"`{args.identity}` (backbone; new head)",
        steps=args.steps, batch_size=args.batch_size, learning_rate=f"{learning_rate:g}", minutes=f"{minutes:.0f}",
        training_examples=f"{len(train):,}", results_table=rows, target_status="met" if met else "not met",
        head=args.head, parameters=f"{model.num_parameters():,}", optics=args.optics,
        optics_description=optics.describe(),
    )
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
