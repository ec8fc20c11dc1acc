"""Issue 22: every immediate control the gateway writes carries the inverter's revert
timer where it has one, and the gateway re-arms it while it runs.

The controller runs against a stand-in of the HAL's named interface that keeps a
revert timer the way SunSpec 123 / 704 define it: a control written starts its
timer with the timer's value at that moment, and a timer that runs out returns
the control to the device's own setting. (The same paths over real sockets and
processes: tests/e2e/test_revert.py.)
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal.inverter import CONTROL_NAMES, REVERT_TIMERS, Capabilities
from hal.transport import DeviceException
from inverter_agent import config
from inverter_agent.core.controller import (
    REVERT_AUTO_MAX_S,
    REVERT_AUTO_MIN_S,
    Controller,
    revert_time,
)
from inverter_agent.core.events import EventLog
from inverter_agent.functions import ReactiveMode, Setpoints, get_profile
from tests.core.test_stand_aside import good_snapshot

TIMERS = sorted(set(REVERT_TIMERS.values()))
#: The enable (or Conn) of each timer's group and the value that holds a command.
HOLDS = {"Conn_RvrtTms": ("Conn", False), "WMaxLimPct_RvrtTms": ("WMaxLim_Ena", True),
         "OutPFSet_RvrtTms": ("OutPFSet_Ena", True), "VArPct_RvrtTms": ("VArPct_Ena", True)}


class TimedDevice:
    """Named controls with SunSpec revert timers (time is set by the test)."""

    def __init__(self, without: frozenset[str] = frozenset(), refuse: frozenset[str] = frozenset()):
        self.connected = True
        self.device = object()
        self.controls = tuple(n for n in CONTROL_NAMES if n not in without)
        self.refuse = refuse
        self.now = 0.0
        self.values: dict[str, object] = {}
        self.started: dict[str, tuple[float, float]] = {}  # timer -> (written at, seconds)
        self.writes: list[dict] = []
        self.reverted: list[tuple[float, str]] = []

    def capabilities(self) -> Capabilities:
        return Capabilities(True, True, True, self.controls, (1, 103, 120, 121, 123))

    def native_functions(self):
        return ()

    def write_controls(self, changes):
        if self.refuse & set(changes):
            raise DeviceException(16, 3, 0, 1)
        self.tick(self.now)
        self.writes.append(dict(changes))
        for k, v in changes.items():  # timers first, as the HAL writes them
            if k in TIMERS:
                self.values[k] = v
        for k, v in changes.items():
            if k in TIMERS:
                continue
            self.values[k] = v
            tm = REVERT_TIMERS.get(k)
            if tm in self.controls and self.values.get(tm):
                self.started[tm] = (self.now, float(self.values[tm]))  # type: ignore[arg-type]

    def tick(self, t: float) -> None:
        """Timers that ran out revert their group to the device's own settings."""
        for tm, (at, secs) in list(self.started.items()):
            if t >= at + secs:
                del self.started[tm]
                en, held = HOLDS[tm]
                if self.values.get(en) is held:
                    self.values[en] = not held
                    self.reverted.append((t, tm))

    def holding(self, tm: str) -> bool:
        en, held = HOLDS[tm]
        return self.values.get(en) is held


def _controller(dev: TimedDevice, period: float, timeout: float | str = "auto") -> Controller:
    return Controller(dev, get_profile("rule21"), EventLog(None), control_period_s=period,
                      revert_timeout=timeout)


setpoints = st.builds(
    Setpoints, connect=st.booleans(),
    p_limit_pct=st.floats(0.0, 100.0, allow_nan=False),
    reactive_mode=st.sampled_from(list(ReactiveMode)),
    pf=st.floats(0.8, 1.0, allow_nan=False), pf_absorbing=st.booleans(),
    q_pct=st.floats(-100.0, 100.0, allow_nan=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.lists(st.tuples(setpoints, st.integers(1, 40)), min_size=1, max_size=25),
       period=st.sampled_from([0.05, 0.2, 1.0, 5.0]),
       timeout=st.one_of(st.just("auto"), st.floats(15.0, 120.0)),
       without=st.frozensets(st.sampled_from(TIMERS)))
def test_every_written_control_has_its_timer_armed_and_never_runs_out_while_running(
        seq, period, timeout, without):
    dev = TimedDevice(without=without)
    c = _controller(dev, period, timeout)
    snap = good_snapshot()
    t = 0.0
    for sp, cycles in seq:
        for _ in range(cycles):
            dev.now = t
            dev.tick(t)
            c._write(sp, snap, t)
            t += period
    assert dev.writes, "nothing written"
    for w in dev.writes:
        for k in w:
            tm = REVERT_TIMERS.get(k)
            if tm is None:
                continue
            if tm in without:
                assert tm not in w  # never written to a device that lacks it
            else:
                # Armed, with the configured time, when the control was written.
                assert dev.values.get(tm) == c.revert_s > 0
    # While the gateway runs, no timer ever runs out.
    assert dev.reverted == []
    # Stopped: every control that holds a command and has a timer returns to the
    # device's own setting within the revert time; those without a timer stay.
    held = [tm for tm in TIMERS if dev.holding(tm)]
    dev.tick(t + c.revert_s)
    for tm in held:
        assert dev.holding(tm) is (tm in without), tm


def test_the_revert_time_follows_the_poll_period_within_its_bounds():
    assert revert_time("auto", 0.1) == REVERT_AUTO_MIN_S
    assert revert_time("auto", 4.0) == 40
    assert revert_time("auto", 60.0) == REVERT_AUTO_MAX_S
    assert revert_time(10.0, 0.2) == 10
    assert revert_time(10.0, 5.0) == 15  # never fewer than three poll periods
    assert revert_time(2.5, 0.1) == 3  # whole seconds, rounded up


def test_a_period_chosen_while_running_changes_the_timers_written():
    dev = TimedDevice()
    c = _controller(dev, 0.25)
    sp = Setpoints(connect=True, p_limit_pct=20.0)
    c._write(sp, good_snapshot(), 0.0)
    assert dev.values["WMaxLimPct_RvrtTms"] == REVERT_AUTO_MIN_S
    c.set_control_period(5.0)
    c._write(sp, good_snapshot(), 1.0)
    assert dev.values["WMaxLimPct_RvrtTms"] == 50


def test_a_device_that_refuses_a_timer_still_gets_the_control_and_status_says_so():
    dev = TimedDevice(refuse=frozenset({"VArPct_RvrtTms"}))
    c = _controller(dev, 0.2)
    sp = Setpoints(connect=True, p_limit_pct=20.0, reactive_mode=ReactiveMode.CONSTANT_Q,
                   q_pct=30.0)
    c._write(sp, good_snapshot(), 0.0)
    assert dev.values["WMaxLimPct"] == 20.0 and dev.values["VArPct_Ena"] is True
    assert "VArPct_RvrtTms" not in dev.values
    assert any("var setpoint" in n for n in c._no_revert_notes())
    c._write(sp, good_snapshot(), 20.0)  # a refresh re-arms the limit, asks no var timer
    assert dev.writes[-1] == {"WMaxLimPct": 20.0, "WMaxLim_Ena": True,
                              "WMaxLimPct_RvrtTms": c.revert_s}


def test_status_names_the_controls_without_a_timer():
    dev = TimedDevice(without=frozenset({"Conn_RvrtTms", "WMaxLimPct_RvrtTms"}))
    c = _controller(dev, 0.2)
    c.cycle(good_snapshot(), 0.0)
    notes = " ".join(c.status.notes)
    assert "a cease to energize" in notes and "the active power limit" in notes
    assert "var setpoint" not in notes


def test_a_cease_is_never_delayed_by_a_refresh():
    dev = TimedDevice()
    c = _controller(dev, 0.2)
    c._write(Setpoints(connect=True, p_limit_pct=20.0), good_snapshot(), 0.0)
    c._write(Setpoints(connect=False, p_limit_pct=0.0), good_snapshot(), 20.0)  # refresh due
    assert set(dev.writes[-1]) == {"Conn", "WMaxLimPct"}
    c._write(Setpoints(connect=False, p_limit_pct=0.0), good_snapshot(), 20.2)
    assert dev.writes[-1]["Conn"] is False and "Conn_RvrtTms" in dev.writes[-1]  # next cycle


def test_a_clean_stop_lifts_a_cease_only_where_it_has_no_timer():
    for without, lifted in ((frozenset(), False), (frozenset({"Conn_RvrtTms"}), True)):
        dev = TimedDevice(without=without)
        c = _controller(dev, 0.2)
        c._write(Setpoints(connect=False, p_limit_pct=0.0), good_snapshot(), 0.0)
        assert dev.values["Conn"] is False
        c.on_stop()
        assert dev.values["Conn"] is (True if lifted else False)


def test_a_clean_stop_lifts_a_cease_cut_short_by_the_stop():
    """A cease reaching one model of two when the stop cancels the link: lifted all the same."""
    dev = TimedDevice(without=frozenset({"Conn_RvrtTms"}))
    c = _controller(dev, 0.2)
    c._write(Setpoints(connect=True, p_limit_pct=100.0), good_snapshot(), 0.0)
    dev.refuse = frozenset({"Conn"})  # the write carrying the cease fails
    c._write(Setpoints(connect=False, p_limit_pct=0.0), good_snapshot(), 0.2)
    assert c.status.written["Conn"] is True  # not known to have landed
    dev.refuse = frozenset()
    c.on_stop()
    assert dev.writes[-1] == {"Conn": True}


@pytest.mark.parametrize("text,words", [
    ('[functions]\nrevert_timeout = 1\n', ["revert_timeout", "2.0 <= value <= 3600.0"]),
    ('[functions]\nrevert_timeout = "soon"\n', ["revert_timeout", "'auto'"]),
    ('[agent]\npoll_period = 2.0\n[functions]\nrevert_timeout = 5\n',
     ["revert_timeout", "three poll periods", "6.0 <= value <= 3600.0"]),
])
def test_revert_timeout_is_validated_with_its_allowed_range(tmp_path, text, words):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.load(str(path))
    for w in words:
        assert w in str(info.value)


def test_revert_timeout_defaults_to_auto_and_takes_seconds(tmp_path):
    assert config.load(None)["functions.revert_timeout"] == "auto"
    path = tmp_path / "agent.toml"
    path.write_text("[functions]\nrevert_timeout = 45\n")
    assert math.isclose(config.load(str(path))["functions.revert_timeout"], 45.0)
