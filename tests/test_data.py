import numpy as np
import pytest
from PIL import Image

from karyohf.data import (
    MISLABELED_KARYOGRAM_CELLS,
    DataNotFoundError,
    data_root,
    in_validation,
    load_karyogram_crops,
    load_metaphases,
    split_karyogram_crops,
    split_metaphases,
    specimen_of,
)
from karyohf.images import as_gray_uint8


def test_missing_root_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KARYOHF_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="nowhere.*KARYOHF_DATA"):
        data_root()


def test_group_assignment_is_deterministic_and_near_the_fraction():
    groups = [f"case{i}" for i in range(4000)]
    first = [in_validation(g, 0.2) for g in groups]
    assert first == [in_validation(g, 0.2) for g in groups]
    assert 0.17 < np.mean(first) < 0.23
    assert first != [in_validation(g, 0.2, seed=1) for g in groups]


def test_specimen_drops_the_last_digit():
    assert specimen_of("103072") == "10307"


def test_metaphases_load_whole_and_split_by_specimen(real_data_root):
    metaphases = load_metaphases(real_data_root)
    assert len(metaphases) == 2200
    assert sum(len(b) for b in metaphases["boxes"]) == 101119
    first = metaphases[0]
    assert first["image"].size == (first["width"], first["height"])
    assert len(first["boxes"]) == len(first["chromosomes"]) and len(first["boxes"][0]) == 4
    assert metaphases.features["chromosomes"].feature.names[22:] == ["X", "Y"]
    split = split_metaphases(metaphases)
    train, validation = set(split["train"]["specimen_id"]), set(split["validation"]["specimen_id"])
    assert not train & validation
    assert len(split["train"]) + len(split["validation"]) == 2200
    assert 0.1 < len(split["validation"]) / 2200 < 0.2


def test_karyogram_crops_load_without_the_mislabeled_cells_and_split_by_case(real_data_root):
    crops = load_karyogram_crops(real_data_root)
    assert len(crops) == 28135 - (45 + 46 + 36)  # the three mislabeled cells' crops
    assert not set(crops["cell_id"]) & set(MISLABELED_KARYOGRAM_CELLS)
    assert crops.features["chromosome"].names[0] == "1"
    split = split_karyogram_crops(crops)
    assert not set(split["train"]["case_id"]) & set(split["validation"]["case_id"])
    assert len(split["train"]) + len(split["validation"]) == len(crops)


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.full((4, 5), 200, np.uint8), 200),
        (np.full((4, 5, 3), 100, np.uint8), 100),
        (np.full((4, 5), 4095, np.uint16), 255),  # 12-bit data in a 16-bit container
        (np.full((4, 5), 0.5, np.float32), 128),
        (Image.new("RGB", (5, 4), (50, 50, 50)), 50),
    ],
)
def test_any_image_becomes_gray_uint8(image, expected):
    gray = as_gray_uint8(image)
    assert gray.dtype == np.uint8 and gray.shape == (4, 5)
    assert abs(int(gray[0, 0]) - expected) <= 1


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros((0, 4), np.uint8), "empty"), (np.zeros((2, 3, 4, 5)), "shape"), ("missing.png", "not found"), (42, "Expected a PIL image")],
)
def test_bad_images_are_named(bad, message):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=message):
        as_gray_uint8(bad)


def test_training_crops_come_from_both_collections_through_the_crop_path(real_data_root):
    from karyohf.crops import CANVAS_SIZE
    from karyohf.data import _crops_of_jobs

    jobs = [(str(real_data_root), "validation", "metaphase", [0]), (str(real_data_root), "validation", "karyogram", [0, 1])]
    crops = list(_crops_of_jobs(jobs, crop_code=""))
    metaphase = split_metaphases(load_metaphases(real_data_root))["validation"][0]
    assert len(crops) == len(metaphase["boxes"]) + 2
    assert [c["source"] for c in crops[-3:]] == ["metaphase", "karyogram", "karyogram"]
    assert all(c["image"].size == (CANVAS_SIZE[1], CANVAS_SIZE[0]) and c["image"].mode == "L" for c in crops)
    assert [c["chromosome"] for c in crops[: len(metaphase["boxes"])]] == metaphase["chromosomes"]
