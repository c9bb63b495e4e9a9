"""Should the detector run int8? onnxruntime's two quantizations of the CenterNet against its fp32 export.

    python benchmarks/onnx_detector_int8.py [--calibration 16] [--metaphases 60] [--threads 2]

- dynamic: weights int8 per channel, activations quantized on the fly (`quantize_dynamic`);
- static QDQ: weights int8 per channel, activations uint8 with ranges calibrated on `--calibration` training
  metaphases (`quantize_static`, QDQ format).
Each runs in `ChromosomeDetector` (the same pre- and post-processing) on a seeded subset of validation metaphases:
median seconds of one network forward at the shipped input scale, and AP50 / AP50:95 (0.01 score floor). The issue's
rule: ship an int8 detector only where it is faster and AP50 stays within 0.002 of fp32.
Writes benchmarks/results/onnx_detector_int8.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from transformers import AutoConfig

from karyohf.data import load_metaphases, split_metaphases, validation_metaphases
from karyohf.detection import ChromosomeDetector
from karyohf.detection.evaluation import AP_SCORE_FLOOR, score_detections
from karyohf.onnx_backend import OnnxObjectDetector, onnx_export
from karyohf.pipeline import DETECTOR_FOLDER, resolve_checkpoints


class Metaphases(CalibrationDataReader):
    def __init__(self, inputs):
        self.inputs = iter(inputs)

    def get_next(self):
        return next(self.inputs, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=int, default=16, help="training metaphases that calibrate static QDQ")
    parser.add_argument("--metaphases", type=int, default=60, help="validation metaphases scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "onnx_detector_int8.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = resolve_checkpoints(None) / DETECTOR_FOLDER
    folder, record = onnx_export(checkpoint)
    fp32 = folder / record["files"]["fp32"]
    reference = ChromosomeDetector.from_pretrained(checkpoint, score_threshold=AP_SCORE_FLOOR)
    side = reference.model.config.image_size

    def network_input(image):
        return reference.processor(np.asarray(image.convert("L")), return_tensors="pt", size=side)["pixel_values"].numpy()

    train = split_metaphases(load_metaphases())["train"].shuffle(seed=0).select(range(args.calibration))
    scratch = Path(tempfile.mkdtemp(prefix="detector-int8-"))
    plain = scratch / "plain.onnx"
    proto = onnx.load(str(fp32))
    del proto.graph.value_info[:]  # the quantizers re-infer shapes; the exporter's symbolic value_info trips them
    onnx.save(proto, str(plain))
    variants = {"fp32": fp32, "dynamic int8": scratch / "dynamic.onnx", "static QDQ int8": scratch / "qdq.onnx"}
    quantize_dynamic(str(plain), str(variants["dynamic int8"]), weight_type=QuantType.QInt8, per_channel=True)
    quantize_static(str(plain), str(variants["static QDQ int8"]),
                    Metaphases([{"pixel_values": network_input(e["image"])} for e in train]),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    validation = list(validation_metaphases(args.metaphases))
    truth = [np.asarray(e["boxes"], np.float32).reshape(-1, 4) for e in validation]
    sizes = [(e["height"], e["width"]) for e in validation]
    config = AutoConfig.from_pretrained(checkpoint)
    example = network_input(validation[0]["image"])
    results = {}
    for name, path in variants.items():
        network = OnnxObjectDetector(path, config, args.threads)
        detector = ChromosomeDetector(network, reference.processor, score_threshold=AP_SCORE_FLOOR)
        times = []
        for _ in range(6):
            started = time.perf_counter()
            network.session.run(None, {"pixel_values": example})
            times.append(time.perf_counter() - started)
        metrics, _, _ = score_detections(truth, [detector(e["image"]) for e in validation], sizes, score_threshold=0.3)
        results[name] = {"forward_seconds_median": float(np.median(times[1:])), "ap50": metrics["ap50"],
                         "ap50_95": metrics["ap50_95"], "recall50": metrics["recall50"],
                         "precision50": metrics["precision50"], "file_mb": path.stat().st_size / 2**20}
        print(name, json.dumps(results[name]), flush=True)
    for name, found in results.items():
        found["ap50_gap"] = abs(found["ap50"] - results["fp32"]["ap50"])
        found["ships"] = name == "fp32" or (found["ap50_gap"] <= 0.002
                                             and found["forward_seconds_median"] < results["fp32"]["forward_seconds_median"])
    args.output.write_text(json.dumps({"calibration_metaphases": args.calibration, "validation_metaphases": len(validation),
                                       "input_side": side, "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
