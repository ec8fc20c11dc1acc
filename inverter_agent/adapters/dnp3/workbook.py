"""Build the served point map from a utility's own IEEE 1815.2 point tables.

The IEEE 1815.2 Profile Companion Data Point Tables may not be redistributed, so
the project carries AN2018-001's map (:mod:`.points`) and this builder instead:
a utility reads its own copy (an ``.xlsx`` workbook, or a ``.csv`` exported from
one of its sheets) and writes the JSON file ``[dnp3] point_map`` serves.

What the gateway serves, and what each point carries of the core, stays the
built-in map's: the workbook cannot say that a point is the volt-var enable. The
workbook gives, for each address the gateway serves, the utility's name, event
class, multiplier, range and units. Matching is by address (kind and index):
IEEE 1815.2 kept AN2018-001's indices for configuration, functions, curves and
the system meter. Nothing is guessed:

- an address the workbook lacks is not served (and a readback or "supports"
  input of an output that is not served goes with it; an output whose readback
  is missing is served without one);
- if any cell of the curve edit buffer is missing, no curve point is served
  (a partial window could not hold a whole curve);
- the report lists every point whose name changed, so the operator sees what
  the workbook put at each address before serving it.

The IEEE 1815.2 workbook itself (sheets ``Key``, ``BO``, ``BI``, ``AO``, ``AI``,
``CTR``) is read by py1815's extractor, which checks its layout and resolves its
block-relative indices (``Meter_AI+3``) for one meter, one DER unit, one inverter
and no battery (``COMPOSITION``): the addresses this DER's points are served at.

Any other table: columns are found by their heading (case and spacing ignored), on
the first sheet that has them: the point's address either in one column (``AO88``) or as
a type column (``AO``, ``Analog Output``, or the DNP3 object group: 30 analog
input, 40 / 41 analog output, 1 binary input, 10 / 12 binary output, 20 counter)
beside an index column; a name column; and optionally the event class,
multiplier (scale), minimum, maximum and units.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .points import ROWS, Row, check

KINDS = ("AI", "BI", "AO", "BO", "CTR")

#: Normalized heading -> the field it fills.
HEADINGS: dict[str, str] = {
    "point": "address", "address": "address", "dnp3 point": "address",
    "type": "kind", "point type": "kind", "group": "kind", "object group": "kind",
    "kind": "kind",
    "index": "index", "point index": "index", "dnp3 index": "index",
    "name": "name", "point name": "name", "description": "name",
    "event class": "cls", "class": "cls", "default event class": "cls",
    "multiplier": "scale", "scale": "scale", "scaling": "scale", "scale factor": "scale",
    "min": "lo", "minimum": "lo", "min value": "lo",
    "max": "hi", "maximum": "hi", "max value": "hi",
    "units": "units", "unit": "units",
}
_GROUPS = {"30": "AI", "32": "AI", "34": "AI", "40": "AO", "41": "AO", "42": "AO",
           "1": "BI", "2": "BI", "10": "BO", "12": "BO", "20": "CTR", "21": "CTR", "22": "CTR"}
_WORDS = {"analog input": "AI", "analog output": "AO", "binary input": "BI",
          "binary output": "BO", "counter": "CTR", "binary counter": "CTR"}
_ADDRESS = re.compile(r"^(AI|AO|BI|BO|CTR)\s*(\d+)$")


@dataclass(frozen=True)
class Point:
    """One point of the workbook."""

    kind: str
    index: int
    name: str
    cls: int | None = None
    scale: float | None = None
    lo: float | None = None
    hi: float | None = None
    units: str | None = None
    #: Engineering value = transmitted x scale + offset; the map has no offset.
    offset: float = 0.0


#: What the gateway is, for the IEEE 1815.2 tables' repeating blocks.
COMPOSITION = {"meters": 1, "der_units": 1, "inverters": 1, "batteries": 0}


@dataclass
class Report:
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # address, old, new
    not_in_workbook: list[str] = field(default_factory=list)
    dropped_with: list[tuple[str, str]] = field(default_factory=list)  # address, because of
    not_served: int = 0

    def lines(self) -> list[str]:
        out = [f"{a}: {old!r} -> {new!r}" for a, old, new in self.renamed]
        if self.not_in_workbook:
            out.append("not in the workbook, not served: " + ", ".join(self.not_in_workbook))
        out += [f"{a}: not served ({why})" for a, why in self.dropped_with]
        out.append(f"{self.not_served} workbook point(s) the gateway does not serve")
        return out


def _norm(text: Any) -> str:
    return " ".join(str(text).replace("_", " ").replace("-", " ").split()).casefold()


def _kind(value: Any) -> str | None:
    text = _norm(value)
    up = text.upper()
    if up in KINDS:
        return up
    if text.rstrip("s") in _WORDS:
        return _WORDS[text.rstrip("s")]
    text = text.removeprefix("group ").removeprefix("g").strip()
    return _GROUPS.get(text.split("v")[0].strip())


def _number(value: Any) -> float | None:
    if value is None or str(value).strip() in ("", "-", "n/a", "N/A"):
        return None
    text = str(value).strip().lstrip("xX×").strip()
    return float(text)


def _class(value: Any) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    text = _norm(value).removeprefix("class").strip()
    if text in ("none", "0", "static", "-"):
        return 0
    n = int(float(text))
    if not 0 <= n <= 3:
        raise ValueError(f"event class {value!r}: expected 0 to 3")
    return n


def _columns(header: Sequence[Any]) -> dict[str, int] | None:
    cols: dict[str, int] = {}
    for i, cell in enumerate(header):
        name = HEADINGS.get(_norm(cell)) if cell is not None else None
        if name is not None and name not in cols:
            cols[name] = i
    has_address = "address" in cols or ("kind" in cols and "index" in cols)
    return cols if has_address and "name" in cols else None


def parse(rows: Iterable[Sequence[Any]]) -> list[Point]:
    """The points of one table: a heading row (found among the first rows), then points.
    Rows without an address (section headings, notes) are skipped."""
    it: Iterator[Sequence[Any]] = iter(rows)
    cols = None
    for _, header in zip(range(30), it, strict=False):
        cols = _columns(header)
        if cols is not None:
            break
    if cols is None:
        raise ValueError("no heading row with a point address (or type and index) and a name")
    points = []
    for row in it:
        def cell(name: str, row: Sequence[Any] = row) -> Any:
            i = cols.get(name)
            return row[i] if i is not None and i < len(row) else None
        if "address" in cols:
            m = _ADDRESS.match(str(cell("address") or "").strip().upper())
            if m is None:
                continue
            kind, index = m.group(1), int(m.group(2))
        else:
            kind = _kind(cell("kind")) if cell("kind") is not None else None
            raw = cell("index")
            if kind is None or raw is None or not str(raw).strip().isdigit():
                continue
            index = int(str(raw).strip())
        name = str(cell("name") or "").strip()
        if not name:
            raise ValueError(f"{kind}{index}: no name")
        units = cell("units")
        points.append(Point(kind, index, name, _class(cell("cls")), _number(cell("scale")),
                            _number(cell("lo")), _number(cell("hi")),
                            None if units in (None, "") else str(units).strip()))
    return points


def read(path: str, sheet: str | None = None) -> list[Point]:
    """The points of a workbook (``.xlsx``: ``sheet``, else every sheet that has the
    columns) or of a CSV file."""
    if path.lower().endswith(".csv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            return parse(list(csv.reader(f)))
    from py1815.profile import xlsx

    book = xlsx.load_workbook(path)
    if sheet is None and all(n in book.sheetnames for n in ("Key", *KINDS)):
        return read_tables(path)
    names = [sheet] if sheet is not None else book.sheetnames
    points: list[Point] = []
    for name in names:
        try:
            points += parse(book[name].iter_rows())
        except ValueError as exc:
            if sheet is not None or "no heading row" not in str(exc):
                raise ValueError(f"sheet {name!r}: {exc}") from None
    if not points:
        raise ValueError(f"{path}: no sheet with point addresses and names")
    return points


def read_tables(path: str) -> list[Point]:
    """The points of the IEEE 1815.2 workbook, at the indices this DER serves them at."""
    import pathlib

    from py1815.profile import extract, load
    from py1815.profile.model import Composition

    try:
        document = extract.extract(pathlib.Path(path))
        resolved = load.resolve(document, Composition(**COMPOSITION))
    except extract.ExtractionError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return [Point(p.kind.value, p.index, p.name, p.event_class, p.multiplier, p.minimum,
                  p.maximum, p.units, p.offset) for p in resolved.points.values()]


def build(points: Iterable[Point], base: tuple[Row, ...] = ROWS) -> tuple[tuple[Row, ...], Report]:
    """The served map: ``base``'s rows at the addresses the workbook has, with the
    workbook's names, classes, multipliers, ranges and units; and what changed."""
    book: dict[str, Point] = {}
    for p in points:
        addr = f"{p.kind}{p.index}"
        if addr in book:
            raise ValueError(f"{addr} appears twice in the workbook")
        book[addr] = p
    report = Report()
    served = {f"{r.kind}{r.index}" for r in base}
    report.not_served = len(set(book) - served)
    keep: dict[str, Row] = {}
    for row in base:
        addr = f"{row.kind}{row.index}"
        got = book.get(addr)
        if got is None:
            report.not_in_workbook.append(addr)
            continue
        if got.offset:
            report.dropped_with.append((addr, f"the workbook gives an offset ({got.offset:g})"))
            continue
        p = got
        if _norm(p.name) != _norm(row.name):
            report.renamed.append((addr, row.name, p.name))
        keep[addr] = replace(
            row, name=p.name, cls=row.cls if p.cls is None else p.cls,
            scale=row.scale if p.scale is None else p.scale,
            lo=row.lo if p.lo is None else p.lo, hi=row.hi if p.hi is None else p.hi,
            units=row.units if p.units is None else p.units)
    window = [f"{r.kind}{r.index}" for r in base if r.source.startswith("curve:")]
    if any(a not in keep for a in window):
        for a, r in list(keep.items()):
            if r.source.startswith(("curve:", "curve_ref:", "curve_state")):
                del keep[a]
                report.dropped_with.append((a, "the curve edit buffer is incomplete"))
    changed = True
    while changed:  # what depends on a point not served goes with it
        changed = False
        for a, r in list(keep.items()):
            if r.source in ("mirror", "supports"):
                other = r.pairs if r.source == "mirror" else r.enables
                if other is not None and other not in keep:
                    del keep[a]
                    report.dropped_with.append((a, f"{other} is not served"))
                    changed = True
            elif r.pairs is not None and r.pairs not in keep:
                keep[a] = replace(r, pairs=None)
    return check(tuple(keep.values())), report


def to_json(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The rows as ``[dnp3] point_map`` reads them (fields at their default left out)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Row)}
    return [{k: v for k, v in dataclasses.asdict(r).items()
             if k in ("kind", "index", "name", "source") or v != defaults[k]} for r in rows]
