"""`KaryotypePipeline`: from a specimen's metaphase images to its ISCN karyotype, the one object every entry point
(CLI, app, benchmarks, tests) goes through.

    pipe = KaryotypePipeline.from_pretrained()          # the shipped checkpoints, loaded once
    cell = pipe.analyze_cell("metaphase.jpg")           # one metaphase -> CellResult
    specimen = pipe(["m1.jpg", "m2.jpg", ...])          # one specimen's metaphases -> SpecimenResult
    specimen.karyotype                                  # e.g. "47,XY,+8[3]/46,XY[17]"

Per metaphase: chromosome boxes (`ChromosomeDetector`, or boxes the caller gives) -> one mask per box -> the
paper's crops, cut exactly as the models' training crops were -> identity with cell context -> the aberration heads
on the chromosomes they screen -> de novo distances -> the cell's own karyotype and whether it can be analysed.
Per specimen: `karyohf.karyotype.specimen.aggregate` applies the ISCN clone rules, and the result lists the reasons
to refer the case to a cytogeneticist. Every ISCN string returned has passed `validate_karyotype`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .aberrations import NORMAL, AberrationHead, DeNovoIndex, specimen_score
from .crops import CANVAS_SIZE, cell_scale, isolate_chromosome, pixel_box, rescale_chromosome
from .cytogenetics import CHROMOSOMES, get_aberration
from .detection import ChromosomeDetector
from .detection.boxes import Detections, non_maximum_suppression
from .counting import ObjectVerifier, ink_measures, object_features
from .identification import ChromosomeIdentifier, Identification, assign_within_cell
from .images import ImageError, load_metaphase
from .models.topvit.image_processing_topvit import center_on_canvas
from .karyogram import render_karyogram
from .karyotype import ISCNError, validate_karyotype
from .karyotype.cells import Abnormality, check_study, format_line, numerical_changes
from .karyotype.specimen import FEMALE_WITH_Y, MALE_AS_XX, aggregate, reference_sex, sex_inconsistent
from .backends import check_backend
from .segmentation import segment_in_box

REPORT_VERSION = "1.2"  # 1.1: per-object chromosome_probability, possibly_missed_objects; 1.2: doubtful
FHIR_PROFILE = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/variant"
LOINC, ISCN_SYSTEM = "http://loinc.org", "https://iscn.karger.com"
DETECTOR_FOLDER, IDENTIFIER_FOLDER = "centernet-chromosomes", "topvit-chromid"
CHECKPOINTS_VARIABLE = "KARYOHF_CHECKPOINTS"
DEFAULT_HUB_ID = "karyohf/karyohf"
# A metaphase outside these counts is broken, partial, or two fields overlapping: counting it would put a false
# aneuploidy into the karyotype, so it is not analysed (the clinician may still review it). These are ISCN's
# hypodiploid-to-hyperdiploid range: outside it a line is written against another ploidy level.
ANALYSABLE_COUNTS = (35, 57)
# Boxes overlapping a neighbour by more than this IoU form a cluster (crossing or piled chromosomes); a cell with
# more clustered chromosomes than MAX_CLUSTERED cannot be counted reliably.
CLUSTER_IOU, MAX_CLUSTERED = 0.4, 6
# More low-confidence chromosomes than this fraction: the identities are too unsure to karyotype the cell.
MAX_LOW_CONFIDENCE = 0.25
# A count's doubt: most chromosomes the detector misses still have a box, scored under its threshold. Candidates
# down to CANDIDATE_FLOOR are identified too (never counted); one that the identity model names with at least
# CANDIDATE_MIN_PROBABILITY as a chromosome the cell lacks turns that loss into "recount this cell".
CANDIDATE_FLOOR, CANDIDATE_MIN_PROBABILITY = 0.05, 0.5
# The candidates are suppressed less than the detector's own boxes: the box of one chromosome of a touching or
# crossing pair often overlaps its partner's by more than the detector's NMS IoU. Up to MAX_CANDIDATES per metaphase.
CANDIDATE_NMS_IOU, MAX_CANDIDATES = 0.75, 400
# With an object verifier (`karyohf.counting`), every object down to the floor is weighed and those it believes are
# counted; its doubt is the band around its threshold: a counted object under VERIFIED_SURE may be a false one, an
# uncounted one over VERIFIED_DOUBT a missed chromosome.
VERIFIED_DOUBT, VERIFIED_SURE = 0.2, 0.8
# The identity model's validation crops above this entropy quantile are "low confidence" when its checkpoint
# does not carry the curve (`entropy_curves.json`: the cutoff that keeps 90% of the validation crops).
LOW_CONFIDENCE_RETAINED, FALLBACK_LOW_CONFIDENCE_ENTROPY = 0.9, 0.6
# A chromosome farther from the normals of its class than this quantile of the normals' own distances is a de novo
# outlier; outliers of one class in this many cells (and this fraction of them) suggest an unmodelled aberration.
DENOVO_QUANTILE, DENOVO_RECURRING_CELLS, DENOVO_RECURRING_FRACTION = 0.995, 3, 0.15
# A copy beyond the two of an autosome (or the cell's XX / XY) counts only when the detector and the identity model
# are both sure of it. Over-counted objects -- debris, a nucleus fragment, a split chromosome -- are mostly labelled
# as small chromosomes (21, 22, Y, 15) and gave nearly every normal 20-cell specimen a false +21 clone; on the
# validation metaphases this rule drops 85% of those extra objects, and 17 of the 20 real gains of the numerical
# metaphases stay (18 counting every object; docs/pipeline.md). The object stays in the result, marked not counted, for review.
EXTRA_COPY_MIN_SCORE, EXTRA_COPY_MIN_PROBABILITY = 0.5, 0.8
# Cells a study must analyse before its karyotype can stand on its own (ISCN/lab practice: 20 metaphases).
MINIMUM_CELLS = {"neoplasia": 20, "constitutional": 20}
MASK_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40))


def default_checkpoints() -> Path | None:
    """The folder of shipped checkpoints when karyohf runs in a checkout: `checkpoints/` in the working directory
    (the library never looks outside its package on its own; `$KARYOHF_CHECKPOINTS` points anywhere)."""
    folder = Path.cwd() / "checkpoints"
    return folder if (folder / IDENTIFIER_FOLDER / "config.json").is_file() else None


def resolve_checkpoints(path_or_id: str | os.PathLike | None = None) -> Path:
    """The local folder holding the pipeline's checkpoints: `path_or_id` (a folder or a Hub id), else
    `$KARYOHF_CHECKPOINTS`, else the checkout's `checkpoints/`, else the Hub. The error names every place tried."""
    tried = []
    if path_or_id is not None:
        candidates = [str(path_or_id)]
    else:
        candidates = [os.environ.get(CHECKPOINTS_VARIABLE), default_checkpoints(), DEFAULT_HUB_ID]
        if candidates[0] is None:
            tried.append(f"${CHECKPOINTS_VARIABLE} (not set)")
        if candidates[1] is None:
            tried.append("the checkout's checkpoints/ (karyohf is not running from a checkout that has them)")
    for candidate in filter(None, candidates):
        folder = Path(candidate).expanduser()
        if (folder / IDENTIFIER_FOLDER / "config.json").is_file():
            return folder
        if folder.exists() or "/" not in str(candidate) or str(candidate).count("/") > 1:
            tried.append(f"{folder} (no {IDENTIFIER_FOLDER}/config.json there)")
            continue
        try:  # a Hub id: only what is cached when offline
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=str(candidate)))
        except Exception as error:  # offline, unknown repository, invalid id: say where we looked
            tried.append(f"Hub repository {candidate!r} ({type(error).__name__})")
            continue
        if (folder / IDENTIFIER_FOLDER / "config.json").is_file():
            return folder
        tried.append(f"Hub repository {candidate!r} (no {IDENTIFIER_FOLDER}/ in it)")
    raise FileNotFoundError("no karyohf checkpoints found; looked in: " + "; ".join(tried)
                            + f". Pass a folder holding {IDENTIFIER_FOLDER}/ (and {DETECTOR_FOLDER}/, heads) or set "
                              f"${CHECKPOINTS_VARIABLE}.")


@dataclass
class CellResult:
    """What the pipeline saw in one metaphase. Arrays have one row per chromosome (box), in the same order.

    `masks[i]` is a boolean mask of `boxes[i]`'s integer pixel box (`mask_boxes[i]`); `labels` are the identities
    after cell context; `head_probabilities` maps each aberrant label a head knows (e.g. "der(22)t(9;22)") to every
    chromosome's probability of being it (NaN where not screened); `aberration_scores` holds one score per
    aberration for the cell and `structural` the ones called."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    masks: list[np.ndarray]
    mask_boxes: np.ndarray
    # Each chromosome as cut: upright on white, tight, never shrunk (`isolate_chromosome`). The models read these
    # rescaled to the cell's scale; a canvas first would shrink the longest chromosomes of a highly magnified cell
    # to fit, and then rescaling would make them look short (a 5 under 2x magnification read as a del(5q)).
    chromosomes: list[np.ndarray]
    labels: list[str]
    probabilities: np.ndarray
    entropy: np.ndarray
    low_confidence: np.ndarray
    embeddings: np.ndarray
    denovo_scores: np.ndarray
    denovo_outliers: np.ndarray
    head_probabilities: dict[str, np.ndarray]
    head_thresholds: dict[str, float]
    aberration_scores: dict[str, float]
    structural: tuple[str, ...]
    reference_sex: str
    study: str
    quality: str  # "analysable", or why not
    counted: np.ndarray = None  # per object: counted as a chromosome (see EXTRA_COPY_MIN_SCORE)
    confirmed: np.ndarray = None  # per object: identity set by a person (always counted)
    excluded: bool = False
    corrections: list[dict] = field(default_factory=list)
    # Boxes the detector scored between CANDIDATE_FLOOR and its threshold: not counted, identified to weigh the count.
    candidate_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    candidate_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    candidate_labels: list[str] = field(default_factory=list)
    candidate_confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # `karyohf.crops.cell_scale` of the cell's chromosomes: how cell-normalised heads rescale its crops.
    cell_scale: float = 1.0
    # The object verifier's P(chromosome) of each object and each candidate (NaN without a verifier).
    verification: np.ndarray = None
    candidate_verification: np.ndarray = None

    def __post_init__(self):
        if self.verification is None:
            self.verification = np.full(len(self.labels), np.nan, np.float32)
        if self.candidate_verification is None:
            self.candidate_verification = np.full(len(self.candidate_labels), np.nan, np.float32)

    @property
    def crops(self) -> list[Image.Image]:
        """The paper's native-scale canvas crops of `chromosomes`: what the karyogram shows."""
        return [Image.fromarray(center_on_canvas(chromosome, CANVAS_SIZE), mode="L") for chromosome in self.chromosomes]

    @property
    def counted_labels(self) -> list[str]:
        return [label for label, counted in zip(self.labels, self.counted) if counted]

    @property
    def chromosome_count(self) -> int:
        return len(self.counted_labels)

    @property
    def possibly_missed(self) -> list[str]:
        """Identities of the uncounted candidates the identity model is sure of (and the verifier, if any, does not
        rule out: P(chromosome) >= VERIFIED_DOUBT): chromosomes the count may lack."""
        return [self.candidate_labels[i] for i in self.missed_candidates]

    @property
    def missed_candidates(self) -> list[int]:
        """Indices (into `candidate_*`) of the possibly missed chromosomes: what a reviewer should look at."""
        return [i for i, (p, v) in enumerate(zip(self.candidate_confidence, self.candidate_verification))
                if p >= CANDIDATE_MIN_PROBABILITY and not v < VERIFIED_DOUBT]

    @property
    def doubtful(self) -> np.ndarray:
        """Per object: counted, but may not be a chromosome (`doubtful_objects`)."""
        return doubtful_objects(self.scores, self.verification, self.counted, self.confirmed)

    @property
    def doubtful_labels(self) -> list[str]:
        return [label for label, doubt in zip(self.labels, self.doubtful) if doubt]

    @property
    def count_range(self) -> tuple[int, int]:
        """The count with its doubt: from the doubtful counted objects taken away, to the possibly missed ones
        added."""
        return self.chromosome_count - int(np.sum(self.doubtful)), self.chromosome_count + len(self.possibly_missed)

    @property
    def sex_chromosomes(self) -> str:
        """The sex chromosomes counted, e.g. "XY", "X", "XXY" ("" when none was identified)."""
        labels = self.counted_labels
        return "X" * labels.count("X") + "Y" * labels.count("Y")

    @property
    def analysable(self) -> bool:
        return self.quality == "analysable" and not self.excluded

    @property
    def abnormalities(self) -> tuple[Abnormality, ...]:
        labels = self.counted_labels
        counts = {name: labels.count(name) for name in CHROMOSOMES}
        structural = [Abnormality("structural", get_aberration(key).chromosomes[0], get_aberration(key).iscn)
                      for key in self.structural]
        return tuple(numerical_changes(counts, self.reference_sex) + structural)

    @property
    def karyotype(self) -> str | None:
        """This cell's ISCN (no cell count), e.g. `47,XY,+21` or `46,XX,t(9;22)(q34;q11.2)`; None when no X was
        identified (every human line has one)."""
        if "X" not in self.counted_labels:
            return None
        try:
            return validate_karyotype(format_line(self.abnormalities, self.reference_sex, self.study))
        except ISCNError:  # e.g. a 20-object fragment, which ISCN writes against the haploid level: not analysed
            return None

    def flags(self) -> list[dict]:
        """One row per chromosome: label, confidence, entropy, its flags, and each head's P(aberrant)."""
        rows, doubtful = [], self.doubtful
        for i, label in enumerate(self.labels):
            calls = {name: float(p[i]) for name, p in self.head_probabilities.items() if np.isfinite(p[i])}
            rows.append({
                "index": i, "label": label, "box": [round(float(v), 1) for v in self.boxes[i]],
                "detection_score": round(float(self.scores[i]), 4),
                "confidence": round(float(self.probabilities[i].max()), 4), "entropy": round(float(self.entropy[i]), 4),
                "low_confidence": bool(self.low_confidence[i]), "denovo_score": round(float(self.denovo_scores[i]), 3),
                "denovo_outlier": bool(self.denovo_outliers[i]), "counted": bool(self.counted[i]),
                "doubtful": bool(doubtful[i]), "confirmed": bool(self.confirmed[i]),
                "chromosome_probability": _rounded(self.verification[i]),
                "aberrations": {name: round(p, 4) for name, p in calls.items()},
                "flagged": sorted(name for name, p in calls.items() if p >= self.head_thresholds[name]),
            })
        return rows

    def karyogram(self) -> Image.Image:
        """The cell's karyogram: homologs side by side in the printed rows, flagged chromosomes outlined."""
        flagged = {row["index"]: ", ".join([f"{name} {row['aberrations'][name]:.2f}" for name in row["flagged"]]
                                           + ([] if row["counted"] else ["not counted"]))
                   for row in self.flags() if row["flagged"] or not row["counted"]}
        title = f"{self.name} · {self.chromosome_count} chromosomes · {self.karyotype or 'no karyotype'}"
        if not self.analysable:
            title += f" · not analysed: {self.quality if not self.excluded else 'excluded'}"
        return render_karyogram(self.crops, self.labels, scores=self.probabilities.max(-1), flags=flagged,
                                title=title)

    def overlay(self) -> Image.Image:
        """The metaphase with every mask tinted in its own colour, every box outlined and labelled: red flagged by a
        head, grey not counted, orange low confidence, blue the rest; purple "?" an uncounted possible chromosome."""
        picture = np.repeat(self.image[..., None], 3, axis=2).astype(np.float32)
        for i, (mask, (x0, y0, x1, y1)) in enumerate(zip(self.masks, self.mask_boxes)):
            region = picture[y0:y1, x0:x1]
            region[mask] = 0.55 * region[mask] + 0.45 * np.asarray(MASK_COLOURS[i % len(MASK_COLOURS)])
        overlay = Image.fromarray(picture.round().astype(np.uint8))
        draw = ImageDraw.Draw(overlay)
        for i, (box, label) in enumerate(zip(self.boxes, self.labels)):
            flagged = any(np.isfinite(p[i]) and p[i] >= self.head_thresholds[n] for n, p in self.head_probabilities.items())
            colour = (220, 0, 0) if flagged else (140, 140, 140) if not self.counted[i] else \
                (200, 120, 0) if self.low_confidence[i] else (40, 40, 200)
            draw.rectangle([float(v) for v in box], outline=colour, width=2 if flagged else 1)
            draw.text((float(box[0]) + 2, float(box[1]) + 1), label, fill=colour)
        for i in self.missed_candidates:  # not counted, but possibly a chromosome: purple, "?"
            box = [float(v) for v in self.candidate_boxes[i]]
            draw.rectangle(box, outline=(150, 0, 200), width=1)
            draw.text((box[0] + 2, box[1] + 1), f"?{self.candidate_labels[i]}", fill=(150, 0, 200))
        return overlay

    def to_dict(self) -> dict:
        karyotype = self.karyotype
        return {"name": self.name, "width": int(self.image.shape[1]), "height": int(self.image.shape[0]),
                "chromosome_count": self.chromosome_count, "count_range": list(self.count_range),
                "possibly_missed": self.possibly_missed, "sex_chromosomes": self.sex_chromosomes,
                "karyotype": karyotype, "quality": self.quality, "excluded": self.excluded,
                "analysable": self.analysable, "aberration_scores": {k: round(v, 4) for k, v in
                                                                      self.aberration_scores.items()},
                "structural": list(self.structural), "chromosomes": self.flags(),
                "possibly_missed_objects": [
                    {"index": i, "box": [round(float(v), 1) for v in self.candidate_boxes[i]],
                     "detection_score": round(float(self.candidate_scores[i]), 4), "label": self.candidate_labels[i],
                     "confidence": round(float(self.candidate_confidence[i]), 4),
                     "chromosome_probability": _rounded(self.candidate_verification[i])}
                    for i in self.missed_candidates],
                "corrections": list(self.corrections)}


@dataclass
class SpecimenResult:
    """One specimen: its cells, the ISCN karyotype with cell counts, findings (clonal, and non-clonal apart), and
    the reasons to refer it to a cytogeneticist. `errors` lists the inputs that could not be read, with why."""

    cells: list[CellResult]
    study: str
    reference_sex: str
    karyotype: str | None
    lines: tuple
    findings: tuple
    non_clonal: tuple
    refer: list[str]
    errors: list[dict]
    specimen_id: str | None = None

    @property
    def analysed(self) -> list[CellResult]:
        return [cell for cell in self.cells if cell.analysable]

    def to_dict(self) -> dict:
        """A versioned JSON-ready report."""
        from . import __version__

        return {
            "report_version": REPORT_VERSION, "karyohf_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "specimen_id": self.specimen_id, "study": self.study, "sex": self.reference_sex,
            "karyotype": self.karyotype,
            "counts": {"metaphases": len(self.cells) + len(self.errors), "counted": len(self.cells),
                       "analysed": len(self.analysed)},
            "lines": [{"karyotype": line.text, "cells": list(line.cells)} for line in self.lines],
            "findings": [f.to_dict() for f in self.findings], "non_clonal": [f.to_dict() for f in self.non_clonal],
            "refer": list(self.refer), "errors": list(self.errors), "cells": [cell.to_dict() for cell in self.cells],
            "disclaimer": "Research software, not a diagnostic device: every result needs review by a cytogeneticist.",
        }

    def to_fhir(self) -> dict:
        """The specimen karyotype as a FHIR R4 Genomics Reporting `variant` Observation (status preliminary: it still
        needs a cytogeneticist's sign-off); without a karyotype, a dataAbsentReason saying why."""
        from . import __version__

        observation = {
            "resourceType": "Observation",
            "meta": {"profile": [FHIR_PROFILE]},
            "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "69548-6", "display": "Genetic variant assessment"}]},
            "issued": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "method": {"text": f"karyohf {__version__} automatic karyotyping, {self.study} study"},
            "note": [{"text": "Research software, not a diagnostic device: to be reviewed by a cytogeneticist."}],
        }
        if self.specimen_id:
            observation["specimen"] = {"display": self.specimen_id}
        if self.karyotype is None:
            observation["dataAbsentReason"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown",
                            "display": "Unknown"}],
                "text": "no karyotype: " + "; ".join(self.refer or ["no analysable metaphase"])}
            return observation
        observation["valueCodeableConcept"] = {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}]}
        observation["component"] = [{
            "code": {"coding": [{"system": LOINC, "code": "81291-7", "display": "Variant ISCN"}]},
            "valueCodeableConcept": {"coding": [{"system": ISCN_SYSTEM, "code": self.karyotype}],
                                     "text": self.karyotype},
        }]
        return observation

    def to_coco(self) -> dict:
        """The detections as a COCO dataset: one image per cell, one annotation per chromosome (box, RLE mask)."""
        from pycocotools import mask as mask_utils

        images, annotations = [], []
        for image_id, cell in enumerate(self.cells, start=1):
            height, width = cell.image.shape
            images.append({"id": image_id, "file_name": cell.name, "width": int(width), "height": int(height)})
            for i, (box, label) in enumerate(zip(cell.boxes, cell.labels)):
                full = np.zeros((height, width), dtype=np.uint8, order="F")
                x0, y0, x1, y1 = cell.mask_boxes[i]
                full[y0:y1, x0:x1] = cell.masks[i]
                rle = mask_utils.encode(full)
                rle["counts"] = rle["counts"].decode("ascii")
                xmin, ymin, xmax, ymax = (float(v) for v in box)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": CHROMOSOMES.index(label) + 1,
                                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "area": float(full.sum()),
                                    "segmentation": rle, "iscrowd": 0, "score": float(cell.scores[i])})
        categories = [{"id": i + 1, "name": name, "supercategory": "chromosome"} for i, name in enumerate(CHROMOSOMES)]
        return {"info": {"description": f"karyohf detections, specimen {self.specimen_id or ''}".strip()},
                "images": images, "annotations": annotations, "categories": categories}


@dataclass
class CellObjects:
    """One metaphase's objects before counting (`KaryotypePipeline.objects`), one row each: box, detector score,
    whether it reaches the detector's threshold, its mask and mask box, the tight chromosome image, its own identity
    (read at the identity model's `scale`), its mask's `ink_measures`, the object verifier's features, and the cell's
    `cell_scale`
    (`karyohf.crops.cell_scale`, as cell-normalised heads read it). Both scales measure the same sure chromosomes."""

    boxes: np.ndarray
    scores: np.ndarray
    sure: np.ndarray
    masks: list
    mask_boxes: np.ndarray
    isolated: list
    identification: Identification
    scale: float
    ink: np.ndarray
    features: np.ndarray
    cell_scale: float = 1.0


class KaryotypePipeline:
    """Detector, identity model, aberration heads and de novo index, loaded once; see the module docstring."""

    def __init__(self, identifier: ChromosomeIdentifier, detector: ChromosomeDetector | None = None,
                 heads: list[AberrationHead] = (), denovo: DeNovoIndex | None = None, segmenter=None,
                 low_confidence_entropy: float = FALLBACK_LOW_CONFIDENCE_ENTROPY, verifier: ObjectVerifier | None = None):
        self.identifier, self.detector, self.heads = identifier, detector, list(heads)
        self.verifier = verifier
        self.denovo, self.segmenter = denovo, segmenter
        self.low_confidence_entropy = float(low_confidence_entropy)
        self.denovo_thresholds = _denovo_thresholds(denovo) if denovo is not None else {}

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike | None = None, device: str | None = None,
                        backend: str = "torch", precision: str = "fp32", verifier: bool = True) -> "KaryotypePipeline":
        """Load every model from one folder or Hub repository of checkpoints (see `resolve_checkpoints`): the
        identity model (`topvit-chromid/`, with its de novo index), the detector (`centernet-chromosomes/`) and every
        other subfolder whose model's first label is "normal" as an aberration head. `backend="onnxruntime"` runs the
        networks with onnxruntime, exported at first use (`karyohf.onnx_backend`); `precision="int8"` quantizes the
        TopViT models (`karyohf.backends`). Everything around the networks is the same code. `verifier=False`
        leaves out the detector's object verifier (counts at the detector's threshold; to fit a new verifier)."""
        check_backend(backend, precision)
        root = resolve_checkpoints(path_or_id)
        identity = root / IDENTIFIER_FOLDER
        run = {"device": device, "backend": backend, "precision": precision}
        identifier = ChromosomeIdentifier.from_pretrained(str(identity), **run)
        detector = ChromosomeDetector.from_pretrained(root / DETECTOR_FOLDER, **run) \
            if (root / DETECTOR_FOLDER / "config.json").is_file() else None
        heads = [AberrationHead.from_pretrained(folder, **run) for folder in sorted(root.iterdir())
                 if folder.name not in (IDENTIFIER_FOLDER, DETECTOR_FOLDER) and _is_head(folder)]
        denovo = DeNovoIndex.from_pretrained(identity) if (identity / "denovo_index.safetensors").is_file() else None
        verifier = ObjectVerifier.from_folder(root / DETECTOR_FOLDER) if detector is not None and verifier else None
        return cls(identifier, detector, heads, denovo, low_confidence_entropy=_entropy_cutoff(identity),
                   verifier=verifier)

    @torch.inference_mode()
    def analyze_cell(self, image, boxes=None, name: str | None = None, study: str = "neoplasia") -> CellResult:
        """One metaphase (path, PIL or numpy; 8/16-bit; gray, RGB or RGBA). With `boxes` (xyxy pixels) the
        detector is skipped. A bad image raises `ImageError` (a ValueError) naming it; a metaphase in which nothing
        is found comes back marked not analysable."""
        check_study(study)
        name = name or (Path(image).name if isinstance(image, (str, os.PathLike)) else "metaphase")
        gray = load_metaphase(image, name)
        if boxes is not None:
            boxes = _checked_boxes(boxes, gray.shape, name)
        elif self.detector is None:
            raise ValueError("this pipeline has no detector: pass the chromosome boxes")
        objects = self.objects(gray, boxes)
        if self.verifier is not None and boxes is None:
            verification = self.verifier(objects.features, objects.identification.probabilities)
            counted = verification >= self.verifier.threshold
        else:  # the detector's threshold decides (given boxes are all counted)
            verification, counted = np.full(len(objects.boxes), np.nan, np.float32), objects.sure
        return self._identify(name, gray, objects, counted, verification, study)

    def centred_boxes(self, boxes) -> np.ndarray:
        """Detected boxes where their chromosomes lie centred: the detector reports boxes in its annotators' frame
        (`box_offset`, a wider margin above and left), and an object is cut from its box before that shift (the
        annotators' box leaves out the lower tip of 28% of the validation chromosomes, as their masks show)."""
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - getattr(self.detector, "box_offset", 0.0)

    def objects(self, gray: np.ndarray, boxes=None) -> "CellObjects":
        """Every object of a grey metaphase before counting: the detector's boxes down to CANDIDATE_FLOOR (or the
        given `boxes`, all sure), each cut (segmented in its box) and identified alone in the cell's scale, and the
        features the object verifier weighs (`karyohf.counting.object_features`)."""
        if boxes is not None:
            scores = np.ones(len(boxes), dtype=np.float32)
            threshold = 0.5
            sure = np.ones(len(scores), dtype=bool)
            cut_boxes = boxes
        else:
            threshold = self.detector.score_threshold
            found, sure = detect_candidates(self.detector, gray)
            boxes, scores = found.boxes, found.scores
            cut_boxes = self.centred_boxes(boxes)
        # A segmenter of the whole metaphase shares pixels among the boxes it is given: only the sure ones.
        full_masks = self.segmenter(gray, cut_boxes[sure]) if self.segmenter is not None and sure.any() else None
        sure_rank = np.cumsum(sure) - 1
        mask_boxes, masks, isolated, keep = [], [], [], []
        for i, box in enumerate(cut_boxes):
            try:
                box_pixels = pixel_box(box, gray.shape)
            except ValueError:  # under 2 pixels a side once clipped: nothing to cut
                continue
            x0, y0, x1, y1 = box_pixels
            mask = (full_masks[sure_rank[i]][y0:y1, x0:x1] if full_masks is not None and sure[i]
                    else segment_in_box(gray, box_pixels))
            if not mask.any():
                continue
            # Cut with the box-local mask `extract_chromosome` would compute itself: the crop the models trained on.
            isolated.append(isolate_chromosome(gray, box_pixels, mask=mask))
            masks.append(mask)
            mask_boxes.append(box_pixels)
            keep.append(i)
        boxes = np.asarray(boxes, dtype=np.float32)[keep].reshape(-1, 4)
        scores, sure = np.asarray(scores, dtype=np.float32)[keep], sure[keep]
        # The cell measured once, on its sure chromosomes: the identity model's scale as
        # `ChromosomeIdentifier.identify_cell` sets it, and the heads' (which a weak object must not move).
        measured = [c for c, s in zip(isolated, sure) if s] or isolated
        scale = self.identifier.scale_of(measured)
        if isolated:
            identification = self.identifier([rescale_chromosome(crop, scale) for crop in isolated])
        else:
            identification = Identification(np.zeros((0, len(CHROMOSOMES)), np.float32), np.zeros((0, 0), np.float32),
                                            list(CHROMOSOMES))
        ink = ink_measures(gray, masks, mask_boxes, scores)
        features = object_features(boxes, scores, identification.probabilities, gray.shape, threshold, ink)
        return CellObjects(boxes, scores, sure, masks, np.asarray(mask_boxes, dtype=np.int64).reshape(-1, 4),
                           isolated, identification, scale, ink, features, cell_scale(measured))

    def __call__(self, images, study: str = "neoplasia", progress=None, specimen_id: str | None = None,
                 names: list[str] | None = None) -> SpecimenResult:
        """One specimen's metaphases (paths, PIL images or arrays) -> SpecimenResult. An input that cannot be read
        is listed in `errors` with the reason and the others are analysed. `progress(done, total, name)` is called
        after each metaphase."""
        check_study(study)
        images = list(images)
        cells, errors = [], []
        for index, image in enumerate(images):
            name = names[index] if names else (Path(image).name if isinstance(image, (str, os.PathLike))
                                               else f"metaphase {index + 1}")
            try:
                cells.append(self.analyze_cell(image, name=name, study=study))
            except (ImageError, OSError) as error:
                errors.append({"file": name, "error": str(error)})
            except Exception as error:  # one file must not lose the specimen: record it, go on
                errors.append({"file": name, "error": f"{name}: analysis failed ({type(error).__name__}: {error})"})
            if progress is not None:
                progress(index + 1, len(images), name)
        return self.specimen(cells, study, errors, specimen_id)

    def specimen(self, cells: list[CellResult], study: str = "neoplasia", errors: list[dict] = (),
                 specimen_id: str | None = None) -> SpecimenResult:
        """Aggregate analysed cells (after any corrections) into the specimen karyotype and its referral reasons."""
        check_study(study)
        # Each cell's own quality first: a cell set aside by an earlier aggregation is judged afresh.
        cells = [_judged(cell) for cell in cells]
        analysable = [cell for cell in cells if cell.analysable]
        # With no analysable cell, the cells that are there still tell the sex their karyotypes are written against.
        sex = reference_sex([(c.sex_chromosomes.count("X"), c.sex_chromosomes.count("Y")) for c in analysable or cells])
        judged = []
        for cell in cells:
            cell = dataclasses.replace(cell, reference_sex=sex, study=study)
            reason = sex_inconsistent(cell.abnormalities, sex) if cell.analysable else None
            judged.append(dataclasses.replace(cell, quality=reason) if reason else cell)
        cells = judged
        analysable = [cell for cell in cells if cell.analysable]
        # A structural finding's score is the specimen's evidence for it (`specimen_score`), not just its cells.
        scores = {get_aberration(key).iscn: specimen_score([c.aberration_scores[key] for c in analysable], threshold)
                  for head in self.heads for key, threshold in head.cell_thresholds.items()}
        summary = aggregate([(c.name, c.abnormalities) for c in analysable], sex, study, scores)
        refer = _referral_reasons(cells, analysable, summary, study)
        karyotype = summary.karyotype
        if karyotype is not None:
            try:
                karyotype = validate_karyotype(karyotype)
            except ISCNError as error:  # never hand out an invalid string
                refer.append(f"the karyotype could not be written as valid ISCN ({error}); review the cells by hand")
                karyotype = None
        return SpecimenResult(cells, study, sex, karyotype, summary.lines, summary.findings, summary.non_clonal,
                              refer, list(errors), specimen_id)

    # -- corrections: each returns a new CellResult with the karyotype recomputed and the correction recorded --

    def relabel(self, cell: CellResult, index: int, label: str, who: str | None = None) -> CellResult:
        """Give chromosome `index` the identity `label`; the heads re-screen it under its new class."""
        _check_index(cell, index)
        label = str(label).upper() if str(label).upper() in ("X", "Y") else str(label)
        if label not in CHROMOSOMES:
            raise ValueError(f"label must be one of {', '.join(CHROMOSOMES)}, got {label!r}")
        if cell.labels[index] == label and cell.confirmed[index]:
            raise ValueError(f"{cell.name}: chromosome {index} is already {label}")
        labels = list(cell.labels)
        before, labels[index] = labels[index], label
        record = _record("relabel", index, before, label, who)
        confirmed = cell.confirmed.copy()
        confirmed[index] = True  # a person's identity counts, extra copy or not
        return self._rescored(dataclasses.replace(cell, confirmed=confirmed), labels, list(range(len(labels))), record)

    def delete(self, cell: CellResult, index: int, who: str | None = None) -> CellResult:
        """Remove chromosome `index` (a false box: debris, a nucleus, a duplicate)."""
        _check_index(cell, index)
        kept = [i for i in range(len(cell.labels)) if i != index]
        record = _record("delete", index, cell.labels[index], None, who)
        return self._rescored(cell, [cell.labels[i] for i in kept], kept, record)

    def count_candidate(self, cell: CellResult, index: int, who: str | None = None) -> CellResult:
        """Count uncounted object `index` (`cell.candidate_boxes[index]`: a chromosome the detector scored low or
        the verifier left out) as the cell's last chromosome: cut from its box, identified in the cell's scale, its
        count confirmed by the person who asked."""
        if not 0 <= int(index) < len(cell.candidate_labels):
            raise ValueError(f"{cell.name}: no uncounted object {index} (it has {len(cell.candidate_labels)})")
        index = int(index)
        box_pixels = pixel_box(self.centred_boxes(cell.candidate_boxes[index])[0], cell.image.shape)
        x0, y0, x1, y1 = box_pixels
        mask = segment_in_box(cell.image, box_pixels)
        if not mask.any():
            raise ValueError(f"{cell.name}: uncounted object {index} holds nothing to cut")
        chromosome = isolate_chromosome(cell.image, box_pixels, mask=mask)
        found = self.identifier(self.identifier.model_inputs([chromosome], [cell.cell_scale]))
        label = found.labels[0]
        others = [i for i in range(len(cell.candidate_labels)) if i != index]

        def add(array, value):
            return np.concatenate([np.asarray(array), np.asarray(value)[None].astype(np.asarray(array).dtype)])

        updated = dataclasses.replace(
            cell, boxes=add(cell.boxes.reshape(-1, 4), cell.candidate_boxes[index]),
            scores=add(cell.scores, cell.candidate_scores[index]), masks=[*cell.masks, mask],
            mask_boxes=add(cell.mask_boxes.reshape(-1, 4), np.asarray(box_pixels)),
            chromosomes=[*cell.chromosomes, chromosome],
            labels=[*cell.labels, label],
            probabilities=add(cell.probabilities.reshape(-1, len(CHROMOSOMES)), found.probabilities[0]),
            entropy=add(cell.entropy, found.entropy[0]),
            low_confidence=add(cell.low_confidence, found.entropy[0] > self.low_confidence_entropy),
            embeddings=np.concatenate([cell.embeddings.reshape(len(cell.labels), -1), found.embeddings])
            if len(cell.labels) else found.embeddings,
            confirmed=add(cell.confirmed, True), verification=add(cell.verification, cell.candidate_verification[index]),
            candidate_boxes=cell.candidate_boxes[others].reshape(-1, 4), candidate_scores=cell.candidate_scores[others],
            candidate_labels=[cell.candidate_labels[i] for i in others],
            candidate_confidence=cell.candidate_confidence[others],
            candidate_verification=cell.candidate_verification[others],
            corrections=[*cell.corrections, _record("count", len(cell.labels), None, label, who)])
        return self._screened(updated)

    def exclude(self, cell: CellResult, excluded: bool = True, who: str | None = None) -> CellResult:
        """Leave a whole cell out of the specimen karyotype (or bring it back)."""
        record = _record("exclude" if excluded else "include", None, cell.excluded, excluded, who)
        return dataclasses.replace(cell, excluded=excluded, corrections=[*cell.corrections, record])

    # -- internals --

    def _identify(self, name, gray, objects: "CellObjects", counted, verification, study) -> CellResult:
        """The counted objects become the cell's chromosomes, labelled jointly (`assign_within_cell`); the others
        stay as candidates, each with its own identity, never counted."""
        main, other = np.flatnonzero(counted), np.flatnonzero(~np.asarray(counted, dtype=bool))
        found = objects.identification
        cell_found = Identification(found.probabilities[main], found.embeddings[main], found.label_names)
        labels = [found.label_names[k] for k in cell_found.within_cell()] if len(main) else []
        entropy = cell_found.entropy
        cell = CellResult(
            name=name, image=gray, boxes=objects.boxes[main], scores=objects.scores[main],
            masks=[objects.masks[i] for i in main], mask_boxes=objects.mask_boxes[main].reshape(-1, 4),
            chromosomes=[objects.isolated[i] for i in main],
            labels=labels, probabilities=cell_found.probabilities.reshape(-1, len(CHROMOSOMES)), entropy=entropy,
            low_confidence=entropy > self.low_confidence_entropy, embeddings=cell_found.embeddings,
            denovo_scores=np.zeros(0), denovo_outliers=np.zeros(0, dtype=bool),
            head_probabilities={}, head_thresholds={}, aberration_scores={}, structural=(),
            reference_sex=reference_sex([(labels.count("X"), labels.count("Y"))]), study=study, quality="",
            confirmed=np.zeros(len(labels), dtype=bool), cell_scale=objects.cell_scale,
            verification=np.asarray(verification, np.float32)[main],
            candidate_boxes=objects.boxes[other].reshape(-1, 4), candidate_scores=objects.scores[other],
            candidate_labels=[found.label_names[k] for k in found.probabilities[other].argmax(-1)] if len(other) else [],
            candidate_confidence=found.probabilities[other].max(-1).astype(np.float32) if len(other)
            else np.zeros(0, np.float32),
            candidate_verification=np.asarray(verification, np.float32)[other],
        )
        return self._screened(cell)

    def _screened(self, cell: CellResult) -> CellResult:
        """Score the cell's chromosomes under their current labels (de novo distance, each head), then call and
        judge the cell."""
        denovo = self._denovo(cell.embeddings, cell.labels)
        outliers = np.asarray([s > self.denovo_thresholds.get(label, np.inf) for s, label in zip(denovo, cell.labels)],
                              dtype=bool)
        probabilities, thresholds, scores, structural = {}, {}, {}, []
        for head in self.heads:
            found = head(cell.chromosomes, cell.labels, cell.cell_scale)
            probabilities.update(found)
            for index, (key, _) in head.targets.items():
                thresholds[head.label_names[index]] = head.cell_thresholds[key]
            for key, score in head.cell_scores(found).items():
                scores[key] = score
                if score >= head.cell_thresholds[key]:
                    structural.append(key)
        counted = counted_objects(cell.labels, cell.probabilities, cell.scores, cell.confirmed)
        cell = dataclasses.replace(cell, denovo_scores=denovo, denovo_outliers=outliers, counted=counted,
                                   head_probabilities=probabilities, head_thresholds=thresholds,
                                   aberration_scores=scores, structural=tuple(structural))
        return _judged(cell)

    def _rescored(self, cell: CellResult, labels: list[str], kept: list[int], record: dict) -> CellResult:
        def take(array):
            return np.asarray(array)[kept]

        updated = dataclasses.replace(
            cell, boxes=take(cell.boxes), scores=take(cell.scores), masks=[cell.masks[i] for i in kept],
            mask_boxes=take(cell.mask_boxes).reshape(-1, 4), chromosomes=[cell.chromosomes[i] for i in kept],
            labels=labels,
            probabilities=take(cell.probabilities).reshape(-1, len(CHROMOSOMES)), entropy=take(cell.entropy),
            low_confidence=take(cell.low_confidence), embeddings=take(cell.embeddings), confirmed=take(cell.confirmed),
            verification=take(cell.verification), corrections=[*cell.corrections, record])
        return self._screened(updated)

    def _denovo(self, embeddings, labels) -> np.ndarray:
        if self.denovo is None or not len(labels):
            return np.full(len(labels), np.nan, dtype=np.float32)
        classes = np.asarray([self.denovo.class_names.index(label) for label in labels])
        return self.denovo.score(embeddings, classes)


def counted_objects(labels, probabilities, scores, confirmed) -> np.ndarray:
    """Which objects count as chromosomes: all but the copies beyond a normal cell's (2 per autosome; 2 sex
    chromosomes, XX or XY) that the detector or the identity model is unsure of (`EXTRA_COPY_MIN_SCORE`,
    `EXTRA_COPY_MIN_PROBABILITY`); within a class -- the sex chromosomes pooled, so a doubtful Y beside two sure X
    is the extra one -- the least sure copies are the extra ones, and one X always stays. Confirmed identities
    always count."""
    counted = np.ones(len(labels), dtype=bool)
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(_copy_group(label), []).append(i)
    for group, members in groups.items():
        if len(members) <= 2:
            continue
        sureness = {i: probabilities[i, CHROMOSOMES.index(labels[i])] * scores[i] for i in members}
        strongest_x = max((i for i in members if labels[i] == "X"), key=sureness.get, default=None)
        keep_first = sorted(members, key=lambda i: (bool(confirmed[i]) or i == strongest_x, sureness[i]))
        extras = keep_first[: len(members) - 2]
        for i in extras:
            column = CHROMOSOMES.index(labels[i])
            sure = scores[i] >= EXTRA_COPY_MIN_SCORE and probabilities[i, column] >= EXTRA_COPY_MIN_PROBABILITY
            counted[i] = bool(sure or confirmed[i])
    return counted


def doubtful_objects(scores, verification, counted, confirmed) -> np.ndarray:
    """Which counted objects may not be chromosomes: those neither the detector (score < EXTRA_COPY_MIN_SCORE) and
    the object verifier (P(chromosome) < VERIFIED_SURE) nor a person vouches for."""
    unsure = (np.asarray(scores) < EXTRA_COPY_MIN_SCORE) | (np.asarray(verification) < VERIFIED_SURE)
    return np.asarray(counted, dtype=bool) & ~np.asarray(confirmed, dtype=bool) & unsure


def detect_candidates(detector, gray: np.ndarray) -> tuple[Detections, np.ndarray]:
    """The detector as the pipeline calls it: every box down to CANDIDATE_FLOOR under the looser CANDIDATE_NMS_IOU,
    and which of them are sure: those its threshold and its own suppression keep among them. That is the detector's
    own output but for a rare chain (a box its suppression would have removed now removes a third one: 12 of the
    17,657 sure boxes of the validation metaphases)."""
    threshold, nms_iou = detector.score_threshold, detector.nms_iou
    found = detector(gray, score_threshold=min(CANDIDATE_FLOOR, threshold), nms_iou=max(CANDIDATE_NMS_IOU, nms_iou),
                     max_detections=MAX_CANDIDATES)
    above = np.flatnonzero(found.scores >= threshold)
    sure = np.zeros(len(found.scores), dtype=bool)
    sure[above[non_maximum_suppression(found.boxes[above], found.scores[above], nms_iou).numpy()]] = True
    return found, sure


def pipeline_count(probabilities, scores, kept) -> tuple[np.ndarray, list[str]]:
    """What `analyze_cell` counts among the objects `kept` (each object's own identity probabilities and detector
    score): labelled jointly within the cell, unsure extra copies left out (`counted_objects`). Returns which of all
    the objects are counted, and their labels."""
    kept = np.asarray(kept, dtype=bool)
    counted = np.zeros(len(kept), dtype=bool)
    chosen = np.flatnonzero(kept)
    if not len(chosen):
        return counted, []
    probabilities = np.asarray(probabilities)[chosen]
    labels = [CHROMOSOMES[k] for k in assign_within_cell(probabilities, list(CHROMOSOMES))]
    keep = counted_objects(labels, probabilities, np.asarray(scores)[chosen], np.zeros(len(chosen), dtype=bool))
    counted[chosen] = keep
    return counted, [label for label, k in zip(labels, keep) if k]


def _is_head(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    labels = json.loads(config.read_text()).get("id2label", {})
    return labels.get("0") == NORMAL


def _entropy_cutoff(identity: Path) -> float:
    """The entropy above which the identity model's validation crops were its least sure 10%."""
    curves = identity / "entropy_curves.json"
    if not curves.is_file():
        return FALLBACK_LOW_CONFIDENCE_ENTROPY
    curve = json.loads(curves.read_text())["metaphase crops"]
    retained = np.asarray(curve["retained"])
    return float(np.asarray(curve["cutoff"])[int(np.argmin(np.abs(retained - LOW_CONFIDENCE_RETAINED)))])


def _denovo_thresholds(index: DeNovoIndex) -> dict[str, float]:
    """Per class, the DENOVO_QUANTILE of the index's own normals' distances to their N-th other normal."""
    thresholds = {}
    for label, name in enumerate(index.class_names):
        normals = torch.as_tensor(index.embeddings[index.classes == label])
        if len(normals) <= index.neighbours:
            continue
        distances = torch.cdist(normals, normals)
        own = distances.kthvalue(index.neighbours + 1, dim=1).values.numpy()  # +1: each normal's zero to itself
        thresholds[name] = float(np.quantile(own, DENOVO_QUANTILE))
    return thresholds


def _checked_boxes(boxes, shape, name: str) -> np.ndarray:
    from .segmentation.threshold import validate_boxes

    try:
        return validate_boxes(boxes, shape).astype(np.float32)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error


def cell_quality(counted_labels: list[str], boxes: np.ndarray, low_confidence: np.ndarray,
                 possibly_missed=(), doubtful_labels=()) -> str:
    """"analysable", or why a metaphase cannot be counted: from the chromosomes it counts, all its boxes, which
    identities are low confidence, the identities of candidates the detector scored under its threshold
    (`CellResult.possibly_missed`) and of the counted objects that may not be chromosomes
    (`CellResult.doubtful_labels`). Either doubt, where it alone makes a loss or a gain, means "recount"."""
    count = len(counted_labels)
    if count == 0:
        return "no chromosome found"
    low, high = ANALYSABLE_COUNTS
    if count < low:
        return f"too few objects ({count}): a broken or partial metaphase"
    if count > high:
        return f"too many objects ({count}): overlapping metaphases, nuclei or debris"
    if "X" not in counted_labels:
        return "no X chromosome identified"
    clustered = _clustered(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    if clustered > MAX_CLUSTERED:
        return f"{clustered} chromosomes lie in overlap clusters: too crowded to count"
    unsure = int(np.sum(low_confidence))
    if unsure > MAX_LOW_CONFIDENCE * count:
        return f"{unsure} of {count} identities are low confidence"
    lacking, gained = doubtful_changes(counted_labels, possibly_missed, doubtful_labels)
    if lacking:
        return (f"recount: a chromosome {', '.join(lacking)} may be missing only from the count (the detector scored "
                "a box it identifies as such under its threshold)")
    if gained:
        return (f"recount: the extra copy of {', '.join(gained)} may not be a chromosome (the detector or the object "
                "verifier is unsure of one of its copies)")
    return "analysable"


def doubtful_changes(counted_labels, possibly_missed=(), doubtful_labels=()) -> tuple[list[str], list[str]]:
    """The losses and gains a cell's count shows only through its doubt: autosomes it lacks that an uncounted
    candidate shows (`possibly_missed`), and classes it gained that hold a doubtful copy (`doubtful_labels`; the sex
    chromosomes pooled). A gain resting on a doubtful object was 11 of the 21 false gains of the analysable normal
    validation cells, and 5 of the 13 real gains of the numerical ones (docs/pipeline.md)."""
    lacking = sorted({label for label in possibly_missed if label not in ("X", "Y") and counted_labels.count(label) < 2},
                     key=CHROMOSOMES.index)
    copies = Counter(_copy_group(label) for label in counted_labels)
    gained = sorted({label for label in doubtful_labels if copies[_copy_group(label)] > 2}, key=CHROMOSOMES.index)
    return lacking, gained


def possible_clones(recounts, shown, clonal) -> list[tuple[str, int, int]]:
    """The numerical changes a specimen's recounts would make clonal if their doubtful objects are what they seem:
    from each recount cell's `doubtful_changes` (lacking, gained), each analysable cell's numerical changes (ISCN,
    e.g. "+21") and the changes already clonal. Returns (change, recount cells doubting it, analysable cells showing
    it) for each change that reaches the clone rule (ISCN: a gain in 2 cells, a loss in 3) with both together."""
    doubted = Counter()
    for lacking, gained in recounts:
        doubted.update([f"-{label}" for label in lacking] + [f"+{label}" for label in gained])
    showing = Counter(change for changes in shown for change in set(changes))
    return [(change, n, showing[change]) for change, n in sorted(doubted.items())
            if change not in clonal and n + showing[change] >= (3 if change.startswith("-") else 2)]


def _judged(cell: CellResult) -> CellResult:
    """The cell with its `quality` under its current labels, counts and doubts."""
    return dataclasses.replace(cell, quality=cell_quality(cell.counted_labels, cell.boxes, cell.low_confidence,
                                                          cell.possibly_missed, cell.doubtful_labels))


def _copy_group(label: str) -> str:
    """A normal cell holds two of each group: each autosome, and the sex chromosomes together."""
    return "sex" if label in ("X", "Y") else label


def _clustered(boxes: np.ndarray) -> int:
    if len(boxes) < 2:
        return 0
    from torchvision.ops import box_iou

    iou = box_iou(torch.as_tensor(boxes), torch.as_tensor(boxes)).numpy()
    np.fill_diagonal(iou, 0)
    return int((iou > CLUSTER_IOU).any(1).sum())


def _referral_reasons(cells, analysable, summary, study) -> list[str]:
    reasons = []
    needed = MINIMUM_CELLS[study]
    if len(analysable) < needed:
        reasons.append(f"only {len(analysable)} analysable metaphase{'s' * (len(analysable) != 1)} of "
                       f"{len(cells)}; a {study} study needs {needed}")
    for finding in summary.findings:
        if finding.kind == "structural":
            reasons.append(f"structural abnormality {finding.iscn} called in {len(finding.cells)} cells: "
                           "confirm it on the karyogram (and by FISH or molecular testing)")
    for finding in summary.non_clonal:
        reasons.append(f"non-clonal {finding.kind} {finding.iscn} in one cell ({finding.cells[0]})" if
                       len(finding.cells) == 1 else f"non-clonal {finding.kind} {finding.iscn} in "
                       f"{len(finding.cells)} cells (a loss needs 3 to be clonal)")
    outliers: dict[str, set[str]] = {}
    for cell in analysable:
        for label, outlier in zip(cell.labels, cell.denovo_outliers):
            if outlier:
                outliers.setdefault(label, set()).add(cell.name)
    for label, names in sorted(outliers.items(), key=lambda kv: CHROMOSOMES.index(kv[0])):
        if len(names) >= max(DENOVO_RECURRING_CELLS, DENOVO_RECURRING_FRACTION * len(analysable)):
            reasons.append(f"chromosome {label} looks unlike any normal {label} in {len(names)} cells "
                           "(de novo outlier): an aberration the heads do not know may be present")
    recounts = [doubtful_changes(cell.counted_labels, cell.possibly_missed, cell.doubtful_labels)
                for cell in cells if cell.quality.startswith("recount") and not cell.excluded]
    shown = [[a.iscn for a in cell.abnormalities if a.kind in ("gain", "loss")] for cell in analysable]
    for change, n, beside in possible_clones(recounts, shown, {finding.iscn for finding in summary.findings}):
        beside = f", beside {beside} that show it" if beside else ""
        reasons.append(f"possible {change} clone: {n} cell{'s' * (n != 1)} set aside for a recount show it if "
                       f"the doubtful objects are what they seem{beside}; recount them")
    for kind in (FEMALE_WITH_Y, MALE_AS_XX):
        set_aside = [cell.name for cell in cells if cell.quality.startswith(kind)]
        if len(set_aside) >= 2:
            reasons.append(f"discordant sex chromosomes, {kind}, in {len(set_aside)} cells ({', '.join(set_aside)}): "
                           "misidentified, or a mixed specimen (chimera, transplant)")
    return reasons


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def _check_index(cell: CellResult, index: int) -> None:
    if not 0 <= int(index) < len(cell.labels):
        raise ValueError(f"{cell.name}: no chromosome {index} (it has {len(cell.labels)})")


def _record(action: str, index, before, after, who) -> dict:
    return {"action": action, "chromosome": index, "from": before, "to": after, "who": who,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
