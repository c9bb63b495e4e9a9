"""The onnxruntime backend: exports with dynamic shapes, parity with torch, the export cache, and the pipeline on it."""

import json

import numpy as np
import pytest
import torch

from karyohf import KaryotypePipeline
from karyohf.crops import extract_chromosome
from karyohf.detection import ChromosomeDetector
from karyohf.identification import ChromosomeIdentifier
from karyohf.onnx_backend import EXPORT_RECORD, OnnxImageClassifier, export_checkpoint, onnx_export, weights_digest
from karyohf.pipeline import DETECTOR_FOLDER
from tests.synthetic import banded_rod
from tests.test_pipeline import synthetic_metaphase, tiny_detector, tiny_topvit

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KARYOHF_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    tiny_topvit(root / "topvit-chromid")
    config = json.loads((root / "topvit-chromid" / "config.json").read_text())
    config["test_time_flips"] = ["both"]  # the shipped identity model's half-turn view goes into the graph
    (root / "topvit-chromid" / "config.json").write_text(json.dumps(config))
    tiny_topvit(root / "topvit-del5q", ["normal", "del(5q)"])
    tiny_detector(root / DETECTOR_FOLDER)
    return root


def crops(count):
    return [extract_chromosome(rod, (0, 0, rod.width, rod.height))
            for rod in (banded_rod(length=20 + 7 * k) for k in range(count))]


def test_identity_on_onnxruntime_matches_torch_at_any_batch(bundle):
    folder = bundle / "topvit-chromid"
    torch_identifier = ChromosomeIdentifier.from_pretrained(str(folder))
    onnx_identifier = ChromosomeIdentifier.from_pretrained(str(folder), backend="onnxruntime")
    assert isinstance(onnx_identifier.model, OnnxImageClassifier)
    for count in (1, 5):  # the exported batch is dynamic
        expected, got = torch_identifier(crops(count)), onnx_identifier(crops(count))
        np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)
        np.testing.assert_allclose(got.embeddings, expected.embeddings, atol=1e-4)
    quantized = ChromosomeIdentifier.from_pretrained(str(folder), backend="onnxruntime", precision="int8")
    assert quantized.model.path.name == "model_int8.onnx"
    assert np.abs(quantized(crops(5)).probabilities - torch_identifier(crops(5)).probabilities).max() < 0.05


def test_detector_on_onnxruntime_finds_the_same_boxes(bundle):
    image, _ = synthetic_metaphase(count=12)
    folder = bundle / DETECTOR_FOLDER
    for flips in ((), ("horizontal",)):  # mirror views batch through the same dynamic graph
        expected = ChromosomeDetector.from_pretrained(folder, score_threshold=0.0, test_time_flips=flips)(image)
        got = ChromosomeDetector.from_pretrained(folder, backend="onnxruntime", score_threshold=0.0,
                                                 test_time_flips=flips)(image)
        assert len(got.boxes) == len(expected.boxes) > 0
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)


def test_exports_are_cached_by_weights_and_rebuilt_when_they_change(bundle, tmp_path):
    folder = tmp_path / "head"
    tiny_topvit(folder, ["normal", "del(5q)"])
    first, record = onnx_export(folder)
    assert record["digest"] == weights_digest(folder) and record["kind"] == "classifier"
    stamp = (first / EXPORT_RECORD).stat().st_mtime_ns
    assert onnx_export(folder)[0] == first and (first / EXPORT_RECORD).stat().st_mtime_ns == stamp  # reused
    torch.manual_seed(1)
    tiny_topvit(folder, ["normal", "del(5q)"])  # new weights: the old export must not be used
    assert onnx_export(folder)[0] != first
    shipped = export_checkpoint(folder)  # an export shipped inside the checkpoint wins over the cache
    assert shipped == folder / "onnx" and onnx_export(folder)[0] == shipped


def test_bad_backend_or_precision_is_refused(bundle):
    with pytest.raises(ValueError, match="backend must be one of"):
        KaryotypePipeline.from_pretrained(bundle, backend="tensorrt")
    with pytest.raises(ValueError, match="precision must be one of"):
        KaryotypePipeline.from_pretrained(bundle, precision="fp16")


def test_torch_int8_quantizes_the_topvit_weights_only(bundle):
    """optimum-quanto weight-only int8 on torch: the same labels within quantization noise; the detector stays fp32."""
    folder = bundle / "topvit-chromid"
    fp32 = ChromosomeIdentifier.from_pretrained(str(folder))
    int8 = ChromosomeIdentifier.from_pretrained(str(folder), precision="int8")
    assert "QLinear" in {type(module).__name__ for module in int8.model.modules()}
    assert np.abs(int8(crops(5)).probabilities - fp32(crops(5)).probabilities).max() < 0.05
    detector = ChromosomeDetector.from_pretrained(bundle / DETECTOR_FOLDER, precision="int8")
    assert next(detector.model.parameters()).dtype == torch.float32


def test_the_pipeline_on_onnxruntime_gives_the_same_cell(bundle):
    image, boxes = synthetic_metaphase(count=46)
    expected = KaryotypePipeline.from_pretrained(bundle).analyze_cell(image)
    for precision in ("fp32", "int8"):
        got = KaryotypePipeline.from_pretrained(bundle, backend="onnxruntime", precision=precision).analyze_cell(image)
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
        if precision == "fp32":
            assert got.labels == expected.labels and got.karyotype == expected.karyotype
            np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)


def test_shipped_models_on_onnxruntime_agree_with_torch(real_data_root, tmp_path_factory):
    """The parity gate on real validation metaphases (the full-split figures: benchmarks/onnx_backend.py)."""
    from karyohf.data import load_metaphases, split_metaphases
    from karyohf.pipeline import resolve_checkpoints

    root = resolve_checkpoints(None)
    validation = split_metaphases(load_metaphases(real_data_root))["validation"].shuffle(seed=3).select(range(2))
    torch_pipe = KaryotypePipeline.from_pretrained(root)
    onnx_pipe = KaryotypePipeline.from_pretrained(root, backend="onnxruntime")
    agree = total = 0
    for example in validation:
        expected = torch_pipe.analyze_cell(example["image"])
        got = onnx_pipe.analyze_cell(example["image"])
        assert len(got.boxes) == len(expected.boxes)
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=0.5)
        agree += sum(a == b for a, b in zip(got.labels, expected.labels))
        total += len(expected.labels)
        assert got.karyotype == expected.karyotype
    assert agree == total
