"""The karyotype layer on constructed cells: ISCN lines, clone rules, line order, [n] and the validator on all of it."""

import pytest

from karyohf.karyotype import validate_karyotype
from karyohf.karyotype.cells import Abnormality, format_line, numerical_changes
from karyohf.karyotype.specimen import aggregate, reference_sex

NORMAL_XY = {str(n): 2 for n in range(1, 23)} | {"X": 1, "Y": 1}
NORMAL_XX = {str(n): 2 for n in range(1, 23)} | {"X": 2}
DEL5Q = Abnormality("structural", "5", "del(5)(q13q33)")
T922 = Abnormality("structural", "9", "t(9;22)(q34;q11.2)")


def counts(base, **changes):
    out = dict(base)
    for name, delta in changes.items():
        name = name.lstrip("c")
        out[name] = out.get(name, 0) + delta
    return out


def cells_of(*groups):
    """[(n, abnormalities), ...] -> named cells."""
    out = []
    for n, items in groups:
        out += [(f"cell{len(out) + k + 1}", tuple(items)) for k in range(n)]
    return out


@pytest.mark.parametrize("class_counts, sex, study, expected", [
    (NORMAL_XY, "XY", "neoplasia", "46,XY"),
    (counts(NORMAL_XY, c21=1), "XY", "neoplasia", "47,XY,+21"),
    (counts(NORMAL_XY, c8=1, c21=1), "XY", "neoplasia", "48,XY,+8,+21"),
    (counts(NORMAL_XY, c7=-1), "XY", "neoplasia", "45,XY,-7"),
    (counts(NORMAL_XY, Y=-1), "XY", "neoplasia", "45,X,-Y"),
    (counts(NORMAL_XX, X=-1), "XX", "neoplasia", "45,X,-X"),
    (counts(NORMAL_XX, X=1), "XX", "neoplasia", "47,XX,+X"),
    (counts(NORMAL_XY, X=1, Y=1), "XY", "neoplasia", "48,XY,+X,+Y"),
    (counts(NORMAL_XX, X=-1), "XX", "constitutional", "45,X"),
    (counts(NORMAL_XY, X=1), "XY", "constitutional", "47,XXY"),
    (counts(NORMAL_XY, Y=1), "XY", "constitutional", "47,XYY"),
    (counts(NORMAL_XX, c21=1), "XX", "constitutional", "47,XX,+21"),
    (counts(NORMAL_XX, c21=2), "XX", "neoplasia", "48,XX,+21,+21"),
])
def test_a_cell_line_is_written_as_iscn_and_validates(class_counts, sex, study, expected):
    text = format_line(numerical_changes(class_counts, sex), sex, study)
    assert text == expected
    assert validate_karyotype(text) == expected


def test_numerical_before_structural_sex_chromosomes_first():
    items = numerical_changes(counts(NORMAL_XY, c5=1, X=1), "XY") + [DEL5Q, T922]
    assert format_line(items, "XY", "neoplasia") == "48,XY,+X,+5,del(5)(q13q33),t(9;22)(q34;q11.2)"


def test_a_rearranged_sex_chromosome_leaves_the_sex_field():
    text = format_line([Abnormality("structural", "X", "i(X)(q10)")], "XY", "neoplasia")
    assert text == "46,Y,i(X)(q10)" and validate_karyotype(text) == text


def test_gain_clone_needs_two_cells_and_normal_line_is_last():
    summary = aggregate(cells_of((3, [Abnormality.gain("8")]), (17, [])), "XY")
    assert summary.karyotype == "47,XY,+8[3]/46,XY[17]"
    assert [f.iscn for f in summary.findings] == ["+8"] and summary.findings[0].clonal
    assert validate_karyotype(summary.karyotype) == summary.karyotype


def test_single_cell_gain_is_non_clonal_and_stays_out_of_the_karyotype():
    summary = aggregate(cells_of((1, [Abnormality.gain("8")]), (19, [])), "XY")
    assert summary.karyotype == "46,XY[20]"
    assert [f.iscn for f in summary.non_clonal] == ["+8"] and summary.non_clonal[0].cells == ("cell1",)
    assert not summary.findings


@pytest.mark.parametrize("losing, clonal", [(2, False), (3, True)])
def test_a_loss_needs_three_cells(losing, clonal):
    summary = aggregate(cells_of((losing, [Abnormality.loss("7")]), (20 - losing, [])), "XY")
    if clonal:
        assert summary.karyotype == "45,XY,-7[3]/46,XY[17]"
    else:
        assert summary.karyotype == "46,XY[20]" and summary.non_clonal[0].iscn == "-7"


def test_structural_clone_of_two_cells():
    summary = aggregate(cells_of((2, [T922]), (18, [])), "XX")
    assert summary.karyotype == "46,XX,t(9;22)(q34;q11.2)[2]/46,XX[18]"


def test_lines_by_size_and_counts_add_up():
    cells = cells_of((2, [Abnormality.gain("8")]), (5, [DEL5Q]), (13, []))
    summary = aggregate(cells, "XY")
    assert summary.karyotype == "46,XY,del(5)(q13q33)[5]/47,XY,+8[2]/46,XY[13]"
    assert sum(len(line.cells) for line in summary.lines) == 20
    assert summary.lines[-1].normal


def test_an_all_abnormal_specimen_has_one_line():
    assert aggregate(cells_of((20, [T922])), "XX").karyotype == "46,XX,t(9;22)(q34;q11.2)[20]"


def test_a_combination_too_rare_to_be_a_clone_joins_the_line_it_contains():
    # +8 in 4 cells, one of which also shows a single-cell -7 (non-clonal) and one a clonal del(5q) combination.
    cells = cells_of((3, [Abnormality.gain("8")]), (1, [Abnormality.gain("8"), DEL5Q]), (1, [DEL5Q]), (15, []))
    summary = aggregate(cells, "XY")
    # del(5q) is clonal (2 cells) but no line of its own reaches 2 cells: the +8,del line folds into +8,
    # the del-only cell into the normal line.
    assert summary.karyotype == "47,XY,+8[4]/46,XY[16]"
    assert {f.iscn for f in summary.findings} == {"+8", "del(5)(q13q33)"}


def test_sex_chromosome_loss_in_a_male_specimen():
    cells = cells_of((5, [Abnormality.loss("Y")]), (15, []))
    assert aggregate(cells, "XY").karyotype == "45,X,-Y[5]/46,XY[15]"


def test_constitutional_single_line_has_no_count_and_mosaicism_is_mos():
    assert aggregate(cells_of((20, [Abnormality.gain("21")])), "XX", "constitutional").karyotype == "47,XX,+21"
    mosaic = aggregate(cells_of((4, [Abnormality.gain("21")]), (16, [])), "XX", "constitutional").karyotype
    assert mosaic == "mos 47,XX,+21[4]/46,XX[16]"
    assert validate_karyotype(mosaic) == mosaic
    assert aggregate(cells_of((20, [Abnormality.gain("X")])), "XY", "constitutional").karyotype == "47,XXY"


def test_tetrasomy_counts_each_copy():
    summary = aggregate(cells_of((3, [Abnormality.gain("21")] * 2), (1, [Abnormality.gain("21")]), (16, [])), "XX")
    # The single +21 cell is too few for a line of its own and contains no other line but the normal one.
    assert summary.karyotype == "48,XX,+21,+21[3]/46,XX[17]"
    assert [f.iscn for f in summary.findings] == ["+21", "+21,+21"]


def test_reference_sex_from_the_cells():
    assert reference_sex([(1, 1)] * 10) == "XY"
    assert reference_sex([(2, 0)] * 10) == "XX"
    assert reference_sex([(1, 0)] * 7 + [(1, 1)] * 3) == "XY"  # a -Y clone in a man
    assert reference_sex([(2, 0)] * 19 + [(2, 1)]) == "XX"  # one misidentified Y
    assert reference_sex([(1, 0)] * 20) == "XX"  # 45,X: Turner
    assert reference_sex([(2, 1)]) == "XY"  # one 47,XXY cell


def test_no_cells_no_karyotype():
    assert aggregate([], "XX").karyotype is None
