"""`karyohf` command line.

    karyohf demo      identify the chromosomes of one held-out real metaphase and write its karyogram
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_IDENTIFIER = REPOSITORY / "checkpoints" / "topvit-chromid"


def demo(args: argparse.Namespace) -> int:
    """Held-out metaphase -> crops of its annotated boxes -> identities -> karyogram PNG.

    Detection and the Gradio app arrive with their own issues; until then the demo starts from the
    dataset's boxes and shows the identification stage end to end on a real image.
    """
    import numpy as np

    from .crops import extract_chromosome
    from .data import load_metaphases, split_metaphases
    from .identification import ChromosomeIdentifier
    from .karyogram import render_karyogram

    if not (Path(args.identifier) / "config.json").is_file():
        print(f"no identification checkpoint at {args.identifier}", file=sys.stderr)
        return 2
    validation = split_metaphases(load_metaphases())["validation"]
    ids = validation["image_id"]
    if args.image_id not in (None, *ids):
        print(f"image {args.image_id} is not in the validation split", file=sys.stderr)
        return 2
    metaphase = validation[ids.index(args.image_id) if args.image_id else 0]
    crops = [extract_chromosome(metaphase["image"], box) for box in metaphase["boxes"]]
    result = ChromosomeIdentifier.from_pretrained(str(args.identifier))(crops)
    names = result.label_names
    truth = [names[i] for i in metaphase["chromosomes"]]
    correct = int(np.sum(result.predictions == np.asarray(metaphase["chromosomes"])))
    print(f"metaphase {metaphase['image_id']} (validation split): {len(crops)} chromosomes, "
          f"{correct}/{len(crops)} identified correctly")
    for index, (predicted, true) in enumerate(zip(result.labels, truth)):
        if predicted != true:
            print(f"  box {index}: predicted {predicted}, annotated {true} (entropy {result.entropy[index]:.2f})")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    render_karyogram(crops, result.labels, scores=result.probabilities.max(-1)).save(output)
    print(f"karyogram written to {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karyohf", description="Automatic karyotyping with Hugging Face models")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help=demo.__doc__.splitlines()[0])
    demo_parser.add_argument("--image-id", help="a validation metaphase id (default: the first)")
    demo_parser.add_argument("--identifier", default=str(DEFAULT_IDENTIFIER), help="identification checkpoint")
    demo_parser.add_argument("--output", default="demo_output/karyogram.png")
    args = parser.parse_args(argv)
    return {"demo": demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
