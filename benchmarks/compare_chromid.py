"""Small-scale reproduction of the paper's Fig. 2A: softmax ViT, Performer, TopViT and a CNN baseline
trained on the same crops for the same number of steps (a shared machine makes wall-clock budgets
unequal), then scored on the same validation split, with their training time and CPU inference cost.
Writes a markdown table and JSON to --output-dir. Each variant is trained by train/train_chromid.py (in a
subprocess); arguments this script does not know go to it.

    python benchmarks/compare_chromid.py --steps 1327 --threads 1 --output-dir runs/compare --stem-blocks 0 \
        --image-size 64 32 --layers 4 --patch-size 8 --hidden-size 64 --mlp-size 128    # the README's table
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

TRAIN_CHROMID = Path(__file__).resolve().parents[1] / "train" / "train_chromid.py"
VARIANTS = ("softmax", "performer", "topvit", "resnet")


def inference_ms_per_metaphase(run_dir: Path, threads: int, crops: int = 46) -> float:
    """Median forward time of one metaphase's worth of crops (46), batch of 46, on the CPU."""
    from transformers import AutoModelForImageClassification

    import karyohf  # noqa: F401

    torch.set_num_threads(threads)
    model = AutoModelForImageClassification.from_pretrained(run_dir).eval()
    height, width = getattr(model.config, "image_size", (128, 64))
    pixels = torch.randn(crops, 1, height, width)
    timings = []
    with torch.inference_mode():
        for _ in range(6):
            start = time.perf_counter()
            model(pixel_values=pixels)
            timings.append(time.perf_counter() - start)
    return 1000 * sorted(timings[1:])[len(timings[1:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1300, help="training steps of each variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--train-limit", type=int, default=None)
    args, extra = parser.parse_known_args()  # anything else goes to train_chromid.py unchanged
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for variant in args.variants:
        run_dir = args.output_dir / variant
        if not (run_dir / "metrics.json").exists():
            command = [sys.executable, str(TRAIN_CHROMID), "--variant", variant,
                       "--max-steps", str(args.steps), "--threads", str(args.threads), "--output-dir", str(run_dir), *extra]
            if args.train_limit:
                command += ["--train-limit", str(args.train_limit)]
            subprocess.run(command, check=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows[variant] = {
            "parameters": metrics["parameters"],
            "training_steps": metrics["training_steps"],
            "training_minutes": metrics["training_minutes"],
            "metaphase_top1": metrics["metaphase"]["top1"],
            "karyogram_top1": metrics["karyogram"]["top1"],
            "cpu_ms_per_46_crops": inference_ms_per_metaphase(run_dir, args.threads),
        }
    (args.output_dir / "comparison.json").write_text(json.dumps(rows, indent=2))
    lines = [f"| variant | parameters | steps | training minutes | metaphase top-1 | karyogram top-1 "
             f"| CPU ms / 46 crops ({args.threads} thread) |", "|---|---|---|---|---|---|---|"]
    for variant, row in rows.items():
        lines.append(f"| {variant} | {row['parameters']:,} | {row['training_steps']} | {row['training_minutes']} "
                     f"| {row['metaphase_top1']:.1%} "
                     f"| {row['karyogram_top1']:.1%} | {row['cpu_ms_per_46_crops']:.0f} |")
    (args.output_dir / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
