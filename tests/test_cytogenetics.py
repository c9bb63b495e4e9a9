"""Facts about human chromosomes and the aberrations in scope, checked against the hg38 band table."""

import numpy as np
import pytest

from karyohf.cytogenetics import (
    ACROCENTRIC,
    CATALOGUE,
    CHROMOSOMES,
    DENVER_GROUPS,
    Derivative,
    Segment,
    band_interval,
    bands,
    breakpoint_fraction,
    centromere_fraction,
    chromosome_index,
    chromosome_length,
    deletion,
    denver_group,
    expected_copies,
    get_aberration,
    inversion,
    normalize_chromosome,
    stain_intensity,
    translocation,
)

# UCSC hg38 cytoBand coordinates (bp), copied from the table rather than computed by the code.
CHR5_LENGTH = 181_538_259
CHR5_Q13 = (67_400_000, 77_600_000)  # q13.1 start .. q13.3 end
CHR5_Q33 = (150_400_000, 160_500_000)  # q33.1 start .. q33.3 end
CHR16_LENGTH = 90_338_345
CHR16_CEN = 36_800_000  # p11.1/q11.1 boundary
CHR16_P13_1 = (10_400_000, 16_700_000)  # p13.13 start .. p13.11 end
CHR16_Q22 = (66_600_000, 74_100_000)  # q22.1 start .. q22.3 end


# --- classes -----------------------------------------------------------------------------------


def test_classes_and_denver_groups():
    assert len(CHROMOSOMES) == 24 and CHROMOSOMES[0] == "1" and CHROMOSOMES[-2:] == ("X", "Y")
    assert chromosome_index("1") == 0 and chromosome_index("chrX") == 22
    assert sorted(c for group in DENVER_GROUPS.values() for c in group) == sorted(CHROMOSOMES)
    assert denver_group(7) == "C" and denver_group("X") == "C" and denver_group("Y") == "G"
    assert denver_group("21") == "G" and denver_group("18") == "E"
    assert set(ACROCENTRIC) == {"13", "14", "15", "21", "22"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (5, "5"), ("5", "5"), ("chr5", "5"), ("CHR5", "5"), (" 5 ", "5"), ("05", "5"),
        ("x", "X"), ("X", "X"), ("chrY", "Y"), (22, "22"), (np.int64(9), "9"),
    ],
)
def test_normalize_chromosome(given, expected):
    assert normalize_chromosome(given) == expected


@pytest.mark.parametrize("bad", [0, 23, "23", "chr", "M", "5q", True, None, 5.0])
def test_normalize_chromosome_rejects(bad):
    with pytest.raises(ValueError, match="chromosome"):
        normalize_chromosome(bad)


def test_expected_copies():
    assert expected_copies(1, "XX") == 2 and expected_copies("21", "XY") == 2
    assert expected_copies("X", "XX") == 2 and expected_copies("X", "XY") == 1
    assert expected_copies("Y", "XX") == 0 and expected_copies("Y", "XY") == 1
    assert sum(expected_copies(c, "XY") for c in CHROMOSOMES) == 46
    with pytest.raises(ValueError, match="XXY"):
        expected_copies("X", "XXY")


# --- bands -------------------------------------------------------------------------------------


def test_chromosome_lengths():
    lengths = {c: chromosome_length(c) for c in CHROMOSOMES}
    assert max(lengths, key=lengths.get) == "1"
    assert lengths["1"] == 248_956_422 and lengths["X"] == 156_040_895 and lengths["Y"] == 57_227_415
    # Chromosome 21 is the smallest autosome although numbered before 22.
    assert lengths["21"] < lengths["22"]
    assert min((lengths[c], c) for c in CHROMOSOMES[:22])[1] == "21"


@pytest.mark.parametrize("chrom", CHROMOSOMES)
def test_bands_tile_the_chromosome(chrom):
    table = bands(chrom)
    assert table[0].start == 0 and table[-1].end == chromosome_length(chrom)
    for upper, lower in zip(table, table[1:]):
        assert upper.end == lower.start  # no gap, no overlap
    assert table[0].fraction[0] == 0.0 and table[-1].fraction[1] == 1.0
    assert [b.arm for b in table] == sorted(b.arm for b in table)  # all p bands, then all q bands
    assert [b.stain for b in table].count("acen") == 2
    assert {b.stain for b in table} <= {"gneg", "gpos25", "gpos50", "gpos75", "gpos100", "acen", "gvar", "stalk"}


def test_centromere_fractions():
    fractions = {c: centromere_fraction(c) for c in CHROMOSOMES}
    assert fractions["1"] == pytest.approx(123_400_000 / 248_956_422) and 0.45 < fractions["1"] < 0.52
    assert fractions["16"] == pytest.approx(CHR16_CEN / CHR16_LENGTH)
    for metacentric in ("1", "3", "16", "19", "20"):
        assert fractions[metacentric] > 0.4
    for acrocentric in ACROCENTRIC:
        # hg38 pads acrocentric short arms with placeholder sequence; 21 and 22 come out at 0.26-0.30.
        assert fractions[acrocentric] < 0.3
    for acrocentric in ("13", "14", "15"):
        assert fractions[acrocentric] < 0.2


def test_band_interval_unions_sub_bands():
    start, end = band_interval("9", "q34")
    length = chromosome_length("9")
    sub_bands = [b for b in bands("9") if b.name.startswith("q34.")]
    assert [b.name for b in sub_bands] == ["q34.11", "q34.12", "q34.13", "q34.2", "q34.3"]
    assert start == sub_bands[0].start / length and end == 1.0
    assert band_interval("9", "9q34") == band_interval("chr9", "q34") == band_interval(None, "9q34")
    assert band_interval("22", "q11.2") == pytest.approx((17_400_000 / 50_818_468, 25_500_000 / 50_818_468))


def test_band_names_at_several_resolutions():
    coarse, mid, fine = band_interval("22", "q11"), band_interval("22", "q11.2"), band_interval("22", "q11.21")
    assert coarse[0] <= mid[0] == fine[0] and fine[1] < mid[1] == coarse[1]
    assert band_interval("5", "q13") == pytest.approx((CHR5_Q13[0] / CHR5_LENGTH, CHR5_Q13[1] / CHR5_LENGTH))
    assert band_interval("5", "5q13") == band_interval(5, "q13")
    assert band_interval("9", "pter") == (0.0, 0.0) and band_interval("9", "qter") == (1.0, 1.0)
    assert band_interval("9", "cen") == (centromere_fraction("9"),) * 2
    assert band_interval("X", "Xq28")[1] == 1.0 and band_interval("Y", "q11.22")[0] > centromere_fraction("Y")


@pytest.mark.parametrize(("chrom", "band", "message"), [
    ("9", "q37", "close valid names: .*q34"),
    ("9", "q3", "unknown band 'q3'"),
    ("5", "q34.1", "unknown band"),
    ("9", "22q11.2", "chromosome 22, not on chromosome 9"),
    ("9", "34q", "not an ISCN band name"),
    (None, "q34", "names no chromosome"),
])
def test_unknown_band_errors(chrom, band, message):
    with pytest.raises(ValueError, match=message):
        band_interval(chrom, band)


def test_breakpoint_fraction_midpoint_and_jitter():
    start, end = band_interval("22", "q11.2")
    assert breakpoint_fraction("22", "q11.2") == pytest.approx((start + end) / 2)
    samples = [breakpoint_fraction("22", "q11.2", np.random.default_rng(seed)) for seed in range(50)]
    assert all(start <= s <= end for s in samples) and len(set(samples)) == 50


def test_stain_intensity():
    assert [stain_intensity(s) for s in ("gneg", "gpos25", "gpos50", "gpos75", "gpos100")] == [0, 0.25, 0.5, 0.75, 1]
    assert all(0 <= stain_intensity(s) <= 1 for s in ("acen", "gvar", "stalk"))
    with pytest.raises(ValueError, match="gpos150"):
        stain_intensity("gpos150")


# --- derivatives -------------------------------------------------------------------------------


def test_philadelphia_chromosome():
    der9, der22 = translocation("9", "22", "q34", "q11.2")
    assert der22.iscn == "der(22)t(9;22)(q34;q11.2)" and der9.iscn == "der(9)t(9;22)(q34;q11.2)"
    assert der22.describe() == "22pter→22q11.2::9q34→9qter"
    assert der9.describe() == "9pter→9q34::22q11.2→22qter"
    assert der22.length_relative_to("22") < 0.7  # the small Ph chromosome
    assert der9.length_relative_to("9") > 1.0
    # Balanced: nothing lost, nothing gained.
    assert der9.length_bp + der22.length_bp == pytest.approx(chromosome_length("9") + chromosome_length("22"))
    # Each derivative keeps its own centromere, at its original distance from pter.
    centromere_bp = centromere_fraction("22") * chromosome_length("22")
    assert der22.centromere_fraction * der22.length_bp == pytest.approx(centromere_bp)


def test_translocation_with_short_arm_breakpoint():
    der9, der11 = translocation("9", "11", "p21.3", "q23.3")
    assert der9.describe() == "9qter→9p21.3::11q23.3→11qter"
    assert der11.describe() == "11pter→11q23.3::9p21.3→9pter"
    # Stored pter->qter: der(9) is capped by 11qter, so the 11 segment reads upside down.
    assert der9.segments[0].chromosome == "11" and der9.segments[0].is_reversed
    assert der9.segments[1] == Segment("9", breakpoint_fraction("9", "p21.3"), 1.0, "p21.3")
    # 9's centromere now sits below the 11q piece that replaced 9pter->9p21.3.
    lost = breakpoint_fraction("9", "p21.3") * chromosome_length("9")
    gained = (1 - breakpoint_fraction("11", "q23.3")) * chromosome_length("11")
    expected = (centromere_fraction("9") * chromosome_length("9") - lost + gained) / der9.length_bp
    assert der9.centromere_fraction == pytest.approx(expected)
    # Argument order does not change the ISCN, which lists the lower chromosome first.
    assert translocation("22", "9", "q11.2", "q34")[0].iscn == "der(22)t(9;22)(q34;q11.2)"


def test_interstitial_5q_deletion():
    del5 = deletion("5", "q13", "q33")
    assert del5.iscn == "del(5)(q13q33)" and del5.describe() == "5pter→5q13::5q33→5qter"
    # Breakpoints default to band midpoints.
    expected = 1 - (sum(CHR5_Q33) / 2 - sum(CHR5_Q13) / 2) / CHR5_LENGTH
    assert del5.length_relative_to("5") == pytest.approx(expected)
    # Wherever the breakpoints fall within q13 and q33, the loss lies between these bounds.
    assert 1 - (CHR5_Q33[1] - CHR5_Q13[0]) / CHR5_LENGTH < expected < 1 - (CHR5_Q33[0] - CHR5_Q13[1]) / CHR5_LENGTH
    assert del5.centromere_fraction > centromere_fraction("5")  # same p arm, shorter chromosome


def test_terminal_deletions():
    assert deletion("5", "q31").describe() == "5pter→5q31:"
    assert deletion("5", "p13").describe() == "5qter→5p13:"
    assert deletion("5", "q31").iscn == "del(5)(q31)"
    with pytest.raises(ValueError, match="centromere"):
        deletion("5", "p13", "q13")
    with pytest.raises(ValueError, match="pter to qter"):
        deletion("5", "q33", "q13")


def test_pericentric_inversion_moves_the_centromere():
    inv16 = inversion("16", "p13.1", "q22")
    assert inv16.iscn == "inv(16)(p13.1q22)"
    assert inv16.describe() == "16pter→16p13.1::16q22→16p13.1::16q22→16qter"
    assert inv16.length_bp == pytest.approx(CHR16_LENGTH)
    p_break, q_break = sum(CHR16_P13_1) / 2, sum(CHR16_Q22) / 2
    assert inv16.centromere_fraction == pytest.approx((p_break + q_break - CHR16_CEN) / CHR16_LENGTH)
    assert inv16.centromere_fraction - centromere_fraction("16") > 0.1


def test_paracentric_inversion_keeps_centromere_and_length():
    inv3 = inversion("3", "q21", "q26.2")
    assert inv3.describe() == "3pter→3q21::3q26.2→3q21::3q26.2→3qter"
    assert inv3.centromere_fraction == pytest.approx(centromere_fraction("3"))
    assert inv3.length_bp == pytest.approx(chromosome_length("3"))
    assert inv3.segments[1].is_reversed and not inv3.segments[0].is_reversed


def test_builders_reject_bad_breakpoints():
    with pytest.raises(ValueError, match="two different chromosomes"):
        translocation("9", "9", "p21", "q34")
    with pytest.raises(ValueError, match="band on an arm"):
        translocation("9", "22", "cen", "q11.2")
    with pytest.raises(ValueError, match="lacks the centromere"):
        Derivative("der(9)", (Segment("9", 0.9, 1.0),))


# --- catalogue ---------------------------------------------------------------------------------


def test_catalogue_entries_build():
    expected_keys = ["del(5q)", "t(9;22)", "t(9;11)", "inv(16)", "inv(3)", "t(11;19)", "t(15;17)", "t(8;21)", "t(6;9)"]
    assert list(CATALOGUE) == expected_keys
    rng = np.random.default_rng(0)
    for aberration in CATALOGUE.values():
        for form in aberration.forms:
            for derivatives in (form.derivatives(), form.derivatives(rng)):
                assert len(derivatives) == (2 if form.kind == "translocation" else 1)
                names = {d.chromosome for d in derivatives}
                assert names == set(form.chromosomes)
                if form.kind != "deletion":  # balanced
                    total = sum(chromosome_length(c) for c in form.chromosomes)
                    assert sum(d.length_bp for d in derivatives) == pytest.approx(total)


def test_catalogue_iscn_and_lookup():
    iscns = {a.iscn for a in CATALOGUE.values()}
    assert iscns == {
        "del(5)(q13q33)", "t(9;22)(q34;q11.2)", "t(9;11)(p21.3;q23.3)", "inv(16)(p13.1q22)", "inv(3)(q21q26.2)",
        "t(11;19)(q23.3;p13.1)", "t(15;17)(q24;q21)", "t(8;21)(q22;q22)", "t(6;9)(p23;q34.1)",
    }
    assert get_aberration("t(9;22)").fusion == "BCR::ABL1"
    assert get_aberration("t(9;22)(q34;q11.2)") is CATALOGUE["t(9;22)"]
    assert get_aberration("t(11;19)(q23;p13.3)").fusion == "KMT2A::MLLT1"
    del5q_forms = {f.iscn for f in get_aberration("del(5q)").forms}
    assert del5q_forms == {"del(5)(q13q33)", "del(5)(q14q34)", "del(5)(q31q33)"}
    assert get_aberration("inv(16)").derivatives()[0].centromere_fraction > centromere_fraction("16")
    with pytest.raises(ValueError, match="t\\(1;2\\)"):
        get_aberration("t(1;2)")
