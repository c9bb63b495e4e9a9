"""The strict ISCN 2024 parser: a corpus of valid strings (the pipeline's and ISCN 2024's worked examples, as printed,
with U+2212, en dash, x-sign and tilde operator) and of invalid ones, each refused with a message naming why."""

import pytest

from karyohf.karyotype import CellLine, ISCNError, parse_karyotype, validate_karyotype

PIPELINE = [
    "46,XY", "46,XX", "47,XY,+21", "47,XX,+X[10]/46,XX[10]", "48,XY,+X,+Y[15]/46,XY[5]", "45,X,-Y[20]/46,XY[5]",
    "45,X,-X[8]/46,XX[12]", "47,XXY", "45,X", "47,XYY", "46,XY,del(5)(q13q33)[4]/46,XY[16]",
    "46,XX,t(9;22)(q34;q11.2)[20]", "47,XY,+8[3]/46,XY[17]", "mos 47,XX,+21[4]/46,XX[16]", "46,XY[20]",
    "46,XY,der(9)t(9;22)(q34;q11.2)[3]/46,XY[17]", "46,XY,inv(3)(q21q26.2)", "46,XX,i(17)(q10)[5]/46,XX[15]",
]

# Worked examples of ISCN 2024 (nuin/iscn-authenticator, iscn_2024.txt), by section.
ISCN_2024 = [
    # 4.2.1 description rules: c, breakpoints not repeated, inheritance, ~ in counts and bands
    "46,XXYc,–X[10]/47,XXYc[2]", "47,XXX,t(11;22)(q23;q11.2)[10]/46,XX,t(11;22)[10]",
    "46,XX,t(9;22)(q34;q11.2)[10]/47,XX,t(9;22),+der(22)[10]", "46,XX,t(5;6)(q34;q23)inh",
    "46,XX,der(5)t(5;6)(q34;q23)dmat,inv(14)(q12q31)pat", "46,XY,t(5;6)(q34;q23)mat,inv(14)(q12q31)dn",
    "45∼48,XX,+8[cp10]", "46,XX,del(1)(q21∼24)", "46,XY,dup(1)(p34∼32p22)", "46,XX,t(3;12)(q27∼29;q13∼15)",
    # 4.3 order of abnormalities, including the sex-chromosome examples
    "46,Y,t(X;10)(q27;p13)", "50,X,+X,−Y,+10,+14,+17,+21[5]", "47,X,t(X;13)(q27;q12),inv(10)(p13q22),+21",
    "47,Y,t(X;13)(q27;q12),inv(10)(p13q22),+21", "46,t(X;18)(p11.1;q11.2),t(Y;1)(q11.2;p13)[10]",
    "48,X,t(Y;12)(q11.21;p12),del(6)(q11),+8,t(9;22)(q34;q11.2),+17,–21,+22[10]", "46,XY,+13,der(13;14)(q10;q10)",
    "46,XY,der(13;21)(q10;q10),+21",
    "47,X,inv(X)(p21q26),+3,inv(3)(q21q26.2),–7,+10,–20,del(20)(q11.2q13.1),+21[10]",
    "47,X,inv(X)(p21q26),+inv(3)(q21q26.2),–7,+10,–20,del(20)(q11.2q13.1),+21[10]", "50,XXYc,+X,+21c,+21[10]",
    "50,XX,+1,+del(1)(p13),+dup(1)(q21q32),+inv(1)(p31q41),+8,r(10)(p12q25),–21[10]",
    # 4.4.2 homologues
    "46,XY,t(5;8)(q23;q24),t(5;11)(p12;p11.1)",
    # 4.5 clones, mosaics and chimeras
    "46,XY,del(5)(q13q33),–7,+8[2]/46,XY[18]", "46,XX,t(9;22)(q34;q11.2)[1]/46,XX[19]",
    "mos 45,X[15]/47,XXX[10]/46,XX[23]", "45,X[10]/46,XX[20]", "chi 46,XY[25]/46,XX[10]",
    "45,XY,–21[5]/47,XY,+21c[10]/46,XY[10]", "47,XY,t(8;14)(q11.2;q32),+21c[5]/47,XY,+21c[7]/46,XY[10]",
    "47,XXX[25]/47,XX,+21[25]/46,XX[10]", "47,XX,+8[25]/47,XX,+21[25]",
    "45,XY,–5,t(7;11)(p15;p15)[10]/45,XY,–7,t(7;11)(p15;p15)[15]", "45,X[25]/46,X,i(X)(q10)[25]/46,XX[25]",
    "47,XY,+5[25]/46,XY,del(5)(q13q33)[25]/46,XY[10]", "47,XX,t(9;22)(q34;q11.2),+19[5]/45,XX,t(9;22),–19[10]",
    "46,X,del(X)(q13)[25]/46,X,i(X)(q10)[25]/46,XX[25]", "46,XX,add(7)(q34)[10]/46,XX,del(7)(q22)[10]",
    "46,XY,del(5)(p15.31)[10]/46,XY,del(5)(p15.2)[10]", "46,XX,del(13)(q13q14)[10]/46,XX,del(13)(q14q22)[10]/46,XX[2]",
    # 5.3.1 sex-chromosome numerical abnormalities
    "47,XXX", "48,XXXY", "45,X[13]/46,XY[17]", "mos 47,XXY[10]/46,XY[20]", "47,XXY[15]/45,X[15]",
    "45,X[25]/47,XXX[12]/46,XX[13]", "46,Xc,+X[10]", "45,X,–X[8]", "44,Xc,–X[10]", "45,X,–Y[20]/46,XY[5]",
    "45,Y,–X[10]", "47,XX,+X[10]", "48,XY,+X,+Y[15]", "48,XXYc,+X[5]", "46,XXYc,–X[20]", "46,Xc,+21[15]",
    # 6.3 clones and subclones
    "46,XY,t(7;11)(p15;p15)[12]/46,XY[8]", "46,XX[20]", "46,XX,t(8;21)(q22;q22)[23]",
    "46,XX,t(9;22)(q34;q11.2)[18]/45,XX,der(7;9)(q10;q10)t(9;22),der(22)t(9;22)[2]",
    "46,XX,t(9;22)(q34;q11.2)[3]/47,XX,+8,t(9;22)[17]", "46,XX,der(2)t(2;5)(p23;q35)[10]/47,XX,+2,der(2)t(2;5)[16]",
    "45,XX,−7[10]/47,XX,+8[10]", "45,X,−Y,t(8;21)(q22;q22)[20]",
    "46,XX,t(10;11)(p12;q14–22),del(13)(q12q22),i(17)(q10)[10]/46,XX[5]", "46,Y,i(X)(q10)[20]/46,XY[10]",
    "46,XY,inv(16)(p13.1q22)[10]/46,XY,del(7)(q21),inv(16)[5]",
    "46,XY,t(1;19)(q23;p13.3),del(9)(p21)[10]/47,XY,t(1;19),+21[10]",
    "47,XX,t(6;9)(p22;q34),+9[10]/45,XX,t(6;9),−9[10]", "45,XX,−5,add(7)(q34)[15]/45,XX,−5,t(7;8)(q22;q22)[15]",
    "48,XY,+8,+17[15]/47,XY,+8,del(17)(p13)[15]/47,XY,+8,del(17)(q21)[15]",
    "46,XX,t(3;9)(p13;p13)[14]/48,XX,+3,+9[11]/46,XX,t(1;6)(p11;p12)[9]/47,XX,t(6;10)(q12;p15),+7[6]/45,X,−X[3]/"
    "46,XX,inv(6)(p22q23)[3]/46,XX[7]",
    "47,XY,+Y[20]/45,X,−Y[20]", "46,XX,del(9)(q13q22)[10]/46,XX,t(9;22)(q34;q11.2)[10]",
    "45,XY,−5[3]/44,XY,−5,−7[15]/45,XY,−10[15]/46,XY,del(11)(q23)[15]",
    # 6.3.4 clonal evolution: idem, sl, sdl, doubling
    "50,XX,t(2;6)(p22;q16),+5,+5,+8,+11[19]/51,sl,+8[7]/52,sdl1,+9[12]/46,XX,del(3)(q13)[11]/47,XX,+7[6]/"
    "46,XX,t(1;3)(p22;p14)[4]",
    "50,XX,t(2;6)(p22;q16),+5,+5,+8,+11[19]/51,idem,+8[7]/52,idem,+8,+9[12]/46,XX,del(3)(q13)[11]/47,XX,+7[6]/"
    "46,XX,t(1;3)(p22;p14)[4]",
    "46,XY,t(8;21)(q22;q22)[26]/47,XY,t(8;21),+21[7]", "46,XY,t(8;21)(q22;q22)[26]/47,idem,+21[7]",
    "46,XX,t(9;22)(q34;q11.2)[3]/47,sl,+8[17]/48,sdl1,+9[3]/49,sdl2,+11[12]",
    "46,XX,t(9;22)(q34;q11.2)[3]/47,idem,+8[17]/48,idem,+8,+9[3]/49,idem,+8,+9,+11[12]",
    "46,XX,t(8;21)(q22;q22)[12]/45,sl,−X[19]/46,sdl1,+8[5]/47,sdl2,+9[8]",
    "46,XX,t(8;21)(q22;q22)[12]/45,idem,−X[19]/46,idem,−X,+8[5]/47,idem,−X,+8,+9[8]",
    "48,XX,t(12;16)(q13;p11.1),+17,+20[23]/49,sl,+6[8]/50,sdl,+7,−8,+9[4]", "26,X,+4,+6,+21[3]/52,sl×2[13]",
    "52,XX,+4,+4,+6,+6,+21,+21[9]/51,idem,−10[3]/46,XX[18]", "46,XY,t(9;22)(q34;q11.2)[3]/92,sl×2[5]/93,sdl,+8[2]",
    "46,XY,t(9;22)(q34;q11.2)[3]/92,idem×2[5]/93,idem×2,+8[2]",
    "46,XY,t(9;22)(q34;q11.2)[3]/47,idem,+8[10]/47,idem,+19[3]/48,idem,+8,+der(22)t(9;22)[4]",
    "45,XY,−7[5]/46,sl1,+8[6]/46,XY,t(9;22)(q34;q11.2)[3]/92,sl2×2[5]/93,sl2×2,+8[2]",
    "48,XX,t(12;16)(q13;p11.1),+17,+20[7]/96,sl×2,inv(3)(q21q26.2),t(3;6)(p25;q21)[19]",
    "53,XY,+1,+12,+14,t(14;18)(q32;q21),+15,+16,+18,+20[21]/53,sl,del(7)(q21)[9]",
    "45,XY,t(1;6)(p34.1;q22),−3[13]/49,sl,+3,+del(7)(q11.2),+8,+9[22]",
    "45,XX,dic(9;20)(p13;q11.2)[11]/46,sl,+21[19]",
    "47,XX,inv(6)(p21q25),+12,del(13)(q12q14)[17]/47,sl,−inv(6),+mar[11]",
    "47,XX,inv(6)(p21q25),+12,del(13)(q12q14)[17]/47,XX,−6,+12,del(13)(q12q14),+mar[11]",
    # 6.3.5 composite karyotypes
    "45~48,XX,del(3)(p12)[2],−5[4],+8[2],+11[3][cp7]",
    "47~55,XX,del(3)(p12),+i(6)(p10),del(7)(q11.2),+8,dup(11)(q13q25),+16,+17,der(18)t(18;20)(q23;q11.1),+21,+21,"
    "+22[cp24]",
    "69~73,XXY,+Y,+1,−4,−13,del(17)(p11.2),+21,+21,+22[cp10]/46,XY[10]", "48,XX,+7,+9,+11,+13[cp5]",
    "48,XX,+7[2],+9[3],+11[2],+13[2][cp5]", "43~46,XX,−7,+8[cp4]",
    "46,XY,t(9;22)(q34;q11.2)[5]/51∼52,idem,+1,+5,−7,+8,+11,+13,+19,+der(22)t(9;22)[cp4]",
    "44∼47,XY,inv(3)(q21q26.2),−7,+8,+14[cp10]", "47∼48,XX,i(X)(q10),+8,+9,del(17)(p13)[cp6]",
    "44∼46,X,−X,del(16)(q24),+21[cp5]/46,XX[1]", "45∼48,XX,+7,+12,+15,−15,del(17)(p11.2)[cp6]",  # p11.3 printed
    # 6.3.6 incomplete karyotypes
    "46,XX,del(1)(q21),inc[4]", "46,XX,der(19)t(1;19)(q23;p13),inc[4]",
    "53~57,XY,+1,+3,+6,t(9;22)(q34;q11.2),+21,+3mar,inc[cp10]", "31~45,XY,inv(3)(q21q26.2),−7,+8,–9,inc[cp2]",
    # 6.3.7 ploidy levels
    "58<2n>,XX,+X,+8,+11,+14,+17,+18,+18,+19,+20,+21,+21,+22[10]",
    "81<3n>,XXX,+X,+X,+X,+X,+X,+1,+1,+3,+3,+14,+14,+14,−15,+21[10]", "46,XX,−5,+8[10]",
    "69<3n>,XXY,−5,−7,+10,+17[8]",
    "25,X,+Y,+21[1]/50,XY,+X,+Y,+21,+21[19]", "68,XY,−X[10]",
    "26,X,+Y,t(6;14)(q13;q32),+14,+21[6]/27,idem,+18[2]/52,idem×2[9]/46,XY[4]",
    "32,−X,+Y,+3,+5,+7,+9,+11,+15,+18,+19,+21[16]/46,XY[14]",
    # 6.4 constitutional karyotype in neoplasia
    "47,XXYc[5]/46,XY[15]", "47,XY,+X[5]/46,XY[15]", "48,XX,+8,+21c[20]", "47,X,t(X;18)(p11.1;q11.1),+21c[20]",
    "47,XXYc,t(9;22)(q34;q11.2)[20]", "48,XY,+8,inv(10)(p12q22)mat,+21[20]",
    "48,XY,+8,+21c[3]/49,idem,+9[5]/47,XY,+21c[12]",
    "47,XX,t(2;13)(q37;q14),der(14;21)(q10;q10)c,+18,+mar[3]/45,XX,der(14;21)c[17]", "46,XX,+21c,−21[20]",
    "45,Xc,t(X;18)(p11.1;q11.1)[20]",
    "46,XX,der(9)t(9;11)(p22;q23)t(11;12)(p13;q22)c,der(11)t(9;11)t(11;12)c,der(12)t(11;12)c[20]",
]


@pytest.mark.parametrize("text", PIPELINE + ISCN_2024)
def test_valid_karyotypes_parse_and_normalise_to_ascii(text):
    normalised = validate_karyotype(text)
    assert normalised.isascii() and " " not in normalised.removeprefix("mos ").removeprefix("chi ")
    assert normalised == text.replace("−", "-").replace("–", "-").replace("×", "x").replace("∼", "~")
    assert validate_karyotype(normalised) == normalised


@pytest.mark.parametrize("text, lines, mosaic, chimera", [
    ("46,XY", [CellLine(46, "XY", (), None, False)], False, False),
    ("46,XY[20]", [CellLine(46, "XY", (), 20, False)], False, False),
    ("47,XXY", [CellLine(47, "XXY", (), None, False)], False, False),
    ("45,X,\u2212Y[20]/46,XY[5]", [CellLine(45, "X", ("-Y",), 20, False), CellLine(46, "XY", (), 5, False)],
     False, False),
    ("mos 47,XX,+21[4]/46,XX[16]", [CellLine(47, "XX", ("+21",), 4, False), CellLine(46, "XX", (), 16, False)],
     True, False),
    ("chi 46,XY[25]/46,XX[10]", [CellLine(46, "XY", (), 25, False), CellLine(46, "XX", (), 10, False)], False, True),
    ("46,XY,der(9)t(9;22)(q34;q11.2)[3]/46,XY[17]",
     [CellLine(46, "XY", ("der(9)t(9;22)(q34;q11.2)",), 3, False), CellLine(46, "XY", (), 17, False)], False, False),
    ("45~48,XX,\u22125[4],+8[2][cp7]", [CellLine((45, 48), "XX", ("-5[4]", "+8[2]"), 7, True)], False, False),
    ("46,XY,t(8;21)(q22;q22)[26]/47,idem,+21[7]",
     [CellLine(46, "XY", ("t(8;21)(q22;q22)",), 26, False), CellLine(47, "XY", ("idem", "+21"), 7, False)],
     False, False),
])
def test_parsed_fields(text, lines, mosaic, chimera):
    karyotype = parse_karyotype(text)
    assert list(karyotype.lines) == lines
    assert (karyotype.mosaic, karyotype.chimera) == (mosaic, chimera)


@pytest.mark.parametrize("text, match", [
    ("46,XY,+21", "count 46 disagrees .* gives 47"),
    ("47,XY,+8,+21", "count 47 disagrees .* gives 48"),
    ("46,XY,t(X;10)(q27;p13)", "gives 47"),  # an abnormal X is not also written in the sex field
    ("46,XY,-Y", "before the loss would be XYY"),
    ("46,X,-Y", "count 46 disagrees .* gives 45"),
    ("46,XX,-X", "before the loss would be XXX"),
    ("46,XY,+21,-21", "cancel out"),
    ("46,XY,del(5)(q99)", "unknown band 'q99' on chromosome 5"),
    ("46,XX,t(9;22)(q34;q4)", "unknown band 'q4' on chromosome 22"),  # the FHIR IG's CML example
    # ISCN 2024 6.3.5 f prints 17p11.3, a band hg38 does not have at any resolution
    ("45∼48,XX,+7,+12,+15,−15,del(17)(p11.3)[cp6]", "unknown band 'p11.3' on chromosome 17"),
    ("46,XY,del(5q)", "short form .*give the bands"),
    ("46,XY,del(5)", "needs its breakpoints"),
    ("46,XY,del(5)(q13q22q33)", "wrong number of breakpoints"),
    ("46,XY,inv(3)(q21)", "wrong number of breakpoints"),
    ("46,XY,t(9;22)(q34)", "wrong number of breakpoints"),
    ("46,XY,del(5)(q33q13)", "pter to qter"),
    ("46,XY,i(17)(q21)", "centromere"),
    ("46,XY,der(22)", "which rearrangement"),
    ("46,XY,t(22;9)(q11.2;q34)", "translocation sex chromosomes first"),
    ("46,XY,t(13;X)(q12;q27)", "translocation sex chromosomes first"),
    ("48,XY,+21,+8", "'\\+8' must come before '\\+21'"),
    ("46,XY,-5,+5,del(5)(q13q33)", "'\\+5' must come before '-5'"),
    ("47,XY,+8,+X", "'\\+X' must come before"),
    ("47,XY,+8[3]/46,XY", "line 2 has no cell count"),
    ("46,XY[17]/47,XY,+8[3]", "normal line 46,XY must be the last"),
    ("46,XX[10]/46,XY[10]", "chimera"),
    ("47,XX,+21[4]/46,XY[16]", "cannot come from one person"),
    ("mos 47,XX,+21", "single line"),
    ("chi 46,XY", "single line"),
    ("mos47,XX,+21[4]/46,XX[16]", "one space"),
    ("46,XY,foo(5)(q13)", "unknown abnormality 'foo'"),
    ("47,XY,+23", "unknown chromosome '23'"),
    ("47,XY,+Z", "unknown chromosome 'Z'"),
    ("46,XQ", "sex chromosome complement 'XQ'"),
    ("46,YX", "sex chromosome complement 'YX'"),
    ("45,+21", "no X chromosome"),
    ("46,XY,[3]", "empty field"),
    ("46,XY,,+8", "empty field"),
    ("46,XY[0]", "positive integer"),
    ("46,XY[3", "malformed cell count"),
    ("46,XY,+8[2],-7[3][10]", "malformed cell count"),  # per-abnormality counts only in composites
    ("47,XY,+8[3]/", "empty cell line"),
    ("46,XY, +8", "spaces"),
    ("46,XY,t(9;22)(q34;q11.2)[3]//46,XX[17]", "not supported"),
    ("45,XX,-?21", "not supported"),
    ("47,XY,idem,+8", "unknown chromosome 'idem'"),
    ("47,idem,+8[3]/46,XY[17]", "first line must be written out"),
    ("46,XY,t(9;22)(q34;q11.2)[3]/47,idem,+8[10]/48,sl,+8,+9[3]", "must not be mixed"),
    ("46,XY,t(9;22)(q34;q11.2)[3]/47,sdl,+8[10]", "names no earlier cell line"),
    ("47,XX,+21[3]/48,sl0,+8[2]", "names no earlier cell line"),
    ("48~45,XX,+8[cp3]", "from low to high"),
    ("49~50,XX,+8[cp6]", "gives 46~47"),
    ("", "empty"),
    ("   ", "empty"),
    (None, "a karyotype is a string"),
    (46, "a karyotype is a string"),
])
def test_invalid_karyotypes_are_refused_with_the_reason(text, match):
    with pytest.raises(ISCNError, match=match):
        parse_karyotype(text)


def test_iscn_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate_karyotype("46,XY,+21")
