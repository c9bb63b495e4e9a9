import numpy as np
import pytest
from PIL import Image

from karyohf.crops import CANVAS_SIZE, extract_chromosome
from tests.synthetic import banded_rod, metaphase_with


def ink_extent(crop: Image.Image) -> tuple[int, int]:
    rows, cols = np.nonzero(np.asarray(crop) < 200)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_tilted_chromosome_comes_out_upright_at_native_length():
    image, (box,) = metaphase_with([(banded_rod(length=60), (60, 50), 35)])
    crop = extract_chromosome(image, box)
    assert crop.mode == "L" and crop.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
    height, width = ink_extent(crop)
    assert 56 <= height <= 66 and width <= 18


def test_intruding_neighbour_is_dropped():
    # A second rod pokes into the first one's box from the side without touching it.
    image, (box, _) = metaphase_with([(banded_rod(length=70), (80, 40), 0), (banded_rod(length=40), (96, 60), 90)])
    crop = extract_chromosome(image, box)
    height, width = ink_extent(crop)
    assert height >= 66 and width <= 16


def test_isolated_crop_normalises_with_the_whole_image_as_box():
    rod = banded_rod(length=50)
    crop = extract_chromosome(rod, (0, 0, rod.width, rod.height))
    assert abs(ink_extent(crop)[0] - 50) <= 2


def test_given_mask_is_used_and_may_be_box_sized():
    image, (box,) = metaphase_with([(banded_rod(length=60), (60, 50), 0)])
    x0, y0, x1, y1 = box
    top_half = np.zeros((y1 - y0, x1 - x0), bool)
    top_half[: (y1 - y0) // 2] = True
    assert ink_extent(extract_chromosome(image, box, mask=top_half))[0] <= 32


def test_oversized_chromosome_is_shrunk_to_fit():
    rod = banded_rod(length=300)
    crop = extract_chromosome(rod, (0, 0, rod.width, rod.height))
    assert crop.size == (CANVAS_SIZE[1], CANVAS_SIZE[0]) and ink_extent(crop)[0] <= CANVAS_SIZE[0]


@pytest.mark.parametrize(
    "box, message",
    [((0, 0, 1, 1), "empty"), ((500, 500, 600, 600), "outside"), ((0, 0, 10), "four numbers"), ((0, 0, np.nan, 5), "non-finite")],
)
def test_bad_boxes_are_named(box, message):
    with pytest.raises(ValueError, match=message):
        extract_chromosome(np.full((100, 100), 200, np.uint8), box)


def test_mask_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match="mask shape"):
        extract_chromosome(np.full((100, 100), 200, np.uint8), (10, 10, 50, 50), mask=np.ones((7, 7), bool))


def test_a_cell_normalises_to_the_same_lengths_at_any_magnification():
    """Per-cell scale: the same cell imaged at 0.5x, 1x or 2x gives the same relative lengths and the same median
    (REFERENCE_LENGTH), so the identity model cannot read the microscope instead of the chromosomes."""
    from karyohf.crops import REFERENCE_LENGTH, cell_scale, chromosome_length, isolate_chromosome, rescale_chromosome

    lengths = [150, 120, 90, 80, 70, 50, 30]

    def normalised(magnification):
        rods = [banded_rod(length=round(length * magnification), width=max(4, round(12 * magnification)))
                for length in lengths]
        tight = [isolate_chromosome(rod, (0, 0, rod.width, rod.height)) for rod in rods]
        factor = cell_scale(tight)
        return [chromosome_length(rescale_chromosome(crop, factor)) for crop in tight]

    reference = normalised(1.0)
    assert np.median(reference) == pytest.approx(REFERENCE_LENGTH, abs=1)
    for magnification in (0.5, 2.0):
        assert np.abs(np.asarray(normalised(magnification)) - reference).max() <= 3, magnification
    assert reference[0] > 1.8 * reference[3]  # relative length kept: the longest still twice the median


def test_rescaling_keeps_a_chromosome_longer_than_the_canvas_whole():
    from karyohf.crops import chromosome_length, isolate_chromosome, rescale_chromosome

    rod = banded_rod(length=300)  # a chromosome 1 at a high magnification: longer than the 199-row canvas
    tight = isolate_chromosome(rod, (0, 0, rod.width, rod.height))
    assert chromosome_length(tight) == 300
    assert chromosome_length(rescale_chromosome(tight, 0.5)) == 150  # measured before any canvas shrank it
    assert rescale_chromosome(tight, 1.0).size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
    with pytest.raises(ValueError, match="positive"):
        rescale_chromosome(tight, 0.0)
