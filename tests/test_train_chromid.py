"""`train/train_chromid.py` end to end on synthetic crops: trains, scores per crop and per cell, saves a checkpoint."""

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForImageClassification

from karyohf.crops import cell_scale, extract_chromosome
from karyohf.data import crop_features
from tests.synthetic import banded_rod

torch.set_num_threads(1)


def synthetic_crops(cells: int) -> datasets.Dataset:
    """Cells of two long rods ("1") and two short ones ("21"), half from "metaphases", half from "karyograms"."""
    rows = []
    for cell in range(cells):
        source = "metaphase" if cell % 2 == 0 else "karyogram"
        magnification = 1.0 if source == "metaphase" else 0.7  # the two collections image at different scales
        crops = [(chromosome, extract_chromosome(rod, (0, 0, rod.width, rod.height))) for chromosome, rod in
                 (("1", banded_rod(length=round(90 * magnification))), ("1", banded_rod(length=round(86 * magnification))),
                  ("21", banded_rod(length=round(30 * magnification))), ("21", banded_rod(length=round(28 * magnification))))]
        scale = cell_scale([image for _, image in crops])
        for chromosome, image in crops:
            rows.append({"image": image, "chromosome": chromosome, "cell_id": f"{source}-{cell}", "group_id": str(cell),
                         "source": source, "cell_scale": scale})
    return datasets.Dataset.from_list(rows, features=crop_features())


def test_training_script_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_chromid

    splits = {"train": synthetic_crops(8), "validation": synthetic_crops(4)}
    monkeypatch.setattr(train_chromid, "chromosome_crops", lambda split: splits[split])
    output = tmp_path / "chromid"
    train_chromid.main([
        "--output-dir", str(output), "--image-size", "32", "16", "--patch-size", "8", "--hidden-size", "16",
        "--layers", "1", "--heads", "2", "--mlp-size", "16", "--max-steps", "3", "--batch-size", "8",
        "--threads", "1",
    ])
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["training_steps"] == 3 and metrics["training_crops"] == 32
    for source in ("metaphase", "karyogram"):
        scored = metrics[source]
        assert scored["crops"] == 8 and 0 <= scored["top1"] <= 1 and 0 <= scored["top1_within_cell"] <= 1
    card = (output / "README.md").read_text()
    assert "labelled per cell" in card and "{" not in card.split("---")[2]  # every template field filled
    for figure in ("confusion_metaphase.png", "confusion_karyogram.png", "entropy_curve.png"):
        assert (output / figure).is_file()
    model = AutoModelForImageClassification.from_pretrained(output)
    assert model.config.image_size == (32, 16) and np.isfinite(metrics["metaphase"]["top1"])


def test_packed_crops_train_elsewhere_and_are_scored_here(tmp_path, monkeypatch):
    """The lent-GPU path: train on crops saved to disk (with an augmenting DataLoader worker and snapshots), write no
    scores where there is no raw data, then score the result with --evaluate-only."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_chromid

    synthetic_crops(8).save_to_disk(str(tmp_path / "packed"))
    monkeypatch.setattr(train_chromid, "chromosome_crops", lambda split: synthetic_crops(4))
    trained, scored = tmp_path / "trained", tmp_path / "scored"
    train_chromid.main([
        "--train-crops", str(tmp_path / "packed"), "--output-dir", str(trained), "--image-size", "32", "16",
        "--patch-size", "8", "--hidden-size", "16", "--layers", "1", "--heads", "2", "--mlp-size", "16",
        "--max-steps", "2", "--batch-size", "8", "--threads", "1", "--workers", "1", "--snapshot-minutes", "0",
    ])
    record = json.loads((trained / "metrics.json").read_text())
    assert record["training_steps"] == 2 and "metaphase" not in record and not (trained / "README.md").exists()
    train_chromid.main(["--evaluate-only", "--init", str(trained), "--output-dir", str(scored), "--threads", "1"])
    metrics = json.loads((scored / "metrics.json").read_text())
    assert metrics["metaphase"]["crops"] == 8 and metrics["training_steps"] == 2 and metrics["batch_size"] == 8
    assert "2 steps of batch 8" in (scored / "README.md").read_text()


def test_a_continued_run_ships_the_average_of_its_two_ends(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_chromid

    monkeypatch.setattr(train_chromid, "chromosome_crops", lambda split: synthetic_crops(4))
    tiny = ["--image-size", "32", "16", "--patch-size", "8", "--hidden-size", "16", "--layers", "1", "--heads", "2",
            "--mlp-size", "16", "--max-steps", "2", "--batch-size", "8", "--threads", "1"]
    start, end, soup = tmp_path / "start", tmp_path / "end", tmp_path / "soup"
    train_chromid.main(["--output-dir", str(start), *tiny])
    train_chromid.main(["--output-dir", str(end), "--init", str(start), "--learning-rate", "0.05", *tiny])
    train_chromid.main(["--evaluate-only", "--init", str(end), "--average-with", str(start), "--output-dir", str(soup),
                        "--threads", "1"])
    weights = [AutoModelForImageClassification.from_pretrained(path).state_dict() for path in (start, end, soup)]
    moved = [name for name, value in weights[0].items() if value.is_floating_point() and not torch.equal(value, weights[1][name])]
    assert moved  # the continued run changed the weights, so the average is a third set
    for name in moved:
        torch.testing.assert_close(weights[2][name], (weights[0][name] + weights[1][name]) / 2)
    record = json.loads((soup / "metrics.json").read_text())
    assert record["averaged_with"]["checkpoint"] == str(start) and record["averaged_with"]["training_steps"] == 2
    assert "average of that run's end and its start" in (soup / "README.md").read_text()


def test_averaging_refuses_models_of_another_architecture():
    from karyohf.models.topvit import TopViTConfig, TopViTForImageClassification
    from karyohf.training import average_weights

    def tiny(hidden_size):
        return TopViTForImageClassification(TopViTConfig(image_size=(32, 16), patch_size=8, hidden_size=hidden_size,
                                                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))

    with pytest.raises(ValueError, match="cannot average"):
        average_weights(tiny(16), [tiny(32)])


def test_karyogram_crops_can_be_seen_more_often_than_metaphase_crops(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    import train_chromid

    monkeypatch.setattr(train_chromid, "chromosome_crops", lambda split: synthetic_crops(8 if split == "train" else 2))
    tiny = ["--image-size", "32", "16", "--patch-size", "8", "--hidden-size", "16", "--layers", "1", "--heads", "2",
            "--mlp-size", "16", "--max-steps", "1", "--batch-size", "8", "--threads", "1", "--karyogram-repeats", "3"]
    train_chromid.main(["--output-dir", str(tmp_path / "chromid"), *tiny])
    record = json.loads((tmp_path / "chromid" / "metrics.json").read_text())
    assert record["training_crops"] == 16 + 3 * 16 and record["karyogram_repeats"] == 3  # 16 crops of each source
    synthetic_crops(2).select_columns(["image", "chromosome"]).save_to_disk(str(tmp_path / "packed"))
    with pytest.raises(ValueError, match="needs each crop's source"):
        train_chromid.main(["--output-dir", str(tmp_path / "packed-run"), "--train-crops", str(tmp_path / "packed"), *tiny])
    with pytest.raises(SystemExit):
        train_chromid.parse_args(["--output-dir", str(tmp_path / "none"), "--karyogram-repeats", "0"])
