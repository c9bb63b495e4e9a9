"""Training aberration heads: a new head on the identity model, finetuned through the Trainer, or a LoRA adapter.

Each head is a `TopViTForImageClassification` whose labels are "normal" plus the aberrations it knows (e.g.
["normal", "del(5q)"], or ["normal", "der(9)t(9;22)", "der(22)t(9;22)"]; `karyohf.aberrations.labels`), so it loads,
runs and finetunes like any transformers image classifier. The paper's recipe starts it from the identity model
(`checkpoints/topvit-chromid`): the backbone already reads banding, only the head is new, and a small learning rate
adapts the rest. The same geometry from random initialisation is the comparison (`pretrained=False`).

Training code: the pipeline never imports this module. Its data comes from `karyohf.synthesis`; the trained head
runs as `karyohf.aberrations.AberrationHead`.
"""

from __future__ import annotations

import tempfile

import torch
from transformers import Trainer, TrainingArguments

from .aberrations.labels import NORMAL
from .augmentation import STANDARD_OPTICS, Optics
from .models.topvit import TopViTConfig, TopViTForImageClassification, TopViTImageProcessor
from .training import CropCollator

# Learning rates per start: the pretrained backbone needs only nudging, a random one must learn banding first.
FINETUNE_LEARNING_RATE = 3e-4
SCRATCH_LEARNING_RATE = 1e-3
# Attention projections of every TopViT layer: where LoRA adapts the identity backbone.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def aberration_classifier(
    label_names: list[str], identity_checkpoint: str, pretrained: bool = True
) -> tuple[TopViTForImageClassification, TopViTImageProcessor]:
    """A head over `label_names` (first "normal") with the identity checkpoint's geometry and processor; its backbone
    weights too when `pretrained` (the 24-way classifier is dropped, a new one initialised)."""
    if not label_names or label_names[0] != NORMAL or len(set(label_names)) != len(label_names):
        raise ValueError(f'label_names must start with "{NORMAL}" and be distinct, got {label_names}')
    labels = {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}
    processor = TopViTImageProcessor.from_pretrained(identity_checkpoint)
    if pretrained:
        model = TopViTForImageClassification.from_pretrained(
            identity_checkpoint, ignore_mismatched_sizes=True, **labels
        )
    else:
        config = TopViTConfig.from_pretrained(identity_checkpoint, **labels)
        model = TopViTForImageClassification(config)
    return model, processor


def train_aberration_classifier(
    model: TopViTForImageClassification,
    processor: TopViTImageProcessor,
    train_dataset,
    steps: int,
    learning_rate: float,
    batch_size: int = 32,
    seed: int = 0,
    log_steps: int = 0,
    wide_scale_probability: float = 0.1,
    optics: Optics = STANDARD_OPTICS,
) -> TopViTForImageClassification:
    """Train on an aberration dataset (`image`, integer `label`, `cell_scale`) with the identity model's augmentation,
    through the Trainer (warmup, cosine decay); returns the model in eval mode on the CPU. A cell-normalised head
    also sees `wide_scale_probability` of its crops off the reference scale, so a cell whose scale is misjudged
    (few chromosomes, blur) does not read as aberrant. `optics`: how crops are re-imaged as other microscopes would
    (`karyohf.augmentation`)."""
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="aberration-trainer-"),
        max_steps=steps,
        per_device_train_batch_size=min(batch_size, len(train_dataset)),
        learning_rate=learning_rate,
        weight_decay=0.05,
        warmup_steps=max(1, steps // 20),
        lr_scheduler_type="cosine",
        logging_steps=log_steps or steps,
        disable_tqdm=not log_steps,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
    )
    # A head of a cell-normalised identity model reads its crops rescaled per cell, as the pipeline feeds them.
    normalised = getattr(processor, "cell_reference_length", None) is not None
    collator = CropCollator(processor, augment=True, seed=seed, label_column="label", normalise_cells=normalised,
                            wide_scale_probability=wide_scale_probability if normalised else 0.0, optics=optics)
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator)
    trainer.train()
    return trainer.model.float().cpu().eval()


def with_lora(model: TopViTForImageClassification, rank: int = 8, alpha: int = 16, dropout: float = 0.0):
    """A peft LoRA wrapper of a head: low-rank updates on the attention projections, the new classifier trained
    and saved in full (`modules_to_save`), everything else frozen. Teaching a new aberration from a handful of
    examples then trains and ships only a few thousand parameters.

    The conv stem's BatchNorm statistics are frozen too (momentum 0): they live outside the adapter, so updating
    them would make the shared adapter disagree with the model it was trained in."""
    from peft import LoraConfig, get_peft_model

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGET_MODULES),
                        modules_to_save=["classifier"])
    return get_peft_model(model, config)


__all__ = [
    "FINETUNE_LEARNING_RATE",
    "LORA_TARGET_MODULES",
    "SCRATCH_LEARNING_RATE",
    "aberration_classifier",
    "train_aberration_classifier",
    "with_lora",
]
