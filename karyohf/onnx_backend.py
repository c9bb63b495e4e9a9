"""The ONNX Runtime backend: each model's forward exported with `torch.onnx.export` and run by onnxruntime.

Only the network changes. Pre- and post-processing stay the same Python code as with torch: the stand-ins below
answer the calls `ChromosomeIdentifier`, `AberrationHead` and `ChromosomeDetector` make of a torch model
(`classify`, `model(pixel_values=...)`, `config`, `parameters()`), so every test-time view, decoding step and cell
rule is shared. The exported graphs include the test-time views the configs ask for (TopViT's half-turn view is in
`classify`; the detector's mirror averaging stays in Python and simply batches its views).

Where the exports live: `<checkpoint>/onnx/` when a checkpoint ships them (`export_checkpoint(folder)`), else a
cache built at first use, `$KARYOHF_CACHE` or `~/.cache/karyohf/onnx/<digest>/`. Either is used only when its
`export.json` records the digest of the weights and config it was made from, so an export never outlives its
weights.

Loaded through `karyohf.backends.load_network`. Precisions: "fp32", and "int8" for the TopViT family (identity and aberration heads): onnxruntime's dynamic
quantization of the matmuls (weights int8 per channel, activations quantized on the fly). The detector runs fp32 at
either precision: dynamic int8 made its convolutions 6.5x slower and static QDQ int8 cost 0.24 AP50
(`benchmarks/onnx_detector_int8.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

ONNX_FOLDER, EXPORT_RECORD = "onnx", "export.json"
CACHE_VARIABLE = "KARYOHF_CACHE"
OPSET = 18
# Bumped when the export recipe changes, so cached exports made by older code are rebuilt.
EXPORT_VERSION = 1
# The largest batch and side the exported graphs accept (symbolic dimensions need a bound).
MAX_BATCH, MAX_SIDE = 4096, 8192


def weights_digest(checkpoint: str | os.PathLike) -> str:
    """sha256 of a checkpoint's config and weights, and of the export recipe: what an export was made from."""
    folder = Path(checkpoint)
    digest = hashlib.sha256(f"karyohf-onnx-{EXPORT_VERSION}-opset{OPSET}".encode())
    for name in ("config.json", "model.safetensors"):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no {name}: not a saved checkpoint to export")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _is_detector(config) -> bool:
    return hasattr(config, "coarsest_stride")  # the CenterNet family; TopViT classifiers have none


class _ClassifierGraph(torch.nn.Module):
    """What the classifier export computes: `classify` (its test-time views included) -> logits, pooled features."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        outputs, logits = self.model.classify(pixel_values)
        return logits, outputs.pooler_output


class _DetectorGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        outputs = self.model(pixel_values=pixel_values)
        return outputs.heatmap_logits, outputs.pred_boxes


def export_checkpoint(checkpoint: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> Path:
    """Export one checkpoint (TopViT classifier or CenterNet detector) to `output_dir` (default `<checkpoint>/onnx`):
    `model.onnx` (fp32), for a classifier also `model_int8.onnx`, and `export.json`. Returns the folder."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForObjectDetection

    from . import models  # noqa: F401  (registers the Auto classes)

    folder = Path(checkpoint)
    digest = weights_digest(folder)
    output = Path(output_dir) if output_dir is not None else folder / ONNX_FOLDER
    output.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.from_pretrained(folder)
    detector = _is_detector(config)
    if detector:
        model = AutoModelForObjectDetection.from_pretrained(folder).eval()
        graph, stride = _DetectorGraph(model).eval(), config.coarsest_stride
        example = torch.zeros(2, config.num_channels, 2 * stride, 3 * stride)
        dims = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH),
                2: stride * torch.export.Dim("rows", min=1, max=MAX_SIDE // stride),
                3: stride * torch.export.Dim("columns", min=1, max=MAX_SIDE // stride)}
        outputs, legacy_axes = ["heatmap_logits", "pred_boxes"], {0: "batch", 2: "height", 3: "width"}
    else:
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        graph = _ClassifierGraph(model).eval()
        example = torch.zeros(2, config.num_channels, *config.image_size)
        dims = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
        outputs, legacy_axes = ["logits", "pooler_output"], {0: "batch"}
    fp32 = output / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, (example,), str(fp32), dynamo=True, opset_version=OPSET, external_data=False,
                              input_names=["pixel_values"], output_names=outputs,
                              dynamic_shapes={"pixel_values": dims}, verbose=False)
            exporter = "dynamo"
        except Exception as error:  # the TorchScript exporter as fallback, where dynamo cannot trace a model
            warnings.warn(f"{folder}: dynamo export failed ({type(error).__name__}: {error}); using the legacy exporter")
            torch.onnx.export(graph, (example,), str(fp32), dynamo=False, opset_version=OPSET,
                              input_names=["pixel_values"], output_names=outputs,
                              dynamic_axes={"pixel_values": legacy_axes, **{name: {0: "batch"} for name in outputs}})
            exporter = "torchscript"
    files = {"fp32": fp32.name}
    if not detector:
        # quantize_dynamic re-infers shapes; the exporter's value_info (symbolic dims) trips it, so drop it first.
        proto = onnx.load(str(fp32))
        del proto.graph.value_info[:]
        with tempfile.TemporaryDirectory() as scratch:
            plain = Path(scratch) / "plain.onnx"
            onnx.save(proto, str(plain))
            quantize_dynamic(str(plain), str(output / "model_int8.onnx"), weight_type=QuantType.QInt8,
                             per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
        files["int8"] = "model_int8.onnx"
    record = {"digest": digest, "exporter": exporter, "opset": OPSET, "torch": torch.__version__,
              "kind": "detector" if detector else "classifier", "files": files}
    (output / EXPORT_RECORD).write_text(json.dumps(record, indent=2))
    return output


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "karyohf") / "onnx"


def _valid_export(folder: Path, digest: str) -> dict | None:
    record_path = folder / EXPORT_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("digest") != digest or not all((folder / name).is_file() for name in record["files"].values()):
        return None
    return record


def onnx_export(checkpoint: str | os.PathLike) -> tuple[Path, dict]:
    """The folder of a checkpoint's up-to-date export and its record: the checkpoint's own `onnx/`, else the cache,
    exported there now if missing."""
    folder = Path(checkpoint)
    digest = weights_digest(folder)
    for candidate in (folder / ONNX_FOLDER, _cache_root() / digest):
        record = _valid_export(candidate, digest)
        if record is not None:
            return candidate, record
    target = _cache_root() / digest
    export_checkpoint(folder, target)
    return target, _valid_export(target, digest)


class _OnnxModule:
    """The few parts of a torch model the karyohf wrappers use, over an onnxruntime session (CPU)."""

    training = False
    dtype = torch.float32

    def __init__(self, path: Path, config, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config, self.path = config, path

    def eval(self):
        return self

    def to(self, *args, **kwargs):  # the session runs on the CPU; channels-last and devices do not apply
        return self

    def parameters(self):
        yield torch.zeros(())

    def _run(self, pixel_values) -> list[torch.Tensor]:
        array = np.ascontiguousarray(torch.as_tensor(pixel_values).detach().cpu().float().numpy())
        return [torch.from_numpy(output) for output in self.session.run(None, {"pixel_values": array})]


class OnnxImageClassifier(_OnnxModule):
    """A TopViT classifier (identity or aberration head) as onnxruntime runs it."""

    def classify(self, pixel_values, **kwargs):
        logits, pooled = self._run(pixel_values)
        return BaseModelOutputWithPooling(pooler_output=pooled), logits

    def __call__(self, pixel_values=None, **kwargs) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self._run(pixel_values)[0])


class OnnxObjectDetector(_OnnxModule):
    """The CenterNet detector as onnxruntime runs it."""

    def __call__(self, pixel_values=None, **kwargs):
        from .models.centernet.modeling_centernet import CenterNetObjectDetectionOutput

        heatmap_logits, pred_boxes = self._run(pixel_values)
        return CenterNetObjectDetectionOutput(heatmap_logits=heatmap_logits, pred_boxes=pred_boxes)


def load_onnx_model(checkpoint: str | os.PathLike, precision: str = "fp32", threads: int | None = None):
    """The checkpoint's network on onnxruntime (exported at first use if needed): an `OnnxImageClassifier` or an
    `OnnxObjectDetector` carrying the checkpoint's config."""
    from transformers import AutoConfig

    from . import models  # noqa: F401

    folder, record = onnx_export(checkpoint)
    config = AutoConfig.from_pretrained(checkpoint)
    if record["kind"] == "detector":
        return OnnxObjectDetector(folder / record["files"]["fp32"], config, threads)
    return OnnxImageClassifier(folder / record["files"][precision], config, threads)
