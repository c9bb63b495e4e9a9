"""`karyohf` command line.

    karyohf demo      one held-out real metaphase: detect, segment, identify, screen for aberrations, karyogram
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPOSITORY / "checkpoints"
DEFAULT_IDENTIFIER = CHECKPOINTS / "topvit-chromid"
DEFAULT_DETECTOR = CHECKPOINTS / "owlv2-chromosomes"
# Aberration heads and the chromosomes each screens.
DEFAULT_HEADS = {CHECKPOINTS / "topvit-del5q": ("5",), CHECKPOINTS / "topvit-t9-22": ("9", "22")}
MASK_TINT = (255, 190, 60)  # the segmentation masks, blended into the boxes overlay


def demo(args: argparse.Namespace) -> int:
    """Held-out metaphase -> boxes (the shipped detector, or the annotated boxes without one) -> masks (shown) and
    crops -> identities -> aberration heads on 5, 9 and 22 -> karyogram PNG and a boxes-and-masks overlay."""
    import numpy as np
    from PIL import Image, ImageDraw

    from .crops import extract_chromosome
    from .data import load_metaphases, split_metaphases
    from .detection import ChromosomeDetector
    from .detection.evaluation import count_matches
    from .identification import ChromosomeIdentifier
    from .images import as_gray_uint8
    from .karyogram import render_karyogram
    from .segmentation import ThresholdSegmenter

    if not (Path(args.identifier) / "config.json").is_file():
        print(f"no identification checkpoint at {args.identifier}", file=sys.stderr)
        return 2
    validation = split_metaphases(load_metaphases())["validation"]
    ids = validation["image_id"]
    if args.image_id not in (None, *ids):
        print(f"image {args.image_id} is not in the validation split", file=sys.stderr)
        return 2
    metaphase = validation[ids.index(args.image_id) if args.image_id else 0]
    gray = as_gray_uint8(metaphase["image"])
    annotated = np.asarray(metaphase["boxes"], dtype=np.float32)
    if (Path(args.detector) / "config.json").is_file():
        boxes = ChromosomeDetector.from_pretrained(args.detector)(gray).boxes
        print(f"metaphase {metaphase['image_id']} (validation split): detected {len(boxes)} chromosomes, "
              f"{len(annotated)} annotated, {count_matches(boxes, annotated)} matched at IoU 0.5")
    else:
        boxes = annotated
        print(f"no detector at {args.detector}: using the {len(boxes)} annotated boxes")
    if len(boxes) == 0:
        print("no chromosomes found in this metaphase: nothing to identify", file=sys.stderr)
        return 1
    masks = ThresholdSegmenter()(gray, boxes)
    # Cut each box on its own, as the identity model's and the heads' training crops were: crops from the
    # metaphase-wide masks cost the shipped identity model ~3 points of top-1 (benchmarks/crop_sources.py).
    crops = [extract_chromosome(gray, box) for box in boxes]
    result = ChromosomeIdentifier.from_pretrained(str(args.identifier))(crops)
    # The crops are one cell: label them jointly (two copies per autosome expected), as a karyogram is arranged.
    labels = [result.label_names[i] for i in result.within_cell()]
    counts = {name: labels.count(name) for name in result.label_names if labels.count(name)}
    print("chromosomes per class: " + ", ".join(f"{name}:{n}" for name, n in counts.items()))
    screen_aberrations(crops, labels)

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    render_karyogram(crops, labels, scores=result.probabilities.max(-1)).save(output)
    overlay = np.asarray(metaphase["image"].convert("RGB")).copy()
    masked = masks.any(0)
    overlay[masked] = (0.6 * overlay[masked] + 0.4 * np.array(MASK_TINT)).astype(np.uint8)
    overlay = Image.fromarray(overlay)
    draw = ImageDraw.Draw(overlay)
    for box, label in zip(boxes, labels):
        draw.rectangle([float(v) for v in box], outline=(220, 30, 30), width=2)
        draw.text((float(box[0]) + 2, float(box[1]) + 1), label, fill=(20, 20, 200))
    overlay.save(output.with_name("boxes.png"))
    print(f"karyogram written to {output}, boxes and masks to {output.with_name('boxes.png')}")
    return 0


def screen_aberrations(crops, labels: list[str]) -> None:
    """Run each shipped aberration head on the chromosomes of its classes and print P(aberrant)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from .aberrations import aberration_probabilities

    for folder, classes in DEFAULT_HEADS.items():
        chosen = [k for k, label in enumerate(labels) if label in classes]
        if not (folder / "config.json").is_file() or not chosen:
            continue
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        processor = AutoImageProcessor.from_pretrained(folder)
        probabilities = aberration_probabilities(model, processor, [crops[k] for k in chosen])
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        for k, row in zip(chosen, probabilities):
            call = names[int(row.argmax())]
            print(f"  chromosome {labels[k]} (box {k}): {folder.name} says {call} (P(aberrant) {1 - row[0]:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karyohf", description="Automatic karyotyping with Hugging Face models")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help=demo.__doc__.splitlines()[0])
    demo_parser.add_argument("--image-id", help="a validation metaphase id (default: the first)")
    demo_parser.add_argument("--identifier", default=str(DEFAULT_IDENTIFIER), help="identification checkpoint")
    demo_parser.add_argument("--detector", default=str(DEFAULT_DETECTOR), help="detector checkpoint")
    demo_parser.add_argument("--output", default="demo_output/karyogram.png")
    args = parser.parse_args(argv)
    return {"demo": demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
