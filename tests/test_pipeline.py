"""KaryotypePipeline end to end on tiny models and synthetic metaphases; the shipped pipeline on a real one."""

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from karyohf.aberrations import OPERATING_POINT_FILE, AberrationHead, aberration_probabilities
from karyohf.cli import main
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.detection.boxes import Detections
from karyohf.identification import ChromosomeIdentifier, Identification
from karyohf.images import ImageError, load_metaphase
from karyohf.karyotype import validate_karyotype
from karyohf.models.centernet import CenterNetConfig, CenterNetForObjectDetection, CenterNetImageProcessor
from karyohf.models.topvit import TopViTConfig, TopViTForImageClassification, TopViTImageProcessor
from karyohf.pipeline import KaryotypePipeline, resolve_checkpoints

from tests.synthetic import banded_rod, metaphase_with

MALE = [str(n) for n in range(1, 23) for _ in range(2)] + ["X", "Y"]


def tiny_topvit(folder, labels=None):
    extra = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}
    config = TopViTConfig(image_size=(32, 16), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, **extra)
    TopViTForImageClassification(config).save_pretrained(folder)
    TopViTImageProcessor(size={"height": 32, "width": 16}).save_pretrained(folder)


def tiny_detector(folder):
    torch.manual_seed(0)
    model = CenterNetForObjectDetection(CenterNetConfig(image_size=64, stage_channels=(8, 16), stage_blocks=(1, 0),
                                                        neck_channels=8, head_channels=8))
    model.save_pretrained(folder)
    CenterNetImageProcessor(size=64).save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tiny_topvit(root / "topvit-chromid")
    tiny_topvit(root / "topvit-del5q", ["normal", "del(5q)"])
    tiny_topvit(root / "topvit-t9-22", ["normal", "der(9)t(9;22)", "der(22)t(9;22)"])
    tiny_detector(root / "centernet-chromosomes")
    return root


class FixedIdentifier(ChromosomeIdentifier):
    """Identity as a test dictates: the i-th crop is confidently `labels[i]` (a model of native-scale crops)."""

    cell_reference_length = None

    def __init__(self, labels, unsure=()):
        self.labels, self.unsure = list(labels), set(unsure)

    def __call__(self, crops):
        probabilities = np.full((len(crops), len(CHROMOSOMES)), 1e-4, dtype=np.float32)
        for i, label in enumerate(self.labels[: len(crops)]):
            probabilities[i, CHROMOSOMES.index(label)] = 0.003 if i in self.unsure else 1.0  # unsure: p about 0.57
        probabilities /= probabilities.sum(1, keepdims=True)
        return Identification(probabilities, np.zeros((len(crops), 8), np.float32), list(CHROMOSOMES))


def synthetic_metaphase(count=46, seed=0):
    """`count` banded rods on a grey field, in a grid; returns the image and the rods' boxes."""
    rng = np.random.default_rng(seed)
    rods = [(banded_rod(length=int(rng.integers(24, 48)), width=7), (12 + 38 * (i % 12), 10 + 60 * (i // 12)),
             int(rng.integers(-20, 20))) for i in range(count)]
    return metaphase_with(rods, size=(470, 250 + 60 * (count // 48)))


def pipeline_with(labels, heads=()):
    return KaryotypePipeline(FixedIdentifier(labels), detector=None, heads=list(heads))


def test_from_pretrained_finds_the_heads_and_what_each_screens_from_their_configs(checkpoints):
    pipe = KaryotypePipeline.from_pretrained(checkpoints)
    assert {head.name: head.screened for head in pipe.heads} == {"topvit-del5q": {"5"}, "topvit-t9-22": {"9", "22"}}
    assert pipe.detector is not None and pipe.denovo is None


def test_missing_checkpoints_name_where_the_pipeline_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        KaryotypePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="Hub repository 'nobody/no-such-karyohf'"):
        resolve_checkpoints("nobody/no-such-karyohf")


def test_a_normal_male_cell_from_given_boxes(checkpoints):
    image, boxes = synthetic_metaphase()
    cell = pipeline_with(MALE).analyze_cell(image, boxes=boxes, name="cell-1")
    assert cell.chromosome_count == 46 and cell.sex_chromosomes == "XY"
    assert cell.karyotype == "46,XY" and cell.quality == "analysable"
    assert len(cell.masks) == 46 and all(m.shape == (y1 - y0, x1 - x0) for m, (x0, y0, x1, y1)
                                         in zip(cell.masks, cell.mask_boxes))
    assert cell.karyogram().size[0] > 200 and cell.overlay().size == image.size


def test_a_trisomy_survives_cell_context():
    image, boxes = synthetic_metaphase(47)
    cell = pipeline_with(MALE + ["21"]).analyze_cell(image, boxes=boxes)
    assert cell.karyotype == "47,XY,+21"


class ScoredDetector:
    """A detector that finds the given boxes with the given scores (its threshold 0.3, as shipped)."""

    score_threshold = 0.3
    nms_iou = 1.0  # suppresses nothing: what it finds is what the test gives

    def __init__(self, boxes, scores):
        self.boxes, self.scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)

    def __call__(self, image, score_threshold=None, nms_iou=None, max_detections=None):
        keep = self.scores >= (self.score_threshold if score_threshold is None else score_threshold)
        return Detections(boxes=self.boxes[keep], scores=self.scores[keep])


class CandidateIdentifier(FixedIdentifier):
    """`labels` for the sure chromosomes (the detector's strongest objects come first), then `candidate` for every
    sub-threshold one."""

    def __init__(self, labels, candidate):
        super().__init__(labels)
        self.candidate = candidate

    def __call__(self, crops):
        return FixedIdentifier(self.labels + [self.candidate] * (len(crops) - len(self.labels)))(crops)


def test_boxes_in_the_annotators_frame_are_reported_but_chromosomes_are_cut_where_they_lie_centred():
    """A detector with a `box_offset` reports boxes shifted into its annotators' frame; the pipeline reports them
    as they come but cuts each chromosome (its mask, its crop) from the box before the shift, the same as when the
    detector reports centred boxes."""
    image, boxes = synthetic_metaphase(46)
    offset = np.array([-1.0, -2.5, -0.5, -2.0], np.float32)

    class OffsetDetector(ScoredDetector):
        box_offset = offset

    centred = KaryotypePipeline(FixedIdentifier(MALE), detector=ScoredDetector(boxes, [0.9] * 46)).analyze_cell(image)
    pipe = KaryotypePipeline(FixedIdentifier(MALE), detector=OffsetDetector(np.asarray(boxes) + offset, [0.9] * 46))
    shifted = pipe.analyze_cell(image)
    assert np.allclose(shifted.boxes, centred.boxes + offset) and np.allclose(pipe.centred_boxes(shifted.boxes), centred.boxes)
    assert np.array_equal(shifted.mask_boxes, centred.mask_boxes)
    assert all(np.array_equal(a, b) for a, b in zip(shifted.masks, centred.masks))
    assert shifted.karyotype == centred.karyotype == "46,XY"


@pytest.mark.parametrize("candidate, recount", [("15", True), ("7", False)])
def test_a_loss_the_detector_half_saw_is_a_recount_not_a_monosomy(candidate, recount):
    """45 sure boxes and a 46th scored 0.2: when the identity model names that candidate as the chromosome the cell
    lacks, the cell asks for a recount instead of reporting -15; a candidate of a class already paired changes
    nothing."""
    image, boxes = synthetic_metaphase(46)
    lacking = MALE.copy()
    lacking.remove("15")
    scores = [0.9] * 45 + [0.2]
    pipe = KaryotypePipeline(CandidateIdentifier(lacking, candidate), detector=ScoredDetector(boxes, scores))
    cell = pipe.analyze_cell(image)
    assert cell.chromosome_count == 45 and len(cell.candidate_boxes) == 1 and cell.possibly_missed == [candidate]
    assert cell.count_range == (45, 46) and cell.to_dict()["count_range"] == [45, 46]
    if recount:
        assert cell.quality.startswith("recount: a chromosome 15") and not cell.analysable
        assert pipe.specimen([cell]).karyotype is None  # no false -15 from this cell
    else:
        assert cell.quality == "analysable" and cell.karyotype == "45,XY,-15"


def test_an_unsure_extra_copy_is_not_counted_until_a_person_confirms_it():
    image, boxes = synthetic_metaphase(47)
    pipe = KaryotypePipeline(FixedIdentifier(MALE + ["21"], unsure={46}), detector=None)
    cell = pipe.analyze_cell(image, boxes=boxes)
    assert cell.labels.count("21") == 3 and not cell.counted[46]
    assert cell.chromosome_count == 46 and cell.karyotype == "46,XY"
    assert not cell.flags()[46]["counted"]
    confirmed = pipe.relabel(cell, 46, "21")
    assert confirmed.counted[46] and confirmed.karyotype == "47,XY,+21"


def test_a_gain_resting_on_a_doubtful_object_is_a_recount_until_a_person_confirms_it():
    """47 objects, the extra 21 among them: when the object verifier doubts one of the three 21s (P(chromosome)
    under VERIFIED_SURE), the cell asks for a recount instead of reporting +21; confirming that 21 settles it."""
    image, boxes = synthetic_metaphase(47)
    pipe = pipeline_with(MALE + ["21"])
    cell = pipe.analyze_cell(image, boxes=boxes)
    assert cell.karyotype == "47,XY,+21" and cell.analysable
    verification = np.full(47, 0.99, np.float32)
    verification[46] = 0.5
    doubted = pipe.specimen([dataclasses.replace(cell, verification=verification)]).cells[0]
    assert doubted.doubtful_labels == ["21"] and doubted.count_range == (46, 47)
    assert doubted.quality.startswith("recount: the extra copy of 21") and not doubted.analysable
    assert [row["doubtful"] for row in doubted.flags()].count(True) == 1 and doubted.flags()[46]["doubtful"]
    confirmed = pipe.relabel(doubted, 46, "21")
    assert confirmed.analysable and confirmed.karyotype == "47,XY,+21"
    twice = pipe.specimen([dataclasses.replace(doubted, name=f"c{i}") for i in range(2)])
    assert twice.karyotype is None and any(r.startswith("possible +21 clone: 2 cells") for r in twice.refer)
    beside = pipe.specimen([doubted, dataclasses.replace(cell, name="sure")])  # one sure +21 is not a clone alone
    assert any(r.startswith("possible +21 clone: 1 cell set aside") and "beside 1 that show it" in r
               for r in beside.refer)
    verification[46], verification[0] = 0.99, 0.5  # a doubtful 1 makes no gain: nothing to recount
    assert pipe.specimen([dataclasses.replace(cell, verification=verification)]).cells[0].analysable


def test_xx_in_a_male_specimen_is_set_aside_but_a_lost_y_stays():
    """A male specimen's cell that shows XX has most likely had its Y called an X: set aside, not written +X,-Y.
    A cell that lost its Y (common in older men's marrow) is still counted."""
    image, boxes = synthetic_metaphase()
    cells = [pipeline_with(MALE).analyze_cell(image, boxes=boxes, name=f"m{i}") for i in range(4)]
    as_xx = pipeline_with(MALE[:-1] + ["X"]).analyze_cell(image, boxes=boxes, name="xx")
    lost_y = pipeline_with(MALE[:-1]).analyze_cell(image, boxes=boxes[:-1], name="lost-y")
    specimen = pipeline_with(MALE).specimen([*cells, as_xx, lost_y])
    assert specimen.reference_sex == "XY" and specimen.karyotype == "46,XY[5]"  # one cell's -Y is not clonal
    assert specimen.cells[4].quality.startswith("XX in a male specimen") and specimen.cells[5].analysable
    twice = pipeline_with(MALE).specimen([*cells, as_xx, dataclasses.replace(as_xx, name="xx2")])
    assert twice.karyotype == "46,XY[4]"  # not 46,XY[4]/46,XX[2] or a false +X
    assert any(reason.startswith("discordant sex chromosomes, XX in a male specimen") for reason in twice.refer)


def test_a_chromosome_longer_than_the_canvas_reaches_the_models_whole():
    """A highly magnified cell: its longest chromosome (260 px) does not fit the 199-row canvas. The karyogram's
    canvas crop shrinks it to fit, but what the heads rescale by the cell's scale is the chromosome as cut, so that
    it keeps its length relative to the cell (shrunk first, a long 5 would look like a del(5q))."""
    rods = [(banded_rod(length=260 if i == 0 else 120, width=14), (10 + 40 * i, 10), 0) for i in range(12)]
    image, boxes = metaphase_with(rods, size=(500, 300))
    cell = pipeline_with(MALE[:12]).analyze_cell(image, boxes=boxes)
    assert cell.chromosomes[0].shape[0] >= 255 and cell.crops[0].size == (99, 199)
    assert cell.chromosomes[0].shape[0] / cell.chromosomes[1].shape[0] > 2.0


def test_a_head_call_enters_the_cell_karyotype(checkpoints):
    head = AberrationHead.from_pretrained(checkpoints / "topvit-del5q")
    head.cell_thresholds["del(5q)"] = 0.0  # every screened cell is called: the call must reach the karyotype
    image, boxes = synthetic_metaphase()
    cell = pipeline_with(MALE, [head]).analyze_cell(image, boxes=boxes)
    assert cell.structural == ("del(5q)",)
    assert cell.karyotype == "46,XY,del(5)(q13q33)"
    flagged = [row for row in cell.flags() if row["flagged"]]
    assert {row["label"] for row in flagged} == {"5"} and all("del(5q)" in row["aberrations"] for row in flagged)
    assert np.isnan(cell.head_probabilities["del(5q)"][0])  # a 1 is not screened


def test_a_cell_normalised_head_sees_the_cell_rescaled_as_the_identity_model_does(checkpoints, tmp_path):
    import shutil

    from karyohf.crops import rescale_chromosome

    folder = tmp_path / "topvit-del5q"
    shutil.copytree(checkpoints / "topvit-del5q", folder)
    TopViTImageProcessor(size={"height": 32, "width": 16}, cell_reference_length=80.0).save_pretrained(folder)
    head = AberrationHead.from_pretrained(folder)
    image, boxes = synthetic_metaphase()
    cell = pipeline_with(MALE, [head]).analyze_cell(image, boxes=boxes)
    fives = [i for i, label in enumerate(cell.labels) if label == "5"]
    # The rods are 24-48 px long, so the cell is enlarged towards the 80 px reference.
    assert cell.cell_scale > 1.5
    native = TopViTImageProcessor(size={"height": 32, "width": 16})
    expected = aberration_probabilities(head.model, native, [rescale_chromosome(cell.chromosomes[i], cell.cell_scale)
                                                             for i in fives])[:, 1]
    np.testing.assert_allclose(cell.head_probabilities["del(5q)"][fives], expected, atol=1e-5)


def test_operating_point_file_sets_the_cell_threshold(checkpoints, tmp_path):
    import shutil

    folder = tmp_path / "topvit-del5q"
    shutil.copytree(checkpoints / "topvit-del5q", folder)
    (folder / OPERATING_POINT_FILE).write_text(json.dumps({"cell_threshold": {"del(5q)": 0.97}}))
    assert AberrationHead.from_pretrained(folder).cell_thresholds == {"del(5q)": 0.97}


def test_specimen_clone_rules_and_referral(checkpoints):
    normal_image, normal_boxes = synthetic_metaphase()
    gain_image, gain_boxes = synthetic_metaphase(47, seed=1)
    cells = [pipeline_with(MALE).analyze_cell(normal_image, boxes=normal_boxes, name=f"n{i}") for i in range(17)]
    cells += [pipeline_with(MALE + ["8"]).analyze_cell(gain_image, boxes=gain_boxes, name=f"g{i}") for i in range(3)]
    specimen = pipeline_with(MALE).specimen(cells)
    assert specimen.karyotype == "47,XY,+8[3]/46,XY[17]"
    assert [f.iscn for f in specimen.findings] == ["+8"] and specimen.findings[0].cells == ("g0", "g1", "g2")
    assert not specimen.refer
    few = pipeline_with(MALE).specimen(cells[:5])
    assert few.karyotype == "46,XY[5]" and "only 5 analysable metaphases" in few.refer[0]
    report = specimen.to_dict()
    assert report["report_version"] and report["karyotype"] == specimen.karyotype
    assert report["counts"] == {"metaphases": 20, "counted": 20, "analysed": 20}
    json.dumps(report)
    coco = specimen.to_coco()
    assert len(coco["images"]) == 20 and len(coco["annotations"]) == 17 * 46 + 3 * 47


def test_corrections_update_the_cell_and_the_specimen_and_are_recorded():
    image, boxes = synthetic_metaphase(47)
    pipe = pipeline_with(MALE + ["8"])
    cells = [pipe.analyze_cell(image, boxes=boxes, name=f"c{i}") for i in range(3)]
    assert pipe.specimen(cells).karyotype.startswith("47,XY,+8[3]")
    relabelled = pipe.relabel(cells[0], 46, "Y")  # the extra 8 was really a Y
    assert relabelled.karyotype == "47,XY,+Y"  # neoplasia: an acquired gain keeps the constitutional XY
    assert relabelled.corrections[-1] | {"when": None} == {"action": "relabel", "chromosome": 46, "from": "8",
                                                           "to": "Y", "who": None, "when": None}
    deleted = pipe.delete(cells[1], 46)
    assert deleted.karyotype == "46,XY" and deleted.chromosome_count == 46
    excluded = pipe.exclude(cells[2])
    specimen = pipe.specimen([relabelled, deleted, excluded])
    assert len(specimen.analysed) == 2 and "+8" not in (specimen.karyotype or "")
    with pytest.raises(ValueError, match="no chromosome 99"):
        pipe.relabel(cells[0], 99, "1")
    with pytest.raises(ValueError, match="label must be one of"):
        pipe.relabel(cells[0], 0, "23")


def test_no_chromosome_found_is_not_analysable_not_a_crash(checkpoints):
    pipe = KaryotypePipeline.from_pretrained(checkpoints)  # an untrained detector finds nothing on a plain field
    field = np.full((200, 200), 230, np.uint8)
    field[50:60, 50:52] = 30
    cell = pipe.analyze_cell(field, boxes=np.zeros((0, 4)))
    assert cell.chromosome_count == 0 and not cell.analysable and cell.karyotype is None
    assert pipe.specimen([cell]).karyotype is None


def bad_files(folder):
    """One of each kind of bad input, as files."""
    files = {}
    files["text.jpg"] = b"this is not an image"
    files["report.pdf"] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer <<>>\n%%EOF"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)).save(buffer, "JPEG")
    files["truncated.jpg"] = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 128).save(buffer, "PNG")
    files["tiny.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.new("L", (300, 300), 255).save(buffer, "PNG")
    files["blank.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000), 1).save(buffer, "PNG")  # 48 megapixels in a few kB: a decompression bomb
    files["bomb.png"] = buffer.getvalue()
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    huge = folder / "huge.tif"
    with huge.open("wb") as handle:
        handle.truncate(41 * 1024 * 1024)
    paths["huge.tif"] = huge
    return paths


@pytest.mark.parametrize("name, problem", [
    ("text.jpg", "not an image file"), ("report.pdf", "not an image file"), ("truncated.jpg", "could not be decoded"),
    ("tiny.png", "too small"), ("blank.png", "blank"), ("bomb.png", "megapixels"), ("huge.tif", "MiB"),
])
def test_bad_inputs_raise_a_value_error_naming_the_file(tmp_path, name, problem):
    path = bad_files(tmp_path)[name]
    with pytest.raises(ValueError, match=problem) as caught:
        load_metaphase(path)
    assert isinstance(caught.value, ImageError) and name in str(caught.value)


def test_accepted_image_kinds_agree(tmp_path):
    image, _ = synthetic_metaphase(4)
    gray = np.asarray(image)
    rgba = Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA")
    sixteen = gray.astype(np.uint16) * 257
    image.save(tmp_path / "m.tif")
    for variant in (image, gray, rgba, sixteen, tmp_path / "m.tif"):
        assert np.abs(load_metaphase(variant).astype(int) - gray).max() <= 1


def test_predict_end_to_end_skips_a_bad_file(checkpoints, tmp_path, capsys):
    inputs = tmp_path / "specimen"
    inputs.mkdir()
    for k in range(2):
        synthetic_metaphase(46, seed=k)[0].save(inputs / f"m{k}.png")
    (inputs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["predict", str(inputs), "--out", str(out), "--checkpoints", str(checkpoints), "--quiet",
                 "--specimen-id", "S1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["specimen_id"] == "S1" and [e["file"] for e in report["errors"]] == ["broken.png"]
    assert "broken.png" in report["errors"][0]["error"] and len(report["cells"]) == 2
    assert (out / "karyotype.txt").read_text().strip()
    for k in range(2):
        assert Image.open(out / f"m{k}_karyogram.png").size[0] > 100 and (out / f"m{k}_overlay.png").is_file()
    assert json.loads((out / "detections.coco.json").read_text())["categories"][0]["name"] == "1"
    assert "skipped" in capsys.readouterr().err


def test_calibrate_writes_a_copy_whose_heads_call_at_points_chosen_on_the_labs_normal_cells(checkpoints, tmp_path,
                                                                                             capsys):
    from karyohf.aberrations.calibration import chosen_threshold, left_out_calls

    lab = tmp_path / "lab"
    for k in range(4):  # two specimens, one folder each, and a file that cannot be read
        (lab / f"S{k % 2}").mkdir(parents=True, exist_ok=True)
        synthetic_metaphase(46, seed=k)[0].save(lab / f"S{k % 2}" / f"m{k}.png")
    (lab / "S0" / "broken.png").write_bytes(b"not a png")
    before = {p.name: (p / "operating_point.json").exists() for p in checkpoints.iterdir()}
    out = tmp_path / "calibrated"
    assert main(["calibrate", str(lab), "--out", str(out), "--checkpoints", str(checkpoints), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "broken.png" in printed.err and "no cell that may be called" in printed.err  # 4 cells are too few
    assert {p.name: (p / "operating_point.json").exists() for p in checkpoints.iterdir()} == before  # untouched
    # The copy's heads call at the rule's threshold on these very cells, as the pipeline scores them.
    cells = KaryotypePipeline.from_pretrained(checkpoints)(sorted(lab.rglob("m*.png"))).cells
    calibrated = KaryotypePipeline.from_pretrained(out)
    assert [head.name for head in calibrated.heads] == ["topvit-del5q", "topvit-t9-22"]
    for head in calibrated.heads:
        for key in head.aberrations:
            scores = np.asarray([cell.aberration_scores[key] for cell in cells])
            assert head.cell_thresholds[key] == pytest.approx(chosen_threshold(scores, 0.005)[0])
            chosen = json.loads((out / head.name / "operating_point.json").read_text())["chosen_on"][key]
            assert chosen["cells"] == 4 and chosen["specimens"] == 2
            assert chosen["per-cell false-call rate, leave one specimen out"] == pytest.approx(
                left_out_calls(scores, np.asarray(["S0", "S0", "S1", "S1"]), 0.005).mean())
    # Calibrating in place would overwrite the shipped points: refused.
    assert main(["calibrate", str(lab), "--out", str(checkpoints), "--checkpoints", str(checkpoints)]) == 2
    assert "is the checkpoints folder itself" in capsys.readouterr().err


def test_predict_fails_only_when_nothing_could_be_read(checkpoints, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nothing")
    assert main(["predict", str(tmp_path / "bad.jpg"), str(tmp_path / "missing*.png"), "--out", str(tmp_path / "o"),
                 "--checkpoints", str(checkpoints), "--quiet"]) == 1
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert len(report["errors"]) == 2 and report["karyotype"] is None


def test_shipped_pipeline_on_a_real_validation_metaphase(real_data_root):
    from karyohf.data import load_metaphases, split_metaphases

    example = split_metaphases(load_metaphases(real_data_root))["validation"][0]
    pipe = KaryotypePipeline.from_pretrained()
    cell = pipe.analyze_cell(example["image"], name=example["image_id"])
    assert abs(cell.chromosome_count - len(example["boxes"])) <= 2
    assert cell.sex_chromosomes in ("XY", "XX") and validate_karyotype(cell.karyotype) == cell.karyotype
    annotated = [CHROMOSOMES[c] for c in example["chromosomes"]]
    assert sum(min(cell.labels.count(n), annotated.count(n)) for n in CHROMOSOMES) >= 0.9 * len(annotated)
    specimen = pipe([example["image"]], names=[example["image_id"]])
    assert specimen.karyotype == validate_karyotype(specimen.karyotype)
    assert any("only 1 analysable metaphase" in reason for reason in specimen.refer)


def test_specimen_score_counts_called_cells_then_the_second_best():
    from karyohf.aberrations import specimen_score

    assert specimen_score([0.9, 0.8, 0.1], threshold=0.85) == pytest.approx(1.8)
    assert specimen_score([0.95, 0.9, 0.1], threshold=0.85) == pytest.approx(2.9)
    assert specimen_score([], threshold=0.5) == 0.0


def test_a_chromosome_pasted_into_a_metaphase_replaces_the_original_only():
    from karyohf.synthesis import paste_into_metaphase
    from karyohf.crops import extract_chromosome

    image, boxes = synthetic_metaphase(4)
    gray = np.asarray(image)
    crop = np.asarray(extract_chromosome(gray, boxes[0])).copy()
    rows = np.flatnonzero((crop < 200).any(1))
    crop[rows[0] + (rows[-1] - rows[0]) // 2:] = 255  # keep the top half: a "deleted" chromosome
    pasted = paste_into_metaphase(gray, boxes[0], Image.fromarray(crop))
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    dark_before, dark_after = (gray[y0:y1, x0:x1] < 150).sum(), (pasted[y0:y1, x0:x1] < 150).sum()
    assert 0.3 * dark_before < dark_after < 0.75 * dark_before
    outside = np.ones(gray.shape, bool)
    outside[max(y0 - 12, 0):y1 + 12, max(x0 - 12, 0):x1 + 12] = False
    assert np.array_equal(pasted[outside], gray[outside])


def test_a_pasted_chromosome_leaves_no_halo_where_the_original_was():
    """The vacated part of the original is filled with the field around it, grain included: a flat patch is an
    artefact that the detector and the object verifier would learn to read instead of the chromosome."""
    from scipy import ndimage

    from karyohf.crops import extract_chromosome
    from karyohf.segmentation import segment_in_box
    from karyohf.synthesis import paste_into_metaphase

    image, boxes = synthetic_metaphase(4)
    rng = np.random.default_rng(1)
    gray = np.clip(np.asarray(image, np.float32) + ndimage.gaussian_filter(rng.normal(0, 12, image.size[::-1]), 0.7),
                   0, 255).astype(np.uint8)
    crop = np.asarray(extract_chromosome(gray, boxes[0])).copy()
    rows = np.flatnonzero((crop < 200).any(1))
    crop[rows[0] + (rows[-1] - rows[0]) // 3:] = 255  # a third of it stays
    pasted = paste_into_metaphase(gray, boxes[0], Image.fromarray(crop)).astype(np.float32)
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    original = np.zeros(gray.shape, bool)
    original[y0:y1, x0:x1] = segment_in_box(gray, (x0, y0, x1, y1))
    # Where the original was, away from its edge and from the new one.
    vacated = ndimage.binary_erosion(original) & (ndimage.distance_transform_edt(pasted > 200) > 3)
    assert vacated.sum() > 40
    field = (ndimage.distance_transform_edt(~original) > 8) & (ndimage.distance_transform_edt(~(np.asarray(gray) < 200)) > 8)
    assert abs(pasted[vacated].mean() - np.median(pasted[field])) < 6
    assert pasted[vacated].std() > 0.3 * pasted[field].std()


def test_an_added_copy_lies_where_it_is_put_and_the_rest_of_the_field_is_untouched():
    """`add_to_metaphase` (simulated trisomies): the copy's ink, turned as asked, centred where asked, at the
    field's own darkness; nothing else changes."""
    from karyohf.crops import extract_chromosome
    from karyohf.synthesis import add_to_metaphase

    image, boxes = synthetic_metaphase(4)
    gray = np.asarray(image)
    crop = extract_chromosome(gray, boxes[0])
    added = add_to_metaphase(gray, crop, centre=(200, 300), angle=90)
    changed = np.abs(added.astype(int) - gray.astype(int)) > 10
    rows, cols = np.nonzero(changed)
    assert abs(rows.mean() - 200) < 3 and abs(cols.mean() - 300) < 3
    assert np.ptp(cols) > 2 * np.ptp(rows)  # an upright rod turned by 90 degrees lies across
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    assert abs(int(added[changed].min()) - int(gray[y0:y1, x0:x1].min())) < 25
    far = np.ones(gray.shape, bool)
    far[rows.min() - 6 : rows.max() + 7, cols.min() - 6 : cols.max() + 7] = False
    assert np.array_equal(added[far], gray[far])


def test_the_fhir_observation_carries_the_iscn_string():
    image, boxes = synthetic_metaphase()
    pipe = pipeline_with(MALE)
    specimen = pipe.specimen([pipe.analyze_cell(image, boxes=boxes, name="c1")], "neoplasia", specimen_id="S-1")
    observation = specimen.to_fhir()
    assert observation["code"]["coding"][0]["code"] == "69548-6"
    component = observation["component"][0]
    assert component["code"]["coding"][0]["code"] == "81291-7"
    assert component["valueCodeableConcept"]["coding"][0] == {"system": "https://iscn.karger.com", "code": "46,XY[1]"}


def test_predict_shards_its_inputs_across_processes(checkpoints, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    inputs = tmp_path / "archive"
    inputs.mkdir()
    for k in range(3):
        synthetic_metaphase(46, seed=k)[0].save(inputs / f"m{k}.png")
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "karyohf.cli", "predict", str(inputs), "--out",
                    str(tmp_path / "out"), "--checkpoints", str(checkpoints), "--quiet"], check=True, timeout=300,
                   capture_output=True)
    shards = {shard.name: [c["name"] for c in json.loads((shard / "report.json").read_text())["cells"]]
              for shard in sorted((tmp_path / "out").iterdir())}
    assert shards == {"shard-0": ["m0.png", "m2.png"], "shard-1": ["m1.png"]}


def test_a_y_in_a_female_specimen_sets_the_cell_aside_until_corrected():
    female = [str(n) for n in range(1, 23) for _ in range(2)] + ["X", "X"]
    odd = list(female)
    odd[40] = "Y"  # one of the 21s called Y
    image, boxes = synthetic_metaphase()
    cells = [pipeline_with(female).analyze_cell(image, boxes=boxes, name=f"f{i}") for i in range(4)]
    pipe = pipeline_with(odd)
    cells.append(pipe.analyze_cell(image, boxes=boxes, name="odd"))
    specimen = pipe.specimen(cells)
    assert specimen.reference_sex == "XX" and specimen.karyotype == "46,XX[4]"
    assert specimen.cells[-1].quality.startswith("a Y in a female specimen")
    again = pipe.specimen(specimen.cells)  # re-aggregating judges each cell afresh, with the same outcome
    assert again.karyotype == specimen.karyotype and again.cells[-1].quality == specimen.cells[-1].quality
    fixed = pipe.relabel(specimen.cells[-1], 40, "21")
    assert pipe.specimen([*specimen.cells[:-1], fixed]).karyotype == "46,XX[5]"
