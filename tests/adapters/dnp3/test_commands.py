"""The DNP3 CLI: the served point list and the Device Profile document generated from
the outstation ``run`` would serve (nothing listens, the inverter is never polled)."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET

from inverter_agent.adapters.dnp3 import commands, maps, points

NS = "{http://www.dnp.org/DNP3/DeviceProfile}"


def _args(tmp_path, **kw):
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[inverter]\nmodbus_tcp = \"127.0.0.1:1\"\n")
    return argparse.Namespace(config=str(cfg), **kw)


def test_the_point_list_is_the_map(tmp_path, capsys):
    assert commands.cmd_points(_args(tmp_path)) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == {f"{r.kind}{r.index}" for r in points.ROWS}


def test_the_device_profile_lists_the_served_points_and_the_refusal_statuses(tmp_path):
    xml = tmp_path / "profile.xml"
    assert commands.cmd_profile(_args(tmp_path, xml=str(xml))) == 0
    root = ET.parse(xml).getroot()
    assert root.tag == f"{NS}DNP3DeviceProfileDocument"
    indices = {int(e.text) for e in root.iter(f"{NS}index")}
    assert {r.index for r in points.ROWS} <= indices
    codes = {e.tag.removeprefix(NS) for s in root.iter(f"{NS}controlStatusCodesSupported")
             for e in s.iter() if e.tag.startswith(f"{NS}code")}
    assert {f"code{c}" for c in maps.REFUSALS.values()} <= codes


def test_the_device_profile_points_are_the_served_map_kind_by_kind(tmp_path):
    xml = tmp_path / "profile.xml"
    args = _args(tmp_path, xml=str(xml))
    assert commands.cmd_profile(args) == 0
    points_list = ET.parse(xml).getroot().find(f"{NS}referenceDevice/{NS}dataPointsList")
    assert points_list is not None
    tags = {"AI": "analogInput", "AO": "analogOutput", "BI": "binaryInput",
            "BO": "binaryOutput", "CTR": "counter"}
    in_xml = {(kind, int(p.findtext(f"{NS}index")), p.findtext(f"{NS}name"))
              for kind, tag in tags.items() for p in points_list.iter(f"{NS}{tag}")}
    served = {(kind, index, name) for kind, index, name, _scale, _cls
              in commands.served_rows(commands._outstation(args))}
    assert in_xml == served
