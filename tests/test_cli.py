from PIL import Image

from karyohf.cli import main
from karyohf.models.topvit import ChromosomeImageProcessor, TopViTConfig, TopViTForImageClassification


def test_demo_identifies_a_real_metaphase_and_writes_its_karyogram(real_data_root, tmp_path, capsys):
    checkpoint = tmp_path / "tiny-chromid"
    config = TopViTConfig(image_size=(32, 16), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32)
    TopViTForImageClassification(config).save_pretrained(checkpoint)
    ChromosomeImageProcessor(size={"height": 32, "width": 16}).save_pretrained(checkpoint)
    output = tmp_path / "karyogram.png"
    assert main(["demo", "--identifier", str(checkpoint), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "identified correctly" in printed and str(output) in printed
    assert Image.open(output).size[0] > 100


def test_demo_without_a_checkpoint_says_so(tmp_path, capsys):
    assert main(["demo", "--identifier", str(tmp_path / "missing")]) == 2
    assert "no identification checkpoint" in capsys.readouterr().err
