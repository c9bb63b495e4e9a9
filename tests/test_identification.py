"""Identification stage around the model: metrics, the batched identifier, the karyogram layout."""

import numpy as np
import pytest
import torch

from karyohf.cytogenetics import CHROMOSOMES
from karyohf.identification import ChromosomeIdentifier, assign_within_cell
from karyohf.karyogram import render_karyogram
from karyohf.metrics import accuracy_at_retention, confusion_matrix, entropy_curve, prediction_entropy
from karyohf.models.topvit import TopViTImageProcessor, TopViTConfig, TopViTForImageClassification
from tests.synthetic import banded_rod


def test_entropy_is_zero_when_certain_and_log_k_when_uniform():
    assert prediction_entropy(np.eye(3))[0] == pytest.approx(0, abs=1e-9)
    assert prediction_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(np.log(4))


def test_entropy_filter_sets_aside_the_uncertain_mistakes_first():
    # 90 confident right answers, 10 uncertain wrong ones: keeping the confident 90% is perfect.
    right = np.tile([0.98, 0.01, 0.01], (90, 1))
    wrong = np.tile([0.4, 0.35, 0.25], (10, 1))
    probabilities = np.vstack([right, wrong])
    labels = np.array([0] * 90 + [1] * 10)
    curve = entropy_curve(probabilities, labels)
    assert curve["accuracy"][-1] == pytest.approx(0.9) and curve["retained"][-1] == pytest.approx(1.0)
    assert accuracy_at_retention(curve, 0.9) == pytest.approx(1.0)


def test_confusion_matrix_counts_true_by_predicted():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_identifier_batches_and_returns_probabilities_and_embeddings():
    config = TopViTConfig(image_size=(32, 16), patch_size=8, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    identifier = ChromosomeIdentifier(TopViTForImageClassification(config),
                                      TopViTImageProcessor(size={"height": 32, "width": 16}), batch_size=2)
    crops = [banded_rod(length=20 + 10 * k) for k in range(5)]
    result = identifier(crops)
    assert result.probabilities.shape == (5, 24) and result.embeddings.shape == (5, 32)
    assert np.allclose(result.probabilities.sum(1), 1, atol=1e-5)
    assert all(label in CHROMOSOMES for label in result.labels)
    one_by_one = np.vstack([identifier([crop]).probabilities for crop in crops])
    assert np.allclose(one_by_one, result.probabilities, atol=1e-5)
    with pytest.raises(ValueError, match="no chromosome crops"):
        identifier([])


def _cell_probabilities(argmax_classes, confidence):
    """One row per crop: `confidence` on its argmax class, the rest spread evenly."""
    probabilities = np.full((len(argmax_classes), 24), (1 - confidence) / 23)
    probabilities[np.arange(len(argmax_classes)), argmax_classes] = confidence
    return probabilities


def test_cell_context_moves_a_third_copy_to_the_class_short_of_one():
    # A normal female cell whose crop-level argmax calls one 5 a "4": three 4s and one 5.
    truth = np.repeat(np.arange(23), 2)  # 1..22 and X, two each
    probabilities = _cell_probabilities(truth, 0.9)
    probabilities[9] = 0.0
    probabilities[9, [3, 4]] = [0.55, 0.45]  # crop 9 is a 5 (class 4) that looks slightly more like a 4
    assert probabilities.argmax(1)[9] == 3
    assigned = assign_within_cell(probabilities, CHROMOSOMES)
    assert (assigned == truth).all()
    # Without the copy-number prior (zero cost), the crop-level answer stands.
    assert (assign_within_cell(probabilities, CHROMOSOMES, extra_copy_cost=0.0) == probabilities.argmax(1)).all()


def test_cell_context_keeps_a_trisomy_the_crops_clearly_show():
    truth = np.concatenate([np.repeat(np.arange(23), 2), [20]])  # 47,XX,+21
    assigned = assign_within_cell(_cell_probabilities(truth, 0.999), CHROMOSOMES)
    assert (assigned == truth).all() and (assigned == 20).sum() == 3


def test_cell_context_allows_one_y_and_refuses_misshaped_input():
    truth = np.concatenate([np.repeat(np.arange(22), 2), [22, 23]])  # 46,XY
    assert (assign_within_cell(_cell_probabilities(truth, 0.9), CHROMOSOMES) == truth).all()
    with pytest.raises(ValueError, match="probabilities must be"):
        assign_within_cell(np.ones((3, 5)) / 5, CHROMOSOMES)
    with pytest.raises(ValueError, match="extra_copy_cost"):
        assign_within_cell(_cell_probabilities(truth, 0.9), CHROMOSOMES, extra_copy_cost=-1)


def test_cell_context_gives_no_free_y_to_a_female_cell_nor_a_free_second_x_to_a_male_one():
    female = np.repeat(np.arange(23), 2)  # 46,XX
    probabilities = _cell_probabilities(female, 0.9)
    probabilities[42] = 0.0
    probabilities[42, [21, 23]] = [0.45, 0.55]  # crop 42 is a 22 that looks slightly more like a Y
    assert (assign_within_cell(probabilities, CHROMOSOMES) == female).all()
    male = np.concatenate([np.repeat(np.arange(22), 2), [22, 23]])  # 46,XY
    probabilities = _cell_probabilities(male, 0.9)
    probabilities[12] = 0.0
    probabilities[12, [6, 22]] = [0.45, 0.55]  # crop 12 is a 7 that looks slightly more like an X
    assert (assign_within_cell(probabilities, CHROMOSOMES) == male).all()
    xxy = np.concatenate([male, [22]])  # 47,XXY that the crops clearly show is kept
    assert (assign_within_cell(_cell_probabilities(xxy, 0.999), CHROMOSOMES) == xxy).all()


def test_karyogram_puts_each_class_in_its_place():
    crops = [banded_rod(length=80), banded_rod(length=20)]
    sheet = render_karyogram(crops, ["1", "Y"])
    ink = np.asarray(sheet) < 100
    columns = np.nonzero(ink.any(0))[0]
    rows = np.nonzero(ink.any(1))[0]
    assert rows.min() < sheet.height / 4 and rows.max() > sheet.height * 3 / 4  # chr1 top row, Y bottom row
    assert columns.min() < sheet.width / 4
    with pytest.raises(ValueError, match="labels must be among"):
        render_karyogram(crops, ["1", "23"])
    with pytest.raises(ValueError, match="2 crops but 1 labels"):
        render_karyogram(crops, ["1"])


def test_each_dataloader_worker_augments_from_its_own_stream():
    """Copies of one generator in several workers would vary every worker's crops identically."""
    from karyohf.crops import extract_chromosome
    from karyohf.training import CropCollator

    rod = extract_chromosome(banded_rod(length=60), (0, 0, 40, 80))
    examples = [{"image": rod, "chromosome": 0}] * 4
    collator = CropCollator(TopViTImageProcessor(size={"height": 32, "width": 16}), augment=True, seed=0)
    loader = torch.utils.data.DataLoader(examples, batch_size=2, collate_fn=collator, num_workers=2)
    first, second = (batch["pixel_values"] for batch in loader)  # one batch from each worker
    assert not torch.equal(first, second)
    again = [batch["pixel_values"] for batch in loader]  # the same seed replays the same streams
    assert torch.equal(again[0], first) and torch.equal(again[1], second)


def test_step_time_counts_the_workers_even_on_a_dataset_of_few_batches():
    from karyohf.crops import extract_chromosome
    from karyohf.training import CropCollator, seconds_per_step

    rod = extract_chromosome(banded_rod(length=60), (0, 0, 40, 80))
    examples = [{"image": rod, "chromosome": k % 2} for k in range(8)]  # two batches: fewer than the workers prefetch
    processor = TopViTImageProcessor(size={"height": 32, "width": 16})
    model = TopViTForImageClassification(TopViTConfig(image_size=(32, 16), patch_size=8, hidden_size=16,
                                                      num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))
    for workers in (0, 2):
        assert 0 < seconds_per_step(model, CropCollator(processor, augment=True, seed=0), examples, 4, workers) < 30


def test_identify_cell_reads_a_cell_the_same_at_any_magnification():
    """A model of cell-normalised crops (its processor's `cell_reference_length`) sees one cell imaged at 1x and at
    2x as the same crops; a model of native-scale crops sees them as they are."""
    from karyohf.crops import REFERENCE_LENGTH
    from karyohf.identification import CellIdentification

    config = TopViTConfig(image_size=(64, 32), patch_size=8, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    model = TopViTForImageClassification(config)
    lengths = [140, 120, 90, 80, 75, 50, 30]

    def cell(magnification):
        return [banded_rod(length=round(length * magnification), width=round(12 * magnification)) for length in lengths]

    normalised = ChromosomeIdentifier(model, TopViTImageProcessor(size={"height": 64, "width": 32},
                                                                      cell_reference_length=REFERENCE_LENGTH))
    def read_apart(first, second):  # mean grey-level difference of the crops the model read
        return np.mean([np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() for a, b in zip(first.crops, second.crops)])

    at_one, at_two = normalised.identify_cell(cell(1.0)), normalised.identify_cell(cell(2.0))
    assert isinstance(at_one, CellIdentification) and len(at_one.labels) == len(lengths)
    assert at_two.scale == pytest.approx(at_one.scale / 2, rel=0.05)
    assert at_one.labels == [at_one.label_names[i] for i in assign_within_cell(at_one.probabilities, at_one.label_names)]

    native = ChromosomeIdentifier(model, TopViTImageProcessor(size={"height": 64, "width": 32}))
    native_one, native_two = native.identify_cell(cell(1.0)), native.identify_cell(cell(2.0))
    assert native.cell_reference_length is None and native_one.scale == 1.0
    assert read_apart(at_one, at_two) < 0.2 * read_apart(native_one, native_two)


def test_reimaging_loses_fine_bands_keeps_the_size_and_the_white_background():
    """The optics augmentation shows a crop as a microscope of less resolution would: bands one pixel apart are
    gone at half the magnification, the chromosome's outline and the background are not."""
    from PIL import Image

    from karyohf.augmentation import reimage

    canvas = np.full((64, 32), 255, np.uint8)
    canvas[8:56, 10:22] = np.where(np.arange(8, 56)[:, None] % 2 == 0, 40, 160)  # 1-px bands
    crop = Image.fromarray(canvas)
    sharp = reimage(crop, 1.0, 0.3)
    coarse = np.asarray(reimage(crop, 0.5, 0.5), np.float64)
    assert sharp.size == crop.size and coarse.shape == canvas.shape
    band_contrast = lambda image: np.abs(np.diff(np.asarray(image, np.float64)[16:48, 14:18], axis=0)).mean()
    assert band_contrast(sharp) > 40 and band_contrast(coarse) < 10
    assert coarse[:4].min() > 250 and coarse[16:48, 14:18].mean() < 140  # white background, the ink still there


def test_the_training_collator_reimages_crops_as_its_optics_say():
    """`CropCollator(optics=...)` reaches `augment_crop`: a recipe that re-images every crop at a quarter of the
    magnification washes out 1-px bands that a recipe which re-images none keeps."""
    from PIL import Image

    from karyohf.augmentation import Optics
    from karyohf.models.topvit import TopViTImageProcessor
    from karyohf.training import CropCollator

    canvas = np.full((64, 32), 255, np.uint8)
    canvas[8:56, 10:22] = np.where(np.arange(8, 56)[:, None] % 2 == 0, 40, 160)
    examples = [{"image": Image.fromarray(canvas), "chromosome": 0}] * 8
    processor = TopViTImageProcessor(size={"height": 199, "width": 99})  # the canvas itself: no resize to blur

    def band_contrast(optics: Optics) -> float:
        pixels = CropCollator(processor, augment=True, seed=0, optics=optics)(examples)["pixel_values"].numpy()
        return float(np.abs(np.diff(pixels, axis=2)).mean())

    never = Optics(probability=0.0, sigma=(0.3, 0.3), magnification=(1.0, 1.0))
    always = Optics(probability=1.0, sigma=(1.0, 1.0), magnification=(0.25, 0.25))
    assert band_contrast(always) < 0.5 * band_contrast(never)


def test_the_training_collator_reimages_each_source_by_its_own_optics():
    """`source_optics` shows the karyogram crops of a batch a harder microscope than its metaphase crops: only the
    karyogram crops lose their 1-px bands."""
    from PIL import Image

    from karyohf.augmentation import Optics
    from karyohf.models.topvit import TopViTImageProcessor
    from karyohf.training import CropCollator

    canvas = np.full((64, 32), 255, np.uint8)
    canvas[8:56, 10:22] = np.where(np.arange(8, 56)[:, None] % 2 == 0, 40, 160)
    sources = ["metaphase", "karyogram"] * 4
    examples = [{"image": Image.fromarray(canvas), "chromosome": 0, "source": source} for source in sources]
    processor = TopViTImageProcessor(size={"height": 199, "width": 99})
    never = Optics(probability=0.0, sigma=(0.3, 0.3), magnification=(1.0, 1.0))
    always = Optics(probability=1.0, sigma=(1.0, 1.0), magnification=(0.25, 0.25))
    pixels = CropCollator(processor, augment=True, seed=0, optics=never,
                          source_optics={"karyogram": always})(examples)["pixel_values"].numpy()
    contrast = np.abs(np.diff(pixels, axis=2)).mean(axis=(1, 2, 3))
    metaphase, karyogram = contrast[0::2], contrast[1::2]
    assert karyogram.max() < 0.5 * metaphase.min()
