"""Helpers the training scripts share: the crop batches, and a wall-clock budget turned into a step count.

Scripts are sized by minutes, not epochs: a few timed steps fix `max_steps`, so the learning-rate schedule runs to
completion, and a guard stops a run the machine has slowed down. Snapshots keep recent weights under a hard limit;
`average_weights` averages the ends of a continued run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

import numpy as np
import torch
from transformers import TrainerCallback

from .augmentation import STANDARD_OPTICS, Optics, augment_crop
from .crops import rescale_chromosome


class WallClockGuard(TrainerCallback):
    """Stops training if it overruns its budget by half (the machine got busier than when steps were timed)."""

    def __init__(self, minutes: float):
        self.deadline = time.time() + 1.5 * minutes * 60

    def on_step_end(self, args, state, control, **kwargs):
        if time.time() > self.deadline:
            control.should_training_stop = True


def seconds_per_step(model, collator, dataset, batch_size: int, workers: int = 0) -> float:
    """Time a few optimiser steps on real batches to turn the wall-clock budget into a step count.

    With `workers`, batches are made by that many DataLoader workers in parallel with the model (on the GPU when there
    is one), so a step costs whichever is slower: the model's step or one batch's share of the workers' time.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)

    def random_batch():
        return collator([dataset[int(i)] for i in np.random.randint(0, len(dataset), batch_size)])

    def model_step(batch):
        model(**_on(batch, device)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if workers == 0:  # the batch is made in the step
        timings = []
        for _ in range(4):
            start = time.perf_counter()
            model_step(random_batch())
            timings.append(time.perf_counter() - start)
        return float(np.median(timings[1:]))
    batch = random_batch()
    model_step(batch)
    start = time.perf_counter()
    for _ in range(3):
        model_step(batch)
    model_seconds = (time.perf_counter() - start) / 3
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collator,
                                         num_workers=workers)
    batches = iter(loader)
    warmup = min(2 * workers, len(loader) // 3)  # every worker starts and delivers what it prefetched
    for _ in range(warmup):
        next(batches)
    start, count = time.perf_counter(), min(4 * workers, len(loader) - warmup)
    for _ in range(count):
        next(batches)
    data_seconds = (time.perf_counter() - start) / count
    del batches
    return max(model_seconds, data_seconds)


def _on(batch, device):
    """A batch (tensors in dicts and lists) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):  # the processors' BatchFeature is a mapping, not a dict
        return {key: _on(value, device) for key, value in batch.items()}
    if isinstance(batch, list):
        return [_on(value, device) for value in batch]
    return batch


def parse_checkpoint_arguments(parser: argparse.ArgumentParser, argv, flips) -> argparse.Namespace:
    """Adds the options every script that ships a checkpoint shares, parses `argv` and checks them: snapshots while
    training, the test-time mirror `flips` (names) the checkpoint's config should keep, re-scoring an existing
    checkpoint (`--evaluate-only` with `--init`) and shipping a two-member model soup (`--average-with`)."""
    parser.add_argument("--snapshot-minutes", type=float, default=None,
                        help="also save the model to --output-dir this often while training")
    parser.add_argument("--test-time-flips", nargs="*", choices=list(flips), default=None,
                        help="mirror images the model also scores at inference, saved in its config (default: keep)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score the --init checkpoint and rewrite its metrics and card (training record kept)")
    parser.add_argument("--average-with", help="ship the uniform average of the resulting weights and this checkpoint's "
                        "(same architecture; typically the --init of a continued run)")
    args = parser.parse_args(argv)
    if args.evaluate_only and not args.init:
        parser.error("--evaluate-only needs --init")
    return args


def average_weights(model: torch.nn.Module, others: list[torch.nn.Module]) -> None:
    """Sets `model`'s weights to the uniform average of its own and `others'` (same architecture): a "model soup"
    (Wortsman et al. 2022). The two ends of a run continued at a low learning rate lie in one basin, and their
    average often generalises a little better than either (the shipped identity model: +0.07 / +0.10 points).
    Integer buffers (BatchNorm's step counters) keep `model`'s values; a mismatch of names or shapes is an error
    naming the tensor."""
    state = model.state_dict()
    members = [other.state_dict() for other in others]
    for index, member in enumerate(members):
        if member.keys() != state.keys():
            raise ValueError(f"model {index + 1} to average has other weights: {sorted(member.keys() ^ state.keys())[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            values = [member[name] for member in members]
            if any(value.shape != tensor.shape for value in values):
                raise ValueError(f"cannot average {name}: shapes {[tuple(tensor.shape)] + [tuple(v.shape) for v in values]}")
            if tensor.is_floating_point():
                tensor.copy_(torch.stack([tensor.float()] + [value.float() for value in values]).mean(0))


class Snapshots(TrainerCallback):
    """Saves the model (and its processor) to `directory` every `minutes` of training, so a run cut off by a hard
    time limit (a lent GPU's, say) still leaves recent weights behind."""

    def __init__(self, directory, processor, minutes: float):
        self.directory, self.processor, self.interval = directory, processor, minutes * 60
        self.last = time.time()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if time.time() - self.last >= self.interval and state.is_world_process_zero:
            model.save_pretrained(self.directory)
            self.processor.save_pretrained(self.directory)
            self.last = time.time()


class CropCollator:
    """Paper-format crops -> (augmented) pixel batch through the processor used at inference, with integer labels
    from `label_column` ("chromosome" for identity, "label" for the aberration datasets).

    With `normalise_cells`, each crop is first rescaled by its cell's factor (the `cell_scale` column that
    `karyohf.data.chromosome_crops` holds), as the pipeline rescales a metaphase's crops; `wide_scale_probability`
    and `optics` are passed to `augment_crop`. `source_optics` re-images the crops of the sources it names (the
    `source` column) by their own recipe instead, so that one source can be shown harder microscopes than another.

    Each DataLoader worker draws its augmentation from its own stream (seeded by `seed` and the worker id): copies of
    one generator would give every worker the same random sequence."""

    def __init__(self, processor, augment: bool, seed: int, label_column: str = "chromosome",
                 normalise_cells: bool = False, wide_scale_probability: float = 0.0,
                 optics: Optics = STANDARD_OPTICS, source_optics: dict[str, Optics] | None = None):
        self.processor = processor
        self.augment = augment
        self.seed = seed
        self.label_column = label_column
        self.normalise_cells = normalise_cells
        self.wide_scale_probability = wide_scale_probability
        self.optics = optics
        self.source_optics = source_optics or {}
        self.generators: dict[int, np.random.Generator] = {}

    def rng(self) -> np.random.Generator:
        worker = torch.utils.data.get_worker_info()
        worker_id = -1 if worker is None else worker.id
        if worker_id not in self.generators:
            self.generators[worker_id] = np.random.default_rng([self.seed, worker_id + 1])
        return self.generators[worker_id]

    def __call__(self, examples):
        images = [example["image"] for example in examples]
        scales = [float(example["cell_scale"]) if self.normalise_cells else 1.0 for example in examples]
        if self.augment:
            rng = self.rng()
            optics = [self.source_optics.get(example["source"], self.optics) if self.source_optics else self.optics
                      for example in examples]
            images = [augment_crop(image, rng, cell_scale=scale, wide_scale_probability=self.wide_scale_probability,
                                   optics=recipe) for image, scale, recipe in zip(images, scales, optics)]
        elif self.normalise_cells:
            images = [rescale_chromosome(image, scale) for image, scale in zip(images, scales)]
        batch = self.processor(images, return_tensors="pt")
        batch["labels"] = torch.tensor([example[self.label_column] for example in examples])
        return batch
