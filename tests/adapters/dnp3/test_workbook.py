"""``inverter-agent dnp3-map``: the point map built from a utility's own point tables.

The IEEE 1815.2 workbook may not be redistributed, so each test writes a small
synthetic one (SpreadsheetML parts zipped by hand, as a spreadsheet program saves
them) from the built-in map, with the changes a utility's copy may carry.
"""

from __future__ import annotations

import argparse
import csv
import json
import zipfile
from xml.sax.saxutils import escape

from inverter_agent.adapters.dnp3 import commands, points, workbook

KIND_WORDS = {"AI": "Analog Input", "AO": "Analog Output", "BI": "Binary Input",
              "BO": "Binary Output", "CTR": "Counter"}
HEADING = ["Type", "Index", "Point Name", "Default Event Class", "Multiplier", "Units"]


def _table(drop=(), rename=None, cls=None, scale=None) -> list[list[object]]:
    """The built-in map as a utility's table: a title, the heading, a section row."""
    rename, cls, scale = rename or {}, cls or {}, scale or {}
    out: list[list[object]] = [["Utility DER point list (synthetic)"], [], HEADING,
                               ["Configuration"]]
    for r in points.ROWS:
        a = f"{r.kind}{r.index}"
        if a in drop:
            continue
        out.append([KIND_WORDS[r.kind], r.index, rename.get(a, r.name), cls.get(a, r.cls),
                    scale.get(a, "" if r.scale is None else r.scale), r.units or ""])
    return out


def _col(n: int) -> str:
    return chr(ord("A") + n)


def _xlsx(path, sheets: dict[str, list[list[object]]]) -> None:
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/></Types>'))
        z.writestr("xl/workbook.xml", (
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>' + "".join(
                f'<sheet name="{escape(n)}" sheetId="{i}" r:id="rId{i}"/>'
                for i, n in enumerate(sheets, 1)) + "</sheets></workbook>"))
        z.writestr("xl/_rels/workbook.xml.rels", (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
            'relationships">' + "".join(
                f'<Relationship Id="rId{i}" Type="{rel}/worksheet" '
                f'Target="worksheets/sheet{i}.xml"/>' for i in range(1, len(sheets) + 1))
            + "</Relationships>"))
        for i, rows in enumerate(sheets.values(), 1):
            cells = []
            for r, row in enumerate(rows, 1):
                cs = "".join(
                    f'<c r="{_col(c)}{r}"><v>{v}</v></c>' if isinstance(v, int | float)
                    else f'<c r="{_col(c)}{r}" t="inlineStr"><is><t>{escape(str(v))}</t></is></c>'
                    for c, v in enumerate(row) if v != "")
                cells.append(f'<row r="{r}">{cs}</row>')
            z.writestr(f"xl/worksheets/sheet{i}.xml",
                       f'<worksheet xmlns="{main}"><sheetData>{"".join(cells)}'
                       "</sheetData></worksheet>")


def _build(tmp_path, book) -> tuple[int, list[dict]]:
    out = tmp_path / "map.json"
    args = argparse.Namespace(workbook=str(book), sheet=None, out=str(out))
    rc = commands.cmd_map(args)
    return rc, json.loads(out.read_text()) if out.exists() else []


def test_a_workbook_renames_reclasses_and_leaves_out_points(tmp_path, capsys):
    limit = next(r for r in points.ROWS if r.source == "setting:active_power_limit.p_limit_pct")
    vv_enable = next(r for r in points.ROWS if r.kind == "BO" and r.function == "volt_var")
    dropped = {limit.pairs, f"BO{vv_enable.index}"}
    book = tmp_path / "utility.xlsx"
    _xlsx(book, {"Notes": [["This sheet has no point list"]],
                 "DER points": _table(drop=dropped,
                                      rename={"AO88": "Max Active Power Setpoint"},
                                      cls={"AI537": 1}, scale={"AI537": 10})})
    rc, data = _build(tmp_path, book)
    assert rc == 0
    rows = {f"{r.kind}{r.index}": r for r in points.load(str(tmp_path / "map.json"))}
    assert len(rows) == len(data)
    assert rows["AO88"].name == "Max Active Power Setpoint"
    assert rows["AO88"].pairs is None  # its readback is not in the workbook
    assert (rows["AI537"].cls, rows["AI537"].scale) == (1, 10.0)
    assert rows["AI537"].source == "reading:W"  # what a point carries stays the gateway's
    gone = {a for a, r in ((f"{r.kind}{r.index}", r) for r in points.ROWS)
            if r.pairs == f"BO{vv_enable.index}" or r.enables == f"BO{vv_enable.index}"}
    assert gone and not (gone | dropped) & set(rows)
    assert set(rows) == {f"{r.kind}{r.index}" for r in points.ROWS} - dropped - gone
    said = capsys.readouterr().out
    assert "AO88: " in said and "Max Active Power Setpoint" in said
    assert f"BO{vv_enable.index}" in said and f"wrote {tmp_path / 'map.json'}" in said


def test_the_outstation_serves_the_built_map(tmp_path, capsys):
    book = tmp_path / "utility.xlsx"
    _xlsx(book, {"Points": _table(drop={"AI546"}, rename={"AI536": "Grid Frequency"})})
    assert _build(tmp_path, book)[0] == 0
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[inverter]\nmodbus_tcp = "127.0.0.1:1"\n'
                   f'[dnp3]\npoint_map = "{tmp_path / "map.json"}"\n')
    capsys.readouterr()
    assert commands.cmd_points(argparse.Namespace(config=str(cfg), markdown=False)) == 0
    listed = {line.split(maxsplit=1)[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "AI546" not in listed and listed["AI536"].endswith("Grid Frequency")
    assert set(listed) == {f"{r.kind}{r.index}" for r in points.ROWS} - {"AI546"}


def test_an_incomplete_curve_buffer_serves_no_curve_point(tmp_path):
    book = tmp_path / "utility.xlsx"
    _xlsx(book, {"Points": _table(drop={"AO260"})})
    assert _build(tmp_path, book)[0] == 0
    rows = points.load(str(tmp_path / "map.json"))
    assert not [r for r in rows if r.source.startswith(("curve:", "curve_ref:", "curve_state"))]
    assert any(r.source == "setting:volt_var.enabled" for r in rows)


def test_a_csv_export_with_addresses_in_one_column(tmp_path):
    path = tmp_path / "utility.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Point", "Name", "Class"])
        for r in points.ROWS:
            w.writerow([f"{r.kind}{r.index}", r.name, f"Class {r.cls}" if r.cls else "None"])
    rc, data = _build(tmp_path, path)
    assert rc == 0 and len(data) == len(points.ROWS)


def test_a_table_that_is_not_a_point_list_is_refused_and_nothing_written(tmp_path, capsys):
    book = tmp_path / "other.xlsx"
    _xlsx(book, {"Sheet1": [["Budget", "2026"], ["Q1", 10]]})
    rc, data = _build(tmp_path, book)
    assert rc == 2 and data == []
    assert "no sheet with point addresses" in capsys.readouterr().out
    dup = tmp_path / "dup.csv"
    dup.write_text("Point,Name\nAO88,a\nAO88,b\n")
    assert _build(tmp_path, dup)[0] == 2
    assert not (tmp_path / "map.json").exists()


def test_group_numbers_and_words_name_the_kind():
    for text, kind in (("Analog Outputs", "AO"), ("g41v2", "AO"), ("Group 30", "AI"),
                       ("BO", "BO"), ("Counter", "CTR"), ("12", "BO")):
        assert workbook._kind(text) == kind, text


def _cdpt(meter_start: int = 536) -> dict[str, list[list[object]]]:
    """A synthetic workbook in the IEEE 1815.2 tables' layout (py1815's extractor checks
    it): two header rows per sheet, absolute indices, the system meter's analog inputs
    block-relative (``Meter_AI+n``) from the Key sheet's meter block start."""
    from py1815.profile.extract import _HEADERS

    meter = [r for r in points.ROWS if r.kind == "AI" and 536 <= r.index <= 556]
    pad: list[object] = [""] * 8  # the Key's table sits in columns I to P
    key: list[list[object]] = [["Key"]]
    for label in ("Configuration & Control", "Functions", "Curves", "System Meter",
                  "Extensions beyond", "Gap #1", "Schedules (2 items)",
                  "Schedule Status (2 items)", "Schedules (4 items)",
                  "Schedule Status (4 items)"):
        key.append([*pad, label, "", "", 0, 0, 0, 0, 0])
    for label, start, ai in (("Meters", meter_start, 21), ("DER Units", 10000, 0),
                             ("Inverters", 11000, 0), ("Batteries", 12000, 0)):
        key += [[*pad, label, "", start], [*pad, "per unit", "", "", 0, 0, 0, ai, 0]]
    for label, start in (("Experimental", 5000), ("Vendor Points", 6000),
                         ("Start Index Points", 65000), ("Maximum Index", 65535)):
        key.append([*pad, label, "", start])
    sheets: dict[str, list[list[object]]] = {"Key": key}
    for kind, headers in _HEADERS.items():
        rows: list[list[object]] = [[text for _field, text in headers], [],
                                    ["", "A section heading"]]
        for r in points.ROWS:
            if r.kind != kind:
                continue
            index = f"Meter_AI+{r.index - 536}" if r in meter else f"{kind}{r.index}"
            values = {"index": index, "name": r.name, "event_class": r.cls,
                      "minimum": "" if r.lo is None else r.lo,
                      "maximum": "" if r.hi is None else r.hi,
                      "multiplier": "" if r.scale is None else r.scale,
                      "units": r.units or "", "frozen": "Yes"}
            rows.append([values.get(field, "") for field, _text in headers])
        if kind == "AI":
            rows += [["", "Auto Discovery Index Points"], ["AI65000", "Reserved"]]
        sheets[kind] = rows
    return sheets


def test_the_ieee_1815_2_layout_is_read_with_its_block_relative_meter(tmp_path, capsys):
    book = tmp_path / "1815.2 tables.xlsx"
    _xlsx(book, _cdpt())
    rc, data = _build(tmp_path, book)
    assert rc == 0, capsys.readouterr().out
    rows = {f"{r.kind}{r.index}": r for r in points.load(str(tmp_path / "map.json"))}
    assert set(rows) == {f"{r.kind}{r.index}" for r in points.ROWS}
    assert rows["AI537"].source == "reading:W" and rows["AI537"].scale == 1.0
    # the meter block elsewhere: its points resolve to other addresses, not served here
    _xlsx(book, _cdpt(meter_start=700))
    assert _build(tmp_path, book)[0] == 0
    rows = {f"{r.kind}{r.index}" for r in points.load(str(tmp_path / "map.json"))}
    assert "AI537" not in rows and "AO88" in rows
    assert "AI537" in capsys.readouterr().out  # said: not in the workbook, not served
