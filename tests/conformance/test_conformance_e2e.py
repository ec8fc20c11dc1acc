"""``inverter-agent conformance`` end to end against the simulated inverter.

The gateway's own Agent and Controller run in-process against a SimProcess over
Modbus TCP; the simulator's control channel is the grid source. Settings are
shortened (volt-var Tr 1 s, a few voltages, one trip region) so that each run
takes well under a minute; the report's JSON and HTML are checked.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inverter_agent.conformance.cli import main
from inverter_agent.conformance.svg import PASS_COLOUR, SVG_NS
from simulator import SimProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with SimProcess("--tau", "0.1", "--seed", "3") as proc:
        yield proc


@pytest.fixture
def fresh(sim: SimProcess) -> SimProcess:
    sim.control.reset()
    return sim


def _link(sim: SimProcess) -> list[str]:
    host, port = sim.control_address
    return ["--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--sim-control", f"{host}:{port}",
            "--log-level", "warning"]


class _Tags(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def _report(out: Path) -> tuple[dict, str, list[ET.Element]]:
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    tags = _Tags()
    tags.feed(html)
    tags.close()
    assert not tags.errors and not tags.stack, (tags.errors, tags.stack)
    assert "svg" in tags.seen and "table" in tags.seen
    assert "<script" not in html and "http://" not in html.replace(SVG_NS, "")  # self-contained
    svgs = [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", html, re.S)]
    assert svgs
    return doc, html, svgs


def _check_common(doc: dict, rc: int, names: list[str]) -> None:
    assert rc == (0 if doc["passed"] else 1)
    assert doc["software"]["package"] == "inverter-agent" and doc["software"]["version"]
    assert doc["profile"] == "rule21" and doc["poll_period_s"] == 0.1
    assert doc["inverter"]["w_rtg"] == 5000.0 and doc["inverter"]["v_nom"] == 240.0
    # the device under test as its model 1 names it (the simulator's)
    assert doc["device"]["Mn"] == "SunSim" and doc["device"]["Md"] == "SIM-5000"
    assert [p["name"] for p in doc["procedures"]] == names
    for p in doc["procedures"]:
        assert p["error"] is None
        assert p["passed"] == all(s["passed"] for s in p["steps"])
        assert p["samples"]["rows"] and p["settings"]["volt_var"]["curve"]
        for s in p["steps"]:
            for key in ("inputs", "expected", "measured", "low", "high", "passed", "timings",
                        "criterion", "unit"):
                assert key in s, key


def test_volt_var_5_14_4_end_to_end(fresh, tmp_path):
    out = tmp_path / "vv"
    volts = [1.05, 1.095, 0.95, 1.0]
    rc = main([*_link(fresh), "--procedures", "volt-var", "--vv-voltages",
               ",".join(map(str, volts)), "--out", str(out)])
    doc, html, svgs = _report(out)
    _check_common(doc, rc, ["volt-var"])
    (vv,) = doc["procedures"]
    # The exact settings under test: the profile with the procedure's overrides.
    assert vv["settings"]["volt_var"]["response_time_s"] == 1.0
    assert vv["settings"]["volt_var"]["enabled"] is True
    assert vv["settings"]["volt_watt"]["enabled"] is False
    assert vv["overrides"]["procedure"]["volt_watt.enabled"] is False
    assert vv["curve"] == [[0.92, 44.0], [0.98, 0.0], [1.02, 0.0], [1.08, -44.0]]
    steady = [s for s in vv["steps"] if "steady state" in s["step"]]
    assert [s["inputs"]["v_set_pu"] for s in steady] == volts
    for s, q in zip(steady, [-22.0, -44.0, 22.0, 0.0], strict=True):
        assert s["expected"] == pytest.approx(q, abs=1.0)  # measured V is the grid's
        assert s["passed"], s  # Q on the curve within 1.5 MRA after 2 Tr
    responses = [s for s in vv["steps"] if "open-loop" in s["step"]]
    assert len(responses) == 4  # every step changes Q by more than 2 MRA
    for s in responses:
        # the gateway's filter reaches 90 % at Tr; poll latency and the plant add a little
        # (and a loaded machine more: the upper bound only tells Tr 1 s from the
        # profile's own, longer one)
        assert 0.8 <= s["measured"] <= 2.5, s
        assert s["passed"] == (s["measured"] <= s["high"])
    # The curve plot: one point per steady-state step, green where it passed.
    curve_svg = svgs[0]
    circles = curve_svg.findall(f".//{{{SVG_NS}}}circle")
    assert len(circles) == len(steady)
    assert {c.get("fill") for c in circles} == {PASS_COLOUR}
    assert "Volt-var characteristic" in curve_svg.find(f"{{{SVG_NS}}}title").text
    assert "5.14.4" in html


def test_voltage_trip_5_4_end_to_end(fresh, tmp_path):
    out = tmp_path / "trip"
    rc = main([*_link(fresh), "--procedures", "voltage-trip", "--trip-regions", "HV2",
               "--out", str(out)])
    doc, html, svgs = _report(out)
    _check_common(doc, rc, ["voltage-trip"])
    (vt,) = doc["procedures"]
    cease, stays = vt["steps"]
    assert cease["inputs"]["region"] == "HV2" and cease["inputs"]["step_to"] == 1.22
    t = cease["timings"]
    assert t["clearing_time_s"] == 0.16 and t["limit_s"] == pytest.approx(0.26)
    # ceased, by HV2 (0.16 s), not HV1 (13 s); the figure itself is in make bench
    assert 0.0 < t["first_ceased_s"] < 1.0
    assert t["resolution_s"] == pytest.approx(0.1, abs=0.05)
    # The backup trip fired on the first poll that read the stepped voltage (HV2's
    # 0.16 s is shorter than two poll periods + latency, so it does not wait), and it
    # was logged during that poll: between its start and its completed sample. The
    # simulator applies a step at its next plant step (<= 50 ms), so that poll can
    # start, and the trip come, a few ms after the step: no lower bound beyond zero.
    trip = t["gateway_trip_command_s"]
    assert 0.0 < trip < 1.0
    rows = [dict(zip(vt["samples"]["columns"], r, strict=True)) for r in vt["samples"]["rows"]]
    seen = next(r for r in rows if r["valid"] and r["t_s"] >= t["t_step_s"]
                and r["v_pu"] >= 1.2)
    assert seen["t_read_s"] - 0.002 <= t["t_step_s"] + trip <= seen["t_s"] + 0.002, seen
    assert cease["passed"] == (t["last_energizing_s"] <= t["limit_s"])
    assert stays["passed"], stays  # a trip: it stays out after the grid returns
    assert any("one poll period" in n and "backup" in n for n in vt["notes"])
    assert any(e["kind"] == "trip" for e in vt["events"])
    # Time-series plots: V, P, Q, energizing with the clearing-time marker.
    assert len(svgs) == 4
    labels = [x.text for x in svgs[0].iter(f"{{{SVG_NS}}}text")]
    assert "clearing 0.16 s" in labels


def test_constant_pf_5_14_3_runs_without_a_grid_source(fresh, tmp_path):
    out = tmp_path / "pf"
    rc = main(["--modbus-tcp", f"127.0.0.1:{fresh.tcp_port}", "--procedures", "constant-pf",
               "--log-level", "warning", "--out", str(out)])
    doc, html, _ = _report(out)
    _check_common(doc, rc, ["constant-pf"])
    assert doc["grid_source"] is None
    header = html.split("<table", 2)[1]  # the header table: names, not raw JSON
    assert "SunSim SIM-5000" in header and "{" not in header
    (pf,) = doc["procedures"]
    assert len(pf["steps"]) == 8 and rc == 0, [s for s in pf["steps"] if not s["passed"]]


def test_auto_poll_period_uses_the_gateways_link_timing(fresh, tmp_path):
    """--poll-period auto (the default over RTU) runs at the period the gateway chooses
    for the link, as `run` does, and the report says which."""
    out = tmp_path / "auto"
    rc = main(["--modbus-tcp", f"127.0.0.1:{fresh.tcp_port}", "--procedures", "constant-pf",
               "--poll-period", "auto", "--log-level", "warning", "--out", str(out)])
    doc, html, _ = _report(out)
    assert rc == 0 and doc["poll_period_auto"] is True
    assert 0.05 <= doc["poll_period_s"] <= 1.0
    assert "chosen by the gateway for this link" in html


def test_grid_stepping_procedures_are_refused_without_a_grid_source(tmp_path, capsys):
    rc = main(["--modbus-tcp", "127.0.0.1:9", "--procedures", "volt-var,constant-pf",
               "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "volt-var" in err and "controllable grid source" in err and "constant-pf" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv,words", [
    (["--set", "volt_var.response_time_s=0.1"], "response_time_s"),
    (["--set", "no_such.key=1"], "no_such"),
    (["--procedures", "volt-var,bogus"], "bogus"),
    (["--simulate", "--modbus-tcp", "127.0.0.1:9"], "--simulate"),
])
def test_bad_arguments_stop_before_anything_starts(argv, words, tmp_path, capsys):
    base = [] if "--simulate" in argv else ["--modbus-tcp", "127.0.0.1:9", "--sim-control",
                                            "127.0.0.1:9"]
    assert main([*base, *argv, "--out", str(tmp_path / "x")]) == 2
    assert words in capsys.readouterr().err


def test_an_unreachable_inverter_fails_fast_and_still_writes_a_report(tmp_path, monkeypatch):
    from inverter_agent.conformance import bench

    monkeypatch.setattr(bench, "LINK_TIMEOUT_S", 1.0)
    out = tmp_path / "dead"
    rc = main(["--modbus-tcp", "127.0.0.1:9", "--procedures", "constant-pf,constant-pf",
               "--log-level", "error", "--out", str(out)])
    assert rc == 1
    doc, _, _ = _report_json_only(out)
    first, second = doc["procedures"]
    assert "inverter unreachable" in first["error"] and not first["passed"]
    assert second["error"].startswith("not run: inverter unreachable")


def _report_json_only(out: Path) -> tuple[dict, str, list]:
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    tags = _Tags()
    tags.feed(html)
    assert not tags.errors, tags.errors
    return doc, html, []
