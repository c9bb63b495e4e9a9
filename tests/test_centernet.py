"""The CenterNet detector family: config, targets and losses, training through the Trainer, post-processing,
Auto-class round trips, the training collator, and the `ChromosomeDetector` API on top of it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoImageProcessor, AutoModelForObjectDetection, Trainer, TrainingArguments

from karyohf.detection import ChromosomeDetector
from karyohf.detection.detector import DEFAULT_SCORE_THRESHOLD, rescaled_side
from karyohf.detection.centernet import (
    CenterNetCollator,
    median_chromosome_length,
    model_scale,
    paste_overlapping_chromosomes,
    random_crop_at_model_scale,
    shrink_metaphase,
)
from karyohf.models.centernet import (
    CenterNetConfig,
    CenterNetForObjectDetection,
    CenterNetImageProcessor,
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
    return CenterNetForObjectDetection(CenterNetConfig(**TINY)), CenterNetImageProcessor(size=64)


def test_config_rejects_geometries_the_model_cannot_build():
    with pytest.raises(StrictDataclassError, match="multiple of 8"):
        CenterNetConfig(image_size=60, stage_channels=(8, 16), stage_blocks=(1, 1))
    with pytest.raises(StrictDataclassError, match="equal length"):
        CenterNetConfig(stage_channels=(8, 16), stage_blocks=(1,))
    with pytest.raises(StrictDataclassError, match="box_region_threshold"):
        CenterNetConfig(box_region_threshold=1.5)
    with pytest.raises(StrictDataclassError, match="test_time_flips"):
        CenterNetConfig(test_time_flips=["diagonal"])
    with pytest.raises(StrictDataclassError, match="chromosome_length"):
        CenterNetConfig(chromosome_length=0)
    config = CenterNetConfig(**TINY)
    assert config.output_stride == 4 and config.coarsest_stride == 8 and config.id2label == {0: "chromosome"}


def test_boxes_are_fractions_of_whatever_input_the_model_is_given():
    model, _ = tiny_centernet()
    model.eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        model(pixel_values=torch.zeros(1, 1, 60, 64))
    with torch.no_grad():
        out = model(pixel_values=torch.zeros(1, 1, 96, 64))  # taller than config.image_size (64)
    assert out.heatmap_logits.shape == (1, 1, 24, 16) and out.pred_boxes.shape == (1, 24 * 16, 4)
    distances = torch.full((1, 4, 24, 16), 2.0)  # every location predicts a 4 x 4 px box about its own centre
    boxes = model._boxes_from_distances(distances).unflatten(1, (24, 16))
    # the cell at row 5, column 3 is centred on input pixel (x, y) = (14, 22)
    assert boxes[0, 5, 3].tolist() == pytest.approx([12 / 64, 20 / 96, 16 / 64, 24 / 96])


def test_targets_follow_the_input_size_not_the_config():
    config = CenterNetConfig(**TINY)  # image_size 64; the input here is 64 wide and 96 tall
    box = torch.tensor([[0.5, 0.25, 0.25, 0.125]])  # centred on input pixel (32, 24), 16 x 12 px
    heatmap, box_targets, weights = centernet_targets(box, 24, 16, config)
    assert (heatmap == 1.0).nonzero().tolist() == [[6, 8]]
    assert box_targets[6, 8].tolist() == pytest.approx([0.375, 0.1875, 0.625, 0.3125])
    assert float(weights.sum()) == pytest.approx(1.0)


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


def test_a_chromosome_whose_centre_lies_in_its_partners_region_still_regresses_its_own_box_there():
    config = CenterNetConfig(**TINY)
    # A long chromosome and a short one lying across its middle, 2 px off its centre: the short one's region covers
    # the long one's centre cell, which must still predict the long box (else the long one's peak duplicates the
    # short box and is suppressed).
    boxes = torch.tensor([[0.5, 0.5, 0.12, 0.7], [0.53, 0.5, 0.3, 0.1]])
    heatmap, box_targets, weights = centernet_targets(boxes, 16, 16, config)
    long_centre = (int(0.5 * 16), int(0.5 * 16))
    assert box_targets[long_centre].tolist() == pytest.approx([0.44, 0.15, 0.56, 0.85])
    assert float(weights[long_centre]) > 0


def test_two_chromosomes_centred_in_one_cell_get_a_peak_each():
    config = CenterNetConfig(**TINY)
    boxes = torch.tensor([[0.50, 0.50, 0.1, 0.4], [0.51, 0.51, 0.4, 0.1]])  # a cross, both centres in cell (8, 8)
    heatmap, box_targets, _ = centernet_targets(boxes, 16, 16, config)
    peaks = (heatmap == 1.0).nonzero().tolist()
    assert len(peaks) == 2 and [8, 8] in peaks
    other = next(p for p in peaks if p != [8, 8])
    assert max(abs(other[0] - 8), abs(other[1] - 8)) == 1  # the neighbouring cell
    assert {tuple(round(v, 3) for v in box_targets[tuple(p)].tolist()) for p in peaks} == {
        (0.45, 0.3, 0.55, 0.7), (0.31, 0.46, 0.71, 0.56)}


def test_pasted_chromosomes_lie_across_or_beside_another_with_their_own_box():
    field, boxes = metaphase_with([(banded_rod(), (30, 40), 0), (banded_rod(50), (150, 60), 90)], size=(240, 200))
    gray, boxes = np.asarray(field), np.asarray(boxes, dtype=np.float32)
    pasted_gray, pasted = paste_overlapping_chromosomes(gray, boxes, 20, np.random.default_rng(0))
    assert pasted_gray.shape == gray.shape and pasted_gray.dtype == np.uint8
    assert len(pasted) > len(boxes) and (pasted[: len(boxes)] == boxes).all()  # the real boxes stay as they were
    new = pasted[len(boxes):]
    assert (new[:, :2] >= 0).all() and (new[:, 2] <= 240).all() and (new[:, 3] <= 200).all()
    overlaps = box_iou(torch.as_tensor(new), torch.as_tensor(pasted)).numpy()
    overlaps[np.arange(len(new)), len(boxes) + np.arange(len(new))] = 0  # each with itself
    assert (overlaps.max(1) <= 0.6 + 1e-6).all()  # never one box over two
    # A pasted rod is as long as the rods of this image, and the image is darker only where something was pasted.
    sides = np.maximum(new[:, 2] - new[:, 0], new[:, 3] - new[:, 1])
    assert ((sides > 35) & (sides < 75)).all()
    covered = np.zeros(gray.shape, dtype=bool)
    for x0, y0, x1, y1 in new.astype(int):
        covered[y0:y1, x0:x1] = True
    assert (pasted_gray[~covered] == gray[~covered]).all() and (pasted_gray[covered] <= gray[covered]).all()
    # Too few whole chromosomes to pair: nothing changes.
    lone = boxes[:1]
    assert paste_overlapping_chromosomes(gray, lone, 3, np.random.default_rng(0))[1].shape == (1, 4)


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
    processor = CenterNetImageProcessor(size=64)
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


def test_off_peak_decoding_adds_the_cells_beside_a_peak_at_a_fraction_of_their_heat():
    processor = CenterNetImageProcessor(size=64)
    logits = torch.full((1, 1, 16, 16), -8.0)
    logits[0, 0, 4, 8], logits[0, 0, 4, 9] = 3.0, 2.0  # a peak and its shoulder
    outputs = CenterNetObjectDetectionOutput(heatmap_logits=logits, pred_boxes=torch.rand(1, 256, 4))
    heat = torch.sigmoid(torch.tensor([3.0, 2.0]))
    peaks_only = processor.post_process_object_detection(outputs, threshold=0.3)[0]
    assert peaks_only["scores"].tolist() == pytest.approx([heat[0].item()])
    dense = processor.post_process_object_detection(outputs, threshold=0.3, off_peak_weight=0.5)[0]
    assert dense["scores"].tolist() == pytest.approx([heat[0].item(), 0.5 * heat[1].item()])
    assert torch.equal(dense["boxes"][1], outputs.pred_boxes[0, 4 * 16 + 9])  # the shoulder's own box
    assert len(processor.post_process_object_detection(outputs, threshold=0.3, off_peak_weight=0.5, top_k=1)[0]["scores"]) == 1
    with pytest.raises(ValueError, match="off_peak_weight"):
        processor.post_process_object_detection(outputs, off_peak_weight=1.5)


def test_detector_finds_a_chromosome_whose_box_is_regressed_only_off_the_peaks():
    """Two crossing chromosomes share one peak, whose cell regresses the short one (it owns the shared cells); the
    long one's box comes only from a cell beside it. Peak-only decoding returns one box, off-peak decoding both."""
    model, processor = tiny_centernet()
    short, long = torch.tensor([0.40, 0.40, 0.60, 0.60]), torch.tensor([0.20, 0.45, 0.80, 0.55])

    def crossing(pixel_values, **kwargs):
        logits = torch.full((1, 1, 16, 16), -8.0)
        logits[0, 0, 8, 8], logits[0, 0, 8, 9] = 4.0, 3.0
        boxes = torch.zeros(1, 16, 16, 4)
        boxes[0, 8, 8], boxes[0, 8, 9] = short, long  # xyxy fractions of the input
        return CenterNetObjectDetectionOutput(heatmap_logits=logits, pred_boxes=boxes.flatten(1, 2))

    model.forward = crossing
    gray = np.full((64, 64), 255, np.uint8)
    assert len(ChromosomeDetector(model, processor, score_threshold=0.3, off_peak_weight=0)(gray)) == 1
    found = ChromosomeDetector(model, processor, score_threshold=0.3, off_peak_weight=0.5)(gray)
    assert np.allclose(found.boxes, torch.stack([short, long]).numpy() * 64)
    assert found.scores[1] == pytest.approx(0.5 * torch.sigmoid(torch.tensor(3.0)).item())
    model.config.off_peak_weight = 0.5
    assert ChromosomeDetector(model, processor).off_peak_weight == 0.5  # the checkpoint's setting by default
    with pytest.raises(ValueError, match="off_peak_weight"):
        ChromosomeDetector(model, processor, off_peak_weight=-0.1)
    with pytest.raises(StrictDataclassError):
        CenterNetConfig(**TINY, off_peak_weight=2.0)


def test_processor_pads_with_white_and_inverts():
    processor = CenterNetImageProcessor(size=64, image_mean=0.0, image_std=1.0)
    image = np.zeros((32, 64), np.uint8)  # black landscape strip: the bottom half of the square is padding
    pixels = processor(image, return_tensors="pt")
    assert pixels["pixel_values"].shape == (1, 1, 64, 64) and pixels["original_sizes"].tolist() == [[32, 64]]
    assert torch.allclose(pixels["pixel_values"][0, 0, :30], torch.ones(30, 64))  # ink
    assert torch.allclose(pixels["pixel_values"][0, 0, 34:], torch.zeros(30, 64))  # white padding
    larger = processor(image, return_tensors="pt", size=128)["pixel_values"]  # one call at another side
    assert larger.shape == (1, 1, 128, 128) and torch.allclose(larger[0, 0, 70:], torch.zeros(58, 128))
    with pytest.raises(ValueError, match="size must be positive"):
        processor(image, size=-32)


def test_auto_classes_round_trip(tmp_path):
    model, processor = tiny_centernet()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    loaded_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, CenterNetForObjectDetection) and isinstance(loaded_processor, CenterNetImageProcessor)
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


def test_box_offset_moves_every_box_within_the_image_and_travels_with_the_checkpoint(tmp_path):
    """The annotations' margin convention (`box_offset`, x0 y0 x1 y1 pixels) shifts every returned box, clipped to
    the image; it is saved in config.json and read back, and an explicit one overrides it."""
    model, processor = tiny_centernet()
    gray = np.asarray(two_rod_metaphases()[0]["image"])
    rows, cols = gray.shape
    centred = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.7)(gray)
    model.config.box_offset = (-1.0, -2.5, 0.5, -2.0)
    detector = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.7)
    moved = detector(gray)
    expected = centred.boxes + np.array([-1.0, -2.5, 0.5, -2.0], np.float32)
    expected = np.clip(expected, 0, [cols, rows, cols, rows])
    assert len(moved) == len(centred) and np.allclose(moved.boxes, expected, atol=1e-4)
    assert (moved.boxes >= 0).all() and (moved.boxes[:, 2] <= cols).all() and (moved.boxes[:, 3] <= rows).all()
    detector.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["box_offset"] == [-1.0, -2.5, 0.5, -2.0]
    assert np.allclose(ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0, nms_iou=0.7)(gray).boxes,
                       moved.boxes, atol=1e-4)
    plain = ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0, nms_iou=0.7, box_offset=(0, 0, 0, 0))
    assert np.allclose(plain(gray).boxes, centred.boxes, atol=1e-4)
    with pytest.raises(StrictDataclassError, match="box_offset"):
        CenterNetConfig(box_offset=(1.0, 2.0))
    with pytest.raises(ValueError, match="box_offset must be 4 finite"):
        ChromosomeDetector(model, processor, box_offset=(0.0, float("nan"), 0.0, 0.0))


def test_the_pipelines_candidates_hold_the_detectors_own_boxes_as_the_sure_ones():
    """The pipeline asks for more than the detector keeps (lower floor, looser suppression): the sure ones among
    them are the detector's own boxes (tests/test_counting.py has the looser suppression adding one)."""
    from karyohf.pipeline import detect_candidates

    model, processor = tiny_centernet()
    detector = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.3)
    gray = np.asarray(two_rod_metaphases()[0]["image"])
    own = detector(gray)
    found, sure = detect_candidates(detector, gray)
    assert sure.sum() == len(own) and np.allclose(found.boxes[sure], own.boxes) and len(found) >= len(own)
    with pytest.raises(ValueError, match="nms_iou must be in"):
        detector(gray, nms_iou=1.5)


def test_rescaled_side_brings_the_median_chromosome_to_the_learned_length():
    lengths = np.array([30.0, 40, 40, 45, 50])  # median 40 px in a 1024 x 800 image
    boxes = np.stack([np.zeros(5), np.zeros(5), lengths, lengths / 4], axis=1)  # lying rods: length is the width
    shape = (800, 1024)
    assert rescaled_side(shape, boxes, 512, 30, 32) == 768  # 1024 px * 30 / 40
    assert rescaled_side(shape, boxes, 512, 20, 32) == 512
    assert rescaled_side(shape, boxes, 512, 25, 32) == 640
    assert rescaled_side(shape, boxes, 512, 400, 32) == 1024  # at most twice image_size
    assert rescaled_side(shape, boxes, 512, 1, 32) == 256  # at least half
    assert rescaled_side(shape, boxes[:4], 512, 60, 32) == 512  # too few chromosomes to measure: image_size


def test_detector_measures_the_chromosomes_then_detects_at_the_rescaled_side(tmp_path, monkeypatch):
    model, processor = tiny_centernet()
    model.config.chromosome_length = 8.0
    model.config.test_time_flips = ("horizontal",)
    model.config.off_peak_weight = 0.5
    detector = ChromosomeDetector(model, processor, score_threshold=0.05)
    assert detector.chromosome_length == 8.0
    gray = np.asarray(two_rod_metaphases()[0]["image"])  # 200 x 240: the 64 px input shrinks it 3.75x
    untouched = detector(gray)  # an untrained model finds too few to measure: the default side, no error
    assert untouched.boxes.shape[1:] == (4,)
    passes = []

    def fake_pass(image, side, flips, threshold, off_peak_weight=0.0):
        passes.append((side, flips, threshold, off_peak_weight))
        box = torch.tensor([[0.0, 0.0, 20.0, 10.0]])  # 20 px long in the image: 5.33 px in the 64 px input
        return box.repeat(6, 1), torch.full((6,), 0.9)

    monkeypatch.setattr(detector, "_centernet_pass", fake_pass)
    detector(gray)
    # measured on the peaks at 64 * 8 / 5.33 = 96
    assert passes == [(64, (), DEFAULT_SCORE_THRESHOLD, 0.0), (96, ("horizontal",), 0.05, 0.5)]
    passes.clear()
    fixed = ChromosomeDetector(model, processor, score_threshold=0.05, chromosome_length=0)
    monkeypatch.setattr(fixed, "_centernet_pass", fake_pass)
    fixed(gray)
    assert passes == [(64, ("horizontal",), 0.05, 0.5)]  # rescaling off: one pass at image_size
    detector.save_pretrained(tmp_path)
    assert ChromosomeDetector.from_pretrained(tmp_path).chromosome_length == 8.0  # saved with the weights
    with pytest.raises(ValueError, match="chromosome_length"):
        ChromosomeDetector(model, processor, chromosome_length=-1.0)


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
        crop, moved = random_crop_at_model_scale(gray, boxes, scale=64 / 240, crop_size=48)
        assert crop.shape == (48, 48) and ((moved >= 0) & (moved <= 48)).all()
        for x0, y0, x1, y1 in moved.round().astype(int):
            assert crop[y0:y1, x0:x1].min() < 100  # a dark band inside every kept box
    shrunk = shrink_metaphase({"image": image, "boxes": boxes.tolist()}, image_size=96)  # zoomed 1.25x: 120 px
    assert shrunk["image"].size == (120, 100) and np.allclose(np.asarray(shrunk["boxes"]), boxes / 2)


def test_chromosome_length_sets_the_training_scale():
    # Rods 60 and 50 px long (median 55) in a 240 x 200 metaphase.
    image, boxes = metaphase_with([(banded_rod(60), (30, 40), 0), (banded_rod(50), (140, 60), 90)], size=(240, 200))
    boxes = np.asarray(boxes, dtype=np.float32)
    assert median_chromosome_length(boxes) == pytest.approx(55, abs=2)
    assert model_scale((200, 240), boxes, 96) == pytest.approx(0.4)  # the padded square resized to 96
    scale = model_scale((200, 240), boxes, 96, chromosome_length=22)
    assert scale == pytest.approx(22 / median_chromosome_length(boxes))
    assert model_scale((200, 240), boxes[:0], 96, chromosome_length=22) == pytest.approx(0.4)  # nothing to measure
    shrunk = shrink_metaphase({"image": image, "boxes": boxes.tolist()}, image_size=96, chromosome_length=22)
    assert median_chromosome_length(np.asarray(shrunk["boxes"])) == pytest.approx(1.25 * 22, rel=1e-3)
    collator = CenterNetCollator(CenterNetImageProcessor(size=96), augment=True, crop_size=64, zoom=(1.0, 1.0),
                                 chromosome_length=22)
    np.random.seed(1)
    torch.manual_seed(1)  # the flips and turns draw from torch
    labels = collator([{"image": image, "boxes": boxes.tolist()}] * 8)["labels"]
    lengths = [float(l["boxes"][:, 2:].amax(-1).max()) * 64 for l in labels if len(l["boxes"])]
    assert lengths and all(length <= 22 * 60 / 55 + 0.5 for length in lengths)  # the longer rod, at model scale
    assert any(length == pytest.approx(22 * 60 / 55, abs=0.5) for length in lengths)


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
    # A new detector decodes off-peak cells too, and its card reports the peaks-only row beside it.
    assert ChromosomeDetector.from_pretrained(output).off_peak_weight == train_centernet.DEFAULT_OFF_PEAK_WEIGHT
    assert metrics["centernet_peaks_only"]["images"] == 3 and "heatmap peaks only" in (output / "README.md").read_text()
    # Re-scoring with test-time flips saves the setting with the weights and describes it in the card.
    train_centernet.main(["--init", str(output), "--output-dir", str(output), "--data-root", str(data),
                          "--evaluate-only", "--test-time-flips", "horizontal", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(output).test_time_flips == ("horizontal",)
    assert "averaged with its horizontal mirror" in (output / "README.md").read_text()
    assert json.loads((output / "metrics.json").read_text())["training"]["steps"] == 3
    # So does the chromosome-length scale, which a continued run then trains with.
    train_centernet.main(["--init", str(output), "--output-dir", str(output), "--data-root", str(data),
                          "--evaluate-only", "--chromosome-length", "20", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(output).chromosome_length == 20.0
    assert "median length is 20 input pixels" in (output / "README.md").read_text()
    train_centernet.main(["--init", str(output), "--output-dir", str(output), "--data-root", str(data),
                          "--evaluate-only", "--off-peak-weight", "0", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(output).off_peak_weight == 0.0
    assert "centernet_peaks_only" not in json.loads((output / "metrics.json").read_text())
    with pytest.raises(SystemExit):
        train_centernet.parse_args(["--output-dir", str(output), "--off-peak-weight", "1.5"])
    continued = tmp_path / "continued"
    train_centernet.main(["--init", str(output), "--output-dir", str(continued), "--data-root", str(data),
                          "--max-steps", "2", "--batch-size", "2", "--crop-size", "48", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(continued).chromosome_length == 20.0
    train_centernet.main(["--init", str(continued), "--output-dir", str(continued), "--data-root", str(data),
                          "--evaluate-only", "--chromosome-length", "0", "--threads", "1"])
    assert ChromosomeDetector.from_pretrained(continued).chromosome_length == 0.0
    assert "resized to 64 px" in (continued / "README.md").read_text()


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
