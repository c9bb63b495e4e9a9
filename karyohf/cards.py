"""Model cards: the templates in hub_cards/ filled with what a training run measured, under Hub metadata.

A card is the Hub's README.md: YAML front matter, then Markdown. The front matter is built with `huggingface_hub`'s
`ModelCardData` / `EvalResult` from the checkpoint's own `metrics.json`: `library_name`, `pipeline_tag`, `license`,
`datasets`, `tags`, `metrics` and a `model-index` holding every measured figure exactly as metrics.json has it
(validation split, grouped by specimen or case). The template's own front matter supplies the fixed fields (licence,
tags, task); what depends on the measurements is always rebuilt from metrics.json.

    write_model_card(output_dir, "topvit-chromid", **values)   # what train/ scripts call after writing metrics.json
    refresh_model_card("checkpoints/topvit-chromid")             # new metadata for an existing card, body untouched
"""

from __future__ import annotations

import json
import os
import string
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# The templates are package data: the repository keeps them in its top-level hub_cards/ folder, which pyproject.toml
# maps into the package as `karyohf.hub_cards` (in a wheel and in an editable install alike).
# $KARYOHF_CARD_TEMPLATES points elsewhere.
TEMPLATES_VARIABLE = "KARYOHF_CARD_TEMPLATES"
TEMPLATES_PACKAGE = "karyohf.hub_cards"
# The organisation the card's loading snippets name when a script does not pass `repo_id` (train_chromid's default).
HUB_ORGANISATION = "karyohf"

LIBRARY, LICENSE = "transformers", "apache-2.0"
SPLIT = "validation"
# Dataset ids for `datasets` and the model-index. None of these collections is on the Hub (the metaphases are
# Tseng et al.'s, the karyogram crops a research collection with no stated licence, the aberrations synthesized by
# karyohf), so the ids are names, not links.
TSENG2023 = "tseng2023-metaphases"
KARYOGRAM_CROPS = "karyogram-crops"
SYNTHETIC_ABERRATIONS = "karyohf-synthetic-aberrations"
TSENG2023_NAME = "Tseng et al. 2023 G-banded metaphases (Sci. Data 10:104)"
BY_SPECIMEN = "validation split, held-out specimens (image id without its last digit)"

DETECTOR, IDENTITY, ABERRATION = "chromosome-detector", "topvit-chromid", "topvit-aberration"
PIPELINE_TAGS = {DETECTOR: "object-detection", IDENTITY: "image-classification", ABERRATION: "image-classification"}
TRAINING_DATASETS = {
    DETECTOR: [TSENG2023],
    IDENTITY: [TSENG2023, KARYOGRAM_CROPS],
    ABERRATION: [TSENG2023, KARYOGRAM_CROPS, SYNTHETIC_ABERRATIONS],
}
DETECTOR_RESULTS = ("centernet", "owlv2")  # the key of the shipped decoding in a detector's metrics.json
# metrics.json key -> (metric type, readable name); `{threshold}` is the operating point's score threshold.
DETECTOR_METRICS = {
    "ap50": ("ap50", "AP50", "COCO AP at IoU 0.5 over all detections scoring >= 0.01"),
    "ap50_95": ("ap50_95", "AP50:95", "COCO AP averaged over IoU 0.5:0.95, detections scoring >= 0.01"),
    "recall50": ("recall", "recall@0.5", "score >= {threshold}, IoU 0.5"),
    "precision50": ("precision", "precision@0.5", "score >= {threshold}, IoU 0.5"),
    "count_error_median": ("count_error_median", "median count error |n_pred - n_true|", "score >= {threshold}"),
    "count_error_mean": ("count_error_mean", "mean count error |n_pred - n_true|", "score >= {threshold}"),
}
IDENTITY_SOURCES = {
    "metaphase": (TSENG2023, f"{TSENG2023_NAME}: chromosome crops cut from the boxes, {BY_SPECIMEN}"),
    "karyogram": (KARYOGRAM_CROPS, "Karyogram chromosome crops (research collection), validation split, held-out "
                                   "cases"),
}
IDENTITY_METRICS = {
    "top1": ("top-1 accuracy", "each crop alone, as the model runs by default"),
    "top1_most_confident_90pct": ("top-1 accuracy of the 90% most confident", "entropy filter keeping 90% of crops"),
    "top1_most_confident_95pct": ("top-1 accuracy of the 95% most confident", "entropy filter keeping 95% of crops"),
    "top1_within_cell": ("top-1 accuracy, labelled per cell",
                         "each cell's crops assigned jointly (karyohf.identification.assign_within_cell)"),
}
ABERRATION_METRICS = {"pr_auc": ("pr_auc", "PR-AUC"), "roc_auc": ("roc_auc", "ROC-AUC"),
                      "accuracy": ("accuracy", "accuracy")}


class CardTemplateError(FileNotFoundError):
    """A model-card template is not where karyohf looked for it."""


def templates_folder() -> Traversable:
    """$KARYOHF_CARD_TEMPLATES, else the templates installed with karyohf (`karyohf.hub_cards`)."""
    if os.environ.get(TEMPLATES_VARIABLE):
        return Path(os.environ[TEMPLATES_VARIABLE]).expanduser()
    try:
        return files(TEMPLATES_PACKAGE)
    except ModuleNotFoundError as error:
        raise CardTemplateError(
            f"model-card templates not found: {TEMPLATES_PACKAGE} is not importable. They are the repository's "
            f"hub_cards/ folder, installed as package data (pip install ., or pip install -e . in a checkout); this "
            f"karyohf runs from a source tree that was not installed. Set ${TEMPLATES_VARIABLE} to a folder holding "
            f"the templates.") from error


def template_path(template: str) -> Traversable:
    """<templates>/<template>.md, or an error saying which folder or file is missing and how to point at one."""
    folder = templates_folder()
    if not folder.is_dir():
        raise CardTemplateError(
            f"model-card templates not found: no folder {folder}. karyohf's own are the repository's hub_cards/ "
            f"folder, installed with the package ({TEMPLATES_PACKAGE}); set ${TEMPLATES_VARIABLE} to a folder holding "
            f"{template}.md.")
    path = folder / f"{template}.md"
    if not path.is_file():
        known = ", ".join(sorted(p.name[: -len(".md")] for p in folder.iterdir() if p.name.endswith(".md"))) or "none"
        raise CardTemplateError(f"no model-card template {template!r}: {path} does not exist (templates in {folder}: "
                                f"{known}).")
    return path


def render_template(template: str, **values) -> str:
    """The template's text with `values` filled in; a missing value is named, not a bare KeyError."""
    path = template_path(template)
    if "name" in values:
        values.setdefault("repo_id", f"{HUB_ORGANISATION}/{values['name']}")
    text = path.read_text()
    needed = {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text) if field}
    missing = sorted(needed - set(values))
    if missing:
        raise KeyError(f"model-card template {path} needs values for {', '.join(missing)}")
    return text.format(**values)


def write_model_card(output_dir: str | Path, template: str, **values) -> Path:
    """Render hub_cards/<template>.md with `values` into <output_dir>/README.md (the Hub's model card), its front
    matter completed from <output_dir>/metrics.json (see `card_metadata`; without metrics.json, the template's)."""
    output_dir = Path(output_dir)
    card = ModelCard(render_template(template, **values))
    if (output_dir / "metrics.json").is_file():
        card.data = card_metadata(output_dir, card.data)
    path = output_dir / "README.md"
    card.save(path)
    return path


def refresh_model_card(checkpoint: str | Path) -> Path:
    """Rebuild the front matter of <checkpoint>/README.md from <checkpoint>/metrics.json, keeping the card's body
    (and its fixed metadata: licence, tags ...) as it is. No retraining, no re-scoring."""
    checkpoint = Path(checkpoint)
    path = checkpoint / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card to refresh: {path} does not exist (write one with write_model_card)")
    card = ModelCard.load(path)
    card.data = card_metadata(checkpoint, card.data)
    card.save(path)
    return path


def card_metadata(checkpoint: str | Path, base: ModelCardData | dict | None = None) -> ModelCardData:
    """Hub metadata for the checkpoint folder from its metrics.json: `base`'s fields (a card's current metadata)
    kept, `library_name`, `license`, `pipeline_tag` filled in where `base` lacks them, `datasets`, `metrics` and the
    model-index (`eval_results`, named after the folder) rebuilt from the measurements."""
    checkpoint = Path(checkpoint)
    metrics = read_metrics(checkpoint)
    kind = card_kind(metrics, checkpoint / "metrics.json")
    data = (base.to_dict() if isinstance(base, ModelCardData) else dict(base or {}))
    data.pop("model-index", None)
    data.setdefault("library_name", LIBRARY)
    data.setdefault("license", LICENSE)
    data.setdefault("pipeline_tag", PIPELINE_TAGS[kind])
    data["tags"] = list(dict.fromkeys([*(data.get("tags") or []), "karyohf"]))
    data["datasets"] = TRAINING_DATASETS[kind]
    results = eval_results(kind, metrics)
    data["metrics"] = list(dict.fromkeys(result.metric_type for result in results))
    return ModelCardData(**data, model_name=checkpoint.resolve().name, eval_results=results)


def read_metrics(checkpoint: Path) -> dict:
    path = checkpoint / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: the card's results come from the checkpoint's metrics.json")
    return json.loads(path.read_text())


def card_kind(metrics: dict, where: str | Path = "metrics.json") -> str:
    """Which model a metrics.json measures, from what it measured: detection, identity or an aberration head."""
    if any(key in metrics for key in DETECTOR_RESULTS):
        return DETECTOR
    if "metaphase" in metrics or "karyogram" in metrics:
        return IDENTITY
    if isinstance(metrics.get("validation"), dict) and "head" in metrics:
        return ABERRATION
    raise ValueError(f"{where} holds no measured results karyohf knows ({', '.join(map(str, metrics)) or 'empty'}): "
                     f"expected detector results ({' / '.join(DETECTOR_RESULTS)}), identity results (metaphase / "
                     "karyogram) or an aberration head's validation results")


def eval_results(kind: str, metrics: dict) -> list[EvalResult]:
    """Every measured figure of metrics.json as an `EvalResult`, values unrounded."""
    if kind == DETECTOR:
        key = next(key for key in DETECTOR_RESULTS if key in metrics)
        measured = metrics[key]
        threshold = measured.get("score_threshold")
        name = (f"{TSENG2023_NAME}, {BY_SPECIMEN}: {measured['images']:,} metaphases, "
                f"{measured['chromosomes']:,} chromosomes")
        return [EvalResult(task_type="object-detection", task_name="Chromosome detection", dataset_type=TSENG2023,
                           dataset_name=name, dataset_split=SPLIT, metric_type=metric_type,
                           metric_name=metric_name, metric_config=config.format(threshold=threshold),
                           metric_value=measured[source])
                for source, (metric_type, metric_name, config) in DETECTOR_METRICS.items() if source in measured]
    if kind == IDENTITY:
        results = []
        for source, (dataset_type, dataset_name) in IDENTITY_SOURCES.items():
            if source not in metrics:
                continue
            measured = metrics[source]
            name = f"{dataset_name}: {measured['crops']:,} crops"
            results += [EvalResult(task_type="image-classification", task_name="Chromosome identification (24 classes)",
                                   dataset_type=dataset_type, dataset_name=name, dataset_split=SPLIT,
                                   metric_type="accuracy", metric_name=metric_name, metric_config=config,
                                   metric_value=measured[key])
                        for key, (metric_name, config) in IDENTITY_METRICS.items() if key in measured]
        return results
    results = []
    for derivative, measured in metrics["validation"].items():
        dataset_name = (f"Synthesized {derivative} and real normal chromosome {measured['chromosome']} crops, "
                        f"validation split, held-out cases and specimens: {measured['normal']} normal / "
                        f"{measured['aberrant']} aberrant")
        results += [EvalResult(task_type="image-classification", task_name=f"{derivative} detection",
                               dataset_type=SYNTHETIC_ABERRATIONS, dataset_name=dataset_name, dataset_config=derivative,
                               dataset_split=SPLIT, metric_type=metric_type, metric_name=metric_name,
                               metric_config=f"{derivative} vs normal chromosome {measured['chromosome']}",
                               metric_value=measured[key])
                    for key, (metric_type, metric_name) in ABERRATION_METRICS.items() if key in measured]
    return results


INTENDED_USE = """Research software, for developing and evaluating automated karyotyping of G-banded metaphase images by
researchers and laboratories studying such tools. It is **not a medical or diagnostic device**: it has not been
validated clinically, and none of its outputs may be used for diagnosis or patient care; a qualified cytogeneticist
must review every image and every call."""
HEADLINE_METRICS = ("AP50", "top-1 accuracy", "PR-AUC")  # the figure per model the bundle card's table shows


def bundle_card(folder: str | Path, repo_id: str) -> ModelCard:
    """The card of a repository holding every checkpoint as a subfolder (what `karyohf push --bundle` uploads when
    the folder has no README.md of its own): what each folder is, its headline figures, how to load them."""
    folder = Path(folder)
    models = [child for child in sorted(folder.iterdir()) if child.is_dir() and (child / "config.json").is_file()]
    rows, datasets, tags = [], [], ["karyohf", "transformers", "karyotyping", "cytogenetics"]
    for model in models:
        config = json.loads((model / "config.json").read_text())
        task, figures = "", "see its card"
        if (model / "metrics.json").is_file():
            try:
                data = card_metadata(model)
            except ValueError:  # no results karyohf knows: the row says less
                data = None
            if data is not None:
                task, datasets = data.pipeline_tag, datasets + data.datasets
                figures = "; ".join(
                    f"{result.metric_name} {result.metric_value:.3f} ({result.dataset_config or result.dataset_type})"
                    for result in data.eval_results if result.metric_name in HEADLINE_METRICS) or figures
        architecture = ", ".join(config.get("architectures") or [config.get("model_type", "")])
        rows.append(f"| [{model.name}]({model.name}/README.md) | `{architecture}` | {task} | {figures} |")
    identity = next((m.name for m in models if m.name == "topvit-chromid"), models[0].name if models else "MODEL")
    data = ModelCardData(license=LICENSE, tags=tags, datasets=list(dict.fromkeys(datasets)) or None)
    text = f"""
# {repo_id}: the karyohf pipeline checkpoints

The models of the karyohf pipeline (metaphase → boxes → masks → identity → aberrations → karyotype), after
Shamsi et al., *Automatic Karyotyping: From Metaphase Image to Diagnostic Prediction*, one per folder, each with its
own card (training data and recipe, results, limits). Figures are on the validation splits (held-out specimens or cases).

| folder | model | task | measured (validation split) |
|---|---|---|---|
{chr(10).join(rows)}

## Intended use

{INTENDED_USE}

## Limits

Trained on amniotic-fluid metaphases of one hospital and one karyogram collection (one stain, G-banding); the
aberration heads on synthesized derivatives. Accuracy on other labs, stains or preparations is not measured: each
model's card says what it was measured on and where it fails.

## How to load

All of them, as the pipeline (`pip install` the karyohf repository):

```python
from karyohf import KaryotypePipeline

pipe = KaryotypePipeline.from_pretrained("{repo_id}")
specimen = pipe(["metaphase-1.png", "metaphase-2.png"])
print(specimen.karyotype)
```

One model: after `import karyohf`, `from_pretrained("{repo_id}", subfolder="{identity}")` through the Auto classes.
Without karyohf, each folder carries its model code (`trust_remote_code=True`), but transformers looks for remote
code at the repository's root only, so download the folder first:

```python
from pathlib import Path
from huggingface_hub import snapshot_download
from transformers import AutoImageProcessor, AutoModelForImageClassification

root = Path(snapshot_download("{repo_id}", allow_patterns="{identity}/*"))
model = AutoModelForImageClassification.from_pretrained(root / "{identity}", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained(root / "{identity}", trust_remote_code=True, backend="pil")
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")
