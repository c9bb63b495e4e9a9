"""Teach the identity model a new aberration from a handful of examples with a LoRA adapter (peft).

The community recipe: start from `checkpoints/topvit-chromid`, add a head over "normal" + the new aberration, adapt
only low-rank updates of the attention projections (plus the new head), and share the adapter, a few kilobytes,
instead of a whole model. Anyone can then load it onto the identity checkpoint, or merge it into a plain
`TopViTForImageClassification`.

    python train/make_aberration_data.py --all          # or bring your own dataset with image/label columns
    python train/finetune_lora.py --aberration "inv(3)" --target 3 --examples 20 --output-dir runs/lora-inv3

Writes <output-dir>/adapter (adapter_config.json, adapter_model.safetensors), <output-dir>/merged (a full
checkpoint with its processor) and metrics.json (PR-AUC and ROC-AUC on held-out cases). Load the adapter back:

    from peft import PeftModel
    from karyohf.head_training import aberration_classifier
    base, processor = aberration_classifier(["normal", "inv(3)"], "checkpoints/topvit-chromid")
    model = PeftModel.from_pretrained(base, "runs/lora-inv3/adapter")      # or base.load_adapter(...)
    merged = model.merge_and_unload()                                       # a plain TopViTForImageClassification
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from peft import PeftModel
from transformers import set_seed

from karyohf.aberrations import aberration_probabilities, label_names
from karyohf.head_training import aberration_classifier, train_aberration_classifier, with_lora
from karyohf.metrics import aberration_aucs
from karyohf.synthesis import balanced_subset, load_aberration_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aberration", default="inv(3)", help="a catalogue key")
    parser.add_argument("--target", default="3", help="the chromosome the aberration changes")
    parser.add_argument("--examples", type=int, default=20, help="training examples, half of them aberrant")
    parser.add_argument("--identity", default="checkpoints/topvit-chromid")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="LoRA trains few weights: a larger rate")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    set_seed(args.seed)
    names = label_names(args.aberration, args.target)
    train = load_aberration_dataset(args.target, args.aberration, "train", args.data_dir)
    train = balanced_subset(train, args.examples // 2, args.seed)

    base, processor = aberration_classifier(names, args.identity, pretrained=True)
    model = with_lora(base, rank=args.rank)
    trainable, total = model.get_nb_trainable_parameters()
    print(f"LoRA rank {args.rank}: {trainable:,} of {total:,} parameters trained on {len(train)} examples")
    model = train_aberration_classifier(model, processor, train, args.steps, args.learning_rate, seed=args.seed)
    adapter = args.output_dir / "adapter"
    model.save_pretrained(adapter)

    # The round trip a user makes: a fresh base (its new head is random), the adapter loaded onto it, merged.
    fresh, _ = aberration_classifier(names, args.identity, pretrained=True)
    reloaded = PeftModel.from_pretrained(fresh, adapter).eval()
    merged = reloaded.merge_and_unload().eval()
    merged.save_pretrained(args.output_dir / "merged")
    processor.save_pretrained(args.output_dir / "merged")

    validation = load_aberration_dataset(args.target, args.aberration, "validation", args.data_dir)
    images = validation["image"]
    scores = aberration_probabilities(model, processor, images, validation["cell_scale"])[:, 1]
    merged_scores = aberration_probabilities(merged, processor, images, validation["cell_scale"])[:, 1]
    metrics = {"aberration": names[1], "chromosome": args.target, "examples": len(train), "rank": args.rank,
               "trainable_parameters": trainable, "steps": args.steps,
               **aberration_aucs(np.asarray(validation["label"]) == 1, scores),
               "max_abs_difference_merged": float(np.abs(scores - merged_scores).max())}
    (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
