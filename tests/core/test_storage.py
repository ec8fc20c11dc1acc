"""Storage in the controller: the battery setpoint reaches model 124 through the HAL's
named interface; charging is normal operation; a battery not understood means no
storage command and an alarm, never a stand-aside of the grid functions."""

from __future__ import annotations

import dataclasses
import time

import pytest

from hal.inverter import CONTROL_NAMES, Capabilities, Inverter
from hal.reading import GOOD, NOT_IMPLEMENTED, Reading
from hal.transport import TcpTransport
from inverter_agent.core import storage as storage_core
from inverter_agent.core.controller import Controller
from inverter_agent.core.events import EventLog
from inverter_agent.core.view import HEALTH_ALARM, HEALTH_OK
from inverter_agent.functions import ReactiveMode, get_profile
from inverter_agent.functions.set_active_power import SetActivePowerSettings
from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from tests.core.test_stand_aside import RecordingInverter, good_snapshot


class HybridInverter(RecordingInverter):
    """The recording stand-in with model 124: storage commands recorded apart."""

    def __init__(self) -> None:
        super().__init__()
        self.storage: list[tuple[float | None, int | None]] = []
        self.restores: list[dict | None] = []

    def capabilities(self) -> Capabilities:
        return Capabilities(True, True, True, CONTROL_NAMES, (1, 103, 120, 121, 123, 124),
                            storage=True)

    def storage_window(self):
        return None  # not readable: a release writes StorCtl_Mod 0

    def write_storage(self, w, revert_s=None, restore=None):
        self.storage.append((w, revert_s))
        self.restores.append(restore)


def g(x) -> Reading:
    return Reading(x, GOOD, 0.0)


def hybrid_snapshot(w: float = -3000.0, soc: float | None = 50.0, held: float | None = None,
                    **extra) -> dict[str, Reading]:
    s = good_snapshot(w=w)
    s.update({"StorSoC": g(soc) if soc is not None else Reading(None, NOT_IMPLEMENTED, 0.0),
              "StorWhRtg": g(10000.0), "StorWChaMax": g(5000.0), "StorWDisChaMax": g(4000.0),
              "StorRsvPct": g(20.0), "StorSoCMax": g(95.0), "StorCtl_Mod": g(3 if held else 0),
              "StorW": g(w), "StorCtlW": g(held) if held is not None
              else Reading(None, NOT_IMPLEMENTED, 0.0), "StorAlarms": g(()),
              "StorWhAvail": g(3000.0), "StorChaSt": g(4 if w < 0 else 3)})
    s.update(extra)
    return s


def hybrid(tmp_path, **storage) -> tuple[Controller, HybridInverter]:
    s = get_profile("rule21")
    if storage:
        s = dataclasses.replace(s, set_active_power=SetActivePowerSettings(**storage))
    inv = HybridInverter()
    return Controller(inv, s, EventLog(None), control_period_s=0.2), inv


def run(c: Controller, snapshot, seconds: float = 2.0, t0: float = 0.0):
    sp, t = None, t0
    while t <= t0 + seconds:
        sp = c.cycle(snapshot, t)
        t += 0.2
    return sp


def test_charging_raises_no_alarm_no_stand_aside_no_curtailment(tmp_path):
    c, inv = hybrid(tmp_path, enabled=True, w=-3000.0)
    sp = run(c, hybrid_snapshot(w=-3000.0))
    assert c.status.standing_aside is None and c.status.alarms == ()
    assert c.health == HEALTH_OK
    assert sp.connect and sp.p_limit_pct == 100.0  # no curtailment
    assert sp.storage_w == -3000.0
    assert inv.storage[0] == (-3000.0, c.revert_s)  # with the revert timer
    assert not any(w.get("Conn") is False for w in inv.writes)


def test_the_same_setpoint_is_not_rewritten_every_cycle_but_refreshed(tmp_path):
    c, inv = hybrid(tmp_path, enabled=True, w=-3000.0)
    run(c, hybrid_snapshot(w=-3000.0, held=-3000.0), seconds=2.0)
    assert len(inv.storage) == 1
    run(c, hybrid_snapshot(w=-3000.0, held=-3000.0), seconds=c.revert_s, t0=2.2)
    assert 2 <= len(inv.storage) <= 1 + 4  # refreshed a few times per revert time


def test_a_window_the_device_lost_is_written_again(tmp_path):
    c, inv = hybrid(tmp_path, enabled=True, w=2000.0)
    run(c, hybrid_snapshot(w=2000.0, held=2000.0), seconds=0.4)
    n = len(inv.storage)
    run(c, hybrid_snapshot(w=0.0, held=None), seconds=0.6, t0=0.6)  # released by the device
    assert len(inv.storage) > n and inv.storage[-1][0] == 2000.0


def test_missing_soc_no_storage_command_an_alarm_the_functions_run_on(tmp_path):
    c, inv = hybrid(tmp_path, enabled=True, w=2000.0)
    run(c, hybrid_snapshot(w=2000.0), seconds=0.4)
    assert inv.storage[-1][0] == 2000.0
    sp = run(c, hybrid_snapshot(w=2000.0, soc=None), seconds=1.0, t0=1.0)
    assert inv.storage[-1] == (None, c.revert_s)  # the window this run set is released
    assert c.status.standing_aside is None and sp is not None and sp.storage_w is None
    assert any("state of charge missing" in a for a in c.status.alarms)
    assert c.health == HEALTH_ALARM
    n = len(inv.storage)
    run(c, hybrid_snapshot(w=0.0, soc=None), seconds=1.0, t0=2.2)
    assert len(inv.storage) == n  # released once, not every cycle
    run(c, hybrid_snapshot(w=0.0, soc=60.0), seconds=0.4, t0=3.4)
    assert c.status.alarms == () and inv.storage[-1][0] == 2000.0  # understood again


@pytest.mark.parametrize(("name", "value", "why"), [
    ("StorSoC", 140.0, "state of charge 140 % implausible"),
    ("StorWhRtg", 0.0, "energy capacity 0 Wh implausible"),
    ("StorWChaMax", None, "charge / discharge rate not stated"),
])
def test_implausible_storage_is_named(name, value, why):
    s = hybrid_snapshot()
    s[name] = g(value) if value is not None else Reading(None, NOT_IMPLEMENTED, 0.0)
    state, problem = storage_core.assess(s, 5000.0)
    assert state is None and why in problem


def test_a_device_that_only_reports_storage_raises_no_alarm():
    s = hybrid_snapshot(soc=None)
    del s["StorCtl_Mod"]  # no model 124: nothing to command
    assert storage_core.assess(s, 5000.0) == (None, None)


def test_standing_aside_releases_the_battery_too(tmp_path):
    c, inv = hybrid(tmp_path, enabled=True, w=-3000.0)
    run(c, hybrid_snapshot(), seconds=0.4)
    bad = hybrid_snapshot(Hz=Reading(None, NOT_IMPLEMENTED, 0.0))
    run(c, bad, seconds=0.4, t0=1.0)
    assert c.status.standing_aside is not None
    assert inv.storage[-1][0] is None


def test_the_view_carries_the_battery_and_the_setpoint(tmp_path):
    c, _ = hybrid(tmp_path, enabled=True, w=9000.0)  # beyond the 4 kW discharge rate
    s = hybrid_snapshot(w=4000.0, held=4000.0)
    sp = run(c, s, seconds=0.4)
    v = storage_core.storage_view(s, 5000.0, sp.storage_w, sp.storage_cause,
                                  c.status.storage_problem)
    d = v.as_dict()
    assert d["soc_pct"] == 50.0 and d["wh_rtg"] == 10000.0 and d["w"] == 4000.0
    assert d["avail_cha_w"] == 5000.0 and d["avail_dis_w"] == 4000.0
    assert d["setpoint_w"] == 4000.0 and "discharge rate" in d["setpoint_cause"]
    assert d["problem"] is None and d["controllable"] is True
    assert storage_core.storage_view(good_snapshot()) is None  # no storage model


def test_reactive_setpoints_unchanged_while_charging(tmp_path):
    c0, _ = hybrid(tmp_path)
    c1, _ = hybrid(tmp_path, enabled=True, w=-3000.0)
    s = hybrid_snapshot(w=-3000.0, PhVphA=g(250.0), PhVphB=g(250.0), PhVphC=g(250.0))
    a, b = run(c0, s), run(c1, s)
    assert a.reactive_mode is ReactiveMode.CONSTANT_Q and a.q_pct != 0.0  # volt-var acting
    assert (a.reactive_mode, a.q_pct, a.pf) == (b.reactive_mode, b.q_pct, b.pf)
    assert b.storage_w == -3000.0 and a.storage_w is None


@pytest.mark.parametrize("timer", [True, False])
def test_a_clean_stop_releases_a_window_only_without_a_revert_timer(tmp_path, timer):
    c, inv = hybrid(tmp_path, enabled=True, w=-2000.0)
    s = hybrid_snapshot(w=-2000.0)
    s["InOutWRte_RvrtTms"] = g(30) if timer else Reading(None, NOT_IMPLEMENTED, 0.0)
    run(c, s, seconds=0.4)
    n = len(inv.storage)
    c.on_stop()
    if timer:  # the device reverts by itself; a restart within it re-asserts without a gap
        assert len(inv.storage) == n
    else:
        assert inv.storage[-1] == (None, None)


# -- the device's own 124 window (an owner's or a home energy manager's limit) comes back


def cycle_until(c: Controller, inv: Inverter, done, timeout: float = 10.0,
                drop: str | None = None) -> None:
    """Controller cycles on fresh polls of the real HAL until ``done()`` (bounded;
    ``drop``: that reading made missing)."""
    end = time.monotonic() + timeout
    for _ in range(500):
        snap = dict(inv.poll())
        snap["link"] = Reading(True, GOOD, time.time())  # what the agent adds
        if drop is not None:
            snap[drop] = Reading(None, NOT_IMPLEMENTED, time.time())
        c.cycle(snap, time.monotonic())
        if done() or time.monotonic() > end:
            break
    assert done()


def test_an_own_window_not_read_releases_with_storctl_mod_0_and_says_so_once(tmp_path, caplog):
    c, inv = hybrid(tmp_path, enabled=True, w=-3000.0)

    def fails():
        raise ConnectionError("no answer")

    inv.storage_window = fails
    for t0 in (0.0, 2.0):  # two holds and releases in one discovery
        run(c, hybrid_snapshot(), seconds=0.4, t0=t0)
        run(c, hybrid_snapshot(soc=None), seconds=0.4, t0=t0 + 1.0)
        assert inv.storage[-1] == (None, c.revert_s) and inv.restores[-1] is None
    assert len([r for r in caplog.records if "own window" in r.getMessage()]) == 1


WINDOW = ("StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms")


# StorCtl_Mod 0 at a clean stop: the window is held until its revert timer runs out,
# as before (test_a_clean_stop_releases_a_window_only_without_a_revert_timer).
@pytest.mark.parametrize(("end", "own_mod", "own_in"), [
    ("release", 1, 50.0), ("stand aside", 1, 50.0), ("stop", 1, 50.0),
    ("release", 0, 80.0), ("stand aside", 0, 80.0)])
def test_the_devices_own_window_comes_back_when_the_gateway_lets_go(end, own_mod, own_in):
    with SimProcess("--profile", str(PROFILE_DIR / "hybrid-124-only.json"), "--dc", "0",
                    "--tau", "0.2") as sim:
        sim.control.set_point(124, "StorCtl_Mod", own_mod)  # the owner's charge limit
        sim.control.set_point(124, "InWRte", own_in)
        own = {p: sim.control.get_point(124, p) for p in WINDOW}
        inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port))
        rule21 = get_profile("rule21")
        on = dataclasses.replace(rule21, set_active_power=SetActivePowerSettings(
            enabled=True, w=-2000.0))
        c = Controller(inv, on, EventLog(None), control_period_s=0.2)
        cycle_until(c, inv, lambda: sim.control.get_point(124, "StorCtl_Mod") == 3)
        assert sim.control.get_point(124, "InWRte") != own_in  # the gateway's window
        if end == "release":
            c.apply_settings(rule21)
            cycle_until(c, inv, lambda: sim.control.get_point(124, "StorCtl_Mod") != 3)
        elif end == "stand aside":
            cycle_until(c, inv, lambda: c.status.standing_aside is not None,
                        drop="Hz")  # a measurement not understood
        else:  # its own StorCtl_Mod 1: not left to the revert timer (that writes 0)
            c.on_stop()
        assert {p: sim.control.get_point(124, p) for p in WINDOW} == own


def test_an_owner_change_while_the_gateway_holds_nothing_is_what_goes_back_next():
    with SimProcess("--profile", str(PROFILE_DIR / "hybrid-124-only.json"), "--dc", "0",
                    "--tau", "0.2") as sim:
        sim.control.set_point(124, "StorCtl_Mod", 1)
        sim.control.set_point(124, "InWRte", 50.0)
        inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port))
        rule21 = get_profile("rule21")
        on = dataclasses.replace(rule21, set_active_power=SetActivePowerSettings(
            enabled=True, w=-2000.0))
        c = Controller(inv, on, EventLog(None), control_period_s=0.2)
        for own_in in (50.0, 30.0):  # the owner's limit, changed between two holds
            sim.control.set_point(124, "InWRte", own_in)
            own = {p: sim.control.get_point(124, p) for p in WINDOW}
            c.apply_settings(on)
            cycle_until(c, inv, lambda: sim.control.get_point(124, "StorCtl_Mod") == 3)
            c.apply_settings(rule21)
            cycle_until(c, inv, lambda: sim.control.get_point(124, "StorCtl_Mod") != 3)
            assert {p: sim.control.get_point(124, p) for p in WINDOW} == own
