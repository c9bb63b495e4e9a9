"""Helpers the training scripts share: the crop batches, and a wall-clock budget turned into a step count.

Scripts on two CPU cores are sized by minutes, not epochs: a few timed steps fix `max_steps`, so the learning-rate
schedule runs to completion, and a guard stops a run the machine has slowed down.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import TrainerCallback

from .augmentation import augment_crop


class WallClockGuard(TrainerCallback):
    """Stops training if it overruns its budget by half (the machine got busier than when steps were timed)."""

    def __init__(self, minutes: float):
        self.deadline = time.time() + 1.5 * minutes * 60

    def on_step_end(self, args, state, control, **kwargs):
        if time.time() > self.deadline:
            control.should_training_stop = True


def seconds_per_step(model, collator, dataset, batch_size: int) -> float:
    """Time a few optimiser steps on real batches to turn the wall-clock budget into a step count."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    batch = collator([dataset[i] for i in range(batch_size)])
    model.train()
    timings = []
    for _ in range(4):
        start = time.perf_counter()
        batch = collator([dataset[int(i)] for i in np.random.randint(0, len(dataset), batch_size)])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - start)
    return float(np.median(timings[1:]))




class CropCollator:
    """Paper-format crops -> (augmented) pixel batch through the processor used at inference, with integer labels
    from `label_column` ("chromosome" for identity, "label" for the aberration datasets)."""

    def __init__(self, processor, augment: bool, seed: int, label_column: str = "chromosome"):
        self.processor = processor
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.label_column = label_column

    def __call__(self, examples):
        images = [example["image"] for example in examples]
        if self.augment:
            images = [augment_crop(image, self.rng) for image in images]
        batch = self.processor(images, return_tensors="pt")
        batch["labels"] = torch.tensor([example[self.label_column] for example in examples])
        return batch
