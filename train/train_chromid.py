"""Train a TopViT-family chromosome identifier (1-22, X, Y) on the real crops, evaluate it, save it.

Data: paper-format crops (`karyohf.crops.extract_chromosome`) of every annotated box of the
training metaphases plus the karyogram crops; validation on held-out specimens and cases of both.
Runs on 2 CPU cores or a GPU unchanged (HF Trainer on accelerate). Training length is set by a
wall-clock budget: a few timed steps fix the step count, so the LR schedule runs to completion.

    python train/train_chromid.py --minutes 80 --output-dir runs/chromid      # the shipped geometry on 2 CPU cores
    accelerate launch train/train_chromid.py ...            # GPU, same script

On a GPU machine without the raw data, train on crops packed here by `train/pack_training_data.py`
(`--train-crops DIR --workers 14`; the shipped recipe is `train/on_lent_gpu.sh chromid`), then score the result
here with `--evaluate-only --init DIR`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets, load_from_disk
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

import karyohf  # noqa: F401  (registers the Auto classes)
from karyohf.augmentation import OPTICS
from karyohf.cards import write_model_card
from karyohf.crops import REFERENCE_LENGTH
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.data import CROP_SOURCES, chromosome_crops
from karyohf.identification import EXTRA_COPY_COST, ChromosomeIdentifier, assign_within_cell
from karyohf.metrics import (
    accuracy_at_retention,
    confusion_matrix,
    entropy_curve,
    plot_confusion,
    plot_entropy_curve,
)
from karyohf.models.topvit import TopViTImageProcessor, TopViTConfig, TopViTForImageClassification
from karyohf.models.topvit.configuration_topvit import MIRROR_FLIPS
from karyohf.training import (
    CropCollator,
    Snapshots,
    WallClockGuard,
    average_weights,
    parse_checkpoint_arguments,
    seconds_per_step,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["softmax", "performer", "topvit", "resnet"], default="topvit",
                        help="TopViT attention type, or a transformers ResNet as the CNN baseline")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--init", help="continue from this checkpoint (path or Hub id) instead of random init")
    parser.add_argument("--minutes", type=float, default=80.0, help="wall-clock training budget")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="fixed step count instead of one timed from the budget (the budget still caps the run at 1.5x)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-fraction", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--image-size", type=int, nargs=2, default=(192, 96), metavar=("H", "W"))
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--patch-embedding", choices=["linear", "conv"], default="conv")
    parser.add_argument("--stem-blocks", type=int, default=1, help="residual blocks per conv-stem stage (hybrid ViT)")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-size", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.0, help="few epochs fit the budget: regularise by data, not dropout")
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training crops")
    parser.add_argument("--karyogram-repeats", type=int, default=1,
                        help="see each karyogram crop this many times per pass: that collection comes from another lab "
                             "and is under a quarter of the training crops")
    parser.add_argument("--sources", nargs="+", choices=CROP_SOURCES, default=list(CROP_SOURCES),
                        help="train only on crops of these collections (a cross-source test: score a model on the one "
                             "it never saw)")
    parser.add_argument("--validation-limit", type=int, default=None, help="score only this many validation crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (augmentation runs in them)")
    parser.add_argument("--native-scale", action="store_true",
                        help="train on crops at their native scale, as before; default: each cell's crops rescaled "
                             "together to the reference median length (karyohf.crops.REFERENCE_LENGTH)")
    parser.add_argument("--wide-scale-probability", type=float, default=0.25,
                        help="share of training crops drawn at any scale a lone crop may have (augmentation.WIDE_SCALE)")
    parser.add_argument("--optics", choices=sorted(OPTICS), default="standard",
                        help="how crops are re-imaged as other microscopes would (karyohf.augmentation.OPTICS)")
    parser.add_argument("--karyogram-optics", choices=sorted(OPTICS), default=None,
                        help="re-image the karyogram crops by this recipe instead of --optics (default: the same)")
    parser.add_argument("--train-crops", type=Path, default=None,
                        help="train on these packed crops (train/pack_training_data.py); skips evaluation, which "
                             "needs the raw data")
    args = parse_checkpoint_arguments(parser, argv, MIRROR_FLIPS)
    if args.karyogram_repeats < 1:
        parser.error(f"--karyogram-repeats must be at least 1, got {args.karyogram_repeats}")
    return args


def build_model(args):
    """The TopViT variant asked for, or a small transformers ResNet (the paper's CNN baseline), and the processor,
    which records whether the model reads cell-normalised crops."""
    model, processor = _model_and_processor(args)
    if not args.evaluate_only:  # an evaluated checkpoint keeps what it was trained on
        processor.cell_reference_length = None if args.native_scale else REFERENCE_LENGTH
    return model, processor


def _model_and_processor(args):
    if args.init:
        return (AutoModelForImageClassification.from_pretrained(args.init),
                AutoImageProcessor.from_pretrained(args.init, backend="pil"))
    labels = dict(enumerate(CHROMOSOMES))
    if args.variant == "resnet":
        config = ResNetConfig(
            num_channels=1, embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
            layer_type="basic", id2label=labels, label2id={v: k for k, v in labels.items()},
        )
        model = ResNetForImageClassification(config)
    else:
        config = TopViTConfig(
            image_size=tuple(args.image_size),
            patch_size=args.patch_size,
            patch_embedding=args.patch_embedding,
            conv_stem_blocks=args.stem_blocks,
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.mlp_size,
            hidden_dropout_prob=args.dropout,
            attention_probs_dropout_prob=args.dropout,
            attention_type=args.variant,
        )
        model = TopViTForImageClassification(config)
    processor = TopViTImageProcessor(size={"height": args.image_size[0], "width": args.image_size[1]})
    return model, processor


def evaluate(identifier: ChromosomeIdentifier, dataset, output_dir: Path) -> dict:
    """Top-1 per source, entropy filter, confusion matrix, per-class accuracy with cell context; writes the figures
    next to metrics.json. A model of cell-normalised crops is scored on them, and on the native-scale crops too (a
    crop identified without its cell)."""
    native = dataset["image"]
    normalised = identifier.cell_reference_length is not None
    if normalised:
        result = identifier(identifier.model_inputs(native, dataset["cell_scale"]))
        alone = identifier(native)
    else:
        result = alone = identifier(native)
    labels = np.asarray(dataset["chromosome"])
    sources = np.asarray(dataset["source"])
    cells = np.asarray(dataset["cell_id"])
    within_cell = np.empty_like(labels)
    for cell in np.unique(cells):  # cell ids are unique across both collections
        members = np.nonzero(cells == cell)[0]
        within_cell[members] = assign_within_cell(result.probabilities[members], result.label_names)
    metrics, curves = {}, {}
    for source in CROP_SOURCES:
        chosen = sources == source
        if not chosen.any():
            continue
        probabilities, truth = result.probabilities[chosen], labels[chosen]
        curve = entropy_curve(probabilities, truth)
        curves[f"{source} crops"] = curve
        metrics[source] = {
            "crops": int(chosen.sum()),
            "top1": float((probabilities.argmax(-1) == truth).mean()),
            "top1_within_cell": float((within_cell[chosen] == truth).mean()),
            "top1_most_confident_90pct": accuracy_at_retention(curve, 0.9),
            "top1_most_confident_95pct": accuracy_at_retention(curve, 0.95),
            "top1_native_scale_alone": float((alone.probabilities[chosen].argmax(-1) == truth).mean()),
            "cell_normalised": normalised,
            "per_class_within_cell": {name: float((within_cell[chosen][truth == k] == k).mean())
                                      for k, name in enumerate(result.label_names) if (truth == k).any()},
        }
        plot_confusion(confusion_matrix(truth, probabilities.argmax(-1)), output_dir / f"confusion_{source}.png",
                       f"validation {source} crops: top-1 {metrics[source]['top1']:.3f}")
    plot_entropy_curve(curves, output_dir / "entropy_curve.png")
    (output_dir / "entropy_curves.json").write_text(json.dumps(curves))
    return metrics


AVERAGED_RECORD = ("initialised_from", "training_steps", "batch_size", "training_minutes", "device")


def provenance(metrics: dict) -> str:
    """Where the weights come from beyond the last run, for the card: its starting point and any averaging."""
    text = "" if metrics["initialised_from"] == "random" else f" Continued from `{metrics['initialised_from']}`."
    other = metrics.get("averaged_with")
    if other:
        trained = (f" ({other['training_steps']} steps of batch {other['batch_size']}, {other['training_minutes']} "
                   f"minutes on {other['device']}, from {other['initialised_from']} init)" if "training_steps" in other else "")
        partner = "start" if other["checkpoint"] == metrics["initialised_from"] else f"`{other['checkpoint']}`"
        text += (f" The shipped weights are the uniform average of that run's end and its {partner}{trained} "
                 "(`--average-with`, a two-member model soup).")
    return text


def input_scale(reference: float | None, metrics: dict) -> str:
    """The card's account of the scale the model reads crops at."""
    if reference is None:
        return ("Crops are read **at their native pixel scale** (length is the strongest identity cue, so crops are "
                "never stretched to fill the frame).")
    wide = metrics.get("wide_scale_probability", 0.0)
    return (f"Each cell's chromosomes are rescaled **together** so that the cell's median chromosome is {reference:g} px "
            "long (`cell_reference_length` in preprocessor_config.json; `karyohf.crops.cell_scale` and "
            "`rescale_chromosome`): relative length, not the microscope's magnification, is what the model reads. "
            "`ChromosomeIdentifier.identify_cell(chromosomes)` and the karyohf pipeline do this for a cell; scoring "
            "`model(**processor(crop))` on a crop alone reads it at its native scale. "
            f"{wide:.0%} of training crops were drawn at any scale from 0.6x to 2x the normalised size, so a lone "
            "crop degrades gracefully; the last column of the table below is what that path scores.")


def optics_augmentation(metrics: dict) -> str:
    """The card's account of the last run's re-imaging (`karyohf.augmentation.OPTICS`; runs before the flag existed
    used the standard optics)."""
    name = metrics.get("optics", "standard")
    karyogram = metrics.get("karyogram_optics", name)
    text = (f"{OPTICS[name].describe()}, then brought back, as a microscope of less resolution would image them "
            f"(`karyohf.augmentation.reimage`, the `{name}` optics)")
    if karyogram != name:
        text += (f"; karyogram crops instead by the `{karyogram}` optics "
                 f"({OPTICS[karyogram].describe().replace(' of crops', '')})")
    return text


def karyogram_repeats(metrics: dict) -> str:
    repeats = metrics.get("karyogram_repeats", 1)
    return f" Karyogram crops were seen {repeats} times per pass over the metaphase crops." if repeats > 1 else ""


VIEW_NAMES = {"horizontal": "left-right mirrored", "vertical": "top-bottom mirrored", "both": "half-turned"}


def write_card(args, model, processor, metrics: dict) -> None:
    rows, verdicts, all_met = [], [], True
    reference = getattr(processor, "cell_reference_length", None)
    for source in ("metaphase", "karyogram"):
        if source in metrics:
            m = metrics[source]
            alone = f" {m['top1_native_scale_alone']:.1%} |" if "top1_native_scale_alone" in m else " |"
            rows.append(f"| {source} | {m['crops']:,} | {m['top1']:.1%} | {m['top1_most_confident_90pct']:.1%} "
                        f"| {m['top1_most_confident_95pct']:.1%} | {m['top1_within_cell']:.1%} |{alone}")
            met = m["top1"] >= 0.97 and m["top1_most_confident_90pct"] >= 0.995
            all_met &= met
            verdicts.append(f"**{'Met' if met else 'Not yet met'}** on {source} crops ({round(m['top1'] * m['crops']):,} "
                            f"of {m['crops']:,} right, {m['top1']:.3%}; {m['top1_most_confident_90pct']:.2%} keeping "
                            "the 90% most confident).")
    shortfall = " ".join(verdicts) + ("" if all_met else " docs/models.md says what would close the gap.")
    config = model.config
    write_model_card(
        args.output_dir, "topvit-chromid", name=args.output_dir.name, repo_id=f"karyohf/{args.output_dir.name}",
        attention_type=config.attention_type, parameters=model.num_parameters(), image_height=config.image_size[0],
        image_width=config.image_size[1], layers=config.num_hidden_layers, hidden_size=config.hidden_size,
        heads=config.num_attention_heads, mlp_size=config.intermediate_size, patch_size=config.patch_size,
        patch_embedding=config.patch_embedding, stem_blocks=config.conv_stem_blocks, tokens=config.grid_size[0] * config.grid_size[1],
        training_crops=metrics["training_crops"], training_steps=metrics["training_steps"], batch_size=metrics["batch_size"],
        training_minutes=metrics["training_minutes"], device=metrics["device"], provenance=provenance(metrics),
        results_table="\n".join(rows), input_scale=input_scale(reference, metrics),
        optics=optics_augmentation(metrics), karyogram_repeats=karyogram_repeats(metrics),
        shortfall=shortfall, extra_copy_cost=EXTRA_COPY_COST,
        test_time_flips=(f"its {' and '.join(VIEW_NAMES[flip] for flip in config.test_time_flips)} copy also scored and "
                         "the log-probabilities averaged (`test_time_flips` in config.json; `[]` scores one view, "
                         "at a fraction of the cost)" if config.test_time_flips else "one view per crop"),
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        model, processor = build_model(args)
        record = {k: v for k, v in json.loads((Path(args.init) / "metrics.json").read_text()).items()
                  if k not in ("metaphase", "karyogram")}
    else:
        model, processor, record = train(args)
    if args.average_with:
        average_weights(model, [AutoModelForImageClassification.from_pretrained(args.average_with)])
        other = json.loads((Path(args.average_with) / "metrics.json").read_text())
        record["averaged_with"] = {"checkpoint": args.average_with, **{key: other[key] for key in AVERAGED_RECORD if key in other}}
    if args.test_time_flips is not None:
        model.config.test_time_flips = tuple(args.test_time_flips)
    model = model.float().cpu().eval()
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    if args.train_crops:  # no raw data here to score on
        (args.output_dir / "metrics.json").write_text(json.dumps(record, indent=2))
        return
    validation_crops = chromosome_crops("validation")
    if args.validation_limit:
        validation_crops = validation_crops.shuffle(seed=args.seed).select(range(min(args.validation_limit, len(validation_crops))))
    metrics = evaluate(ChromosomeIdentifier(model, processor), validation_crops, args.output_dir)
    metrics.update(record)
    (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if metrics["variant"] != "resnet":  # only the TopViT family ships as a checkpoint
        write_card(args, model, processor, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "log"}, indent=2))


def train(args):
    """Train from --init or scratch; returns the trained model, its processor and the training record."""
    train_crops = load_from_disk(str(args.train_crops)) if args.train_crops else chromosome_crops("train")
    if set(args.sources) != set(CROP_SOURCES):
        if "source" not in train_crops.column_names:
            raise ValueError("--sources needs each crop's source: train on the raw data, not on packed crops")
        train_crops = train_crops.filter(lambda source: source in args.sources, input_columns="source")
    if (args.karyogram_repeats > 1 or args.karyogram_optics) and "source" not in train_crops.column_names:
        raise ValueError("--karyogram-repeats or --karyogram-optics needs each crop's source: train on the raw data, "
                         "not on packed crops")
    if args.karyogram_repeats > 1:
        karyogram = train_crops.filter(lambda source: source == "karyogram", input_columns="source")
        train_crops = concatenate_datasets([train_crops] + [karyogram] * (args.karyogram_repeats - 1))
    train_crops = train_crops.shuffle(seed=args.seed)
    if args.train_limit:
        train_crops = train_crops.select(range(min(args.train_limit, len(train_crops))))
    model, processor = build_model(args)
    variant = getattr(model.config, "attention_type", args.variant)
    train_collator = CropCollator(processor, augment=True, seed=args.seed, normalise_cells=not args.native_scale,
                                  wide_scale_probability=args.wide_scale_probability, optics=OPTICS[args.optics],
                                  source_optics={"karyogram": OPTICS[args.karyogram_optics]} if args.karyogram_optics else None)
    steps = args.max_steps or max(50, int(args.minutes * 60 / seconds_per_step(model, train_collator, train_crops, args.batch_size, args.workers)))
    print(f"{model.num_parameters():,} parameters; {len(train_crops):,} training crops; {steps} steps")

    on_gpu = torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(args.output_dir / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=int(args.warmup_fraction * steps),
        lr_scheduler_type="cosine",
        label_smoothing_factor=args.label_smoothing,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=args.workers,
        dataloader_persistent_workers=args.workers > 0,
        seed=args.seed,
        use_cpu=not on_gpu,
        tf32=on_gpu or None,  # full-precision weights: the Toeplitz mask exp(f) is not checked in bf16
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_crops, data_collator=train_collator)
    trainer.add_callback(WallClockGuard(args.minutes))
    if args.snapshot_minutes:
        trainer.add_callback(Snapshots(args.output_dir, processor, args.snapshot_minutes))
    started = time.time()
    trainer.train()
    record = dict(
        variant=variant,
        initialised_from=args.init or "random",
        parameters=model.num_parameters(),
        training_steps=trainer.state.global_step,
        training_minutes=round((time.time() - started) / 60, 1),
        training_crops=len(train_crops),
        karyogram_repeats=args.karyogram_repeats,
        sources=sorted(args.sources),
        batch_size=args.batch_size,
        cell_normalised=not args.native_scale,
        wide_scale_probability=args.wide_scale_probability,
        optics=args.optics,
        karyogram_optics=args.karyogram_optics or args.optics,
        device=torch.cuda.get_device_name() if on_gpu else f"cpu x{torch.get_num_threads()}",
        log=trainer.state.log_history,
    )
    return trainer.model, processor, record


if __name__ == "__main__":
    main()
