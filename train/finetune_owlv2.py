"""Train the OWLv2 chromosome detector through `transformers.Trainer`, score it, and save model, processor and card.

    # Finetune the public checkpoint as the paper did (1000 steps, linear cooldown from 2e-5):
    python train/finetune_owlv2.py --init google/owlv2-base-patch16-ensemble --output-dir runs/owlv2-public
    # No checkpoint: a small OWLv2 from random initialisation, at a geometry that fits the budget:
    python train/finetune_owlv2.py --image-size 512 --vision-width 256 --vision-layers 6 \\
        --max-steps 20000 --output-dir runs/owlv2-chromosomes
    accelerate launch train/finetune_owlv2.py ...            # GPU(s), same script

The output folder holds what `ChromosomeDetector.from_pretrained` loads (config, safetensors,
processor with its tokenizer), a model card and metrics.json: AP50, AP50:95, recall, precision and
count error on the held-out specimens, beside the Otsu baseline on the same images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from karyohf.data import load_metaphases, split_metaphases, validation_metaphases
from karyohf.detection import ChromosomeDetector, OtsuBaselineDetector
from karyohf.detection.detector import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD
from karyohf.detection.evaluation import AP_SCORE_FLOOR, evaluate_detector, format_table
from karyohf.detection.owlv2 import ChromosomeDetectionLoss, DetectionCollator, load_owlv2, owlv2_from_scratch


# The target for the shipped detector, on the validation split.
TARGET_AP50, TARGET_COUNT_ERROR = 0.97, 1.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default=None, help="OWLv2 checkpoint (Hub id or folder) to finetune; default: random init")
    parser.add_argument("--output-dir", type=Path, required=True)
    geometry = parser.add_argument_group("from-scratch geometry (ignored with --init)")
    geometry.add_argument("--image-size", type=int, default=512)
    geometry.add_argument("--patch-size", type=int, default=16)
    geometry.add_argument("--vision-width", type=int, default=256)
    geometry.add_argument("--vision-layers", type=int, default=6)
    geometry.add_argument("--vision-heads", type=int, default=4)
    geometry.add_argument("--text-width", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4, help="per device")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: 2e-5 with --init, 3e-4 from scratch")
    parser.add_argument("--warmup-fraction", type=float, default=None, help="default: 0 with --init (the paper's), 0.05 from scratch")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--dense-box-weight", type=float, default=1.0, help="one-to-many box regression; 0 for Hungarian only")
    parser.add_argument("--no-augment", action="store_true", help="no random flips and quarter turns")
    parser.add_argument("--eval-steps", type=int, default=200)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--validation-limit", type=int, default=None, help="score on a seeded subset of the validation metaphases")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="operating point for counts")
    parser.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (decoding and resizing)")
    parser.add_argument("--data-root", default=None, help="data folder (default: $KARYOHF_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = 2e-5 if args.init else 3e-4
    if args.warmup_fraction is None:
        args.warmup_fraction = 0.0 if args.init else 0.05
    return args


def build_model(args):
    if args.init:
        return load_owlv2(args.init)
    return owlv2_from_scratch(
        image_size=args.image_size, patch_size=args.patch_size, vision_width=args.vision_width,
        vision_layers=args.vision_layers, vision_heads=args.vision_heads, text_width=args.text_width,
    )


def training_arguments(args, output_dir: str) -> TrainingArguments:
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=int(args.warmup_fraction * args.max_steps),
        weight_decay=args.weight_decay,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        prediction_loss_only=True,  # the detection metrics come after training, from the detector itself
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        label_names=["labels"],
        remove_unused_columns=False,  # the collator needs the image and boxes columns
        dataloader_num_workers=args.workers,
        seed=args.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
    )


def write_card(args, model, metrics: dict, baseline: dict, training: dict) -> None:
    vision = model.config.vision_config
    met = metrics["ap50"] >= TARGET_AP50 and metrics["count_error_median"] <= TARGET_COUNT_ERROR
    origin = (f"finetuned from `{args.init}`" if args.init
              else "trained from random initialisation (no public checkpoint was reachable); its geometry was "
                   "chosen for the training budget")
    card = f"""---
library_name: transformers
license: apache-2.0
pipeline_tag: zero-shot-object-detection
tags:
- karyotyping
- cytogenetics
- chromosome-detection
- owlv2
---

# {args.output_dir.name}: chromosome detection in metaphase images

An OWLv2 (`Owlv2ForObjectDetection`) that finds every chromosome in a G-banded metaphase for the
single text query "chromosomes". It is the detection stage of the karyohf pipeline (metaphase →
boxes → masks → identity → aberrations → karyotype), after Shamsi et al., *Automatic Karyotyping:
From Metaphase Image to Diagnostic Prediction*.

This model was {origin}.

## Use

```python
from karyohf.detection import ChromosomeDetector

detector = ChromosomeDetector.from_pretrained("{args.output_dir.name}")  # score_threshold=0.3, nms_iou=0.6
found = detector("metaphase.png")   # grayscale, RGB or 16-bit, any size
found.boxes, found.scores           # (N, 4) x0, y0, x1, y1 in the image's own pixels; (N,)
```

The query's text embedding is computed once per detector; each image costs one vision forward,
then a score threshold and non-maximum suppression. With plain transformers, pad the image at the
bottom and right to a square with white, then use `Owlv2Processor` and `Owlv2ForObjectDetection`.

## Geometry

| input | patch | patch tokens | vision width × layers | text width × layers | parameters |
|---|---|---|---|---|---|
| {vision.image_size} px square | {vision.patch_size} | {(vision.image_size // vision.patch_size) ** 2:,} | {vision.hidden_size} × {vision.num_hidden_layers} | {model.config.text_config.hidden_size} × {model.config.text_config.num_hidden_layers} | {model.num_parameters():,} |

## Training

Tseng et al. 2023 metaphases (Scientific Data 10:104), training split grouped by specimen,
{training['train_images']:,} images; random flips and quarter turns: {not args.no_augment}.
`transformers.Trainer` with a Hungarian-matching loss (sigmoid focal + L1 + GIoU, one class;
one-to-many box regression weight {args.dense_box_weight}), {training['steps']:,} steps of batch
{args.batch_size} per device, AdamW, learning rate {args.learning_rate:g} with linear cooldown,
{training['minutes']:.1f} minutes on {training['device']}.

## Results

Held-out specimens ({metrics['images']} metaphases, {metrics['chromosomes']:,} chromosomes). AP from
pycocotools over all detections scoring ≥ {AP_SCORE_FLOOR}; recall, precision and count error at
score ≥ {metrics['score_threshold']}, IoU 0.5.

{format_table({args.output_dir.name: metrics, "Otsu + connected components": baseline})}

Target (AP50 ≥ {TARGET_AP50}, median count error ≤ {TARGET_COUNT_ERROR:g}): **{"met" if met else "not met"}**.
"""
    (args.output_dir / "README.md").write_text(card)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    splits = split_metaphases(load_metaphases(args.data_root))
    train = splits["train"].shuffle(seed=args.seed)
    if args.train_limit:
        train = train.select(range(min(args.train_limit, len(train))))
    validation = validation_metaphases(args.validation_limit, args.data_root, args.seed)
    model, processor = build_model(args)
    print(f"{model.num_parameters():,} parameters; {len(train):,} training and {len(validation):,} validation metaphases")

    collator = DetectionCollator(processor, augment=not args.no_augment)
    loss = ChromosomeDetectionLoss(dense_box_weight=args.dense_box_weight)
    with tempfile.TemporaryDirectory(prefix="owlv2-trainer-") as scratch:  # save_strategy="no": nothing is kept there
        trainer = Trainer(model=model, args=training_arguments(args, scratch), train_dataset=train, eval_dataset=validation,
                          data_collator=collator, compute_loss_func=loss, processing_class=processor)
        started = time.time()
        trainer.train()
    minutes = (time.time() - started) / 60
    if not trainer.is_world_process_zero():
        return
    # Saved directly rather than by trainer.save_model, which adds training_args.bin to the checkpoint.
    trainer.model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)  # image processor and tokenizer

    detector = ChromosomeDetector(trainer.model.float(), processor, score_threshold=AP_SCORE_FLOOR, nms_iou=args.nms_iou)
    metrics = evaluate_detector(detector, validation, args.score_threshold)
    baseline = evaluate_detector(OtsuBaselineDetector(), validation, 0.0)
    training = {
        "init": args.init or "random",
        "steps": trainer.state.global_step,
        "minutes": round(minutes, 1),
        "train_images": len(train),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
        "log": trainer.state.log_history,
    }
    (args.output_dir / "metrics.json").write_text(json.dumps({"owlv2": metrics, "baseline": baseline, "training": training}, indent=2))
    write_card(args, trainer.model, metrics, baseline, training)
    print(format_table({args.output_dir.name: metrics, "otsu-baseline": baseline}))


if __name__ == "__main__":
    main()
