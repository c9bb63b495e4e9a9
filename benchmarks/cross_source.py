"""Cross-source test of cell normalisation: identity models trained on one collection only, scored on the other.

Our two collections come from different acquisitions (the karyogram crops' median chromosome is ~62 px, the
metaphase crops' ~86 px), so a model that never saw one is a stand-in for another lab's microscope. Four small
TopViTs (the `compare_chromid.py` geometry: 64 x 32 input, 4 layers, width 64; 167k parameters) are trained from
random init by `train/train_chromid.py --sources ...`, each on one collection: the previous recipe (native scale,
no wide-scale crops) and the shipped one (each cell rescaled to the reference length, a quarter of the crops at any
scale). Each is scored on both collections' validation crops (per crop, and with cell context). Runs whose folder
already holds metrics.json are read, not retrained.

    python benchmarks/cross_source.py [--runs runs/cross-source] [--threads 1]   # ~70 min on one core
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--stem-blocks", "0", "--image-size", "64", "32", "--layers", "4", "--patch-size", "8", "--hidden-size", "64",
         "--mlp-size", "128", "--minutes", "30"]
STEPS = {"metaphase": 3554, "karyogram": 2400}  # ~2.7 and ~7.5 passes over each collection's training crops
RECIPES = {"native": ["--native-scale", "--wide-scale-probability", "0"], "normalised": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "cross-source")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "cross_source.json")
    args = parser.parse_args()
    results = {}
    for source, steps in STEPS.items():
        for recipe, flags in RECIPES.items():
            folder = args.runs / f"{source}-only-{recipe}"
            if not (folder / "metrics.json").is_file():
                subprocess.run([sys.executable, str(ROOT / "train" / "train_chromid.py"), "--sources", source, *flags,
                                *SMALL, "--max-steps", str(steps), "--threads", str(args.threads),
                                "--output-dir", str(folder)], check=True)
            metrics = json.loads((folder / "metrics.json").read_text())
            results[f"{source} only, {recipe}"] = {
                "trained_on": source, "recipe": recipe, "steps": metrics["training_steps"],
                "parameters": metrics["parameters"],
                **{f"{scored} top1": round(metrics[scored]["top1"], 4) for scored in STEPS},
                **{f"{scored} top1 within cell": round(metrics[scored]["top1_within_cell"], 4) for scored in STEPS},
            }
    args.output.write_text(json.dumps({"what": __doc__.split("\n\n")[0], "runs": results}, indent=2))
    print("| trained on | recipe | steps | metaphase crops: per crop / cell | karyogram crops: per crop / cell |")
    print("|---|---|---|---|---|")
    for row in results.values():
        print(f"| {row['trained_on']} | {row['recipe']} | {row['steps']} | {row['metaphase top1']:.1%} / "
              f"{row['metaphase top1 within cell']:.1%} | {row['karyogram top1']:.1%} / "
              f"{row['karyogram top1 within cell']:.1%} |")


if __name__ == "__main__":
    main()
