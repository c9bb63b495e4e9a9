"""Every shipped checkpoint loads with `trust_remote_code=True` where karyohf cannot be imported.

Each checkpoint folder is copied to a temporary directory and loaded there through the Auto classes by a subprocess in
which `import karyohf` fails; its outputs on a small dummy input must match what the karyohf classes compute. A
checkpoint folder that is missing is skipped. So do checkpoints saved before karyohf 0.3 (model_type "topvit",
processors named ChromosomeImageProcessor / MetaphaseImageProcessor), with karyohf and without it.
"""

import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForObjectDetection,
)

from karyohf.models.centernet import CenterNetConfig, CenterNetForObjectDetection, CenterNetImageProcessor
from karyohf.models.centernet import image_processing_centernet
from karyohf.models.topvit import (
    TopViTConfig,
    TopViTForImageClassification,
    TopViTImageProcessor,
    image_processing_topvit,
)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
# name -> (head Auto class, labels in index order)
SHIPPED = {
    "centernet-chromosomes": ("AutoModelForObjectDetection", ["chromosome"]),
    "topvit-chromid": ("AutoModelForImageClassification", [str(n) for n in range(1, 23)] + ["X", "Y"]),
    "topvit-del5q": ("AutoModelForImageClassification", ["normal", "del(5q)"]),
    "topvit-t9-22": ("AutoModelForImageClassification", ["normal", "der(9)t(9;22)", "der(22)t(9;22)"]),
}
TINY = "tiny-centernet"  # saved by the test itself: what a future save_pretrained writes
# Saved by the test, then rewritten as karyohf 0.2 wrote them: old model_type and processor names.
OLD_TOPVIT, OLD_CENTERNET = "old-style-topvit", "old-style-centernet"
SAVED = {TINY: ("AutoModelForObjectDetection", ["chromosome"]),
         OLD_TOPVIT: ("AutoModelForImageClassification", ["normal", "del(5q)"]),
         OLD_CENTERNET: ("AutoModelForObjectDetection", ["chromosome"])}
CASES = {**SHIPPED, **SAVED}
METAPHASE_SHAPE, CROP_SHAPE = (90, 70), (60, 18)

REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["karyohf"] = None  # the repo is installed editable: make any karyohf import fail
    import numpy as np, torch
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    results = {}
    for name, head in json.loads(open("cases.json").read()).items():
        try:
            config = AutoConfig.from_pretrained(name, trust_remote_code=True)
            model = getattr(transformers, head).from_pretrained(name, trust_remote_code=True).eval()
            processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=True, backend="pil")
            inputs = processor(np.load(f"{name}.npy"), return_tensors="pt")
            with torch.no_grad():
                outputs = model(pixel_values=inputs["pixel_values"])
            result = {
                "config": type(config).__module__, "model": type(model).__module__,
                "processor": type(processor).__module__,
                "labels": [model.config.id2label[i] for i in range(len(model.config.id2label))],
                "pixel_values": list(inputs["pixel_values"].shape),
            }
            if head == "AutoModelForObjectDetection":
                torch.save({"heatmap_logits": outputs.heatmap_logits, "pred_boxes": outputs.pred_boxes}, f"{name}.out.pt")
                found = processor.post_process_object_detection(outputs, threshold=0.0, top_k=5,
                                                                target_sizes=inputs["original_sizes"])
                result["post_processed"] = list(found[0]["boxes"].shape)
            else:
                torch.save({"logits": outputs.logits}, f"{name}.out.pt")
                backbone = AutoModel.from_pretrained(name, trust_remote_code=True).eval()
                with torch.no_grad():
                    result["pooled"] = list(backbone(pixel_values=inputs["pixel_values"]).pooler_output.shape)
            result["karyohf_modules"] = [m for m in sys.modules if m.startswith("karyohf") and sys.modules[m] is not None]
        except Exception as error:  # reported per checkpoint by the tests
            result = {"error": f"{type(error).__name__}: {error}"}
        results[name] = result
    open("results.json", "w").write(json.dumps(results))
    print("remote code done")
    """
)


def present(name: str) -> bool:
    return (CHECKPOINTS / name / "config.json").is_file()


def dummy_input(name: str) -> np.ndarray:
    """A grey dark-on-white image: a metaphase for the detectors, a crop for the classifiers."""
    shape = METAPHASE_SHAPE if CASES[name][0] == "AutoModelForObjectDetection" else CROP_SHAPE
    image = np.random.default_rng(0).integers(150, 255, size=shape).astype(np.uint8)
    image[10:-10, 5:-5] //= 3  # a dark object in the middle
    return image


def local_outputs(folder: Path, head: str, image: np.ndarray) -> dict:
    """What karyohf's own (registered) classes compute on `image`."""
    model_class = {"AutoModelForObjectDetection": AutoModelForObjectDetection,
                   "AutoModelForImageClassification": AutoModelForImageClassification}[head]
    model = model_class.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    with torch.no_grad():
        outputs = model(pixel_values=processor(image, return_tensors="pt")["pixel_values"])
    if head == "AutoModelForObjectDetection":
        return {"heatmap_logits": outputs.heatmap_logits, "pred_boxes": outputs.pred_boxes}
    return {"logits": outputs.logits}


def save_tiny_centernet(folder: Path) -> None:
    torch.manual_seed(0)
    config = CenterNetConfig(image_size=64, stem_channels=4, stage_channels=(8, 8), stage_blocks=(1, 0),
                             neck_channels=8, head_channels=8)
    CenterNetForObjectDetection(config).eval().save_pretrained(folder)
    CenterNetImageProcessor(size=64).save_pretrained(folder)


def save_tiny_topvit(folder: Path) -> None:
    torch.manual_seed(0)
    labels = SAVED[OLD_TOPVIT][1]
    config = TopViTConfig(image_size=(32, 16), patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, id2label=dict(enumerate(labels)),
                          label2id={name: i for i, name in enumerate(labels)})
    TopViTForImageClassification(config).eval().save_pretrained(folder)
    TopViTImageProcessor(size={"height": 32, "width": 16}).save_pretrained(folder)


def make_old_style(folder: Path) -> None:
    """Rewrite a saved checkpoint's JSON as karyohf 0.2 wrote it: TopViT's model_type "topvit", the processors
    ChromosomeImageProcessor / MetaphaseImageProcessor (in image_processor_type and auto_map)."""
    config = json.loads((folder / "config.json").read_text())
    if config["model_type"] == "karyohf_topvit":
        config["model_type"] = "topvit"
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    old_names = {"TopViTImageProcessor": "ChromosomeImageProcessor",
                 "CenterNetImageProcessor": "MetaphaseImageProcessor"}
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    new = processor["image_processor_type"]
    processor["image_processor_type"] = old_names[new]
    auto_map = processor["auto_map"]
    auto_map["AutoImageProcessor"] = auto_map["AutoImageProcessor"].replace(new, old_names[new])
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def save_case(name: str, folder: Path) -> None:
    """The test's own checkpoints (`SAVED`)."""
    (save_tiny_topvit if name == OLD_TOPVIT else save_tiny_centernet)(folder)
    if name in (OLD_TOPVIT, OLD_CENTERNET):
        make_old_style(folder)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """One subprocess loads every present checkpoint (copied to a temporary folder) without karyohf."""
    work = tmp_path_factory.mktemp("remote")
    cases, expected = {}, {}
    for name, (head, _) in CASES.items():
        if name in SAVED:
            save_case(name, work / name)
        else:
            if not present(name):
                continue
            shutil.copytree(CHECKPOINTS / name, work / name)
        image = dummy_input(name)
        np.save(work / f"{name}.npy", image)
        expected[name] = local_outputs(work / name, head, image)
        cases[name] = head
    (work / "cases.json").write_text(json.dumps(cases))
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                   "HF_MODULES_CACHE": str(work / "modules")}  # a fresh copy of the remote code, nothing cached
    environment.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT], cwd=work, env=environment, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0 and "remote code done" in run.stdout, run.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    return work, results, expected


@pytest.mark.parametrize("name", CASES)
def test_checkpoint_loads_with_trust_remote_code_without_karyohf(remote, name):
    if name not in SAVED and not present(name):
        pytest.skip(f"checkpoints/{name} is not in this checkout")
    work, results, expected = remote
    result = results[name]
    assert "error" not in result, result.get("error")
    assert not result["karyohf_modules"]
    for kind in ("config", "model", "processor"):  # the folder's own code, not a registered karyohf class
        assert result[kind].startswith("transformers_modules"), (kind, result[kind])
    head, labels = CASES[name]
    assert result["labels"] == labels
    got = torch.load(work / f"{name}.out.pt")
    for key, value in expected[name].items():
        assert got[key].shape == value.shape
        # Another process may pick other float kernels: allow last-bit differences only.
        assert torch.allclose(got[key], value, rtol=0, atol=1e-5), key
    if head == "AutoModelForObjectDetection":
        side = result["pixel_values"][-1]
        assert result["pixel_values"] == [1, 1, side, side]
        cells = (side // 4) ** 2  # output stride 4
        assert list(got["heatmap_logits"].shape) == [1, 1, side // 4, side // 4]
        assert list(got["pred_boxes"].shape) == [1, cells, 4]
        assert result["post_processed"] == [5, 4]
    else:
        config = AutoConfig.from_pretrained(work / name)
        assert result["pixel_values"] == [1, 1, *config.image_size]
        assert list(got["logits"].shape) == [1, len(labels)]
        assert result["pooled"] == [1, config.hidden_size]


def test_save_pretrained_writes_the_centernet_code_and_auto_map(tmp_path):
    save_tiny_centernet(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_centernet.CenterNetConfig",
        "AutoModelForObjectDetection": "modeling_centernet.CenterNetForObjectDetection",
    }
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoImageProcessor": "image_processing_centernet.CenterNetImageProcessor"}
    for module in ("configuration_centernet", "modeling_centernet", "image_processing_centernet"):
        assert (tmp_path / f"{module}.py").is_file()
    assert_self_contained(tmp_path)


def assert_self_contained(folder: Path) -> None:
    """Code files import no karyohf, relative imports name files of the folder, and `auto_map` names real classes."""
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (folder / f"{node.module}.py").is_file(), (path.name, node.module)
            elif isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] != "karyohf", (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] != "karyohf" for alias in node.names), path.name
    auto_maps = [json.loads((folder / name).read_text()).get("auto_map", {})
                 for name in ("config.json", "preprocessor_config.json") if (folder / name).is_file()]
    entries = {key: value for auto_map in auto_maps for key, value in auto_map.items()}
    assert {"AutoConfig", "AutoImageProcessor"} <= set(entries), entries
    for reference in entries.values():
        module, name = reference.split(".")
        tree = ast.parse((folder / f"{module}.py").read_text())
        assert name in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}, reference


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_code_is_self_contained(name):
    if not present(name):
        pytest.skip(f"checkpoints/{name} is not in this checkout")
    assert_self_contained(CHECKPOINTS / name)
    head = SHIPPED[name][0]
    assert head in json.loads((CHECKPOINTS / name / "config.json").read_text())["auto_map"]


def test_centernet_grey_conversion_is_the_topvit_one():
    # Copied so that the CenterNet's image-processing file stands alone as remote code: the copies must not drift.
    for function in ("to_grayscale_uint8", "_channels_to_gray"):
        assert inspect.getsource(getattr(image_processing_centernet, function)) == \
            inspect.getsource(getattr(image_processing_topvit, function))


@pytest.mark.parametrize("name", [OLD_TOPVIT, OLD_CENTERNET])
def test_an_old_style_checkpoint_loads_with_karyohf_as_the_current_classes(tmp_path, name):
    """karyohf 0.2's names (model_type "topvit", ChromosomeImageProcessor, MetaphaseImageProcessor) load through the
    Auto classes as today's classes, compute the same, and are saved again under today's names."""
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    current, old, resaved = tmp_path / "current", tmp_path / "old", tmp_path / "resaved"
    save_case(name, old)
    (save_tiny_topvit if name == OLD_TOPVIT else save_tiny_centernet)(current)
    head = CASES[name][0]
    config_class, processor_class = ((TopViTConfig, TopViTImageProcessor) if name == OLD_TOPVIT
                                     else (CenterNetConfig, CenterNetImageProcessor))
    assert json.loads((old / "config.json").read_text())["model_type"] in ("topvit", "karyohf_centernet")

    with CaptureLogger(logging.get_logger("transformers.configuration_utils")) as captured:
        config = AutoConfig.from_pretrained(old)
        assert type(config_class.from_pretrained(old)) is config_class
    assert type(config) is config_class and config.model_type == config_class.model_type
    assert "model of type" not in captured.out
    processor = AutoImageProcessor.from_pretrained(old, backend="pil")
    assert type(processor) is processor_class  # the current class, not the old name kept for remote code
    image = dummy_input(name)
    expected = local_outputs(current, head, image)
    for key, value in local_outputs(old, head, image).items():
        assert torch.equal(value, expected[key]), key

    model_class = AutoModelForImageClassification if head == "AutoModelForImageClassification" \
        else AutoModelForObjectDetection
    model_class.from_pretrained(old).save_pretrained(resaved)
    processor.save_pretrained(resaved)
    for file in ("config.json", "preprocessor_config.json"):
        assert json.loads((resaved / file).read_text()) == json.loads((current / file).read_text()), file


def test_the_old_processor_names_still_construct_with_a_warning():
    from karyohf.models import ChromosomeImageProcessor, MetaphaseImageProcessor

    for old, new in ((ChromosomeImageProcessor, TopViTImageProcessor),
                     (MetaphaseImageProcessor, CenterNetImageProcessor)):
        with pytest.warns(FutureWarning, match=f"now called {new.__name__}"):
            assert isinstance(old(), new)
