"""The site meter at the connection point and an export limit held with it.

The gateway is built by the composition root (``App``) against the simulator in
its own process (Modbus TCP on loopback): an inverter at unit 1 and a SunSpec
meter at the point of common coupling (``--meter``: the site load minus the
inverter's output). The loop's cycle is driven here, as ``supervise`` does it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hal.reading import Reading
from inverter_agent import app as app_mod
from inverter_agent import config
from inverter_agent.core.arbitration import UtilityControl
from inverter_agent.core.meter import judge
from inverter_agent.functions.export_limit import CLOSED_LOOP, FALLBACK, export_cap
from simulator import SimProcess

LIMIT_W = 1000.0
#: How close the export is held to the limit once settled (W): the simulated
#: inverter's output follows a new limit with a 0.5 s time constant.
TOLERANCE_W = 100.0


# -- the pure parts ----------------------------------------------------------------------
def test_the_cap_is_the_limit_plus_the_site_load():
    # Meter: 500 W imported, inverter 2000 W: load 2500 W; export 1000 W -> cap 3500 W.
    cap = export_cap(1000.0, 500.0, 2000.0, 5000.0)
    assert cap.mode == CLOSED_LOOP and cap.load_w == 2500.0 and cap.cap_w == 3500.0
    # Exporting 1500 W (meter -1500) with 2000 W made: load 500 W -> cap 1500 W.
    assert export_cap(1000.0, -1500.0, 2000.0, 5000.0).cap_w == 1500.0
    # Never above the ratings, never below zero.
    assert export_cap(1000.0, 9000.0, 0.0, 5000.0).cap_w == 5000.0
    assert export_cap(0.0, -3000.0, 2000.0, 5000.0).cap_w == 0.0
    assert export_cap(None, 1.0, 1.0).cap_w is None


@pytest.mark.parametrize("site_w, gen_w, why", [
    (None, 2000.0, None), (100.0, None, None), (100.0, 2000.0, "meter link down")])
def test_without_usable_data_the_limit_is_a_generation_limit(site_w, gen_w, why):
    cap = export_cap(LIMIT_W, site_w, gen_w, 5000.0, why_invalid=why)
    assert cap.mode == FALLBACK and cap.cap_w == LIMIT_W
    assert "applied as a generation limit" in cap.reason


def test_stale_and_implausible_meter_readings_are_invalid():
    now = 1000.0
    good = {"W": Reading.good(-800.0, now), "VA": Reading.good(820.0, now),
            "Hz": Reading.good(50.0, now)}
    out, why = judge(good, now, 5.0, 1e5)
    assert why is None and all(r.quality.good for r in out.values())
    out, why = judge(good, now + 6.0, 5.0, 1e5)
    assert why is not None and not out["W"].quality.good  # old data
    out, why = judge({**good, "W": Reading.good(2e5, now)}, now, 5.0, 1e5)
    assert why is not None and "out_of_range" in str(out["W"].quality)
    out, why = judge({**good, "VA": Reading.good(100.0, now)}, now, 5.0, 1e5)
    assert why is not None and "inconsistent" in str(out["W"].quality)
    out, _ = judge({**good, "Hz": Reading.good(0.0, now)}, now, 5.0, 1e5)
    assert not out["Hz"].quality.good


# -- the whole gateway against the simulator ---------------------------------------------
@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with SimProcess("--meter", "2:203", "--dc", "4500", "--tau", "0.3",
                    "--meter-tcp", "127.0.0.1:0") as s:
        yield s


def _app(sim: SimProcess, tmp_path, meter: bool, only: tuple[str, ...] = (),
         **extra: object) -> app_mod.App:
    cfg = config.load(None, {"inverter.modbus_tcp": f"127.0.0.1:{sim.tcp_port}",
                             "agent.state_dir": str(tmp_path / "state"),
                             "agent.poll_period": 0.1, "inverter.timeout": 0.1,
                             "agent.dead_retry": 0.5,
                             "meter.enabled": meter, "meter.unit": 2 if meter else None,
                             "meter.model": 203 if meter else None, **extra})
    return app_mod.App(cfg, only=only)


def _cycle(app: app_mod.App) -> None:
    app.runner.cycle()
    for hook in app.runner.after_cycle:
        hook()


def _settle(app: app_mod.App, sim: SimProcess, ok, timeout: float = 15.0) -> dict:
    """Cycle until ``ok(meter state)`` holds for 1 s running (bounded in time)."""
    deadline = time.monotonic() + timeout
    held_since = None
    state = {}
    while time.monotonic() < deadline:
        _cycle(app)
        state = sim.control.state()["units"]["2"]["meter"]
        if ok(state):
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= 1.0:
                return state
        else:
            held_since = None
        time.sleep(0.1)
    raise AssertionError(f"not settled within {timeout} s: meter {state}, "
                         f"site {app.site_meter.status_view()}")


def _export(state: dict) -> float:
    return -state["w"]


def test_with_a_site_meter_the_export_is_held_at_the_limit_as_the_load_varies(sim, tmp_path):
    sim.control.reset()
    app = _app(sim, tmp_path, meter=True)
    try:
        schedule = app.core.schedule("test")
        for load in (1000.0, 2500.0, 300.0):
            sim.control.set_load(load)
            if schedule.default() is None:
                _settle(app, sim, lambda st: _export(st) > LIMIT_W + 1000)  # unlimited first
                schedule.set_default(UtilityControl(export_limit_w=LIMIT_W))
            st = _settle(app, sim, lambda st: abs(_export(st) - LIMIT_W) <= TOLERANCE_W)
            view = app.site_meter.view()
            assert view is not None and view.export_limit["mode"] == CLOSED_LOOP
            assert view.health == 1 and view.alarm is None
            # The inverter makes the load plus the limit (not the limit alone).
            inverter_w = sim.control.state()["units"]["1"]["plant"]["w"]
            assert inverter_w == pytest.approx(load + LIMIT_W, abs=TOLERANCE_W + 50)
            assert st["load_w"] == load
        # The meter's readings in the cycle's view, import positive (export negative).
        site = app.site_meter.view()
        assert site.good("W") == pytest.approx(-LIMIT_W, abs=TOLERANCE_W + 50)
        assert site.good("Hz") == pytest.approx(60.0) and site.good("PhVphA") == 240.0
        # A meter link lost: its data turns invalid, the limit falls back to a
        # generation limit (export at most the limit less the load), with an alarm.
        sim.control.fault("silent", unit=2)
        st = _settle(app, sim, lambda st: app.site_meter.cap.mode == FALLBACK
                     and sim.control.state()["units"]["1"]["plant"]["w"] <= LIMIT_W + 20)
        view = app.site_meter.view()
        assert not view.link_up and not view.readings["W"].quality.good
        assert view.health == 3 and "applied as a generation limit" in view.alarm
        assert _export(st) <= LIMIT_W - 300.0 + 20  # the 300 W load is not credited
        events = (tmp_path / "state" / "events.jsonl").read_text()
        assert "applied as a generation limit" in events
        # Back: the loop closes again.
        sim.control.fault("none")
        _settle(app, sim, lambda st: abs(_export(st) - LIMIT_W) <= TOLERANCE_W
                and app.site_meter.cap.mode == CLOSED_LOOP)
    finally:
        sim.control.fault("none")
        app.stop()


def test_without_a_site_meter_an_export_limit_is_a_generation_limit(sim, tmp_path):
    sim.control.reset()
    sim.control.set_load(800.0)
    app = _app(sim, tmp_path, meter=False)
    try:
        assert app.site_meter.view() is None
        app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
        st = _settle(app, sim, lambda st: sim.control.state()["units"]["1"]["plant"]["w"]
                     <= LIMIT_W + 20)
        # Export = generation - load <= limit - load: below the limit, never above.
        assert _export(st) <= LIMIT_W - 800.0 + 20
        assert app.site_meter.cap.mode == FALLBACK
    finally:
        app.stop()


def test_a_meter_on_a_link_of_its_own(sim, tmp_path):
    sim.control.reset()
    app = _app(sim, tmp_path, meter=True, **{
        "meter.link": "own", "meter.modbus_tcp": "{}:{}".format(*sim.meter_tcp)})
    try:
        assert app.site_meter.meter.transport is not app.agents[0].inverter.transport
        for _ in range(20):  # bounded: a few cycles at most
            _cycle(app)
            if app.site_meter.link_up:
                break
            time.sleep(0.05)
        view = app.site_meter.view()
        truth = sim.control.state()["units"]["2"]["meter"]["w"]
        assert view.link_up and view.good("W") == pytest.approx(truth, abs=30.0)
    finally:
        app.stop()


def test_auto_poll_period_counts_the_meter_read_on_the_inverters_link(sim, tmp_path):
    """The meter read on the inverter's link (the default) after every cycle counts in
    the busy time the automatic poll period is chosen from; a meter of its own does not."""
    sim.control.reset()
    shared = _app(sim, tmp_path / "shared", meter=True, **{"agent.poll_period": "auto"})
    own = _app(sim, tmp_path / "own", meter=True, **{
        "agent.poll_period": "auto", "meter.link": "own",
        "meter.modbus_tcp": "{}:{}".format(*sim.meter_tcp)})
    try:
        rate = shared.agents[0].poll_rate
        assert rate is not None and [n for n, _ in rate.sharers] == ["site meter"]
        assert own.agents[0].poll_rate is not None and not own.agents[0].poll_rate.sharers
        for _ in range(40):  # bounded: the choice comes after a few cycles
            _cycle(shared)
            if rate.choice is not None:
                break
        choice = rate.choice
        assert choice is not None, "no poll period chosen in 40 cycles"
        # The meter's reads were measured and are in the busy time the period came from.
        assert shared.site_meter.poll_ms_max > 0.0
        assert 0.0 < choice.shared_busy_s <= shared.site_meter.poll_ms_max / 1e3
        assert "site meter" in choice.reason
    finally:
        shared.stop()
        own.stop()


@pytest.mark.parametrize("body, says", [
    ("[meter]\nenabled = true\n", "[meter] unit: required"),
    ("[meter]\nenabled = true\nunit = 300\n", "[meter] unit"),
    ("[meter]\nenabled = true\nunit = 2\nmodel = 103\n", "one of 201, 202"),
    ("[meter]\nenabled = true\nunit = 1\n", "is inverter INV1's unit"),
    ("[meter]\nenabled = true\nunit = 2\nlink = \"own\"\n", "give modbus_tcp or modbus_rtu"),
    ("[meter]\nenabled = true\nunit = 2\nmodbus_tcp = \"127.0.0.1:1502\"\n",
     "set link = 'own'"),
    ("[meter]\nenabled = true\nunit = 2\nname = \"INV1\"\n", "already inverter INV1"),
    ("[meter]\nenabled = true\nunit = 2\nw_positive = \"up\"\n", "'import', 'export'"),
])
def test_a_bad_meter_section_stops_the_gateway_with_file_key_and_range(tmp_path, body, says):
    path = tmp_path / "agent.toml"
    path.write_text('[inverter]\nmodbus_tcp = "127.0.0.1:502"\n' + body)
    with pytest.raises(config.ConfigError) as exc:
        config.load(str(path))
    assert str(path) in str(exc.value) and says in str(exc.value), str(exc.value)


@pytest.mark.parametrize("w_positive, mode", [("import", FALLBACK), ("export", CLOSED_LOOP)])
def test_a_meter_signed_the_other_way_is_caught_by_its_energy_counters(tmp_path, w_positive,
                                                                       mode):
    """A SolarEdge-style meter (export positive) configured as import positive would make
    an export look like load and lift the cap to full output; its own energy counters
    say which way the energy goes, so W is inconsistent and the limit falls back."""
    with SimProcess("--meter-profile", "solaredge-203", "--dc", "4500", "--tau", "0.3") as s:
        app = _app(s, tmp_path, meter=True, **{"meter.w_positive": w_positive})
        app.site_meter.meter.full_every_s = 0.5  # counters read often: a short test
        try:
            app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and app.site_meter.cap.mode != mode:
                _cycle(app)
                time.sleep(0.1)
            if mode == FALLBACK:
                _settle(app, s, lambda st: s.control.state()["units"]["1"]["plant"]["w"]
                        <= LIMIT_W + 20 and app.site_meter.cap.mode == FALLBACK)
                assert "w_positive" in app.site_meter.view().alarm
                assert "inconsistent" in str(app.site_meter.view().readings["W"].quality)
            else:
                _settle(app, s, lambda st: abs(_export(st) - LIMIT_W) <= TOLERANCE_W
                        and app.site_meter.cap.mode == CLOSED_LOOP)
                assert app.site_meter.view().alarm is None
        finally:
            app.stop()


def test_the_export_limit_in_force_is_served_at_the_pcc_over_mms(sim, tmp_path):
    """DPCC1.AreaEpsWMax shows the export limit held at the PCC, MMXU1.TotW the export
    held at it (import positive: -limit), read over loopback by py61850 (a pure-Python
    MMS client, so it may share the gateway's process)."""
    py61850 = pytest.importorskip("py61850")
    from tests.e2e.conftest import free_port

    sim.control.reset()
    sim.control.set_load(1200.0)
    port = free_port()
    app = _app(sim, tmp_path, meter=True, only=("mms",),
               **{"mms.enabled": True, "mms.host": "127.0.0.1", "mms.port": port})
    app.start()
    try:
        app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
        _settle(app, sim, lambda st: abs(_export(st) - LIMIT_W) <= TOLERANCE_W)
        _cycle(app)  # publishes the view

        def first(v):
            return first(v[0]) if isinstance(v, list) else v

        with py61850.MmsClient("127.0.0.1", port, timeout=10) as c:
            wmax = first(c.read_value("GWSITE", "DPCC1$SP$AreaEpsWMax$setMag"))
            tot = first(c.read_value("GWSITE", "MMXU1$MX$TotW$mag"))
            health = first(c.read_value("GWSITE", "LLN0$ST$Health$stVal"))
        assert wmax == pytest.approx(LIMIT_W)
        assert tot == pytest.approx(-LIMIT_W, abs=TOLERANCE_W + 50)
        assert health == 1
    finally:
        app.stop()


def test_a_meter_that_cannot_be_measuring_the_inverters_is_not_used():
    from inverter_agent.core.meter import topology_problem

    now = 1.0
    three = {"ACType": Reading.good("three", now), "Hz": Reading.good(60.0, now)}
    assert topology_problem(three, [three]) is None
    single = {"ACType": Reading.good("single", now), "Hz": Reading.good(60.0, now)}
    assert "single-phase meter cannot measure a three-phase" in topology_problem(single,
                                                                                 [three])
    assert topology_problem(three, [single]) is None  # a 1-phase inverter on a 3-phase site
    other_grid = {"ACType": Reading.good("three", now), "Hz": Reading.good(50.0, now)}
    assert "not the same grid" in topology_problem(other_grid, [three])


def test_a_single_phase_meter_on_a_three_phase_site_falls_back(tmp_path):
    with SimProcess("--meter", "2:201", "--dc", "4500") as s:
        app = _app(s, tmp_path, meter=True, **{"meter.model": 201})
        try:
            app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
            _settle(app, s, lambda st: app.site_meter.cap.mode == FALLBACK
                    and s.control.state()["units"]["1"]["plant"]["w"] <= LIMIT_W + 20)
            assert "single-phase meter" in app.site_meter.view().alarm
        finally:
            app.stop()


def test_status_says_what_the_site_meter_reads_and_how_the_export_limit_is_held(sim,
                                                                                tmp_path):
    from inverter_agent.cli import _site_meter_text

    sim.control.reset()
    app = _app(sim, tmp_path, meter=True)
    try:
        app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
        for _ in range(5):
            _cycle(app)
        text = _site_meter_text(app.site_meter.status_view())
        assert text.startswith("site meter      SITE unit 2 model 203, link up: -")
        assert "W (export, good)" in text and "export limit 1000 W, closed_loop" in text
        sim.control.fault("silent", unit=2)
        _cycle(app)
        down = _site_meter_text(app.site_meter.status_view())
        assert "LINK DOWN" in down and "generation_limit" in down and "ALARM:" in down
    finally:
        sim.control.fault("none")
        app.stop()


def test_the_cap_moves_in_steps_rounded_down():
    # 5 kW of inverters, 25 W steps: a load wandering by a few W keeps the same cap,
    # and the cap is never above limit + load.
    caps = {export_cap(1000.0, -2000.0 + d, 3000.0, 5000.0, step_w=25.0).cap_w
            for d in (0.0, 3.0, 7.0, 11.0)}
    assert caps == {2000.0}
    assert export_cap(1000.0, -1990.0, 3000.0, 5000.0, step_w=25.0).cap_w == 2000.0
    assert export_cap(1000.0, -1980.0, 3000.0, 5000.0, step_w=25.0).cap_w == 2000.0
    assert export_cap(1000.0, -1970.0, 3000.0, 5000.0, step_w=25.0).cap_w == 2025.0


# -- a disagreement must persist before it invalidates the meter -------------------------
def _meter_reads_until(app: app_mod.App, ok, timeout: float = 3.0, pace: float = 0.0) -> int:
    """Read the meter alone (the inverters' snapshot stays as it was) until ``ok()``,
    one read every ``pace`` s as the loop would; how many reads it took (bounded in
    count and time)."""
    deadline = time.monotonic() + timeout
    for n in range(1, 500):
        app.site_meter.cycle()
        if ok():
            return n
        if time.monotonic() > deadline:
            break
        time.sleep(pace)
    raise AssertionError(f"meter reads never satisfied the condition: "
                         f"{app.site_meter.status_view()}")


def _closed_loop_at_60_hz(sim: SimProcess, tmp_path) -> app_mod.App:
    sim.control.reset()
    sim.control.set_load(1000.0)
    app = _app(sim, tmp_path, meter=True)
    app.core.schedule("test").set_default(UtilityControl(export_limit_w=LIMIT_W))
    _settle(app, sim, lambda st: app.site_meter.cap.mode == CLOSED_LOOP)
    return app


def test_a_frequency_disagreement_in_one_read_does_not_drop_the_meter(sim, tmp_path):
    """The grid's frequency steps between the inverter's read and the meter's: the one
    read in which they disagree by more than 0.5 Hz is a grid event, not another grid."""
    app = _closed_loop_at_60_hz(sim, tmp_path)
    try:
        app.runner.cycle()  # the inverter reads 60 Hz
        sim.control.set_grid(f_hz=60.6)
        _meter_reads_until(app, lambda: app.site_meter.readings["Hz"].value
                           == pytest.approx(60.6))
        assert app.agents[0].last_snapshot["Hz"].value == pytest.approx(60.0)
        assert app.site_meter.cap.mode == CLOSED_LOOP, app.site_meter.cap.reason
        assert app.site_meter.why_invalid is None and app.site_meter.view().alarm is None
        for _ in range(5):  # the inverter reads 60.6 Hz too: nothing to say
            _cycle(app)
            assert app.site_meter.cap.mode == CLOSED_LOOP, app.site_meter.cap.reason
        assert app.agents[0].last_snapshot["Hz"].value == pytest.approx(60.6)
    finally:
        sim.control.reset()
        app.stop()


def test_a_frequency_disagreement_held_over_reads_drops_the_meter(sim, tmp_path):
    """The meter reads another frequency than the inverter, read after read, for longer
    than any ride-through ramp lasts: it is not on the inverters' grid."""
    from inverter_agent.core.meter import HZ_PERSIST_S

    app = _closed_loop_at_60_hz(sim, tmp_path)
    try:
        app.runner.cycle()  # the inverter reads 60 Hz, and is not read again
        sim.control.set_grid(f_hz=60.6)
        _meter_reads_until(app, lambda: app.site_meter.readings["Hz"].value
                           == pytest.approx(60.6))
        t0 = time.monotonic()
        reads = _meter_reads_until(app, lambda: app.site_meter.cap.mode == FALLBACK,
                                   timeout=HZ_PERSIST_S + 3.0, pace=0.1)
        assert reads >= 2 and time.monotonic() - t0 >= HZ_PERSIST_S - 0.2
        assert "not the same grid" in app.site_meter.view().alarm
        assert "inconsistent" in str(app.site_meter.readings["W"].quality)
        _settle(app, sim, lambda st: app.site_meter.cap.mode == CLOSED_LOOP)  # both 60.6
    finally:
        sim.control.reset()
        app.stop()


def test_frequency_check_needs_two_reads_over_two_seconds():
    from inverter_agent.core.meter import HzCheck

    inverter = [{"Hz": Reading.good(60.0, 0.0)}]

    def meter(hz: float) -> dict:
        return {"Hz": Reading.good(hz, 0.0)}

    check = HzCheck()
    # A 3 Hz/s ramp read 200 ms late, for as long as a ride-through ramp lasts: kept.
    assert all(check.update(meter(60.6), inverter, t / 10) is None for t in range(12))
    assert check.update(meter(60.0), inverter, 1.2) is None  # agree: start again
    assert check.update(meter(50.0), inverter, 2.0) is None
    assert check.update(meter(50.0), inverter, 3.0) is None
    assert "not the same grid" in check.update(meter(50.0), inverter, 4.0)


def _sign_window(check, t: float, w: float, seconds: int, net_wh: float,
                 counters: list[float]) -> str | None:
    """W held for ``seconds`` (read each second, counters not read), then the counters
    read having moved by ``net_wh`` (imported - exported); what the check says then."""
    for s in range(1, seconds):
        check.update({"W": Reading.good(w, t + s)}, t + s)
    counters[0 if net_wh > 0 else 1] += abs(net_wh)
    now = t + seconds
    return check.update({"W": Reading.good(w, now), "TotWhImp": Reading.good(counters[0], now),
                         "TotWhExp": Reading.good(counters[1], now)}, now)


def _sign_check(w: float = 1000.0):
    from inverter_agent.core.meter import SignCheck

    check, counters = SignCheck(), [1000.0, 1000.0]
    check.update({"W": Reading.good(w, 0.0), "TotWhImp": Reading.good(1000.0, 0.0),
                  "TotWhExp": Reading.good(1000.0, 0.0)}, 0.0)
    return check, counters


def test_a_single_sign_disagreement_does_not_drop_the_meter():
    # W says 10 Wh imported, the counters 10 Wh exported, once: then they agree.
    check, counters = _sign_check()
    assert _sign_window(check, 0.0, 1000.0, 36, -10.0, counters) is None
    assert _sign_window(check, 36.0, 1000.0, 36, 10.0, counters) is None
    # Near zero export, a few Wh the wrong way (below 5 Wh) is no verdict: the window
    # grows until W and the counters both moved more than noise explains.
    check, counters = _sign_check(-400.0)
    assert _sign_window(check, 0.0, -400.0, 36, 6.0, counters) is None  # W -4, net +6
    assert _sign_window(check, 36.0, 1000.0, 36, 10.0, counters) is None  # W +6, net +16
    assert check.disagreed == 0


def test_a_sign_disagreement_at_two_comparisons_in_a_row_drops_the_meter():
    check, counters = _sign_check()
    assert _sign_window(check, 0.0, 1000.0, 36, -10.0, counters) is None
    assert "w_positive" in _sign_window(check, 36.0, 1000.0, 36, -10.0, counters)
    # It stays until they agree again (W of 10 W moves too little to say either way).
    assert "w_positive" in _sign_window(check, 72.0, 10.0, 36, -10.0, counters)
    assert _sign_window(check, 108.0, 1000.0, 72, 30.0, counters) is None  # W +20, net +20
