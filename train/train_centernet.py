"""Train the CenterNet chromosome detector from scratch through `transformers.Trainer`, score it, save it.

The convolutional alternative to OWLv2 that the detection issue allows when a from-scratch ViT cannot reach the
target on the budget: same data, same split (held-out specimens), same `ChromosomeDetector` API and evaluation.

    python train/train_centernet.py --minutes 60 --output-dir checkpoints/centernet-chromosomes   # the shipped recipe
    accelerate launch train/train_centernet.py ...            # GPU(s), same script

On a GPU machine without the raw data, train on metaphases packed here by `train/pack_training_data.py`
(`--train-metaphases DIR --workers 14`), then score the result here with `--evaluate-only --init DIR`.

Training images are shrunk once (cached by `datasets`) and then varied on the fly: a flip or quarter turn, zoom
0.8-1.25x, a random crop of the model-scale metaphase (the padded square at --image-size, or with
--chromosome-length the scale that gives its median chromosome that length, as `ChromosomeDetector` will), exposure. The output folder holds what
`ChromosomeDetector.from_pretrained` loads (config, safetensors, processor config), a model card and metrics.json
(AP50, AP50:95, recall, precision, count error on the held-out specimens beside the Otsu baseline on the same images).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from transformers import AutoModelForObjectDetection, Trainer, TrainingArguments, set_seed

import karyohf  # noqa: F401  (registers the Auto classes)
from karyohf.cards import write_model_card
from karyohf.data import load_metaphases, split_metaphases, validation_metaphases
from karyohf.detection import ChromosomeDetector, OtsuBaselineDetector
from karyohf.detection.centernet import PASTE_PROBABILITY, CenterNetCollator, shrink_metaphase
from karyohf.detection.detector import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD
from karyohf.detection.evaluation import AP_SCORE_FLOOR, evaluate_detector, format_table
from karyohf.models.centernet import (
    MIRROR_FLIPS,
    CenterNetConfig,
    CenterNetForObjectDetection,
    CenterNetImageProcessor,
)
from karyohf.training import Snapshots, WallClockGuard, average_weights, parse_checkpoint_arguments, seconds_per_step


TARGET_AP50, TARGET_COUNT_ERROR = 0.97, 1.0
# Off-peak decoding on the shipped weights: 0.3-0.7 all gave validation AP50 0.984-0.985 (peaks only 0.967); at 0.5
# off-peak cells need heat 0.6 to pass the 0.3 operating point, which keeps precision.
DEFAULT_OFF_PEAK_WEIGHT = 0.5


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--init", default=None, help="a CenterNet checkpoint to continue from; default: random init")
    geometry = parser.add_argument_group("geometry (ignored with --init)")
    geometry.add_argument("--image-size", type=int, default=512)
    geometry.add_argument("--stage-channels", type=int, nargs="+", default=[32, 64, 96, 128])
    geometry.add_argument("--stage-blocks", type=int, nargs="+", default=[1, 1, 2, 1])
    geometry.add_argument("--neck-channels", type=int, default=48)
    geometry.add_argument("--head-channels", type=int, default=32)
    parser.add_argument("--crop-size", type=int, default=384, help="training crops of the model-scale metaphase")
    parser.add_argument("--chromosome-length", type=float, default=None,
                        help="model scale: each metaphase resized so its median chromosome is this many input pixels "
                             "long, in training crops and at inference (`config.chromosome_length`; 0 turns it off: "
                             "the padded square resized to --image-size); default: the --init checkpoint's setting")
    parser.add_argument("--off-peak-weight", type=unit_interval, default=None,
                        help="inference setting saved in the config: heatmap cells off the peaks also propose boxes, at "
                             "their heat times this weight, before non-maximum suppression (`config.off_peak_weight`; "
                             "0: peaks only); default: keep the --init checkpoint's, or 0.5 from scratch")
    parser.add_argument("--paste-probability", type=unit_interval, default=PASTE_PROBABILITY,
                        help="share of training crops given up to three more touching or crossing pairs "
                             "(karyohf.detection.centernet.paste_overlapping_chromosomes); the shipped weights predate it")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--max-steps", type=int, default=None, help="default: as many as --minutes allows")
    parser.add_argument("--batch-size", type=int, default=8, help="per device")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--warmup-fraction", type=float, default=0.03)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--validation-limit", type=int, default=None, help="score on a seeded subset of the validation metaphases")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="operating point for counts")
    parser.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--data-root", default=None, help="data folder (default: $KARYOHF_DATA or ../shared/data)")
    parser.add_argument("--train-metaphases", type=Path, default=None,
                        help="train on these packed metaphases (train/pack_training_data.py); skips evaluation, "
                             "which needs the raw data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parse_checkpoint_arguments(parser, argv, MIRROR_FLIPS)


def build_model(args) -> tuple[CenterNetForObjectDetection, CenterNetImageProcessor]:
    if args.init:
        model = AutoModelForObjectDetection.from_pretrained(args.init)
        processor = CenterNetImageProcessor.from_pretrained(args.init)
    else:
        config = CenterNetConfig(image_size=args.image_size, stage_channels=args.stage_channels,
                                 stage_blocks=args.stage_blocks, neck_channels=args.neck_channels,
                                 head_channels=args.head_channels, off_peak_weight=DEFAULT_OFF_PEAK_WEIGHT)
        model, processor = CenterNetForObjectDetection(config), CenterNetImageProcessor(size=args.image_size)
    if args.chromosome_length is not None:
        model.config.chromosome_length = args.chromosome_length or None
    return model, processor


def training_arguments(args, output_dir: str, max_steps: int) -> TrainingArguments:
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=int(args.warmup_fraction * max_steps),
        weight_decay=args.weight_decay,
        max_grad_norm=10.0,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        label_names=["labels"],
        remove_unused_columns=False,  # the collator needs the image and boxes columns
        dataloader_num_workers=args.workers,
        dataloader_persistent_workers=args.workers > 0,
        seed=args.seed,
        use_cpu=not on_gpu,
        tf32=on_gpu or None,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        model, processor = build_model(args)
        training = json.loads((Path(args.init) / "metrics.json").read_text())["training"]
    else:
        model, processor, training = train(args)
        if model is None:  # not the main process of a multi-GPU run
            return
    if args.average_with:
        average_weights(model, [CenterNetForObjectDetection.from_pretrained(args.average_with)])
        training["averaged_with"] = args.average_with
    if args.test_time_flips is not None:
        model.config.test_time_flips = tuple(args.test_time_flips)
    if args.off_peak_weight is not None:
        model.config.off_peak_weight = args.off_peak_weight
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    if args.train_metaphases:  # no raw data here to score on
        (args.output_dir / "metrics.json").write_text(json.dumps({"training": training}, indent=2))
        return
    validation = validation_metaphases(args.validation_limit, args.data_root, args.seed)
    score_and_describe(args, model.float().eval(), processor, validation, training)


def train(args):
    """Train from --init or scratch; returns the model (None off the main process), processor and the record."""
    model, processor = build_model(args)
    chromosome_length = model.config.chromosome_length
    if args.train_metaphases:  # packed already shrunk
        train_set = load_from_disk(str(args.train_metaphases))
    else:
        train_set = split_metaphases(load_metaphases(args.data_root))["train"]
        train_set = train_set.map(shrink_metaphase, fn_kwargs={"image_size": processor.size,
                                                               "chromosome_length": chromosome_length},
                                  desc="shrinking training metaphases")
    train_set = train_set.shuffle(seed=args.seed)
    collator = CenterNetCollator(processor, augment=True, crop_size=args.crop_size, chromosome_length=chromosome_length,
                                 paste_probability=args.paste_probability, seed=args.seed)
    max_steps = args.max_steps or max(
        50, int(args.minutes * 60 / seconds_per_step(model, collator, train_set, args.batch_size, args.workers)))
    print(f"{model.num_parameters():,} parameters; {len(train_set):,} training metaphases; {max_steps:,} steps")
    with tempfile.TemporaryDirectory(prefix="centernet-trainer-") as scratch:  # save_strategy="no": nothing is kept there
        trainer = Trainer(model=model, args=training_arguments(args, scratch, max_steps), train_dataset=train_set,
                          data_collator=collator)
        trainer.add_callback(WallClockGuard(args.minutes))
        if args.snapshot_minutes:
            trainer.add_callback(Snapshots(args.output_dir, processor, args.snapshot_minutes))
        started = time.time()
        trainer.train()
    training = {
        "init": args.init or "random",
        "steps": trainer.state.global_step,
        "minutes": round((time.time() - started) / 60, 1),
        "train_images": len(train_set),
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "paste_probability": args.paste_probability,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
        "log": trainer.state.log_history,
    }
    return (trainer.model if trainer.is_world_process_zero() else None), processor, training


def score_and_describe(args, model, processor, validation, training: dict) -> None:
    """Held-out detection metrics beside the Otsu baseline -> metrics.json and the model card."""
    detector = ChromosomeDetector(model, processor, score_threshold=AP_SCORE_FLOOR, nms_iou=args.nms_iou)
    metrics = evaluate_detector(detector, validation, args.score_threshold)
    rows, record = {args.output_dir.name: metrics}, {"centernet": metrics}
    config = model.config
    if any(config.box_offset):  # what the annotations' margin convention adds, on the same boxes
        detector.box_offset = np.zeros(4, dtype=np.float32)
        rows[f"{args.output_dir.name}, without box offset"] = record["centernet_without_box_offset"] = (
            evaluate_detector(detector, validation, args.score_threshold))
    if config.off_peak_weight:  # what the off-peak boxes add, on the same weights
        detector.off_peak_weight = 0.0
        rows[f"{args.output_dir.name}, heatmap peaks only"] = record["centernet_peaks_only"] = evaluate_detector(
            detector, validation, args.score_threshold)
    baseline = evaluate_detector(OtsuBaselineDetector(), validation, 0.0)
    rows["Otsu + connected components"] = baseline
    (args.output_dir / "metrics.json").write_text(
        json.dumps({**record, "baseline": baseline, "training": training}, indent=2))
    write_model_card(
        args.output_dir, "chromosome-detector",
        name=args.output_dir.name, parameters=f"{model.num_parameters():,}",
        input_size=(f"square whose side makes the median chromosome {config.chromosome_length:g} px "
                    f"(measured at {config.image_size} px)" if config.chromosome_length else f"{config.image_size} px square"),
        stage_channels=" / ".join(map(str, config.stage_channels)), stage_blocks=" / ".join(map(str, config.stage_blocks)),
        neck_channels=config.neck_channels, head_channels=config.head_channels, crop_size=training["crop_size"],
        steps=f"{training['steps']:,}", batch_size=training["batch_size"],
        learning_rate=f"{training['learning_rate']:g}", minutes=f"{training['minutes']:.0f}", device=training["device"],
        train_images=f"{training['train_images']:,}", validation_images=metrics["images"], nms_iou=args.nms_iou,
        init="random initialisation" if training["init"] == "random" else f"`{training['init']}`, continued",
        provenance=(f" The shipped weights are the uniform average of that run's end and `{training['averaged_with']}` "
                    "(`--average-with`, a two-member model soup)." if "averaged_with" in training else ""),
        validation_chromosomes=f"{metrics['chromosomes']:,}", ap_floor=AP_SCORE_FLOOR,
        score_threshold=args.score_threshold,
        input_scale=(f"resized so that its chromosomes' median length is {config.chromosome_length:g} input pixels "
                     f"(measured in one plain forward at {config.image_size} px; `chromosome_length` in config.json, "
                     "pass `chromosome_length=0` to `ChromosomeDetector` for the fixed square)"
                     if config.chromosome_length else f"resized to {config.image_size} px"),
        test_time_flips=(f"averaged with its {' + '.join(config.test_time_flips)} mirror image(s) (`test_time_flips` in "
                         "config.json; pass `test_time_flips=()` to `ChromosomeDetector` for one plain forward)"
                         if config.test_time_flips else "one forward per image, no test-time flips"),
        decoding=(f"decoded as its heatmap peaks plus every other cell's box at {config.off_peak_weight:g} × its heat "
                  "(`off_peak_weight` in config.json; pass `off_peak_weight=0` to `ChromosomeDetector` for peaks only)"
                  if config.off_peak_weight else "decoded as its heatmap peaks"),
        box_offset=(f", every box then moved by ({', '.join(f'{v:g}' for v in config.box_offset)}) px at x0, y0, x1, y1 "
                    "(`box_offset` in config.json, fitted by `train/fit_box_offset.py`: the margin the annotators drew "
                    "wider above and left of each chromosome, which flips in training average away; pass "
                    "`box_offset=(0, 0, 0, 0)` for centred boxes)" if any(config.box_offset) else ""),
        results_table=format_table(rows),
        ap_status="met" if metrics["ap50"] >= TARGET_AP50 else "not met",
        count_status="met" if metrics["count_error_median"] <= TARGET_COUNT_ERROR else "not met",
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
