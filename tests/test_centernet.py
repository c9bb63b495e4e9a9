"""The CenterNet detector family: config, targets and losses, training through the Trainer, post-processing,
Auto-class round trips, the training collator, and the `ChromosomeDetector` API on top of it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoImageProcessor, AutoModelForObjectDetection, Trainer, TrainingArguments

from karyohf.detection import ChromosomeDetector
from karyohf.detection.centernet import CenterNetCollator, random_crop_at_model_scale, shrink_metaphase
from karyohf.models.centernet import (
    CenterNetConfig,
    CenterNetForObjectDetection,
    MetaphaseImageProcessor,
    flip_averaged_outputs,
)
from karyohf.models.centernet.modeling_centernet import (
    CenterNetObjectDetectionOutput,
    centernet_targets,
    gaussian_focal_loss,
)
from tests.synthetic import banded_rod, metaphase_with
from tests.test_detection import synthetic_metaphase_folder, two_rod_metaphases

torch.set_num_threads(1)

TINY = dict(image_size=64, stem_channels=8, stage_channels=(8, 16), stage_blocks=(1, 0), neck_channels=8,
            head_channels=8, box_scale=4.0)


def tiny_centernet(seed: int = 0):
    torch.manual_seed(seed)
    return CenterNetForObjectDetection(CenterNetConfig(**TINY)), MetaphaseImageProcessor(size=64)


def test_config_rejects_geometries_the_model_cannot_build():
    with pytest.raises(StrictDataclassError, match="multiple of 8"):
        CenterNetConfig(image_size=60, stage_channels=(8, 16), stage_blocks=(1, 1))
    with pytest.raises(StrictDataclassError, match="equal length"):
        CenterNetConfig(stage_channels=(8, 16), stage_blocks=(1,))
    with pytest.raises(StrictDataclassError, match="box_region_threshold"):
        CenterNetConfig(box_region_threshold=1.5)
    with pytest.raises(StrictDataclassError, match="test_time_flips"):
        CenterNetConfig(test_time_flips=["diagonal"])
    config = CenterNetConfig(**TINY)
    assert config.output_stride == 4 and config.id2label == {0: "chromosome"}


def test_targets_peak_at_each_centre_and_share_regression_weight_per_chromosome():
    config = CenterNetConfig(**TINY)
    # Two boxes in fractions of the 64 px input: a large one and a small one nested in it.
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.75], [0.65, 0.5, 0.12, 0.12]])
    heatmap, box_targets, weights = centernet_targets(boxes, 16, 16, config)
    assert heatmap.max() == 1.0 and int((heatmap == 1.0).sum()) == 2  # one exact peak per chromosome
    assert heatmap[0, 0] < 0.01  # far from both
    # Locations regress one of the two boxes; each chromosome's weights sum to 1 over its own locations.
    corners = torch.tensor([[0.25, 0.125, 0.75, 0.875], [0.59, 0.44, 0.71, 0.56]])
    owner = (box_targets[..., None, :] - corners).abs().sum(-1).argmin(-1)
    for k in range(2):
        assert float(weights[(owner == k) & (weights > 0)].sum()) == pytest.approx(1.0, abs=1e-5)
    # Where both regions overlap, the smaller chromosome owns the location.
    centre = (int(0.5 * 16), int(0.65 * 16))
    assert int(owner[centre]) == 1
    empty = centernet_targets(torch.zeros(0, 4), 16, 16, config)
    assert all(float(t.abs().sum()) == 0.0 for t in empty)


def test_focal_loss_rewards_confident_correct_heatmaps():
    heatmap = torch.zeros(8, 8)
    heatmap[3, 4] = 1.0
    good = torch.full((8, 8), -9.0)
    good[3, 4] = 9.0
    bad = -good
    assert float(gaussian_focal_loss(good, heatmap)) < 1e-3 < float(gaussian_focal_loss(bad, heatmap))


def test_untrained_model_starts_with_a_low_centre_prior_and_finite_loss():
    model, processor = tiny_centernet()
    example = two_rod_metaphases()[0]
    batch = CenterNetCollator(processor)([example])
    out = model(**batch)
    assert torch.sigmoid(out.heatmap_logits).mean() < 0.05
    assert out.pred_boxes.shape == (1, 16 * 16, 4)
    assert math.isfinite(out.loss.item()) and out.box_loss.item() > 0


def test_loss_decreases_when_trained_through_the_trainer(tmp_path):
    model, processor = tiny_centernet()
    examples = two_rod_metaphases()
    arguments = TrainingArguments(
        output_dir=str(tmp_path), max_steps=60, per_device_train_batch_size=2, learning_rate=1e-2,
        lr_scheduler_type="linear", warmup_steps=2, logging_steps=10, save_strategy="no", report_to="none",
        use_cpu=True, label_names=["labels"], remove_unused_columns=False, dataloader_num_workers=0, seed=0,
    )
    collator = CenterNetCollator(processor)
    batch = collator(examples)
    with torch.no_grad():
        before = float(model.eval()(**batch).loss)
    Trainer(model=model.train(), args=arguments, train_dataset=examples, data_collator=collator).train()
    with torch.no_grad():
        after = float(model.eval()(**batch).loss)
    assert after < 0.5 * before


def test_post_processing_keeps_peaks_and_maps_boxes_to_original_pixels():
    processor = MetaphaseImageProcessor(size=64)
    logits = torch.full((1, 1, 16, 16), -8.0)
    logits[0, 0, 4, 8] = 3.0
    logits[0, 0, 4, 9] = 2.0  # a shoulder of the same peak, not a second chromosome
    boxes = torch.zeros(1, 256, 4)
    boxes[0, 4 * 16 + 8] = torch.tensor([0.25, 0.125, 0.5, 0.375])  # xyxy fractions of the square input
    outputs = CenterNetObjectDetectionOutput(heatmap_logits=logits, pred_boxes=boxes)
    found = processor.post_process_object_detection(outputs, threshold=0.5, target_sizes=[(100, 200)])[0]
    assert found["boxes"].tolist() == [[50.0, 25.0, 100.0, 75.0]]  # square side 200 (landscape)
    assert found["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item()])
    fractions = processor.post_process_object_detection(outputs, threshold=0.5)[0]
    assert fractions["boxes"].tolist() == [[0.25, 0.125, 0.5, 0.375]]


def test_processor_pads_with_white_and_inverts():
    processor = MetaphaseImageProcessor(size=64, image_mean=0.0, image_std=1.0)
    image = np.zeros((32, 64), np.uint8)  # black landscape strip: the bottom half of the square is padding
    pixels = processor(image, return_tensors="pt")
    assert pixels["pixel_values"].shape == (1, 1, 64, 64) and pixels["original_sizes"].tolist() == [[32, 64]]
    assert torch.allclose(pixels["pixel_values"][0, 0, :30], torch.ones(30, 64))  # ink
    assert torch.allclose(pixels["pixel_values"][0, 0, 34:], torch.zeros(30, 64))  # white padding


def test_auto_classes_round_trip(tmp_path):
    model, processor = tiny_centernet()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    loaded_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, CenterNetForObjectDetection) and isinstance(loaded_processor, MetaphaseImageProcessor)
    pixels = loaded_processor(two_rod_metaphases()[0]["image"], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert torch.allclose(model.eval()(pixels).heatmap_logits, loaded(pixels).heatmap_logits, atol=1e-6)


def test_detector_api_on_centernet(tmp_path):
    model, processor = tiny_centernet()
    detector = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.7)
    image = two_rod_metaphases()[0]["image"]
    gray = np.asarray(image)
    found = detector(gray)
    assert len(found) > 0 and found.boxes.shape == (len(found), 4) and np.all(np.diff(found.scores) <= 0)
    assert (found.boxes[:, 2] <= 240).all() and (found.boxes[:, 3] <= 200).all()
    for variant in (image.convert("RGB"), gray.astype(np.uint16) * 257):
        again = detector(variant)
        assert np.allclose(again.boxes, found.boxes, atol=1e-3)
    tiny = detector(np.full((3, 5), 100, np.uint8))
    assert ((tiny.boxes[:, 2] <= 5) & (tiny.boxes[:, 3] <= 3)).all()
    detector.save_pretrained(tmp_path)
    loaded = ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0, nms_iou=0.7)
    assert loaded.query is None and np.allclose(loaded(gray).boxes, found.boxes, atol=1e-4)


def test_flip_averaging_is_exactly_mirror_equivariant_and_reaches_the_detector(tmp_path):
    model, processor = tiny_centernet()
    model.eval()
    pixels = processor(np.asarray(two_rod_metaphases()[0]["image"]), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert torch.allclose(flip_averaged_outputs(model, pixels, ()).pred_boxes, model(pixel_values=pixels).pred_boxes)
        for flips in (("horizontal",), ("horizontal", "vertical", "both")):
            averaged = flip_averaged_outputs(model, pixels, flips)
            mirrored = flip_averaged_outputs(model, pixels.flip(-1), flips)
            # Averaging over a flip group makes the output see a mirrored image as the mirror of the original:
            # a wrong un-flip of the maps or of the box coordinates breaks this.
            assert torch.allclose(mirrored.heatmap_logits.flip(-1), averaged.heatmap_logits, atol=1e-5)
            rows, columns = averaged.heatmap_logits.shape[-2:]
            boxes = mirrored.pred_boxes.unflatten(1, (rows, columns)).flip(2)
            x0, y0, x1, y1 = boxes.unbind(-1)
            assert torch.allclose(torch.stack([1 - x1, y0, 1 - x0, y1], -1).flatten(1, 2), averaged.pred_boxes, atol=1e-5)
    with pytest.raises(ValueError, match="flips must be among"):
        flip_averaged_outputs(model, pixels, ("diagonal",))
    # The detector takes the checkpoint's saved setting unless told otherwise.
    gray = np.asarray(two_rod_metaphases()[0]["image"])
    plain = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.7)(gray)
    model.config.test_time_flips = ("horizontal",)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    detector = ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0, nms_iou=0.7)
    assert detector.test_time_flips == ("horizontal",)
    found = detector(gray)
    assert len(found) > 0 and (found.boxes[:, 2] <= 240).all() and (found.boxes[:, 3] <= 200).all()
    assert not np.array_equal(found.scores, plain.scores)
    unflipped = ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0, nms_iou=0.7, test_time_flips=())
    assert np.allclose(unflipped(gray).scores, plain.scores, atol=1e-5)


def test_training_crops_keep_boxes_on_their_chromosomes():
    image, boxes = metaphase_with([(banded_rod(60), (30, 40), 0), (banded_rod(50), (140, 60), 90)], size=(240, 200))
    gray, boxes = np.asarray(image), np.asarray(boxes, dtype=np.float32)
    np.random.seed(0)
    for _ in range(10):
        crop, moved = random_crop_at_model_scale(gray, boxes, image_size=64, crop_size=48, zoom=(0.8, 1.25))
        assert crop.shape == (48, 48) and ((moved >= 0) & (moved <= 48)).all()
        for x0, y0, x1, y1 in moved.round().astype(int):
            assert crop[y0:y1, x0:x1].min() < 100  # a dark band inside every kept box
    shrunk = shrink_metaphase({"image": image, "boxes": boxes.tolist()}, longest_side=120)
    assert shrunk["image"].size == (120, 100) and np.allclose(np.asarray(shrunk["boxes"]), boxes / 2)


def test_training_script_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_centernet

    data = synthetic_metaphase_folder(tmp_path / "data")
    output = tmp_path / "detector"
    train_centernet.main([
        "--output-dir", str(output), "--data-root", str(data), "--image-size", "64", "--stage-channels", "8", "16",
        "--stage-blocks", "1", "0", "--neck-channels", "8", "--head-channels", "8", "--crop-size", "48",
        "--max-steps", "3", "--batch-size", "2", "--threads", "1",
    ])
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["centernet"]["images"] == 3 and metrics["training"]["steps"] == 3
    assert "CenterNet" in (output / "README.md").read_text()
    assert ChromosomeDetector.from_pretrained(output).model.config.image_size == 64
    assert "no test-time flips" in (output / "README.md").read_text()
    # Re-scoring with test-time flips saves the setting with the weights and describes it in the card.
    train_centernet.main(["--init", str(output), "--output-dir", str(output), "--data-root", str(data),
                          "--evaluate-only", "--test-time-flips", "horizontal", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(output).test_time_flips == ("horizontal",)
    assert "averaged with its horizontal mirror" in (output / "README.md").read_text()
    assert json.loads((output / "metrics.json").read_text())["training"]["steps"] == 3


def test_training_script_ships_the_average_of_a_continued_run_and_its_start(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_centernet

    data = synthetic_metaphase_folder(tmp_path / "data")
    tiny = ["--data-root", str(data), "--image-size", "64", "--stage-channels", "8", "16", "--stage-blocks", "1", "0",
            "--neck-channels", "8", "--head-channels", "8", "--crop-size", "48", "--max-steps", "2", "--batch-size", "2",
            "--threads", "1"]
    start, end, soup = tmp_path / "start", tmp_path / "end", tmp_path / "soup"
    train_centernet.main(["--output-dir", str(start), *tiny])
    train_centernet.main(["--output-dir", str(end), "--init", str(start), "--learning-rate", "0.05", *tiny])
    train_centernet.main(["--evaluate-only", "--init", str(end), "--average-with", str(start), "--output-dir", str(soup),
                          "--data-root", str(data), "--threads", "1"])
    weights = [CenterNetForObjectDetection.from_pretrained(path).state_dict() for path in (start, end, soup)]
    moved = [name for name, value in weights[0].items() if value.is_floating_point() and not torch.equal(value, weights[1][name])]
    assert moved  # the continued run changed the weights, so the average is a third set
    for name in moved:
        torch.testing.assert_close(weights[2][name], (weights[0][name] + weights[1][name]) / 2)
    assert json.loads((soup / "metrics.json").read_text())["training"]["averaged_with"] == str(start)
    assert f"uniform average of that run's end and `{start}`" in (soup / "README.md").read_text()
