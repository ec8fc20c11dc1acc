"""Per-function steering on IEEE 1547-2018 devices: the device's own volt-var where it
takes the program, the gateway's immediate controls where it does not, and never a
device left with less than it had.

The controller runs through the real HAL over loopback Modbus TCP against the
simulator started from the 1547 profiles that carry 705 (a selector-style device
whose 704 var enable switches its volt-var off, and one that refuses adoption).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hal.inverter import Inverter
from hal.reading import GOOD, NOT_IMPLEMENTED, Reading
from hal.transport import RetryPolicy, TcpTransport
from inverter_agent.core.controller import Controller
from inverter_agent.core.events import EventLog
from inverter_agent.core.view import HEALTH_ALARM
from inverter_agent.functions import get_profile
from simulator import SimProcess
from simulator.profile import PROFILE_DIR

FAST = RetryPolicy(timeout=0.5, retries=1, backoff=0.02, backoff_max=0.05)
SELECTOR = str(PROFILE_DIR / "1547-native-volt-var-selector.json")
REFUSES = str(PROFILE_DIR / "1547-refuses-adoption.json")
#: IEEE 1547-2018 Category B (the rule21 profile's curve), V % and var % of VA.
CAT_B_LAST = (108.0, -44.0)


@pytest.fixture
def rig(tmp_path) -> Iterator:
    made: list = []

    def make(profile: str | None, steering: str = "auto", verify_every_s: float = 60.0,
             models: str = "", extra: tuple[str, ...] = ()):
        args = ("--profile", profile) if profile else ("--models", models)
        sim = SimProcess(*args, *extra, "--tau", "0.2", "--seed", "5")
        sim.__enter__()
        made.append(sim)
        t = TcpTransport("127.0.0.1", sim.tcp_port, FAST)
        made.append(t)
        inv = Inverter(t)
        inv.connect()
        events = EventLog(str(tmp_path))
        ctl = Controller(inv, get_profile("rule21"), events, steering=steering,
                         verify_every_s=verify_every_s, control_period_s=0.2,
                         state_dir=str(tmp_path))
        return sim, inv, ctl, events

    yield make
    for m in reversed(made):
        if isinstance(m, SimProcess):
            m.__exit__(None, None, None)
        else:
            m.close()


def run(inv, ctl, cycles: int, t0: float = 0.0, drop: str | None = None) -> float:
    """``cycles`` controller cycles on fresh polls (``drop``: that reading made missing)."""
    t = t0
    for _ in range(cycles):
        snap = dict(inv.poll())
        snap["link"] = Reading(True, GOOD, time.time())  # what the agent adds (LINK)
        if drop is not None:
            snap[drop] = Reading(None, NOT_IMPLEMENTED, time.time())
        t = max(t, time.monotonic())
        ctl.cycle(snap, t)
        time.sleep(0.05)
    return t


def point(sim, model: int, name: str):
    return sim.control.get_point(model, name)


def writes(sim, key: str) -> int:
    return sim.control.unit_state(1)["writes"].get(key, 0)


def kinds(events: EventLog) -> list[str]:
    return [e["kind"] for e in events.read()]


def test_a_705_device_runs_the_gateways_curve_itself_with_no_var_setpoint(rig):
    sim, inv, ctl, events = rig(SELECTOR)
    assert point(sim, 705, "Ena") == 1  # the device ran its own (pysunspec2) curve
    run(inv, ctl, 10)
    assert (point(sim, 705, "Crv[1].Pt[4].V"), point(sim, 705, "Crv[1].Pt[4].Var")) == \
        pytest.approx(CAT_B_LAST)
    assert point(sim, 705, "Ena") == 1
    assert writes(sim, "704/VarSetEna") == 0 or point(sim, 704, "VarSetEna") == 0
    assert writes(sim, "704/VarSetPct") == 0
    assert ctl.status.steering["volt_var"]["by"] == "native"
    assert "steering" in kinds(events) and "native_curve_programmed" in kinds(events)
    assert not ctl.status.alarms


def test_immediate_opt_out_steers_volt_var_and_standing_aside_gives_the_device_its_own_back(
        rig):
    sim, inv, ctl, events = rig(SELECTOR, steering="immediate")
    run(inv, ctl, 5)
    assert ctl.status.steering["volt_var"] == {
        "by": "gateway", "why": 'steering = "immediate" (configured)'}
    assert point(sim, 704, "VarSetEna") == 1  # the gateway carries volt-var ...
    assert point(sim, 705, "Ena") == 0  # ... and the selector switched the device's off
    run(inv, ctl, 3, drop="Hz")  # a measurement not understood: stand aside
    assert ctl.status.standing_aside is not None
    assert point(sim, 704, "VarSetEna") == 0
    assert point(sim, 705, "Ena") == 1  # not merely released: its own volt-var is on
    # Its own curve, as it was: the gateway never programmed one in this mode.
    assert (point(sim, 705, "Crv[1].Pt[4].V"), point(sim, 705, "Crv[1].Pt[4].Var")) == \
        pytest.approx((107.0, -30.0))
    assert "native_restored" in kinds(events)


def test_a_clean_stop_gives_a_selector_device_its_own_volt_var_back(rig):
    sim, inv, ctl, events = rig(SELECTOR, steering="immediate")
    run(inv, ctl, 5)
    assert point(sim, 705, "Ena") == 0  # switched off by our var enable
    ctl.on_stop()
    assert point(sim, 705, "Ena") == 1
    assert "native_restored" in kinds(events)


def test_a_refused_adoption_falls_back_for_volt_var_alone_with_an_alarm(rig):
    sim, inv, ctl, events = rig(REFUSES)
    run(inv, ctl, 8)
    choice = ctl.status.steering["volt_var"]
    assert choice["by"] == "gateway" and "refused" in choice["why"]
    fallback = [e for e in events.read() if e["kind"] == "native_fallback"]
    assert len(fallback) == 1 and fallback[0]["detail"].startswith("volt_var:")
    assert ctl.health == HEALTH_ALARM and "volt_var" in ctl.status.alarms[0]
    assert point(sim, 704, "VarSetEna") == 1  # the gateway carries volt-var itself
    # Only volt-var: nothing curtailed, nothing ceased.
    assert point(sim, 703, "ES") != 0
    assert point(sim, 704, "WMaxLimPctEna") == 0 or point(sim, 704, "WMaxLimPct") >= 99.9
    run(inv, ctl, 3, drop="Hz")
    assert point(sim, 705, "Ena") == 1  # standing aside: the device's own volt-var again


def test_a_change_at_the_panel_is_programmed_again_with_an_alarm(rig):
    sim, inv, ctl, events = rig(SELECTOR, verify_every_s=1.0)
    t = run(inv, ctl, 5)
    sim.control.set_point(705, "Crv[1].Pt[4].Var", -10.0)  # the panel, not Modbus
    run(inv, ctl, 1, t0=t + 1.5)  # the next read-back is due
    assert "native_curve_mismatch" in kinds(events)
    assert ctl.status.alarms and "volt_var" in ctl.status.alarms[0]
    assert point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(-44.0)
    run(inv, ctl, 1, t0=t + 3.0)  # read back equal: the alarm clears
    assert not ctl.status.alarms
    assert writes(sim, "704/VarSetPct") == 0


def test_a_706_device_runs_volt_watt_itself_and_the_gateway_writes_no_limit_for_it(rig):
    sim, inv, ctl, events = rig(None, models="1,701,702,703,704,705,706")
    t = run(inv, ctl, 5)
    assert ctl.status.steering["volt_watt"]["by"] == "native"
    assert point(sim, 706, "Ena") == 1
    assert (point(sim, 706, "Crv[1].Pt[1].V"), point(sim, 706, "Crv[1].Pt[2].V")) == \
        pytest.approx((106.0, 110.0))
    sim.control.set_grid(v_pu=1.08)  # the rule21 curve: 50 % of WMax
    run(inv, ctl, 20, t0=t)
    st = sim.control.unit_state(1)
    assert st["effective"]["w_limit"] == pytest.approx(0.5 * st["effective"]["w_max"], rel=0.03)
    assert point(sim, 704, "WMaxLimPct") >= 99.9  # the gateway does not also limit it
    assert writes(sim, "704/VarSetPct") == 0
