"""The point map as data and the [dnp3] section, checked before anything listens."""

from __future__ import annotations

import json

import pytest

from inverter_agent import config
from inverter_agent.adapters.dnp3 import maps, points
from inverter_agent.functions import FUNCTIONS


def test_the_built_in_map_is_consistent_and_every_output_has_its_readback():
    rows = points.check(points.ROWS)
    by_addr = {f"{r.kind}{r.index}": r for r in rows}
    for row in rows:
        if row.kind in ("AO", "BO"):
            assert row.source.split(":")[0] in ("setting", "curve", "curve_ref", "timeout"), row
            back = by_addr[row.pairs]  # every output is read back by its paired input
            assert back.pairs == f"{row.kind}{row.index}" and back.source == "mirror"
            # a function's output names it; the curve buffer's cells belong to none
            assert row.function in {f.name for f in FUNCTIONS} \
                or (row.function is None and row.source.startswith("curve:")), row
        if row.source == "supports":
            assert by_addr[row.enables].kind == "BO"


def test_offered_functions_are_the_ones_the_map_commands():
    commanded = {r.function for r in points.ROWS if r.kind in ("AO", "BO") and r.function}
    assert set(maps.OFFERED) == commanded
    assert not set(maps.OFFERED) & set(maps.NOT_OFFERED)


@pytest.mark.parametrize(("rows", "error"), [
    ([{"kind": "AI", "index": 1, "name": "a", "source": "reading:W"},
      {"kind": "AI", "index": 1, "name": "b", "source": "reading:VA"}], "twice"),
    ([{"kind": "BI", "index": 69, "name": "a", "source": "mirror", "pairs": "BO17"}],
     "lacks"),
    ([{"kind": "XX", "index": 1, "name": "a", "source": "reading:W"}], "unknown kind"),
    ([{"kind": "AI", "index": 1, "name": "a", "source": "reading:W", "colour": "red"}],
     "unknown field"),
])
def test_a_broken_point_map_file_is_refused(tmp_path, rows, error):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=error):
        points.load(str(path))


def test_a_point_map_file_replaces_the_built_in_one(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps([{"kind": "AI", "index": 7, "name": "W", "source": "reading:W",
                                 "scale": 1, "cls": 3}]))
    (row,) = points.load(str(path))
    assert (row.kind, row.index, row.source, row.cls) == ("AI", 7, "reading:W", 3)


def test_dnp3_is_off_by_default_and_its_keys_are_validated():
    cfg = config.load(None, {})
    assert cfg["dnp3.enabled"] is False and cfg["dnp3.port"] == 20000
    assert cfg["dnp3.host"] == "127.0.0.1"
    for bad in ({"dnp3.port": 0}, {"dnp3.outstation_address": 0xFFFF},
                {"dnp3.event_buffer": 1}):
        with pytest.raises(config.ConfigError):
            config.load(None, bad)


def test_without_the_functions_no_output_is_served_and_supports_says_so(tmp_path):
    from py1815.profile import Kind

    from inverter_agent import app as app_mod
    from tests.e2e.conftest import free_port

    cfg = config.load(None, {"inverter.modbus_tcp": f"127.0.0.1:{free_port()}",
                             "agent.state_dir": str(tmp_path), "mms.enabled": False,
                             "functions.enabled": False, "dnp3.enabled": True,
                             "dnp3.port": free_port()})
    app = app_mod.App(cfg)
    try:
        outstation = app.adapters[0].outstation
        assert outstation.served(Kind.AO) == [] and outstation.served(Kind.BO) == []
        served_bi = {p.index for p in outstation.served(Kind.BI)}
        assert {69, 80, 81, 29}.isdisjoint(served_bi)  # no readback of an unserved output
        assert {36, 47, 48} <= served_bi
        assert all(outstation._reading(p).value is False
                   for p in outstation.served(Kind.BI) if p.index in (36, 47, 48))
    finally:
        app.stop(1.0)
