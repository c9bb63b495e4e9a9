"""Where a model's network runs: torch (fp32, or int8 weights with optimum-quanto) or onnxruntime (fp32 or int8,
`karyohf.onnx_backend`). One loader for the identity model, the heads and the detector, so each wrapper keeps its
own pre- and post-processing whatever runs the network.

int8 applies to the TopViT family (identity, aberration heads); the detector stays fp32 at either precision: on
onnxruntime dynamic int8 made it 6.5x slower and static QDQ int8 lost 0.24 AP50 (`benchmarks/onnx_detector_int8.py`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from transformers.utils import logging as transformers_logging

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "int8")


def check_backend(backend: str, precision: str = "fp32") -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def load_network(checkpoint: str | os.PathLike, auto_class, backend: str = "torch", precision: str = "fp32",
                 device: str | None = None):
    """The checkpoint's network for `auto_class` (e.g. `AutoModelForImageClassification`) on `backend`.

    torch int8 quantizes the weights of every linear layer to int8 (optimum-quanto, weight-only: half the memory,
    activations stay float); onnxruntime runs the exported graph (`karyohf.onnx_backend.load_onnx_model`)."""
    check_backend(backend, precision)
    classifier = auto_class.__name__ == "AutoModelForImageClassification"
    if backend == "onnxruntime":
        from .onnx_backend import load_onnx_model

        with quiet_loading():
            return load_onnx_model(checkpoint, precision if classifier else "fp32")
    with quiet_loading():
        model = auto_class.from_pretrained(str(checkpoint))
    if device is not None:
        model.to(device)
    if precision == "int8" and classifier:
        from optimum.quanto import freeze, qint8, quantize

        quantize(model, weights=qint8)
        freeze(model)
    return model.eval()


@contextmanager
def quiet_loading():
    """transformers' weight-loading progress bar off while a library call loads its models (a pipeline loads four
    checkpoints in a second); the caller's own setting is restored afterwards."""
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()
