"""Model cards with Hub metadata from metrics.json, and publishing through an HfApi-like object (no network)."""

import json
import shutil
import string
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects

from karyohf import cards, hub
from karyohf.cli import main
from karyohf.pipeline import KaryotypePipeline
from tests.test_pipeline import tiny_detector, tiny_topvit

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
SHIPPED = {"centernet-chromosomes": "object-detection", "topvit-chromid": "image-classification",
           "topvit-del5q": "image-classification", "topvit-t9-22": "image-classification"}
SECTIONS = ("## Intended use", "## How to load", "## Training data and recipe", "## Limits")
TEMPLATES = {"chromosome-detector": "centernet-chromosomes", "topvit-chromid": "topvit-chromid",
             "topvit-aberration": "topvit-del5q"}
# What each shipped model-index figure must equal, found independently of karyohf.cards: the metrics.json path.
DETECTOR_SOURCES = {"ap50": "ap50", "ap50_95": "ap50_95", "recall": "recall50", "precision": "precision50",
                    "count_error_median": "count_error_median", "count_error_mean": "count_error_mean"}
IDENTITY_SOURCES = {"top-1 accuracy": "top1", "top-1 accuracy of the 90% most confident": "top1_most_confident_90pct",
                    "top-1 accuracy of the 95% most confident": "top1_most_confident_95pct",
                    "top-1 accuracy, labelled per cell": "top1_within_cell"}
IDENTITY_DATASETS = {"tseng2023-metaphases": "metaphase", "karyogram-crops": "karyogram"}


def shipped(name):
    if not (CHECKPOINTS / name / "README.md").is_file() or not (CHECKPOINTS / name / "metrics.json").is_file():
        pytest.skip(f"checkpoints/{name} (its README.md and metrics.json) is not in this checkout")
    return CHECKPOINTS / name


def expected_figures(metrics: dict, result) -> float:
    """The metrics.json value an EvalResult reports."""
    if "centernet" in metrics:
        return metrics["centernet"][DETECTOR_SOURCES[result.metric_type]]
    if "metaphase" in metrics:
        return metrics[IDENTITY_DATASETS[result.dataset_type]][IDENTITY_SOURCES[result.metric_name]]
    return metrics["validation"][result.dataset_config][result.metric_type]


def figure_count(metrics: dict) -> int:
    if "centernet" in metrics:
        return len(DETECTOR_SOURCES)
    if "metaphase" in metrics:
        return sum(len(IDENTITY_SOURCES) for source in IDENTITY_DATASETS.values() if source in metrics)
    return 3 * len(metrics["validation"])


# --- cards -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_metadata_reports_its_metrics_json(name):
    folder = shipped(name)
    card = ModelCard.load(folder / "README.md")
    metrics = json.loads((folder / "metrics.json").read_text())
    data = card.data
    assert data.library_name == "transformers" and data.license == "apache-2.0"
    assert data.pipeline_tag == SHIPPED[name]
    assert data.datasets and "tseng2023-metaphases" in data.datasets
    assert "karyotyping" in data.tags and "karyohf" in data.tags
    assert data.model_name == name
    assert len(data.eval_results) == figure_count(metrics)
    for result in data.eval_results:
        assert result.task_type == SHIPPED[name]
        assert result.dataset_split == "validation" and "held-out" in result.dataset_name
        assert result.metric_value == expected_figures(metrics, result), (result.metric_name, result.dataset_type)
    assert set(data.metrics) == {result.metric_type for result in data.eval_results}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_has_the_sections_and_both_ways_to_load(name):
    text = ModelCard.load(shipped(name) / "README.md").text
    for section in SECTIONS:
        assert f"\n{section}\n" in text, section
    assert "not a medical or\ndiagnostic device" in text or "not a medical or diagnostic device" in text
    assert "trust_remote_code=True" in text and 'backend="pil"' in text
    assert f'from_pretrained("karyohf/{name}"' in text


@pytest.mark.parametrize("name", SHIPPED)
def test_refreshing_a_shipped_card_changes_nothing(tmp_path, name):
    folder, copy = shipped(name), tmp_path / name  # the model-index is named after the folder
    copy.mkdir()
    for file in ("README.md", "metrics.json"):
        shutil.copy(folder / file, copy / file)
    cards.refresh_model_card(copy)
    assert (copy / "README.md").read_text() == (folder / "README.md").read_text()


def test_refresh_rebuilds_the_metadata_and_keeps_the_body(tmp_path):
    metrics = {"head": "del5q", "labels": ["normal", "del(5q)"],
               "validation": {"del(5q)": {"chromosome": "5", "normal": 10, "aberrant": 9, "pr_auc": 0.5,
                                          "roc_auc": 0.25, "accuracy": 0.125}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    body = "\n# old card\n\nIts text, kept.\n"
    (tmp_path / "README.md").write_text("---\nlicense: mit\ntags:\n- mine\nmodel-index:\n- name: stale\n  results: []\n"
                                        "---\n" + body)
    cards.refresh_model_card(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.text == body
    assert card.data.license == "mit"  # the card's own fixed metadata stays
    assert card.data.tags == ["mine", "karyohf"] and card.data.pipeline_tag == "image-classification"
    assert card.data.model_name == tmp_path.name
    assert {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results} == {
        ("del(5q)", "pr_auc"): 0.5, ("del(5q)", "roc_auc"): 0.25, ("del(5q)", "accuracy"): 0.125}


def test_refresh_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="README.md"):
        cards.refresh_model_card(tmp_path)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        cards.refresh_model_card(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"training": {"steps": 3}}))
    with pytest.raises(ValueError, match="no measured results"):
        cards.refresh_model_card(tmp_path)


def template_values(template: str) -> dict:
    """A value for every field of the template (what a training script passes)."""
    text = cards.template_path(template).read_text()
    fields = {field.split(".")[0].split("[")[0]: spec for _, field, spec, _ in string.Formatter().parse(text) if field}
    fields.pop("repo_id", None)  # train_centernet and train_aberration pass none: karyohf/<name>
    return {field: 1234 if spec else f"<{field}>" for field, spec in fields.items()} | {"name": "my-model"}


@pytest.mark.parametrize("template", TEMPLATES)
def test_write_model_card_renders_the_template_under_metadata_from_metrics_json(tmp_path, template):
    source = shipped(TEMPLATES[template])
    shutil.copy(source / "metrics.json", tmp_path / "metrics.json")
    path = cards.write_model_card(tmp_path, template, **template_values(template))  # the train/ scripts' call
    assert path == tmp_path / "README.md"
    card = ModelCard.load(path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert card.data.pipeline_tag == SHIPPED[TEMPLATES[template]] and card.data.library_name == "transformers"
    assert len(card.data.eval_results) == figure_count(metrics)
    assert all(result.metric_value == expected_figures(metrics, result) for result in card.data.eval_results)
    for section in SECTIONS:
        assert f"\n{section}\n" in card.text, section
    assert "my-model" in card.text and "karyohf/my-model" in card.text  # repo_id defaults to karyohf/<name>


def test_write_model_card_without_metrics_keeps_the_template_metadata(tmp_path):
    cards.write_model_card(tmp_path, "topvit-aberration", **template_values("topvit-aberration"))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "image-classification" and card.data.eval_results is None


def test_template_lookup_errors_name_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(cards.CardTemplateError, match="'no-such-card'.*templates in .*chromosome-detector"):
        cards.write_model_card(tmp_path, "no-such-card", name="x")
    with pytest.raises(KeyError, match="needs values for .*parameters"):
        cards.write_model_card(tmp_path, "topvit-aberration", name="x")
    monkeypatch.setenv(cards.TEMPLATES_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(cards.CardTemplateError, match=r"no folder .*nowhere.*hub_cards/.*KARYOHF_CARD_TEMPLATES"):
        cards.write_model_card(tmp_path, "topvit-chromid", name="x")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mine.md").write_text("---\nlicense: mit\n---\n# {name}\n")
    monkeypatch.setenv(cards.TEMPLATES_VARIABLE, str(templates))
    assert ModelCard.load(cards.write_model_card(tmp_path, "mine", name="x")).text.strip() == "# x"


def test_templates_are_package_data_and_every_package_is_installed():
    """The templates load through importlib.resources from `karyohf.hub_cards`, which pyproject.toml maps to the
    repository's hub_cards/ folder; the explicit package list (needed for that mapping) holds every package."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "karyohf").rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk | {cards.TEMPLATES_PACKAGE}
    assert setuptools["package-dir"] == {cards.TEMPLATES_PACKAGE: "hub_cards"}
    assert setuptools["package-data"][cards.TEMPLATES_PACKAGE] == ["*.md"]
    assert Path(str(cards.templates_folder())).resolve() == (ROOT / "hub_cards").resolve()  # the editable install
    assert {path.name for path in cards.templates_folder().iterdir() if path.name.endswith(".md")} == {
        f"{template}.md" for template in TEMPLATES}


# --- push --------------------------------------------------------------------------------------------------------


class FakeHub:
    """`HfApi`-like: each repository is a folder under `root`; every call is recorded. upload_folder follows the
    real one's pattern rules (`filter_repo_objects`; `.gitattributes` is never deleted)."""

    def __init__(self, root: Path):
        self.root, self.calls, self.private = Path(root), [], {}

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, "repo_type": repo_type, "private": private,
                                           "exist_ok": exist_ok}))
        folder = self.root / repo_id
        if folder.exists() and not exist_ok:
            raise FileExistsError(repo_id)
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            self.private[repo_id] = bool(private)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, ignore_patterns=None,
                      delete_patterns=None, allow_patterns=None, path_in_repo=None, **kwargs):
        source, target = Path(folder_path), self.root / repo_id
        local = [p.relative_to(source).as_posix() for p in sorted(source.glob("**/*")) if p.is_file()]
        kept = list(filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        remote = [p.relative_to(target).as_posix() for p in target.glob("**/*") if p.is_file()]
        deleted = [path for path in filter_repo_objects(remote, allow_patterns=delete_patterns)
                   if path != ".gitattributes" and path not in kept] if delete_patterns else []
        for path in deleted:
            (target / path).unlink()
        for path in kept:
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / path, target / path)
        self.calls.append(("upload_folder", {"repo_id": repo_id, "repo_type": repo_type, "files": kept,
                                             "deleted": deleted, "commit_message": commit_message}))

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, repo_type=None, commit_message=None, **kwargs):
        data = path_or_fileobj if isinstance(path_or_fileobj, bytes) else Path(path_or_fileobj).read_bytes()
        (self.root / repo_id / path_in_repo).write_bytes(data)
        self.calls.append(("upload_file", {"repo_id": repo_id, "repo_type": repo_type, "path_in_repo": path_in_repo}))


def tree(folder: Path, skip=(".gitattributes",)) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in skip
            and "__pycache__" not in p.parts}


def detector_checkpoint(folder: Path) -> Path:
    """A tiny CenterNet saved as a training run leaves it: weights, code, metrics.json and its card."""
    tiny_detector(folder)
    measured = {"images": 3, "chromosomes": 130, "detections": 128, "score_threshold": 0.3, "ap50": 0.5,
                "ap50_95": 0.25, "recall50": 0.75, "precision50": 0.625, "count_error_median": 1.0,
                "count_error_mean": 1.5}
    (folder / "metrics.json").write_text(json.dumps({"centernet": measured}))
    cards.write_model_card(folder, "chromosome-detector", **template_values("chromosome-detector"))
    return folder


def test_push_uploads_exactly_the_checkpoint_folder_with_its_card(tmp_path):
    folder = detector_checkpoint(tmp_path / "centernet-tiny")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "modeling_centernet.cpython-311.pyc").write_bytes(b"cache")
    fake = FakeHub(tmp_path / "hub")
    url = hub.push(folder, "me/centernet-tiny", api=fake)
    assert url == "https://huggingface.co/me/centernet-tiny"
    uploaded = tree(fake.root / "me/centernet-tiny")
    assert uploaded == tree(folder)  # byte for byte, caches left out
    assert {"config.json", "model.safetensors", "modeling_centernet.py", "README.md"} <= set(uploaded)
    assert uploaded["README.md"] == (folder / "README.md").read_bytes()
    card = ModelCard.load(fake.root / "me/centernet-tiny" / "README.md")
    assert card.data.model_name == "centernet-tiny" and card.data.eval_results[0].metric_value == 0.5
    assert [call for call, _ in fake.calls] == ["create_repo", "upload_folder"]
    assert fake.calls[0][1] == {"repo_id": "me/centernet-tiny", "repo_type": "model", "private": False,
                                "exist_ok": True}
    assert fake.calls[1][1]["repo_type"] == "model"


def test_push_again_leaves_the_repository_equal_to_the_folder(tmp_path):
    folder = detector_checkpoint(tmp_path / "centernet-tiny")
    fake = FakeHub(tmp_path / "hub")
    hub.push(folder, "me/det", api=fake, private=True)
    (folder / "metrics.json").unlink()
    (folder / "notes.txt").write_text("new")
    hub.push(folder, "me/det", api=fake, private=False)
    assert tree(fake.root / "me/det") == tree(folder)
    assert fake.calls[-1][1]["deleted"] == ["metrics.json"]
    assert (fake.root / "me/det" / ".gitattributes").is_file() and fake.private["me/det"] is True
    hub.push(folder, "me/det", api=fake, prune=False)
    (fake.root / "me/det" / "extra.bin").write_bytes(b"x")
    hub.push(folder, "me/det", api=fake, prune=False)
    assert (fake.root / "me/det" / "extra.bin").is_file()


@pytest.mark.parametrize("name", ["topvit-del5q"])
def test_push_a_shipped_checkpoint(tmp_path, name):
    folder = shipped(name)
    fake = FakeHub(tmp_path / "hub")
    hub.push(folder, f"karyohf/{name}", api=fake)
    assert tree(fake.root / "karyohf" / name) == tree(folder)


def test_push_refuses_what_is_not_a_checkpoint(tmp_path):
    fake = FakeHub(tmp_path / "hub")
    with pytest.raises(hub.NotACheckpointError, match="not a folder"):
        hub.push(tmp_path / "missing", "me/x", api=fake)
    (tmp_path / "empty").mkdir()
    with pytest.raises(hub.NotACheckpointError, match="no config.json"):
        hub.push(tmp_path / "empty", "me/x", api=fake)
    bundle = tmp_path / "bundle"
    detector_checkpoint(bundle / "centernet-chromosomes")
    with pytest.raises(hub.NotACheckpointError, match="--bundle"):
        hub.push(bundle, "me/x", api=fake)
    with pytest.raises(hub.NotACheckpointError, match="topvit-chromid/config.json"):
        hub.push(bundle, "me/x", api=fake, bundle=True)
    with pytest.raises(hub.NotACheckpointError, match="without --bundle"):
        hub.push(bundle / "centernet-chromosomes", "me/x", api=fake, bundle=True)
    (bundle / "centernet-chromosomes" / "README.md").unlink()
    with pytest.raises(hub.NotACheckpointError, match="no model card"):
        hub.push(bundle / "centernet-chromosomes", "me/x", api=fake)
    assert fake.calls == []  # nothing was created or uploaded


def tiny_bundle(root: Path) -> Path:
    detector_checkpoint(root / "centernet-chromosomes")
    tiny_topvit(root / "topvit-chromid")
    tiny_topvit(root / "topvit-del5q", ["normal", "del(5q)"])
    for name, template in (("topvit-chromid", "topvit-chromid"), ("topvit-del5q", "topvit-aberration")):
        cards.write_model_card(root / name, template, **template_values(template) | {"name": name})
    return root


def test_bundle_push_uploads_the_folder_of_checkpoints_that_the_pipeline_loads(tmp_path, monkeypatch):
    folder = tiny_bundle(tmp_path / "checkpoints")
    fake = FakeHub(tmp_path / "hub")
    hub.push(folder, "me/karyohf", api=fake, bundle=True)
    repo = fake.root / "me/karyohf"
    uploaded = tree(repo)
    card = uploaded.pop("README.md")  # the folder has none: the bundle card is added
    assert uploaded == tree(folder)
    assert [call for call, _ in fake.calls] == ["create_repo", "upload_folder", "upload_file"]
    bundle_card = ModelCard(card.decode())
    assert "karyohf" in bundle_card.data.tags and "## Intended use" in bundle_card.text
    assert "[topvit-del5q](topvit-del5q/README.md)" in bundle_card.text
    assert 'KaryotypePipeline.from_pretrained("me/karyohf")' in bundle_card.text

    # What a user gets from the Hub id: the repository as snapshot_download leaves it.
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(fake.root / repo_id))
    pipe = KaryotypePipeline.from_pretrained("me/karyohf")
    assert pipe.detector is not None and [head.label_names for head in pipe.heads] == [["normal", "del(5q)"]]


def test_bundle_push_keeps_a_bundle_card_of_its_own(tmp_path):
    folder = tiny_bundle(tmp_path / "checkpoints")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# our bundle\n")
    fake = FakeHub(tmp_path / "hub")
    hub.push(folder, "me/karyohf", api=fake, bundle=True)
    assert tree(fake.root / "me/karyohf") == tree(folder)
    assert [call for call, _ in fake.calls] == ["create_repo", "upload_folder"]


def test_bundle_card_of_the_shipped_checkpoints():
    for name in SHIPPED:
        shipped(name)
    card = cards.bundle_card(CHECKPOINTS, "karyohf/karyohf")
    assert ModelCard(str(card)).data.license == "apache-2.0"
    for name in SHIPPED:
        assert f"[{name}]({name}/README.md)" in card.text
    del5q = json.loads((CHECKPOINTS / "topvit-del5q" / "metrics.json").read_text())["validation"]["del(5q)"]
    assert "AP50 0.985" in card.text and f"PR-AUC {del5q['pr_auc']:.3f} (del(5q))" in card.text


def test_cli_push(tmp_path, monkeypatch, capsys):
    folder = detector_checkpoint(tmp_path / "det")
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(hub, "default_api", lambda: fake)
    assert main(["push", str(folder), "--repo-id", "me/det", "--private"]) == 0
    assert "https://huggingface.co/me/det" in capsys.readouterr().out
    assert fake.calls[0][1]["private"] is True and tree(fake.root / "me/det") == tree(folder)
    (tmp_path / "not-one").mkdir()
    assert main(["push", str(tmp_path / "not-one"), "--repo-id", "me/x"]) == 2
    assert "not a checkpoint: no config.json" in capsys.readouterr().err
