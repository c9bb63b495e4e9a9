"""`karyohf demo` and the crops every entry point feeds the models (through KaryotypePipeline)."""

import numpy as np
import torch
from PIL import Image

from karyohf.cli import expand_inputs, main, unique_names
from karyohf.crops import metaphase_crops
from karyohf.data import load_metaphases, split_metaphases
from karyohf.models.centernet import CenterNetConfig, CenterNetForObjectDetection, CenterNetImageProcessor
from karyohf.pipeline import KaryotypePipeline
from tests.test_pipeline import tiny_topvit


def tiny_checkpoints(root):
    tiny_topvit(root / "topvit-chromid")
    torch.manual_seed(0)
    model = CenterNetForObjectDetection(CenterNetConfig(image_size=64, stage_channels=(8, 16), stage_blocks=(1, 0),
                                                        neck_channels=8, head_channels=8))
    with torch.no_grad():  # every location a confident centre: the tiny untrained model then finds "chromosomes"
        model.heatmap_head.output.bias.fill_(5.0)
    model.save_pretrained(root / "centernet-chromosomes")
    CenterNetImageProcessor(size=64).save_pretrained(root / "centernet-chromosomes")
    return root


def test_demo_writes_the_pipelines_karyogram_and_overlay_of_a_validation_metaphase(real_data_root, tmp_path):
    checkpoints = tiny_checkpoints(tmp_path / "checkpoints")
    assert main(["demo", "--checkpoints", str(checkpoints), "--out", str(tmp_path / "out")]) == 0
    first = split_metaphases(load_metaphases(real_data_root))["validation"][0]  # the demo's default metaphase
    cell = KaryotypePipeline.from_pretrained(checkpoints).analyze_cell(first["image"], name=f"{first['image_id']}.jpg")
    for name, image in (("karyogram.png", cell.karyogram()), ("overlay.png", cell.overlay())):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / name)), np.asarray(image)), name


def test_demo_refuses_an_id_outside_the_validation_split(real_data_root, tmp_path, capsys):
    assert main(["demo", "--image-id", "no-such-id", "--checkpoints", str(tmp_path)]) == 2
    assert "not in the validation split" in capsys.readouterr().err


def test_commands_without_checkpoints_say_where_they_looked(tmp_path, capsys):
    Image.new("L", (80, 80), 200).save(tmp_path / "m.png")
    assert main(["predict", str(tmp_path / "m.png"), "--out", str(tmp_path / "out"),
                 "--checkpoints", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("karyohf predict: no karyohf checkpoints found") and str(tmp_path / "nowhere") in error
    assert not (tmp_path / "out").exists()


def test_the_pipeline_feeds_the_models_the_crops_they_were_trained_on(real_data_root, tmp_path):
    pipe = KaryotypePipeline.from_pretrained(tiny_checkpoints(tmp_path / "checkpoints"))
    first = split_metaphases(load_metaphases(real_data_root))["validation"].select(range(1))
    cell = pipe.analyze_cell(first[0]["image"], boxes=first[0]["boxes"])
    # Each box cut alone, as `metaphase_crops` cuts the identity model's and the heads' training crops: the crops the
    # heads and the karyogram read ...
    training_crops = [crop["image"] for crop in metaphase_crops(first)]
    assert len(cell.crops) == len(training_crops) == cell.chromosome_count
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(cell.crops, training_crops))
    # ... and what the identity model (trained at native scale) read: its probabilities are those of those crops.
    np.testing.assert_allclose(cell.probabilities, pipe.identifier(training_crops).probabilities, atol=1e-6)
    overlay = np.asarray(cell.overlay()).astype(int)
    assert (np.abs(overlay[..., 0] - overlay[..., 2]) > 30).mean() > 0.01  # the masks, tinted in colour


def test_inputs_expand_from_files_folders_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.new("L", (80, 80), 200).save(tmp_path / folder / "1.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    files, errors = expand_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.png"), str(tmp_path / "missing.jpg")])
    assert files == [tmp_path / "a" / "1.png", tmp_path / "b" / "1.png"]
    assert unique_names(files) == ["1.png", "1-2.png"]
    assert [e["file"] for e in errors] == [str(tmp_path / "missing.jpg")]
