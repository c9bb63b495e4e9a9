import numpy as np
import torch
from PIL import Image

from karyohf.cli import main
from karyohf.crops import metaphase_crops
from karyohf.data import load_metaphases, split_metaphases
from karyohf.identification import ChromosomeIdentifier
from karyohf.models.centernet import CenterNetConfig, CenterNetForObjectDetection, MetaphaseImageProcessor
from karyohf.models.topvit import ChromosomeImageProcessor, TopViTConfig, TopViTForImageClassification


def tiny_identifier(folder):
    config = TopViTConfig(image_size=(32, 16), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32)
    TopViTForImageClassification(config).save_pretrained(folder)
    ChromosomeImageProcessor(size={"height": 32, "width": 16}).save_pretrained(folder)
    return folder


def test_demo_on_annotated_boxes_writes_karyogram_and_overlay(real_data_root, tmp_path, capsys, monkeypatch):
    checkpoint = tiny_identifier(tmp_path / "tiny-chromid")
    output = tmp_path / "karyogram.png"
    identified = []
    original = ChromosomeIdentifier.__call__
    monkeypatch.setattr(ChromosomeIdentifier, "__call__", lambda self, crops: identified.extend(crops) or original(self, crops))
    arguments = ["demo", "--identifier", str(checkpoint), "--detector", str(tmp_path / "none"), "--output", str(output)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "annotated boxes" in printed and "chromosomes per class" in printed and str(output) in printed
    assert Image.open(output).size[0] > 100
    # The models get the crops they were trained on: each box cut alone, as `metaphase_crops` cuts training crops.
    first = split_metaphases(load_metaphases(real_data_root))["validation"].select(range(1))
    training_crops = [crop["image"] for crop in metaphase_crops(first)]
    assert len(identified) == len(training_crops)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(identified, training_crops))
    overlay = np.asarray(Image.open(tmp_path / "boxes.png").convert("RGB")).astype(int)
    assert (overlay[..., 1] - overlay[..., 2] > 30).mean() > 0.01  # the masks, tinted amber (the boxes are red)


def test_demo_runs_a_detector_checkpoint_and_reports_what_it_found(real_data_root, tmp_path, capsys):
    torch.manual_seed(0)
    detector = tmp_path / "detector"
    model = CenterNetForObjectDetection(CenterNetConfig(image_size=64, stage_channels=(8, 16), stage_blocks=(1, 0),
                                                        neck_channels=8, head_channels=8))
    with torch.no_grad():  # every location a confident centre: the tiny untrained model then finds "chromosomes"
        model.heatmap_head.output.bias.fill_(5.0)
    model.save_pretrained(detector)
    MetaphaseImageProcessor(size=64).save_pretrained(detector)
    checkpoint = tiny_identifier(tmp_path / "tiny-chromid")
    assert main(["demo", "--identifier", str(checkpoint), "--detector", str(detector),
                 "--output", str(tmp_path / "k.png")]) == 0
    assert "detected" in capsys.readouterr().out


def test_demo_without_a_checkpoint_says_so(tmp_path, capsys):
    assert main(["demo", "--identifier", str(tmp_path / "missing")]) == 2
    assert "no identification checkpoint" in capsys.readouterr().err
