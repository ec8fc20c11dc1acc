"""Issue 18, temporary curves and a gateway that dies in their window: the temporary
volt-var curve is adopted with the device's own reversion (SunSpec 705 RvrtTms, the
persisted curve in RvrtCrv), so a gateway killed with SIGKILL leaves a device that goes
back to the persisted curve by itself; a living gateway re-arms the timer, holds the
temporary curve for its whole window and restores the persisted one after it.

Real processes over loopback Modbus TCP: the simulator (its 705 reversion written from
the model text, simulator/device.py) and, for the kill, the gateway in a child process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from inverter_agent.functions import Settings
from simulator.profile import PROFILE_DIR
from tests.core import test_steering as base

rig = base.rig
run, point, kinds = base.run, base.point, base.kinds
PROTECTION = str(PROFILE_DIR / "1547-native-protection.json")
TEMP_LAST, PERSISTED_LAST = -30.0, -44.0  # var % at the last volt-var point
WINDOW_S, MARGIN_S = 3.0, 1.0


def temporary(persisted: Settings) -> Settings:
    vv = persisted.volt_var
    return replace(persisted, volt_var=replace(vv, curve=(
        replace(vv.curve[0], q_pct=30.0), *vv.curve[1:3],
        replace(vv.curve[3], q_pct=TEMP_LAST))))


#: The gateway in a child process: programs the temporary curve for a window, says so
#: (with the window's end on the shared monotonic clock) and keeps cycling until killed.
CHILD = """
import sys, time
from tests.core import test_steering as base
from tests.core.test_native_revert import temporary, WINDOW_S, MARGIN_S
from hal.inverter import Inverter
from hal.transport import TcpTransport
from inverter_agent.core.controller import Controller
from inverter_agent.core.events import EventLog
from inverter_agent.functions import get_profile
inv = Inverter(TcpTransport("127.0.0.1", int(sys.argv[1]), base.FAST))
inv.connect()
ctl = Controller(inv, get_profile("rule21"), EventLog(sys.argv[2]), control_period_s=0.2)
ctl.steer.revert_margin_s = MARGIN_S
t = base.run(inv, ctl, 6)
end = time.monotonic() + WINDOW_S
ctl.apply_settings(temporary(ctl.settings), window=(ctl.settings, end))
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    t = base.run(inv, ctl, 1, t0=t)
    if inv.read_volt_var_curve().points[-1][1] == -30.0:
        print("TEMP", end, flush=True)
        break
while time.monotonic() < deadline:
    t = base.run(inv, ctl, 1, t0=t)
"""


def wait_var(sim, want: float, until: float) -> float | None:
    """The monotonic time the device's curve 1 shows ``want`` at its last point."""
    while time.monotonic() < until:
        if point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(want):
            return time.monotonic()
        time.sleep(0.05)
    return None


def test_a_gateway_killed_in_the_window_leaves_a_device_that_reverts_by_itself(rig, tmp_path):
    sim, inv, ctl, events = rig(PROTECTION)  # the in-process gateway only reads here
    assert point(sim, 705, "NCrv") >= 3
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(sim.tcp_port), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        line = child.stdout.readline()  # bounded: the child gives up after 60 s
        assert line.startswith("TEMP"), line
        end = float(line.split()[1])
        assert point(sim, 705, "RvrtTms") >= 1 and point(sim, 705, "RvrtCrv") >= 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(TEMP_LAST)
    reverted = wait_var(sim, PERSISTED_LAST, end + MARGIN_S + 5.0)
    assert reverted is not None, "the device kept the temporary curve"
    # At the timer: not before the window's end, within about a second after end + margin.
    print(f"reverted {reverted - end:.2f} s after the window's end (timer: end + {MARGIN_S} s)")
    assert end <= reverted <= end + MARGIN_S + 1.5
    assert point(sim, 705, "Ena") == 1 and point(sim, 705, "RvrtRem") == 0


def test_with_the_gateway_alive_the_temporary_curve_holds_its_window(rig):
    sim, inv, ctl, events = rig(PROTECTION, verify_every_s=1.0)
    ctl.steer.revert_margin_s = MARGIN_S
    persisted = ctl.settings
    t = run(inv, ctl, 6)
    end = time.monotonic() + 2 * WINDOW_S
    ctl.apply_settings(temporary(persisted), window=(persisted, end))
    rearms = base.writes(sim, "705/RvrtTms")
    held = []
    for _ in range(400):  # bounded: about 0.3 s a cycle
        if time.monotonic() >= end:
            break
        t = run(inv, ctl, 1, t0=t)
        held.append(point(sim, 705, "Crv[1].Pt[4].Var"))
    assert time.monotonic() >= end
    assert held[-1] == pytest.approx(TEMP_LAST)
    first = held.index(TEMP_LAST)  # adopted in the first cycles, then held to the end
    assert first <= 2 and all(v == pytest.approx(TEMP_LAST) for v in held[first:])
    assert base.writes(sim, "705/RvrtTms") > rearms + 2  # re-armed while alive
    assert "reversion" in ctl.status.steering["volt_var"]["why"]
    ctl.apply_settings(persisted)  # the window ends
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(PERSISTED_LAST)
    assert point(sim, 705, "RvrtTms") == 0  # no reversion left pending
    assert not ctl.status.alarms and "native_curve_mismatch" not in kinds(events)


def test_a_device_with_no_free_curve_gets_the_temporary_curve_as_before_and_status_says_so(rig):
    """706 with NCrv 2 and curve 1 read-only: one writable curve, no room for a revert
    curve. The temporary volt-watt curve is programmed the plain way."""
    sim, inv, ctl, events = rig(PROTECTION, extra=("--vv-curves", "2"))
    persisted = ctl.settings
    assert persisted.volt_watt.enabled and point(sim, 706, "NCrv") == 2
    t = run(inv, ctl, 6)
    vw = persisted.volt_watt
    temp = replace(persisted, volt_watt=replace(vw, curve=(
        vw.curve[0], replace(vw.curve[-1], p_pct=20.0))))
    ctl.apply_settings(temp, window=(persisted, time.monotonic() + 30.0))
    run(inv, ctl, 3, t0=t)
    n = point(sim, 706, "Crv[1].ActPt")
    assert point(sim, 706, f"Crv[1].Pt[{n}].W") == pytest.approx(20.0)
    assert point(sim, 706, "RvrtTms") == 0
    choice = ctl.status.steering["volt_watt"]
    assert choice["by"] == "native" and "without its own reversion" in choice["why"]


# -- where the window comes from: the settings service


def test_the_service_gives_the_window_of_operator_commands_and_utility_events(tmp_path):
    from inverter_agent.core.arbitration import UtilityControl
    from inverter_agent.core.events import EventLog
    from inverter_agent.core.settings_service import SettingsService
    from inverter_agent.core.settings_store import SettingsStore
    from tests.core.test_arbitration import T0, World

    clock = [1000.0]
    svc = SettingsService(SettingsStore(str(tmp_path / "a"), "rule21"),
                          EventLog(str(tmp_path / "a")), revert_after_s=300.0,
                          clock=lambda: clock[0])
    assert svc.window() is None
    persisted = svc.effective()
    svc.operate("p_limit_pct", 50.0, who="test")
    back, end = svc.window()
    assert back == persisted and end == 1300.0  # the communication-loss revert
    clock[0] = 1100.0
    svc.heard_from_client()  # the operator is still there: the window moves on
    assert svc.window()[1] == 1400.0

    w = World(tmp_path / "b")
    persisted = w.svc.effective()
    w.default(UtilityControl(p_limit_pct=80.0))
    assert w.svc.window() is None  # a default control has no end
    with_default = w.svc.effective()
    w.event("e1", UtilityControl(p_limit_pct=40.0), start=-10, end=60)
    back, end = w.svc.window()
    assert back == with_default != persisted  # after the event: the default control
    assert end - time.monotonic() == pytest.approx(60.0 - (w.now - T0), abs=1.0)
