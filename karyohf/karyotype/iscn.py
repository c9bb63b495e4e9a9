"""Strict ISCN 2024 karyotype strings (karyotype format, short system): parse and validate.

A weak validator lets through strings a lab would send back: a count that disagrees with the content, a band that
does not exist, a missing cell count. This one checks the chromosome count against the content, every band against
the hg38 table at some resolution, the breakpoints each form takes, the order of abnormalities and of cell lines,
and refuses, with a message, whatever lies outside the subset it knows rather than passing it through.

Counting follows ISCN: the sex field lists the normal sex chromosomes, so a structurally abnormal X or Y adds one
(`46,Y,i(X)(q10)`) and an acquired loss written beside the remaining complement is not subtracted again
(`45,X,-Y`). A sex field marked constitutional (`46,XXYc,-X`) or inherited through idem/sl/sdl is the whole
complement instead: there the loss is subtracted and an abnormal X is one of those listed. Counts are relative to
the ploidy level (ISCN Table 6: round(count / 23) sets, or `<3n>` when written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..cytogenetics.bands import band_interval
from ..cytogenetics.classes import normalize_chromosome


class ISCNError(ValueError):
    """A string that is not valid (or not supported) ISCN; the message names the problem and the offending part."""


@dataclass(frozen=True)
class CellLine:
    """One cell line as written. `sex` is the sex field as written ("XXYc" keeps its c; "" when only abnormalities
    carry the sex chromosomes), or the referenced line's for idem/sl/sdl lines, whose `abnormalities` start with the
    reference ("idem", "slx2"). A composite's per-abnormality counts stay in the text ("+8[2]")."""

    count: int | tuple[int, int]
    sex: str
    abnormalities: tuple[str, ...]
    cells: int | None
    composite: bool


@dataclass(frozen=True)
class Karyotype:
    lines: tuple[CellLine, ...]
    mosaic: bool
    chimera: bool
    text: str


# Printed ISCN uses the minus sign, en dash, multiplication sign and tilde operator; we write ASCII.
_PRINTED = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00d7": "x", "\u223c": "~"})
_SEX = ("X", "Y")
_CHROMOSOME = r"[1-9]\d?|X|Y"
_BAND = r"(?:pter|qter|cen|[pq]\d+(?:\.\d+)?(?:[~-]\d+(?:\.\d+)?)?)"
_COMPONENT = re.compile(r"([a-z]+)\(([^()]*)\)(?:\(([^()]*)\))?")
# sign, core, inheritance (c = constitutional), multiplication; the core is lazy so "+21c" reads as 21 + c.
_FIELD = re.compile(r"([+-]?)(.+?)(c|mat|pat|dmat|dpat|inh|dinh|dn)?(?:x([1-9]\d*))?")
_REFERENCE = re.compile(r"(idem|sl|sdl)(\d*)(?:x([1-9]\d*))?")
_COUNT = re.compile(r"([1-9]\d*)(?:~([1-9]\d*))?(?:<([1-9])n>)?")

# Form: ({number of chromosomes: allowed numbers of bands per chromosome}, how to write it).
_FORMS = {
    "add": ({1: {(1,)}}, "add(7)(q22)"),
    "del": ({1: {(1,), (2,)}}, "del(5)(q31) or del(5)(q13q33)"),
    "dup": ({1: {(2,)}}, "dup(1)(q21q32)"),
    "inv": ({1: {(2,)}}, "inv(3)(q21q26.2)"),
    "i": ({1: {(1,)}}, "i(17)(q10)"),
    "idic": ({1: {(1,)}}, "idic(X)(q13)"),
    "r": ({1: {(2,)}}, "r(10)(p12q25)"),
    "ins": ({1: {(3,)}, 2: {(1, 2)}}, "ins(5;2)(p14;q22q32)"),
    "dic": ({2: {(1, 1)}}, "dic(9;20)(p13;q11.2)"),
    "der": ({1: set(), 2: {(1, 1)}}, "der(9)t(9;22)(q34;q11.2) or der(13;14)(q10;q10)"),
    "t": ({n: {(1,) * n} for n in range(2, 6)}, "t(9;22)(q34;q11.2)"),
}
_FUSED = ("der", "dic")  # one chromosome made of two: der(13;14) replaces a 13 and a 14


@dataclass(frozen=True)
class _Abnormality:
    text: str
    sign: str                       # "+", "-" or ""
    form: str                       # "" (whole chromosome), "mar", "r" (unidentified ring), "inc", or a _FORMS key
    chromosomes: tuple[str, ...]    # whole chromosome, or the first component's (a der's own)
    times: int                      # "+3mar", "der(18)t(18;19)(q21;p11~12)x2"
    constitutional: bool

    @property
    def order(self) -> tuple[int, int, str]:
        """ISCN order: X, Y, autosomes ascending, then r, mar, inc; gains, losses, structural; forms alphabetical."""
        if not self.chromosomes:  # +r (unidentified ring), +mar, inc
            return (100 + ("r", "mar", "inc").index(self.form), 0, "")
        return _rank(self.chromosomes[0]), (0 if self.sign == "+" else 1) if not self.form else 2, self.form

    @property
    def carried_sex(self) -> tuple[str, ...]:
        """Sex chromosomes an unsigned structural change stands for: the sex field leaves them out."""
        return tuple(c for c in self.chromosomes if c in _SEX) if self.form in _FORMS and not self.sign else ()

    def delta(self, whole_complement: bool) -> int:
        """Chromosomes this item adds to the count (see the module docstring for the two sex-field readings)."""
        if self.sign == "+":  # markers and unidentified rings are always written with +
            change = 1
        elif self.sign == "-":
            change = -1 if self.form or self.chromosomes[0] not in _SEX or whole_complement else 0
        else:
            change = (0 if whole_complement else len(self.carried_sex)) \
                - (len(self.chromosomes) - 1 if self.form in _FUSED else 0)
        return change * self.times


@dataclass
class _Line:
    public: CellLine
    content: int                    # chromosomes the content gives
    constitution: str               # sex chromosomes before acquired gains, for the mosaic/chimera check
    reference: str | None           # "idem", "sl", "sdl" or None
    normal: bool


class _Context:
    """What later parts of a karyotype may refer to: earlier lines and rearrangements written with breakpoints."""

    def __init__(self) -> None:
        self.lines: list[_Line] = []
        self.banded: set[str] = set()           # "t(9;22)" once written with bands
        self.banded_chromosomes: set[str] = set()
        self.styles: set[str] = set()           # "idem" and "sl" must not be mixed


def _rank(chromosome: str) -> int:
    return _SEX.index(chromosome) if chromosome in _SEX else int(chromosome) + 1


def _chromosome(token: str, where: str) -> str:
    if re.fullmatch(r"(?:\d+|[XY])[pq][\d.]*", token):
        raise ISCNError(f"short form {where} is not karyotype ISCN: name the chromosome, then give the bands, "
                        f"e.g. del(5)(q13q33)")
    try:
        if not re.fullmatch(_CHROMOSOME, token):
            raise ValueError
        return normalize_chromosome(token)
    except ValueError:
        raise ISCNError(f"unknown chromosome {token!r} in {where} (expected 1-22, X or Y)") from None


def _band_start(chromosome: str, band: str, where: str) -> float:
    """Where a band starts (fraction from pter), after checking it (and a range's far end) exists in hg38."""
    names = [band] if band in ("pter", "qter", "cen") else [band[0] + n for n in re.split("[~-]", band[1:])]
    starts = []
    for name in names:
        try:  # p10/q10 are the centromere, as in i(17)(q10) and whole-arm rearrangements
            starts.append(band_interval(chromosome, "cen" if name in ("p10", "q10") else name)[0])
        except ValueError as error:
            raise ISCNError(f"{error}, in {where}") from None
    return starts[0]


def _check_component(form: str, chromosomes: tuple[str, ...], bands: str | None, where: str,
                     context: _Context) -> None:
    """Breakpoints of one rearrangement: the number the form takes, each a real band, in pter-to-qter order."""
    shapes, example = _FORMS[form]
    key = f"{form}({';'.join(chromosomes)})"
    if len(chromosomes) not in shapes:
        raise ISCNError(f"{where}: {form} takes another number of chromosomes, e.g. {example}")
    if form == "t" and (chromosomes[0] != min(chromosomes, key=_rank) or len(set(chromosomes)) < len(chromosomes)):
        raise ISCNError(f"{where}: list the chromosomes of a translocation sex chromosomes first, "
                        f"then autosomes ascending")
    if bands is None:
        if form == "der" and len(chromosomes) == 1 or key in context.banded:
            return  # a der's own parentheses name no bands; a rearrangement already written need not repeat them
        raise ISCNError(f"{where}: {key} needs its breakpoints the first time it is written, e.g. {example}")
    segments = bands.split(";")
    if not all(re.fullmatch(f"{_BAND}+", s) for s in segments):
        raise ISCNError(f"cannot read the bands ({bands}) in {where}")
    names = [re.findall(_BAND, s) for s in segments]
    if len(segments) != len(chromosomes) or tuple(map(len, names)) not in shapes[len(chromosomes)]:
        raise ISCNError(f"wrong number of breakpoints in {where}: write {form} as e.g. {example}")
    starts = [[_band_start(c, b, where) for b in bs] for c, bs in zip(chromosomes, names)]
    if form == "i" and names[0][0] not in ("p10", "q10"):
        raise ISCNError(f"an isochromosome breaks at the centromere, p10 or q10, not {names[0][0]}, in {where}")
    if form in ("del", "inv", "r") and len(starts[0]) == 2 and starts[0][0] > starts[0][1]:
        raise ISCNError(f"give the bands from pter to qter in {where}")
    context.banded.add(key)
    context.banded_chromosomes.update(chromosomes)


def _abnormality(text: str, where: str, context: _Context) -> _Abnormality:
    """One comma-separated item; `where` names it and its line for messages."""
    if text == "inc":
        return _Abnormality(text, "", "inc", (), 1, False)
    sign, core, inheritance, times = _FIELD.fullmatch(text).groups()
    times = int(times or 1)
    item = dict(text=text, sign=sign, constitutional=inheritance == "c")
    if marker := re.fullmatch(r"(\d*)mar\d*", core):
        if sign != "+":
            raise ISCNError(f"a marker chromosome is a gain: write +mar, in {where}")
        return _Abnormality(form="mar", chromosomes=(), times=int(marker.group(1) or 1) * times, **item)
    if core == "r":
        if sign != "+":
            raise ISCNError(f"an unidentified ring is a gain: write +r, in {where}")
        return _Abnormality(form="r", chromosomes=(), times=times, **item)
    if "(" not in core:
        chromosome = _chromosome(core, where)
        if not sign or times > 1:
            raise ISCNError(f"write a whole-chromosome gain or loss as +N or -N, one per copy, in {where}")
        return _Abnormality(form="", chromosomes=(chromosome,), times=1, **item)
    components, position = [], 0
    while position < len(core):
        match = _COMPONENT.match(core, position)
        if match is None:
            raise ISCNError(f"cannot read {core[position:]!r} in {where}")
        form, chromosomes, bands = match.groups()
        if form not in _FORMS:
            raise ISCNError(f"unknown abnormality {form!r} in {where} (known: +, -, mar, {', '.join(_FORMS)}, "
                            f"idem, sl, sdl)")
        if components and (form == "der" or components[0][0] != "der"):
            raise ISCNError(f"only a derivative (der) combines rearrangements, and only at its start, in {where}")
        components.append((form, tuple(_chromosome(c, where) for c in chromosomes.split(";")), bands))
        position = match.end()
    (form, chromosomes, bands), history = components[0], components[1:]
    if form == "der" and len(chromosomes) == 1 and bands is None and not history \
            and chromosomes[0] not in context.banded_chromosomes:
        raise ISCNError(f"{where}: say which rearrangement made the derivative, e.g. der(9)t(9;22)(q34;q11.2)")
    for component in components:
        _check_component(*component, where, context)
    return _Abnormality(form=form, chromosomes=chromosomes, times=times, **item)


def _parse_line(part: str, context: _Context) -> _Line:
    if not part:
        raise ISCNError("empty cell line: '/' must separate two cell lines")
    body, composite, cells = re.fullmatch(r"(.*?)(?:\[(cp)?(\d+)\])?", part).groups()
    if cells is not None and cells.startswith("0"):
        raise ISCNError(f"the cell count of {part!r} must be a positive integer")
    fields = body.split(",")
    own = []                        # (written text, text without a composite's per-abnormality [n])
    for text in fields[1:]:
        bare = re.sub(r"\[[1-9]\d*\]$", "", text) if composite else text
        if "[" in bare or "]" in bare:
            raise ISCNError(f"malformed cell count in {part!r}: end a line with [n] or [cpN], n a positive integer")
        if not bare:
            raise ISCNError(f"empty field (a stray comma) in {part!r}")
        own.append((text, bare))
    count_match = _COUNT.fullmatch(fields[0])
    if count_match is None:
        raise ISCNError(f"cannot read the chromosome count {fields[0]!r} of {part!r} (e.g. 46, 45~48, 58<2n>)")
    low, high, ploidy = count_match.groups()
    low, high = int(low), int(high or low)
    if high < low or (high == low and count_match.group(2)):
        raise ISCNError(f"the count range {fields[0]!r} of {part!r} must run from low to high")
    if not own:
        raise ISCNError(f"no sex chromosome complement after the count in {part!r}")

    reference, sex_field = _REFERENCE.fullmatch(own[0][1]), False
    if reference:
        target = _resolve(reference, part, context)
        sex, constitution, whole, base = target.public.sex, target.constitution, True, \
            int(reference.group(3) or 1) * target.content
    elif re.fullmatch(r"[A-Za-z]+", own[0][1]) and own[0][1] != "inc":
        sex, sex_field = own[0][1], True
        if not re.fullmatch(r"(?=[XY])X*Y*c?", sex):
            raise ISCNError(f"sex chromosome complement {sex!r} in {part!r} is not valid: X and Y only, X first, "
                            f"e.g. XX, XY, XXY, X")
        whole, constitution, base = sex.endswith("c"), "", None
    else:
        sex, whole, constitution, base = "", False, "", None
    skip = 1 if reference or sex_field else 0
    items = [_abnormality(bare, f"{bare!r} of {part!r}", context) for _, bare in own[skip:]]

    for before, after in zip(items, items[1:]):
        if after.order < before.order:
            raise ISCNError(f"{after.text!r} must come before {before.text!r} in {part!r}: sex chromosomes first, "
                            f"then autosomes ascending; gains, losses, then structural changes of one chromosome; "
                            f"structural changes alphabetically")
    wholes = [(a.sign, a.chromosomes[0]) for a in items if not a.form and not a.constitutional]
    cancelled = sorted({c for s, c in wholes if s == "+"} & {c for s, c in wholes if s == "-"})
    if cancelled and not composite:
        raise ISCNError(f"gain and loss of chromosome {cancelled[0]} cancel out in {part!r}: outside a composite "
                        f"karyotype write neither")

    if base is None:  # the sex field is written here: check it and count from the ploidy level
        sets = int(ploidy) if ploidy else max(1, round((low + high) / 2 / 23))
        letters = sex.rstrip("c")
        lost = "".join(a.chromosomes[0] for a in items if not a.form and a.sign == "-" and a.chromosomes[0] in _SEX)
        carried = "".join("".join(a.carried_sex) for a in items)
        constitution = "".join(sorted(letters if whole else letters + carried + lost))
        if "X" not in constitution:
            raise ISCNError(f"no X chromosome in {part!r}")
        if lost and not whole and (len(constitution) != sets or 2 * constitution.count("X") < len(constitution)):
            raise ISCNError(f"{part!r}: the sex chromosomes before the loss would be {constitution}; write the "
                            f"remaining complement and the lost one, e.g. 45,X,-Y (mark a constitutional "
                            f"complement with c: 46,XXYc,-X)")
        base = len(letters) + 22 * sets
    deltas = [a.delta(whole) for a in items]
    content = base + sum(deltas)
    if composite:  # not every cell has every change: the count must be reachable by some of them
        reach = (base + sum(d for d in deltas if d < 0), base + sum(d for d in deltas if d > 0))
        agrees, gives = reach[0] <= high and low <= reach[1], f"{reach[0]}~{reach[1]}"
    else:
        agrees, gives = low <= content <= high, str(content)
    if not agrees:
        raise ISCNError(f"chromosome count {fields[0]} disagrees with the content of {part!r}, which gives {gives}")
    public = CellLine(low if low == high else (low, high), sex, tuple(text for text, _ in own[sex_field:]),
                      None if cells is None else int(cells), bool(composite))
    normal = not reference and not items and sex in ("XX", "XY")
    return _Line(public, content, constitution, reference and reference.group(1), normal)


def _resolve(reference: re.Match, part: str, context: _Context) -> _Line:
    """The line that idem (the first line), slN (the N-th line written out) or sdlN (the N-th sideline) means."""
    kind, number = reference.group(1), int(reference.group(2)) if reference.group(2) else None
    if not context.lines:
        raise ISCNError(f"{kind} in {part!r} refers to an earlier cell line; the first line must be written out")
    context.styles.add("idem" if kind == "idem" else "sl")
    if len(context.styles) > 1:
        raise ISCNError(f"idem and sl/sdl must not be mixed in one karyotype ({part!r})")
    if kind == "idem":
        candidates, index = context.lines[:1], 0 if number is None else -1
    elif kind == "sl":
        candidates = [line for line in context.lines if not line.reference]
        index = (1 if number is None else number) - 1
    else:
        candidates = [line for line in context.lines if line.reference in ("sl", "sdl")]
        index = len(candidates) - 1 if number is None else number - 1
    if not 0 <= index < len(candidates):
        raise ISCNError(f"{reference.group()} in {part!r} names no earlier cell line")
    return candidates[index]


def _check_lines(lines: list[_Line], prefix: str) -> None:
    """Rules across cell lines: cell counts, mos/chi, the normal line last, one person's sex unless chi."""
    written = [line.public for line in lines]
    if prefix and len(lines) < 2:
        raise ISCNError(f"'{prefix}' describes several cell lines; a single line cannot be one")
    if len(lines) > 1 and any(line.cells is None for line in written):
        missing = next(i for i, line in enumerate(written) if line.cells is None)
        raise ISCNError(f"cell line {missing + 1} has no cell count [n]; every line of a multi-line karyotype "
                        f"needs one")
    normal = [i for i, line in enumerate(lines) if line.normal]
    if normal and normal != list(range(len(lines) - len(normal), len(lines))):
        raise ISCNError(f"the normal line {written[normal[0]].count},{written[normal[0]].sex} must be the last")
    if len(normal) > 1 and (prefix != "chi" or len({written[i].sex for i in normal}) < len(normal)):
        raise ISCNError("several normal lines make sense only as a chimera of different sexes (chi 46,XY[n]/46,XX[n])")
    if normal and prefix != "chi":
        sex = written[normal[0]].sex
        for line in lines[:normal[0]]:  # a Y cannot appear in an XX person; an XY person's line can lose the Y
            if ("Y" in line.constitution) != (sex == "XY") and not (sex == "XY" and line.constitution == "X"):
                raise ISCNError(f"cell lines {line.constitution} and {sex} cannot come from one person: "
                                f"write 'chi ' before a chimera")


def parse_karyotype(text: str) -> Karyotype:
    """A karyotype string as its cell lines; raises ISCNError on anything invalid or outside the supported subset."""
    if not isinstance(text, str):
        raise ISCNError(f"a karyotype is a string, got {type(text).__name__}")
    text = text.translate(_PRINTED).strip()
    if not text:
        raise ISCNError("empty karyotype")
    if not text.isascii():
        raise ISCNError(f"unexpected character {next(c for c in text if not c.isascii())!r} in {text!r}")
    prefix = text[:3] if text.startswith(("mos", "chi")) else ""
    if prefix and not re.match(r"... \S", text):
        raise ISCNError(f"write {prefix!r} followed by one space in {text!r}")
    body = text[len(prefix) + bool(prefix):]
    if re.search(r"\s", body):
        raise ISCNError(f"spaces are not allowed inside a karyotype (only after mos/chi): {text!r}")
    for mark, name in (("?", "uncertain identification (?)"), ("//", "stem-cell transplant chimerism (//)")):
        if mark in body:
            raise ISCNError(f"{name} is not supported: {text!r}")
    context = _Context()
    for part in body.split("/"):
        context.lines.append(_parse_line(part, context))
    _check_lines(context.lines, prefix)
    return Karyotype(tuple(line.public for line in context.lines), prefix == "mos", prefix == "chi", text)


def validate_karyotype(text: str) -> str:
    """The normalised ASCII form of a valid karyotype string; raises ISCNError otherwise."""
    return parse_karyotype(text).text
