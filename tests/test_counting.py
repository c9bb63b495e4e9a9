"""The object verifier: its features, its file, and the pipeline counting what it believes."""

import json

import numpy as np
import pytest

from pathlib import Path

from karyohf.counting import (CONTEXT_FEATURES, INK_MEASURES, OBJECT_FEATURES, VERIFIER_FILE, LogisticVerifier,
                              ObjectVerifier, StackedVerifier, TreeVerifier, context_features, ink_measures,
                              object_features)
from karyohf.cytogenetics import CHROMOSOMES
from karyohf.pipeline import KaryotypePipeline
from tests.test_pipeline import MALE, CandidateIdentifier, FixedIdentifier, ScoredDetector, synthetic_metaphase

COLUMN = {name: i for i, name in enumerate(OBJECT_FEATURES)}


def one_hot(labels):
    p = np.full((len(labels), len(CHROMOSOMES)), 1e-3)
    for i, label in enumerate(labels):
        p[i, CHROMOSOMES.index(label)] = 1.0
    return p / p.sum(1, keepdims=True)


def plain_ink(count):
    """Every object alone, equally stained."""
    return np.tile([1.0, 150.0, 25.0, 0.5], (count, 1))


def test_features_see_duplicates_copies_size_and_the_image_edge():
    boxes = [[10, 10, 20, 40], [10, 10, 20, 40], [50, 50, 60, 80], [0, 100, 10, 130], [70, 10, 130, 70]]
    scores = [0.9, 0.4, 0.8, 0.7, 0.6]
    f = object_features(boxes, scores, one_hot(["1", "1", "1", "2", "3"]), (200, 200), sure_threshold=0.5,
                        ink=plain_ink(5))
    assert f.shape == (5, len(OBJECT_FEATURES))
    # The weaker of two equal boxes is the duplicate; the stronger is inside nothing.
    assert f[1, COLUMN["overlap_stronger"]] == pytest.approx(1) and f[1, COLUMN["inside_stronger"]] == pytest.approx(1)
    assert f[0, COLUMN["overlap_stronger"]] == 0
    # Strongest first (0.9, 0.8, 0.4): the weakest of three 1s has two stronger copies of its class before it.
    assert list(f[:3, COLUMN["copies_before_sex_pooled"]]) == [0, 2, 1]
    assert f[3, COLUMN["edge_distance"]] == 0 and f[2, COLUMN["edge_distance"]] == 1
    # The 60x60 box is 12x the median confident area (10x30): a nucleus, not a chromosome.
    assert f[4, COLUMN["log_relative_area"]] == pytest.approx(np.log(12))
    assert f[0, COLUMN["log_elongation"]] == pytest.approx(np.log(3))
    assert f[0, COLUMN["cell_excess"]] == pytest.approx(-1)  # 4 confident boxes: far under 46
    # The duplicate reads as the class of the box it duplicates, at under half its score; that box gathers it.
    assert f[1, COLUMN["same_identity_as_stronger"]] == pytest.approx(1, abs=0.05)
    assert f[1, COLUMN["score_against_stronger"]] == pytest.approx(np.log(0.4 / 0.9))
    assert f[0, COLUMN["weaker_overlaps"]] == 1 and f[1, COLUMN["weaker_overlaps"]] == 0
    # Objects overlapping no stronger one have nothing to compare with.
    assert f[2, COLUMN["same_identity_as_stronger"]] == 0 == f[2, COLUMN["score_against_stronger"]]


def test_the_partner_of_a_touching_pair_reads_as_another_class():
    boxes = [[10, 10, 20, 40], [14, 20, 24, 50]]  # overlapping at IoU 0.25
    f = object_features(boxes, [0.9, 0.3], one_hot(["1", "7"]), (100, 100), sure_threshold=0.5, ink=plain_ink(2))
    assert f[1, COLUMN["same_identity_as_stronger"]] < 0.05 and f[1, COLUMN["overlap_stronger"]] == pytest.approx(0.25)
    assert object_features(np.zeros((0, 4)), [], np.zeros((0, 24)), (10, 10), 0.3,
                           np.zeros((0, INK_MEASURES))).shape == (0, len(OBJECT_FEATURES))


def test_ink_measures_see_a_duplicate_add_no_ink_and_an_unbanded_blob():
    gray = np.full((60, 100), 255, np.uint8)
    gray[10:40, 10:16] = 100  # a chromosome with two bands
    gray[20:25, 10:16] = 30
    gray[10:20, 60:70] = 20  # an evenly dark blob
    masks = [gray[5:45, 5:20] < 200, gray[8:42, 8:18] < 200, gray[5:25, 55:75] < 200]
    mask_boxes = [(5, 5, 20, 45), (8, 8, 18, 42), (55, 5, 75, 25)]
    ink = ink_measures(gray, masks, mask_boxes, scores=[0.9, 0.4, 0.8])
    assert ink.shape == (3, INK_MEASURES)
    # The weaker box over the same chromosome adds no ink; the others are wholly their own.
    assert ink[1, 0] == 0 and ink[0, 0] == 1 == ink[2, 0]
    assert ink[2, 1] == 235 and ink[2, 2] == 0 and ink[0, 2] > 20  # the blob is dark and has no bands
    assert ink[0, 3] == pytest.approx(180 / 600) and ink[2, 3] == pytest.approx(0.25)
    f = object_features([[5, 5, 20, 45], [8, 8, 18, 42], [55, 5, 75, 25]], [0.9, 0.4, 0.8],
                        one_hot(["1", "1", "2"]), gray.shape, sure_threshold=0.5, ink=ink)
    assert f[1, COLUMN["new_ink"]] == 0 and f[2, COLUMN["log_relative_banding"]] < f[0, COLUMN["log_relative_banding"]]


def weights(**named):
    return [named.get(name, 0.0) for name in OBJECT_FEATURES]


def test_the_verifier_file_round_trips_and_refuses_other_features(tmp_path):
    verifier = LogisticVerifier(np.zeros(len(OBJECT_FEATURES)), np.ones(len(OBJECT_FEATURES)),
                              weights(score_logit=1.0), intercept=0.5, threshold=0.45, fitted_on={"metaphases": 3})
    features = np.random.default_rng(0).normal(size=(7, len(OBJECT_FEATURES)))
    loaded = ObjectVerifier.from_folder(verifier.save(tmp_path).parent)
    np.testing.assert_allclose(loaded(features), verifier(features), rtol=1e-5)
    assert loaded.threshold == 0.45 and loaded.fitted_on == {"metaphases": 3}
    assert ObjectVerifier.from_folder(tmp_path / "elsewhere") is None
    stored = json.loads((tmp_path / VERIFIER_FILE).read_text())
    stored["features"] = stored["features"][:-1]
    (tmp_path / VERIFIER_FILE).write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=f"{VERIFIER_FILE}.*refit"):
        ObjectVerifier.from_folder(tmp_path)


def test_tree_verifier_is_the_fitted_trees_and_round_trips(tmp_path, monkeypatch):
    """The fit script's boosted trees, exported to the verifier's JSON node tables, give the probabilities scikit-learn
    gives (an interaction a logistic model cannot fit: the score means nothing inside a stronger box)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    from fit_object_verifier import tree_verifier
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(OBJECT_FEATURES)))
    y = (x[:, COLUMN["score_logit"]] > 0) & (x[:, COLUMN["inside_stronger"]] < 0.5)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=7, random_state=0).fit(x, y)
    verifier = tree_verifier(model)
    verifier.threshold = 0.3
    np.testing.assert_allclose(verifier(x), model.predict_proba(x)[:, 1], atol=1e-6)
    assert ((verifier(x) >= 0.5) == y).mean() > 0.95
    loaded = ObjectVerifier.from_folder(verifier.save(tmp_path).parent)
    assert isinstance(loaded, TreeVerifier) and loaded.threshold == 0.3
    np.testing.assert_allclose(loaded(x), verifier(x), atol=1e-6)
    assert loaded(np.zeros((0, len(OBJECT_FEATURES)))).shape == (0,)
    stored = json.loads((tmp_path / VERIFIER_FILE).read_text())
    stored["trees"][0]["left"][0] = 10_000
    (tmp_path / VERIFIER_FILE).write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=f"{VERIFIER_FILE}.*not a valid trees verifier.*children"):
        ObjectVerifier.from_folder(tmp_path)
    stored["kind"] = "forest"
    (tmp_path / VERIFIER_FILE).write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="unknown verifier kind 'forest'"):
        ObjectVerifier.from_folder(tmp_path)


def test_context_features_say_what_the_first_stage_believes_of_the_cell():
    context = context_features([0.9, 0.8, 0.3, 0.6, 0.7], one_hot(["1", "1", "1", "X", "Y"]))
    column = {name: i for i, name in enumerate(CONTEXT_FEATURES)}
    np.testing.assert_allclose(context[:, column["first_stage_probability"]], [0.9, 0.8, 0.3, 0.6, 0.7])
    np.testing.assert_allclose(context[:, column["cell_expected_excess"]], (3.3 - 46) / 10)
    # The weakest 1 comes after two believed copies of its class; X and Y are one class, as the count pools them.
    np.testing.assert_allclose(context[:, column["class_believed_before"]], [0, 0.9, 1.7, 0.7, 0])
    np.testing.assert_allclose(context[:, column["class_believed_others"]], [1.1, 1.2, 1.7, 0.7, 0.6])


def test_a_stacked_verifier_weighs_the_cell_and_round_trips(tmp_path, monkeypatch):
    """Its second stage reads the first stage's beliefs: the same weak object counts in a cell that lacks its class
    and not beside two sure copies of it."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    from fit_object_verifier import tree_verifier
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(OBJECT_FEATURES)))
    first = tree_verifier(HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=7, random_state=0)
                          .fit(x, x[:, COLUMN["score_logit"]] > 0))
    context = rng.uniform(0, 2, size=(4000, len(CONTEXT_FEATURES)))
    # Chromosome: believed by the first stage, unless two of its class are believed before it.
    y = (context[:, 0] > 0.5) & (context[:, 2] < 1.5)
    second = tree_verifier(HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=7, random_state=0)
                           .fit(np.column_stack([x, context]), y), len(OBJECT_FEATURES) + len(CONTEXT_FEATURES))
    verifier = StackedVerifier(first, second, threshold=0.4)
    features = np.zeros((3, len(OBJECT_FEATURES)))
    features[:, COLUMN["score_logit"]] = 3.0
    lacking = verifier(features[:1], one_hot(["7"]))
    crowded = verifier(features, one_hot(["7", "7", "7"]))
    assert lacking[0] > 0.5 and crowded[:2].min() > 0.5 and crowded[2] < 0.5
    with pytest.raises(ValueError, match="identity probabilities"):
        verifier(features)
    loaded = ObjectVerifier.from_folder(verifier.save(tmp_path).parent)
    assert isinstance(loaded, StackedVerifier) and loaded.threshold == 0.4
    np.testing.assert_allclose(loaded(features, one_hot(["7", "7", "7"])), crowded, atol=1e-6)
    stored = json.loads((tmp_path / VERIFIER_FILE).read_text())
    stored["context_features"] = stored["context_features"][:-1]
    (tmp_path / VERIFIER_FILE).write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=f"{VERIFIER_FILE}.*not a valid stacked verifier.*context features"):
        ObjectVerifier.from_folder(tmp_path)


def test_a_second_y_beside_x_and_y_is_an_extra_copy_as_the_count_pools_them():
    boxes = [[10, 10, 20, 40], [40, 10, 50, 40], [70, 10, 80, 40], [100, 10, 110, 40]]
    f = object_features(boxes, [0.9, 0.8, 0.7, 0.6], one_hot(["X", "Y", "Y", "X"]), (200, 200), sure_threshold=0.5,
                        ink=plain_ink(4))
    assert list(f[:, COLUMN["copies_before_sex_pooled"]]) == [0, 1, 2, 3]


def test_the_pipeline_counts_a_weak_box_the_verifier_believes():
    """45 sure boxes and the 46th scored 0.2: the detector alone counts 45 (-15); a verifier that weighs the cell's
    missing pair counts the 46th and the cell is 46,XY."""
    image, boxes = synthetic_metaphase(46)
    lacking = MALE.copy()
    lacking.remove("15")
    scores = [0.9] * 45 + [0.2]
    # Believes an object unless it is a third copy: the weak 15 completes a pair.
    verifier = LogisticVerifier(np.zeros(len(OBJECT_FEATURES)), np.ones(len(OBJECT_FEATURES)),
                              weights(copies_before_sex_pooled=-3.0), intercept=4.5)
    pipe = KaryotypePipeline(CandidateIdentifier(lacking, "15"), detector=ScoredDetector(boxes, scores),
                             verifier=verifier)
    cell = pipe.analyze_cell(image)
    assert cell.chromosome_count == 46 and cell.karyotype == "46,XY" and len(cell.candidate_boxes) == 0
    assert cell.verification.shape == (46,) and (cell.verification > 0.5).all()


def test_a_confident_duplicate_box_is_left_out_of_the_count_and_kept_for_review():
    image, boxes = synthetic_metaphase(46)
    boxes = np.concatenate([boxes, boxes[:1]])  # a second box on the first chromosome
    scores = [0.9] * 46 + [0.85]
    verifier = LogisticVerifier(np.zeros(len(OBJECT_FEATURES)), np.ones(len(OBJECT_FEATURES)),
                              weights(overlap_stronger=-10.0), intercept=3.0)
    pipe = KaryotypePipeline(FixedIdentifier(MALE + ["1"]), detector=ScoredDetector(boxes, scores),
                             verifier=verifier)
    cell = pipe.analyze_cell(image)
    assert cell.chromosome_count == 46 and cell.karyotype == "46,XY"
    assert len(cell.candidate_boxes) == 1 and cell.candidate_verification[0] < 0.01
    assert cell.candidate_scores[0] == pytest.approx(0.85)
    # Without a verifier the same objects give a false trisomy 1.
    alone = KaryotypePipeline(FixedIdentifier(MALE + ["1"]), detector=ScoredDetector(boxes, scores))
    assert alone.analyze_cell(image).chromosome_count == 47


def test_the_box_of_a_crossing_partner_is_a_candidate_not_a_sure_chromosome():
    """Two chromosomes crossing so that their boxes overlap at IoU 0.67: the detector's own suppression (0.6) keeps
    one; the pipeline still weighs the other (CANDIDATE_NMS_IOU), as a candidate, not as a sure chromosome."""
    from karyohf.pipeline import CANDIDATE_NMS_IOU, detect_candidates

    class SuppressingDetector(ScoredDetector):
        nms_iou = 0.6

        def __call__(self, image, score_threshold=None, nms_iou=None, max_detections=None):
            from karyohf.detection.boxes import Detections, non_maximum_suppression
            found = super().__call__(image, score_threshold)
            keep = non_maximum_suppression(found.boxes, found.scores, self.nms_iou if nms_iou is None else nms_iou)
            return Detections(boxes=found.boxes[keep.numpy()], scores=found.scores[keep.numpy()])

    boxes = [[10, 10, 30, 60], [10, 20, 30, 70], [50, 10, 70, 60]]  # the first two at IoU 0.67
    detector = SuppressingDetector(boxes, [0.9, 0.8, 0.7])
    assert len(detector(None)) == 2 and CANDIDATE_NMS_IOU > 0.67
    found, sure = detect_candidates(detector, None)
    assert len(found) == 3 and sure.tolist() == [True, False, True]


def test_given_boxes_are_all_counted_whatever_the_verifier():
    image, boxes = synthetic_metaphase(46)
    verifier = LogisticVerifier(np.zeros(len(OBJECT_FEATURES)), np.ones(len(OBJECT_FEATURES)),
                              weights(), intercept=-10.0)  # believes nothing
    cell = KaryotypePipeline(FixedIdentifier(MALE), verifier=verifier).analyze_cell(image, boxes=boxes)
    assert cell.chromosome_count == 46 and np.isnan(cell.verification).all()


def test_a_person_can_count_an_object_the_pipeline_left_out():
    image, boxes = synthetic_metaphase(46)
    lacking = MALE.copy()
    lacking.remove("15")
    pipe = KaryotypePipeline(CandidateIdentifier(lacking, "15"), detector=ScoredDetector(boxes, [0.9] * 45 + [0.2]))
    cell = pipe.analyze_cell(image)
    assert cell.chromosome_count == 45 and cell.candidate_labels == ["15"]
    pipe.identifier = FixedIdentifier(["15"])  # what the model says of the one crop it is now shown
    counted = pipe.count_candidate(cell, 0, who="dr a")
    assert counted.chromosome_count == 46 and counted.karyotype == "46,XY" and counted.confirmed[-1]
    assert len(counted.candidate_labels) == 0 and counted.masks[-1].any() and len(counted.crops) == 46
    assert counted.corrections[-1]["action"] == "count" and counted.corrections[-1]["who"] == "dr a"
    assert counted.flags()[-1]["box"] == [round(float(v), 1) for v in boxes[45]]
    with pytest.raises(ValueError, match="no uncounted object 0"):
        pipe.count_candidate(counted, 0)



def test_pipeline_count_is_what_analyze_cell_counts():
    """The fitting script and the counting benchmark judge the verifier by `pipeline_count`: it must be the cell's
    own count (here a duplicate box the verifier keeps and the extra-copy rule then leaves out)."""
    from karyohf.pipeline import pipeline_count

    image, boxes = synthetic_metaphase(46)
    boxes = np.concatenate([boxes, boxes[:1]])
    scores = [0.9] * 46 + [0.35]
    verifier = LogisticVerifier(np.zeros(len(OBJECT_FEATURES)), np.ones(len(OBJECT_FEATURES)), weights(), 1.0)
    pipe = KaryotypePipeline(FixedIdentifier(MALE + ["1"]), detector=ScoredDetector(boxes, scores), verifier=verifier)
    cell = pipe.analyze_cell(image)
    objects = pipe.objects(cell.image)
    counted, labels = pipeline_count(objects.identification.probabilities, objects.scores,
                                     verifier(objects.features) >= verifier.threshold)
    assert len(cell.labels) == 47 and cell.chromosome_count == 46 == counted.sum()
    assert sorted(labels) == sorted(cell.counted_labels)
    # The cell is measured once, on its sure chromosomes: the heads' scale is the one the identity model read.
    from karyohf.crops import cell_scale
    assert cell.cell_scale == objects.cell_scale == pytest.approx(cell_scale(
        [crop for crop, sure in zip(objects.isolated, objects.sure) if sure]))


def test_a_simulated_gain_is_a_copy_where_no_box_lies_and_shows_in_the_count(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "train"))
    from fit_object_verifier import gain_visibility, with_extra_copy

    boxes = np.array([[10, 10, 20, 40], [30, 10, 40, 40], [50, 10, 60, 40], [70, 10, 80, 40]], np.float32)
    probabilities = np.full((4, len(CHROMOSOMES)), 0.001, np.float32)
    for row, name in enumerate(["1", "1", "2", "2"]):
        probabilities[row, CHROMOSOMES.index(name)] = 0.98
    record = {"boxes": boxes, "scores": np.full(4, 0.9, np.float32), "probabilities": probabilities,
              "sure": np.ones(4, bool), "chromosome": np.ones(4, bool), "shape": (200, 300), "ink": plain_ink(4)}
    grown, gained = with_extra_copy(record, 0.3, np.random.default_rng(0))
    assert gained in ("1", "2") and len(grown["boxes"]) == 5 and grown["features"].shape[0] == 5
    assert grown["features"][-1, COLUMN["new_ink"]] == 1
    new = grown["boxes"][-1]
    assert all(min(new[2], b[2]) <= max(new[0], b[0]) or min(new[3], b[3]) <= max(new[1], b[1]) for b in boxes)
    assert grown["probabilities"][-1].argmax() == CHROMOSOMES.index(gained) and grown["sure"][-1]
    # Everything kept: the third copy is sure (score, identity) and counts; a keep rule that drops it hides it.
    assert gain_visibility([record], lambda r: r["sure"], 0.3)["gain_shown"] == 1.0
    assert gain_visibility([record], lambda r: np.arange(len(r["sure"])) < 4, 0.3)["gain_shown"] == 0.0
    # No autosome sure and annotated, or no room: nothing to simulate.
    assert with_extra_copy({**record, "sure": np.zeros(4, bool)}, 0.3, np.random.default_rng(0)) is None
    assert with_extra_copy({**record, "shape": (40, 80)}, 0.3, np.random.default_rng(0)) is None
