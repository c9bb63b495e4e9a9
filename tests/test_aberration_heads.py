"""Aberration heads (TopViT classifiers over normal + aberrations), LoRA adapters, the de novo index, and AUCs."""

import json
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from peft import PeftModel

from karyohf.aberrations import NORMAL, DeNovoIndex, aberration_probabilities
from karyohf.crops import extract_chromosome, rescale_chromosome
from karyohf.head_training import aberration_classifier, train_aberration_classifier, with_lora
from karyohf.metrics import aberration_aucs
from karyohf.models.topvit import TopViTForImageClassification, TopViTImageProcessor
from karyohf.synthesis import dataset_features, dataset_folder
from tests.synthetic import banded_rod
from tests.test_topvit import tiny_config

torch.set_num_threads(1)
LABELS = [NORMAL, "del(5q)"]


@pytest.fixture(scope="module")
def identity_checkpoint(tmp_path_factory):
    """A tiny identity model (hybrid: its conv stem has BatchNorm) saved with its processor."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("identity")
    TopViTForImageClassification(tiny_config(conv_stem_blocks=1)).save_pretrained(folder)
    TopViTImageProcessor(size={"height": 32, "width": 16}).save_pretrained(folder)
    return folder


def rods_dataset(count: int = 16, seed: int = 0) -> datasets.Dataset:
    """Normal = long banded rods; "aberrant" = rods missing a third of their length, like a terminal deletion."""
    rng = np.random.default_rng(seed)
    rows = {name: [] for name in dataset_features(LABELS)}
    for k in range(count):
        aberrant = k % 2
        rod = banded_rod(length=int(rng.integers(100, 120)) if not aberrant else int(rng.integers(60, 75)))
        rows["image"].append(extract_chromosome(rod, (0, 0, rod.width, rod.height)))
        rows["label"].append(aberrant)
        rows["iscn"].append("del(5)(q13q33)" if aberrant else NORMAL)
        rows["chromosome"].append("5")
        rows["source"].append("synthesized" if aberrant else "real")
        rows["cell_id"].append(f"cell{k // 2}")
        rows["case_id"].append(f"case{k // 4}")
        rows["partner_cell_id"].append("")
        rows["cell_scale"].append(1.0)
    return datasets.Dataset.from_dict(rows, features=dataset_features(LABELS))


def test_pretrained_head_keeps_the_backbone_and_gets_the_new_labels(identity_checkpoint):
    identity = TopViTForImageClassification.from_pretrained(identity_checkpoint)
    head, processor = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=True)
    assert head.config.id2label == {0: NORMAL, 1: "del(5q)"} and head.classifier.out_features == 2
    assert processor.size == {"height": 32, "width": 16}
    for name, tensor in identity.topvit.state_dict().items():
        assert torch.equal(tensor, head.topvit.state_dict()[name]), name
    scratch, _ = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=False)
    assert scratch.config.image_size == head.config.image_size and scratch.config.hidden_size == head.config.hidden_size
    q = "layers.0.attention.q_proj.weight"
    assert not torch.equal(scratch.topvit.state_dict()[q], identity.topvit.state_dict()[q])


@pytest.mark.parametrize("labels", [["del(5q)", NORMAL], [NORMAL, NORMAL], []])
def test_head_labels_must_start_with_normal_and_be_distinct(identity_checkpoint, labels):
    with pytest.raises(ValueError, match="normal"):
        aberration_classifier(labels, str(identity_checkpoint))


def test_training_learns_to_separate_normal_from_aberrant(identity_checkpoint):
    data = rods_dataset(24)
    model, processor = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=True)
    before = aberration_probabilities(model, processor, data["image"])[:, 1]
    model = train_aberration_classifier(model, processor, data, steps=60, learning_rate=3e-3, batch_size=12)
    after = aberration_probabilities(model, processor, data["image"])
    assert not model.training and np.allclose(after.sum(1), 1.0, atol=1e-5)
    labels = np.asarray(data["label"])
    assert aberration_aucs(labels, after[:, 1])["roc_auc"] > max(0.9, aberration_aucs(labels, before)["roc_auc"])
    with pytest.raises(ValueError, match="no chromosome crops"):
        aberration_probabilities(model, processor, [])


def test_a_cell_normalised_head_reads_each_crop_rescaled_by_its_cells_scale(identity_checkpoint, tmp_path):
    """A head of a cell-normalised identity model inherits its reference length, trains on crops rescaled per cell
    and, at inference, needs each crop's cell_scale: the same rescaling, one code path."""
    normalised = tmp_path / "identity"
    TopViTForImageClassification.from_pretrained(identity_checkpoint).save_pretrained(normalised)
    TopViTImageProcessor(size={"height": 32, "width": 16}, cell_reference_length=80.0).save_pretrained(normalised)
    data = rods_dataset(8).remove_columns("cell_scale")
    data = data.add_column("cell_scale", [0.6 + 0.1 * k for k in range(len(data))])
    model, processor = aberration_classifier(LABELS, str(normalised), pretrained=True)
    assert processor.cell_reference_length == 80.0
    model = train_aberration_classifier(model, processor, data, steps=2, learning_rate=1e-3, batch_size=4)
    with pytest.raises(ValueError, match="cell_scale"):
        aberration_probabilities(model, processor, data["image"])
    native = TopViTImageProcessor(size={"height": 32, "width": 16})
    rescaled = [rescale_chromosome(image, scale) for image, scale in zip(data["image"], data["cell_scale"])]
    np.testing.assert_allclose(aberration_probabilities(model, processor, data["image"], data["cell_scale"]),
                               aberration_probabilities(model, native, rescaled), atol=1e-6)
    # A native-scale head reads crops as they are, whatever scales it is given.
    np.testing.assert_allclose(aberration_probabilities(model, native, data["image"], data["cell_scale"]),
                               aberration_probabilities(model, native, data["image"]), atol=1e-6)


def test_lora_adapter_round_trip_gives_identical_outputs(identity_checkpoint, tmp_path):
    data = rods_dataset(8)
    base, processor = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=True)
    stem_stats = {n: b.clone() for n, b in base.named_buffers() if "running_mean" in n}
    model = with_lora(base, rank=4)
    trainable, total = model.get_nb_trainable_parameters()
    assert 0 < trainable < 0.3 * total
    model = train_aberration_classifier(model, processor, data, steps=5, learning_rate=1e-2, batch_size=4)
    expected = aberration_probabilities(model, processor, data["image"])
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    # Frozen backbone: BatchNorm statistics (outside the adapter) did not move during training.
    for name, buffer in model.base_model.model.named_buffers():
        if name in stem_stats:
            assert torch.equal(buffer, stem_stats[name]), name

    fresh, _ = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=True)  # its new head is random
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    assert np.allclose(aberration_probabilities(reloaded, processor, data["image"]), expected, atol=1e-5)
    merged = reloaded.merge_and_unload().eval()
    assert isinstance(merged, TopViTForImageClassification)
    assert np.allclose(aberration_probabilities(merged, processor, data["image"]), expected, atol=1e-5)
    other, _ = aberration_classifier(LABELS, str(identity_checkpoint), pretrained=True)
    other.load_adapter(str(tmp_path / "adapter"))
    assert np.allclose(aberration_probabilities(other.eval(), processor, data["image"]), expected, atol=1e-5)


def test_de_novo_score_is_the_distance_to_the_nth_nearest_normal_of_the_class(tmp_path):
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(30, 4)).astype(np.float32)
    classes = np.array([0] * 20 + [1] * 10)
    index = DeNovoIndex(normals, classes, ["1", "2", "3"], neighbours=5)
    queries = rng.normal(size=(6, 4)).astype(np.float32)
    predicted = np.array([0, 0, 1, 1, 2, 0])
    scores = index.score(queries, predicted)
    for query, label, score in zip(queries, predicted, scores):
        distances = np.sort(np.linalg.norm(normals[classes == label] - query, axis=1))
        assert score == (np.inf if label == 2 else pytest.approx(distances[4], rel=1e-5))
    few = DeNovoIndex(normals, classes, ["1", "2", "3"], neighbours=50).score(queries[:1], [1])
    assert few[0] == pytest.approx(np.linalg.norm(normals[classes == 1] - queries[0], axis=1).max(), rel=1e-5)
    # Far from every normal of its class scores higher than one sitting among them.
    assert index.score(np.array([[0, 0, 0, 0], [9, 9, 9, 9]], np.float32), [0, 0]).argmax() == 1

    index.save_pretrained(tmp_path)
    loaded = DeNovoIndex.from_pretrained(tmp_path)
    assert loaded.neighbours == 5 and loaded.class_names == ["1", "2", "3"]
    assert np.allclose(loaded.score(queries, predicted), scores, rtol=1e-3)  # stored as float16
    with pytest.raises(FileNotFoundError, match="denovo_index"):
        DeNovoIndex.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="embeddings"):
        index.score(queries[:, :3], predicted)


def test_aberration_aucs():
    assert aberration_aucs([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == {"pr_auc": 1.0, "roc_auc": 1.0}
    assert aberration_aucs([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9])["roc_auc"] == pytest.approx(0.75)  # 3 of 4 pairs
    assert all(np.isnan(v) for v in aberration_aucs([1, 1], [0.2, 0.3]).values())


def test_train_aberration_script_writes_a_loadable_head(identity_checkpoint, tmp_path, monkeypatch):
    from transformers import AutoModelForImageClassification

    import karyohf  # noqa: F401

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_aberration

    data_dir = tmp_path / "aberrations"
    for split, seed in (("train", 0), ("validation", 1)):
        rods_dataset(12, seed).save_to_disk(str(dataset_folder(data_dir, "del(5q)", 5) / split))
    output = tmp_path / "head"
    monkeypatch.setattr(sys, "argv", ["train_aberration.py", "--head", "del5q", "--identity", str(identity_checkpoint),
                                      "--data-dir", str(data_dir), "--steps", "3", "--output-dir", str(output)])
    train_aberration.main()
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["labels"] == LABELS and metrics["validation"]["del(5q)"]["aberrant"] == 6
    assert (output / "pr_roc.png").is_file() and "del(5q)" in (output / "README.md").read_text()
    assert AutoModelForImageClassification.from_pretrained(output).config.id2label[1] == "del(5q)"


def test_curve_and_cross_validation_benchmarks_write_their_figures(identity_checkpoint, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import aberration_curves
    import rare_aberrations_cv

    data_dir = tmp_path / "aberrations"
    for key, target in (("del(5q)", 5), ("inv(3)", 3)):
        for split, seed in (("train", 0), ("validation", 1)):
            rods_dataset(12, seed).save_to_disk(str(dataset_folder(data_dir, key, target) / split))
    common = ["--identity", str(identity_checkpoint), "--data-dir", str(data_dir), "--output-dir", str(tmp_path)]

    monkeypatch.setattr(sys, "argv", ["aberration_curves.py", *common, "--heads", "del5q", "--sizes", "4", "8",
                                      "--steps", "2"])
    aberration_curves.main()
    curves = json.loads((tmp_path / "aberration_curves.json").read_text())
    assert {(r["examples"], r["init"]) for r in curves["summary"]} == {(4, "finetuned"), (4, "scratch"),
                                                                        (8, "finetuned"), (8, "scratch")}
    assert next(r for r in curves["summary"] if r["examples"] == 4)["seeds"] == 2
    assert (tmp_path / "aberration_curves.png").is_file()

    monkeypatch.setattr(sys, "argv", ["rare_aberrations_cv.py", *common, "--aberrations", "inv(3)", "--per-class", "6",
                                      "--folds", "3", "--steps", "2"])
    rare_aberrations_cv.main()
    folds = json.loads((tmp_path / "rare_aberrations_cv.json").read_text())["results"]["inv(3)"]["folds"]
    assert len(folds) == 3 and sum(f["test_normal"] + f["test_aberrant"] for f in folds) == 12
    assert (tmp_path / "rare_aberrations_cv.png").is_file()


def test_balanced_subset_draws_each_label_equally_and_reproducibly():
    from karyohf.synthesis import balanced_subset

    data = rods_dataset(16)
    subset = balanced_subset(data, 3, seed=4)
    assert sorted(subset["label"]) == [0, 0, 0, 1, 1, 1]
    assert subset["cell_id"] == balanced_subset(data, 3, seed=4)["cell_id"]
    with pytest.raises(ValueError, match="asked for 9"):
        balanced_subset(data, 9)


def test_screening_imports_no_training_code():
    """The pipeline and the aberration stage load without the training side (synthesis, head training, Trainer,
    peft), which lives apart and imports them, never the reverse."""
    import subprocess

    script = ("import sys, karyohf, karyohf.aberrations, karyohf.pipeline\n"
              "print(' '.join(sorted(m for m in sys.modules if m.startswith(('karyohf', 'peft', 'transformers.trainer'"
              ")))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert "karyohf.aberrations.heads" in loaded and "karyohf.pipeline" in loaded
    training = {"karyohf.synthesis", "karyohf.head_training", "karyohf.training", "karyohf.augmentation", "peft",
                "transformers.trainer"}
    assert not training & set(loaded), sorted(training & set(loaded))


def test_names_that_moved_out_of_the_aberration_stage_still_resolve_there():
    import karyohf.aberrations as aberrations
    import karyohf.geometry
    import karyohf.head_training
    import karyohf.synthesis

    for name, home in (("synthesize", karyohf.synthesis), ("load_aberration_dataset", karyohf.synthesis),
                       ("with_lora", karyohf.head_training), ("p_arm_up", karyohf.geometry)):
        with pytest.warns(DeprecationWarning, match=f"moved to {home.__name__}.{name}"):
            assert getattr(aberrations, name) is getattr(home, name)
        assert name not in aberrations.__all__
    with pytest.raises(AttributeError, match="no_such_name"):
        aberrations.no_such_name  # noqa: B018


def test_the_registry_names_each_shipped_head_its_labels_and_folder():
    from karyohf.aberrations import SHIPPED_HEADS, head_folder, head_labels, label_target, screened_chromosomes

    assert head_labels("t9-22") == ["normal", "der(9)t(9;22)", "der(22)t(9;22)"]
    assert head_labels("del5q") == ["normal", "del(5q)"] and head_folder("del5q") == "topvit-del5q"
    assert screened_chromosomes("t9-22") == ("9", "22")
    for name, pairs in SHIPPED_HEADS.items():  # labels and pairs are each other's inverse
        assert [label_target(label) for label in head_labels(name)[1:]] == list(pairs)
    with pytest.raises(KeyError, match="no shipped aberration head 'inv3'"):
        head_labels("inv3")


def _calibration(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    monkeypatch.syspath_prepend(str(root / "train"))
    import calibrate_specimen_calls

    return calibrate_specimen_calls


def test_the_operating_point_calls_as_many_normal_cells_as_the_specimen_rate_allows_and_sits_mid_gap():
    from scipy.stats import binom

    from karyohf.aberrations import calibration

    scores = np.linspace(0.01, 0.5, 248).tolist() + [0.6, 0.9, 0.99]  # 251 normal cells, three high ones
    threshold, rate, specimen = calibration.chosen_threshold(np.asarray(scores), false_call_rate=0.005)
    # One of 251 keeps P(>= 2 of 20 called) under 0.5%, two do not: the top cell is called, the 0.9 one is not.
    assert binom.sf(1, 20, 1 / 251) <= 0.005 < binom.sf(1, 20, 2 / 251)
    assert rate == pytest.approx(1 / 251) and specimen == pytest.approx(binom.sf(1, 20, 1 / 251))
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert logit(threshold) == pytest.approx((logit(0.9) + logit(0.99)) / 2)
    # A looser target calls more; none are called when even one would break it.
    assert calibration.chosen_threshold(np.asarray(scores), 0.05)[0] < threshold
    strict, strict_rate, _ = calibration.chosen_threshold(np.asarray(scores), 0.001)
    assert strict > 0.99 and strict_rate == 0.0


def test_tied_normal_scores_are_called_together_or_not_at_all():
    from karyohf.aberrations import calibration

    scores = np.asarray([0.1] * 249 + [0.95, 0.95])  # the one allowed call cannot be split from its twin
    threshold, rate, _ = calibration.chosen_threshold(scores, 0.005)
    assert threshold > 0.95 and rate == 0.0
    # Saturated scores: the threshold still lies above the cell not called, even past the logit's reach.
    saturated = np.asarray([0.1] * 249 + [1.0 - 1e-16, 1.0])
    threshold, rate, _ = calibration.chosen_threshold(saturated, 0.005)
    assert np.sum(saturated >= threshold) == round(rate * len(saturated)) == 1
    with pytest.raises(ValueError, match="no normal cell"):
        calibration.chosen_threshold(np.zeros(0), 0.005)
    # Fewer cells than `fewest_cells` leave no call: the threshold sits above the highest score.
    n = calibration.fewest_cells(0.005)
    assert calibration.specimen_probability(1 / n) <= 0.005 < calibration.specimen_probability(1 / (n - 1))
    few = np.linspace(0.1, 0.9, n - 1)
    assert calibration.chosen_threshold(few, 0.005)[0] > 0.9
    assert calibration.chosen_threshold(np.linspace(0.1, 0.9, n), 0.005)[1] == pytest.approx(1 / n)


def test_leaving_a_specimen_out_scores_its_cells_under_a_threshold_chosen_without_it():
    from karyohf.aberrations import calibration

    # Specimen "a" holds both high normal cells: chosen with it, the threshold calls one of them; chosen without
    # it, the threshold falls to the rest's top and calls both. That is the false-call rate a new specimen meets.
    scores = np.asarray([0.1] * 248 + [0.95, 0.97, 0.5])
    specimens = np.asarray([f"s{i // 2}" for i in range(248)] + ["a", "a", "b"])
    assert calibration.chosen_threshold(scores, 0.005)[1] == pytest.approx(1 / 251)
    called = calibration.left_out_calls(scores, specimens, 0.005)
    assert called.tolist() == [False] * 248 + [True, True, False]
    with pytest.raises(ValueError, match="two specimens"):
        calibration.left_out_calls(scores, np.asarray(["a"] * len(scores)), 0.005)
    # What operating_point.json records: the same threshold, and the left-out rate over all and analysable cells.
    analysable = np.asarray([True] * 248 + [False, True, True])
    threshold, chosen = calibration.operating_point(scores, specimens, 0.005, analysable=analysable)
    assert threshold == calibration.chosen_threshold(scores, 0.005)[0] and chosen["cells called"] == 1
    assert chosen["per-cell false-call rate, leave one specimen out"] == pytest.approx(2 / 251)
    assert chosen["per-cell false-call rate of analysable cells, leave one specimen out"] == pytest.approx(1 / 250)
    assert "per-cell false-call rate, leave one specimen out" not in calibration.operating_point(
        scores, ["a"] * len(scores), 0.005)[1]


def test_the_cells_that_choose_a_point_are_those_known_free_of_its_aberration(monkeypatch):
    calibration = _calibration(monkeypatch)

    def cell(status, pairs=""):
        return {"status": status, "abnormal_pairs": pairs}

    t9_22 = {"9", "22"}
    assert calibration.free_of(cell("normal"), t9_22) and calibration.free_of(cell("numerical", "9"), t9_22)
    assert calibration.free_of(cell("structural", "3,15"), t9_22)
    assert not calibration.free_of(cell("structural", "9"), t9_22)
    assert not calibration.free_of(cell("structural", "11, 22"), t9_22)
    assert calibration.free_of(cell("structural", "11, 22"), {"5"})


def test_a_cell_scores_either_derivative_of_a_translocation_and_its_best_chromosome():
    from karyohf.aberrations import cell_aberration_scores

    scores = cell_aberration_scores({"der(9)t(9;22)": [np.nan, 0.9], "der(22)t(9;22)": [None, 0.0],
                                     "del(5q)": [0.2, np.nan, 0.1]})
    # A der(9) alone is most of the evidence (its der(22) may have gone uncounted); the best 5 speaks for del(5q).
    assert scores == pytest.approx({"t(9;22)": 0.9, "del(5q)": 0.2})
    assert cell_aberration_scores({"der(9)t(9;22)": [0.5], "der(22)t(9;22)": [0.5]})["t(9;22)"] == pytest.approx(0.75)
    assert cell_aberration_scores({"der(9)t(9;22)": [None], "der(22)t(9;22)": []})["t(9;22)"] == 0.0


def test_calibration_names_the_heads_it_has_when_asked_for_one_it_has_not(monkeypatch, tmp_path, capsys):
    calibration = _calibration(monkeypatch)
    cache = tmp_path / "cells.jsonl"
    cache.write_text("")
    monkeypatch.setattr("sys.argv", ["calibrate_specimen_calls.py", "--cells-cache", str(cache),
                                     "--heads", "topvit-inv3"])
    with pytest.raises(SystemExit):
        calibration.main()
    message = capsys.readouterr().err
    assert "no such head" in message and "topvit-inv3" in message and "topvit-t9-22" in message
