"""Detection: box frames, NMS, the OWLv2 loss through the Trainer, the detector's inputs and outputs, the baseline, scoring."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Trainer, TrainingArguments

from karyohf.detection import (
    ChromosomeDetector,
    Detections,
    OtsuBaselineDetector,
    non_maximum_suppression,
    padded_cxcywh_to_xyxy,
    xyxy_to_padded_cxcywh,
)
from karyohf.detection import detector as detector_module
from karyohf.detection.evaluation import count_matches, score_detections
from karyohf.detection.owlv2 import (
    QUERY,
    ChromosomeDetectionLoss,
    DetectionCollator,
    dense_box_loss,
    owlv2_from_scratch,
    predict,
    query_embedding,
)
from karyohf.detection.boxes import random_dihedral
from tests.synthetic import banded_rod, metaphase_with

torch.set_num_threads(1)

TINY = dict(image_size=64, patch_size=16, vision_width=32, vision_layers=1, vision_heads=2, text_width=16, text_layers=1, text_heads=2)


def tiny_owlv2(seed: int = 0):
    torch.manual_seed(seed)
    return owlv2_from_scratch(**TINY)


def two_rod_metaphases():
    """Two small fields (one landscape, one portrait) with separated rods, as dataset-style examples."""
    first, first_boxes = metaphase_with([(banded_rod(60), (30, 40), 0), (banded_rod(50), (140, 60), 90)], size=(240, 200))
    second, second_boxes = metaphase_with([(banded_rod(70), (40, 30), 30), (banded_rod(40), (90, 160), 0)], size=(180, 240))
    return [{"image": first, "boxes": first_boxes}, {"image": second, "boxes": second_boxes}]


# --- Box frames and NMS ----------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(100, 300), (300, 100), (64, 64)])
def test_box_normalisation_round_trips_and_is_relative_to_the_padded_square(height, width):
    boxes = np.array([[0, 0, width, height], [10, 20, 40, 50], [width - 5, height - 7, width, height]], dtype=np.float32)
    normalised = xyxy_to_padded_cxcywh(boxes, height, width)
    side = max(height, width)
    # The whole image spans width/side by height/side of the square, anchored at its top left.
    assert torch.allclose(normalised[0], torch.tensor([width / 2, height / 2, width, height]) / side)
    assert torch.allclose(padded_cxcywh_to_xyxy(normalised, height, width), torch.as_tensor(boxes), atol=1e-4)


def test_boxes_reaching_into_the_padding_are_clipped_to_the_image():
    height, width = 100, 300  # the padded square adds 200 rows below
    box = torch.tensor([[0.5, 0.5, 0.2, 0.4]])  # rows 90..210 of the square
    assert padded_cxcywh_to_xyxy(box, height, width).tolist() == [[120.0, 90.0, 180.0, 100.0]]


def test_box_conversion_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        xyxy_to_padded_cxcywh(np.zeros((2, 3)), 10, 10)
    assert xyxy_to_padded_cxcywh(np.zeros((0, 4)), 10, 10).shape == (0, 4)


def test_nms_drops_only_overlaps_above_the_threshold_and_within_a_group():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 20], [50, 50, 60, 60]]
    scores = [0.9, 0.8, 0.7, 0.6]
    # IoU(0, 1) = 90/110 ≈ 0.82; IoU(0, 2) = 0.5; box 3 overlaps nothing.
    assert non_maximum_suppression(boxes, scores, iou_threshold=0.6).tolist() == [0, 2, 3]
    assert non_maximum_suppression(boxes, scores, iou_threshold=0.4).tolist() == [0, 3]
    assert non_maximum_suppression(boxes, scores, iou_threshold=0.9).tolist() == [0, 1, 2, 3]
    assert non_maximum_suppression(boxes, scores, iou_threshold=0.4, groups=[0, 1, 0, 0]).tolist() == [0, 1, 3]
    # Order follows the scores, not the input.
    assert non_maximum_suppression(boxes[::-1], scores, iou_threshold=0.6).tolist() == [0, 1, 2]


def test_default_nms_keeps_both_boxes_of_two_crossing_chromosomes():
    # Two long chromosomes crossing at a shallow angle: their axis-aligned boxes overlap by IoU 0.55.
    boxes = [[0, 0, 20, 60], [5, 3, 25, 63]]
    assert non_maximum_suppression(boxes, [0.9, 0.8], iou_threshold=detector_module.DEFAULT_NMS_IOU).tolist() == [0, 1]


def test_nms_handles_nothing_and_rejects_nonsense():
    assert non_maximum_suppression(np.zeros((0, 4)), [], iou_threshold=0.5).tolist() == []
    with pytest.raises(ValueError, match="iou_threshold"):
        non_maximum_suppression([[0, 0, 1, 1]], [1.0], iou_threshold=1.5)
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        non_maximum_suppression([[0, 0, 1, 1]], [1.0, 0.5], iou_threshold=0.5)


# --- OWLv2 pieces ----------------------------------------------------------------------------------


def test_query_tokenizer_follows_owlv2_conventions():
    _, processor = tiny_owlv2()
    tokenizer = processor.tokenizer
    ids = processor(text=[QUERY], return_tensors="pt")["input_ids"][0].tolist()
    assert len(ids) == tokenizer.model_max_length == 16  # padded to the text tower's positions
    assert ids[:3] == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(QUERY + "</w>"), tokenizer.eos_token_id]
    assert tokenizer.bos_token_id > 0 and tokenizer.pad_token_id == 0 and set(ids[3:]) == {0}
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # the text tower pools at the highest id


def test_cached_query_gives_the_full_forward_pass_outputs():
    model, processor = tiny_owlv2()
    batch = DetectionCollator(processor)(two_rod_metaphases())
    batch.pop("labels")
    with torch.no_grad():
        full = model(**batch)
        logits, boxes = predict(model, batch["pixel_values"], query_embedding(model, processor))
    assert torch.allclose(logits, full.logits[..., 0], atol=1e-5)
    assert torch.allclose(boxes, full.pred_boxes, atol=1e-6)


def test_collator_targets_are_padded_square_fractions():
    _, processor = tiny_owlv2()
    examples = two_rod_metaphases()
    batch = DetectionCollator(processor)(examples)
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["input_ids"].shape == (2, 16)
    second = batch["labels"][1]
    assert second["class_labels"].tolist() == [0, 0]
    # Portrait 180 × 240 (w × h): x fractions stay below 180/240.
    assert torch.allclose(padded_cxcywh_to_xyxy(second["boxes"], 240, 180), torch.tensor(examples[1]["boxes"], dtype=torch.float32))
    assert float((second["boxes"][:, 0] + second["boxes"][:, 2] / 2).max()) <= 180 / 240


def test_dihedral_augmentation_keeps_every_box_on_its_chromosome():
    example = two_rod_metaphases()[1]
    gray = np.asarray(example["image"])
    boxes = np.asarray(example["boxes"], dtype=np.float32)
    torch.manual_seed(0)
    seen = set()
    for _ in range(24):
        turned, moved = random_dihedral(gray, boxes)
        seen.add(turned.shape)
        covered = np.zeros(turned.shape, bool)
        for x0, y0, x1, y1 in np.rint(moved).astype(int):
            assert turned[y0:y1, x0:x1].min() < 100  # the rod's dark bands
            covered[y0:y1, x0:x1] = True
        assert not (turned[~covered] < 200).any()  # and no ink outside the boxes
    assert seen == {(240, 180), (180, 240)}


def test_dense_box_loss_is_zero_for_perfect_boxes_and_ignores_uncovered_patches():
    target = {"boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]]), "class_labels": torch.zeros(1, dtype=torch.int64)}
    predicted = torch.rand(1, 16, 4) * 0.3 + 0.1  # 4 × 4 patches; the box covers the middle 2 × 2
    rows, columns = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    covered = ((rows >= 1) & (rows <= 2) & (columns >= 1) & (columns <= 2)).reshape(-1)
    predicted[0, covered] = target["boxes"][0]
    assert float(dense_box_loss(predicted, [target], 5.0, 2.0)) == pytest.approx(0.0, abs=1e-6)
    predicted[0, covered.nonzero()[0]] = torch.tensor([0.4, 0.4, 0.3, 0.3])
    assert float(dense_box_loss(predicted, [target], 5.0, 2.0)) > 0.1


def test_loss_decreases_when_trained_through_the_trainer(tmp_path):
    model, processor = tiny_owlv2()
    examples = two_rod_metaphases()
    arguments = TrainingArguments(
        output_dir=str(tmp_path), max_steps=40, per_device_train_batch_size=2, per_device_eval_batch_size=2,
        learning_rate=3e-3, lr_scheduler_type="linear", warmup_steps=2, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, label_names=["labels"], remove_unused_columns=False,
        prediction_loss_only=True, dataloader_num_workers=0, seed=0,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=examples, eval_dataset=examples,
                      data_collator=DetectionCollator(processor), compute_loss_func=ChromosomeDetectionLoss(),
                      processing_class=processor)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert np.isfinite(before) and after < 0.7 * before


# --- The detector ------------------------------------------------------------------------------------


def test_detector_returns_the_same_boxes_for_gray_rgb_and_16_bit_versions_of_an_image():
    model, processor = tiny_owlv2()
    detector = ChromosomeDetector(model, processor, score_threshold=0.0, nms_iou=0.7)
    image = two_rod_metaphases()[0]["image"]
    gray = np.asarray(image)
    found = detector(gray)
    assert len(found) > 0 and found.boxes.dtype == np.float32 and found.boxes.shape == (len(found), 4)
    assert (found.boxes[:, 0] >= 0).all() and (found.boxes[:, 2] <= 240).all() and (found.boxes[:, 3] <= 200).all()
    assert np.all(np.diff(found.scores) <= 0)
    for variant in (image.convert("RGB"), np.stack([gray] * 3, axis=-1), gray.astype(np.uint16) * 257):
        again = detector(variant)
        assert np.allclose(again.boxes, found.boxes, atol=1e-3) and np.allclose(again.scores, found.scores, atol=1e-5)


def test_detector_maps_model_boxes_back_to_original_pixels(monkeypatch):
    model, processor = tiny_owlv2()
    detector = ChromosomeDetector(model, processor, score_threshold=0.5)
    with pytest.raises(ValueError, match="CenterNet detectors only"):
        ChromosomeDetector(model, processor, test_time_flips=("horizontal",))
    patches = (64 // 16) ** 2

    def one_confident_box(model, pixels, query):
        logits = torch.full((1, patches), -10.0)
        logits[0, 3] = 5.0
        boxes = torch.full((1, patches, 4), 0.1)
        boxes[0, 3] = torch.tensor([0.5, 0.25, 0.2, 0.1])  # cx, cy, w, h of the padded square
        return logits, boxes

    monkeypatch.setattr(detector_module, "predict", one_confident_box)
    found = detector(np.full((100, 200), 230, np.uint8))  # landscape: the square's side is 200
    assert found.boxes.tolist() == [[80.0, 40.0, 120.0, 60.0]]
    assert found.scores[0] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())


def test_detector_handles_tiny_images_and_paths(tmp_path):
    model, processor = tiny_owlv2()
    detector = ChromosomeDetector(model, processor, score_threshold=0.0)
    tiny = detector(np.full((3, 5), 100, np.uint8))
    assert ((tiny.boxes[:, 2] <= 5) & (tiny.boxes[:, 3] <= 3)).all()
    path = tmp_path / "metaphase.png"
    two_rod_metaphases()[0]["image"].save(path)
    assert np.allclose(detector(path).boxes, detector(Image.open(path)).boxes)


def test_detector_errors_name_the_problem(tmp_path):
    model, processor = tiny_owlv2()
    detector = ChromosomeDetector(model, processor)
    with pytest.raises(FileNotFoundError, match="not found"):
        detector(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="shape"):
        detector(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="score_threshold"):
        ChromosomeDetector(model, processor, score_threshold=1.5)
    with pytest.raises(FileNotFoundError, match="config.json"):
        ChromosomeDetector.from_pretrained(tmp_path)


def test_detector_save_and_load_round_trip(tmp_path):
    model, processor = tiny_owlv2()
    detector = ChromosomeDetector(model, processor, score_threshold=0.0)
    detector.save_pretrained(tmp_path)
    loaded = ChromosomeDetector.from_pretrained(tmp_path, score_threshold=0.0)
    image = two_rod_metaphases()[1]["image"]
    first, second = detector(image), loaded(image)
    assert np.allclose(first.boxes, second.boxes, atol=1e-4) and np.allclose(first.scores, second.scores, atol=1e-6)
    assert torch.allclose(detector.query, loaded.query, atol=1e-6)
    assert loaded.processor.tokenizer(QUERY)["input_ids"] == processor.tokenizer(QUERY)["input_ids"]


# --- Baseline and scoring ----------------------------------------------------------------------------


def test_baseline_finds_separated_rods():
    rods = [(banded_rod(60), (20, 20), 0), (banded_rod(45), (120, 30), 90), (banded_rod(50), (60, 130), 45)]
    image, boxes = metaphase_with(rods, size=(240, 220))
    found = OtsuBaselineDetector()(image)
    assert len(found) == 3 and count_matches(found.boxes, np.array(boxes), iou_threshold=0.7) == 3
    assert len(OtsuBaselineDetector()(np.full((50, 50), 200, np.uint8))) == 0


def test_scoring_perfect_and_missing_detections():
    truth = [np.array([[0, 0, 10, 20], [30, 30, 50, 40]], np.float32), np.array([[5, 5, 15, 15]], np.float32)]
    sizes = [(60, 60), (20, 20)]
    perfect = [Detections(boxes=boxes, scores=np.ones(len(boxes), np.float32)) for boxes in truth]
    metrics, ground_truth, results = score_detections(truth, perfect, sizes)
    assert metrics["ap50"] == pytest.approx(1.0) and metrics["recall50"] == 1.0 and metrics["count_error_mean"] == 0
    assert len(ground_truth["annotations"]) == 3 and len(results) == 3
    half = [Detections(boxes=truth[0][:1], scores=np.ones(1, np.float32)), Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))]
    metrics, _, _ = score_detections(truth, half, sizes)
    assert metrics["recall50"] == pytest.approx(1 / 3) and metrics["precision50"] == 1.0
    assert metrics["count_error_median"] == 1.0 and metrics["ap50"] < 0.5


def test_ap_counts_every_detection_when_an_image_has_more_than_a_hundred():
    grid = np.array([[x, y, x + 8, y + 8] for x in range(0, 120, 10) for y in range(0, 130, 10)], np.float32)
    assert len(grid) > 100
    found = [Detections(boxes=grid, scores=np.linspace(1, 0.5, len(grid)).astype(np.float32))]
    metrics, _, _ = score_detections([grid], found, [(140, 130)])
    assert metrics["ap50"] == pytest.approx(1.0) and metrics["ap50_95"] == pytest.approx(1.0)


def test_baseline_on_real_validation_metaphases(real_data_root):
    from karyohf.data import load_metaphases, split_metaphases

    validation = split_metaphases(load_metaphases(real_data_root))["validation"].select(range(2))
    detector = OtsuBaselineDetector()
    matched = total = 0
    for example in validation:
        truth = np.asarray(example["boxes"], np.float32)
        matched += count_matches(detector(example["image"]).boxes, truth)
        total += len(truth)
    assert matched / total > 0.3


# --- The training and evaluation scripts, on a synthetic data folder ---------------------------------


def synthetic_metaphase_folder(root, images_per_side: int = 3):
    """A tseng2023/ folder of synthetic metaphases, with specimens chosen so both sides of the split get some."""
    import csv

    from karyohf.data import METAPHASES, in_validation

    folder = root / METAPHASES
    (folder / "images").mkdir(parents=True)
    candidates = [str(10000 + 10 * k) for k in range(200)]
    validation = [c for c in candidates if in_validation(c[:-1])][:images_per_side]
    train = [c for c in candidates if not in_validation(c[:-1])][:images_per_side]
    with open(folder / "images.csv", "w", newline="") as images, open(folder / "boxes.csv", "w", newline="") as boxes:
        image_rows, box_rows = csv.writer(images), csv.writer(boxes)
        image_rows.writerow(["image_id", "width", "height", "karyotype_status", "chromosome_count", "abnormal_pairs", "difficult", "n_boxes"])
        box_rows.writerow(["image_id", "label", "chromosome", "xmin", "ymin", "xmax", "ymax"])
        for index, image_id in enumerate(validation + train):
            example = two_rod_metaphases()[index % 2]
            example["image"].save(folder / "images" / f"{image_id}.jpg", quality=95)
            image_rows.writerow([image_id, example["image"].width, example["image"].height, "normal", 2, "", "no", 2])
            for x0, y0, x1, y1 in example["boxes"]:
                box_rows.writerow([image_id, "A1", "1", x0, y0, x1, y1])
    return root


def test_finetune_and_eval_scripts_run_end_to_end(tmp_path, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import eval_detection
    import finetune_owlv2

    data = synthetic_metaphase_folder(tmp_path / "data")
    output = tmp_path / "detector"
    finetune_owlv2.main([
        "--output-dir", str(output), "--data-root", str(data), "--image-size", "64", "--patch-size", "16",
        "--vision-width", "32", "--vision-layers", "1", "--vision-heads", "2", "--text-width", "16",
        "--max-steps", "3", "--batch-size", "2", "--eval-steps", "2", "--threads", "1",
    ])
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["owlv2"]["images"] == 3 and metrics["baseline"]["recall50"] > 0.5
    assert "chromosome detection" in (output / "README.md").read_text()
    detector = ChromosomeDetector.from_pretrained(output)
    assert detector.model.config.vision_config.image_size == 64

    monkeypatch.setattr(sys, "argv", ["eval_detection.py", str(output), "--data-root", str(data),
                                      "--output-dir", str(tmp_path / "scores"), "--threads", "1"])
    eval_detection.main()
    results = json.loads((tmp_path / "scores" / "results.json").read_text())
    ground_truth = json.loads((tmp_path / "scores" / "ground_truth.json").read_text())
    assert len(ground_truth["annotations"]) == 6 and all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
