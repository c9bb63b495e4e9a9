"""The shipped detector, identity model and aberration heads, loaded the way users and held-out scoring load them, on real
held-out data (skipped when the data or a checkpoint is absent)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

import karyohf  # noqa: F401  (registers the Auto classes)
from karyohf.aberrations import SHIPPED_HEADS, aberration_probabilities, head_folder, head_labels
from karyohf.crops import extract_chromosome
from karyohf.detection import ChromosomeDetector
from karyohf.detection.evaluation import count_matches
from karyohf.metrics import aberration_aucs
from karyohf.synthesis import synthesize

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
torch.set_num_threads(2)


def checkpoint(name: str) -> Path:
    folder = CHECKPOINTS / name
    if not (folder / "config.json").is_file():
        pytest.skip(f"no shipped checkpoint {name}")
    return folder


@pytest.fixture(scope="module")
def held_out_crops(real_data_root):
    """Held-out (validation-case) karyogram crops of chromosomes 5, 9 and 22 by class name, each with its cell's
    `cell_scale` (the heads read cell-normalised crops)."""
    from karyohf.crops import karyogram_crops
    from karyohf.data import load_karyogram_crops, split_karyogram_crops

    validation = split_karyogram_crops(load_karyogram_crops(real_data_root))["validation"]
    chosen = {4: "5", 8: "9", 21: "22"}
    cells = sorted(set(validation["cell_id"]))[:40]
    rows = [i for i, cell in enumerate(validation["cell_id"]) if cell in set(cells)]
    crops = {name: [] for name in chosen.values()}
    for example in karyogram_crops(validation.select(rows)):
        if example["chromosome"] in chosen:
            crops[chosen[example["chromosome"]]].append((example["image"], example["cell_scale"]))
    return crops


def normal_and_aberrant(crops, aberration, chromosome, partners=None, count=20):
    """(images, their cells' scales, labels): real normal crops, then derivatives synthesized from others."""
    normal = [extract_chromosome(c, (0, 0, c.width, c.height)) for c, _ in crops[:count]]
    aberrant = [synthesize(c, aberration, chromosome, None if partners is None else partners[k][0], rng=k).image
                for k, (c, _) in enumerate(crops[count : 2 * count])]
    scales = [scale for _, scale in crops[: 2 * count]]
    return normal + aberrant, scales, np.r_[np.zeros(len(normal)), np.ones(len(aberrant))]


def test_shipped_detector_finds_the_chromosomes_of_held_out_metaphases(real_data_root):
    from karyohf.data import load_metaphases, split_metaphases

    detector = ChromosomeDetector.from_pretrained(checkpoint("centernet-chromosomes"))
    validation = split_metaphases(load_metaphases(real_data_root))["validation"].shuffle(seed=1).select(range(4))
    matched = total = 0
    count_errors = []
    for example in validation:
        truth = np.asarray(example["boxes"], dtype=np.float32)
        found = detector(example["image"])
        matched += count_matches(found.boxes, truth)
        total += len(truth)
        count_errors.append(abs(len(found) - len(truth)))
    assert matched / total > 0.85 and np.median(count_errors) <= 3
    # The pipeline's weaker candidates come from a lower threshold for one call: the sure boxes stay exactly the same.
    with_candidates = detector(example["image"], score_threshold=0.05)
    sure = with_candidates.scores >= detector.score_threshold
    assert len(with_candidates) >= len(found) and detector.score_threshold == 0.3
    np.testing.assert_array_equal(with_candidates.boxes[sure], found.boxes)


def test_shipped_identity_model_names_held_out_chromosomes(real_data_root):
    """Through the three names held-out scoring uses: the Auto classes and `extract_chromosome`."""
    from karyohf.data import load_metaphases, split_metaphases
    from karyohf.identification import assign_within_cell

    folder = checkpoint("topvit-chromid")
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    validation = split_metaphases(load_metaphases(real_data_root))["validation"].shuffle(seed=2).select(range(3))
    per_crop = per_cell = total = 0
    for example in validation:
        crops = [extract_chromosome(example["image"], box) for box in example["boxes"]]
        with torch.no_grad():
            probabilities = model(**processor(crops, return_tensors="pt")).logits.softmax(-1).numpy()
        truth = np.asarray(example["chromosomes"])
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        per_crop += int((probabilities.argmax(-1) == truth).sum())
        per_cell += int((assign_within_cell(probabilities, names) == truth).sum())
        total += len(truth)
    assert per_crop / total > 0.85 and per_cell >= per_crop - 2


def test_shipped_del5q_head_separates_synthesized_deletions_from_real_fives(held_out_crops):
    folder = checkpoint("topvit-del5q")
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    assert model.config.id2label == {0: "normal", 1: "del(5q)"}
    images, scales, labels = normal_and_aberrant(held_out_crops["5"], "del(5q)", "5")
    scores = aberration_probabilities(model, processor, images, scales)[:, 1]
    assert aberration_aucs(labels, scores)["roc_auc"] > 0.85


def test_shipped_t9_22_head_separates_both_derivatives(held_out_crops):
    folder = checkpoint("topvit-t9-22")
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert names == ["normal", "der(9)t(9;22)", "der(22)t(9;22)"]
    nines, twenty_twos = held_out_crops["9"], held_out_crops["22"]
    for target, crops, partners, column in (("9", nines, twenty_twos, 1), ("22", twenty_twos, nines, 2)):
        count = min(15, len(crops) // 2, len(partners))
        images, scales, labels = normal_and_aberrant(crops, "t(9;22)", target, partners, count)
        scores = aberration_probabilities(model, processor, images, scales)[:, column]
        assert aberration_aucs(labels, scores)["roc_auc"] > 0.85, target


@pytest.mark.parametrize("name", SHIPPED_HEADS)
def test_each_shipped_head_is_what_the_registry_says(name):
    """`SHIPPED_HEADS` (what train_aberration.py trains, what the benchmarks measure) and the shipped folders agree;
    the pipeline reads the same chromosomes from the head's own labels."""
    from karyohf.aberrations import AberrationHead, screened_chromosomes

    folder = checkpoint(head_folder(name))
    head = AberrationHead.from_pretrained(folder)
    assert head.label_names == head_labels(name)
    assert head.screened == set(screened_chromosomes(name))
