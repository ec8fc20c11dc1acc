"""Issue 18, temporary settings through the whole gateway: a temporary volt-var curve is
programmed into the device's 705 for its window, and the persisted curve is the one in
use after it: with the gateway alive, with the gateway killed in the window (the device
reverts by itself, 705 RvrtTms / RvrtCrv) and with the device's Modbus link lost in the
window and back after it.

Processes over loopback: the simulator (a 1547 profile whose 705 has free curves and
RvrtTms, its reversion written from the model text in simulator/device.py), the agent
(``inverter-agent run``, MMS and its DNP3 outstation on) and dnp3py's master. The
temporary curve is a timed command of the DNP3 master (AN2018-001: volt-var reversion
timeout AO215, the curve through the edit buffer, AO217 points at it, BO29 enables it):
the gateway's MMS server has no temporary curve command (its temporary commands are
DCTE1.CeaEgzReqCtl, DGEN1.RlsCmd and DWMX1.WMaxLimPct), and the 2030.5 test server
cannot serve a DERCurve. The device's registers are read through the simulator's
control channel (the register image, also while its Modbus link is cut).

The device's reversion waits :data:`REVERT_MARGIN_S` past the window (a fixed constant of
the steering, not configurable), so the gateway killed in the window leaves the
temporary curve in use for that long after the window's end. Run with ``-s`` for the
figures.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hal.curves import Q_REFS
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.core.steering import REVERT_MARGIN_S, desired_volt_var_curve
from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from tests.adapters.dnp3.conftest import SUCCESS, ForeignMaster, curve_writes
from tests.corpus.runner import _state_dir
from tests.e2e.conftest import AgentProcess, free_port

PROFILE = str(PROFILE_DIR / "1547-native-protection.json")
POLL = 0.2
WINDOW_S = 6  # the master's reversion timeout: the temporary curve's window
VOLT_VAR, PCT_VARS = 2, 2  # AN2018-001 curve mode type and Y units (% of max VArs)
TEMP = ((92.0, 30.0), (98.0, 0.0), (102.0, 0.0), (108.0, -30.0))  # V %, Q % of max VArs
TEMP_CURVE = (Q_REFS["var_max"], TEMP)

Curve = tuple[int, tuple[tuple[float, float], ...]]


def _curve(sim: SimProcess, k: int = 1) -> Curve:
    """Curve ``k`` of the device's 705 (curve 1: the one in use): (DeptRef, points)."""
    get = sim.control.get_point
    n = int(get(705, f"Crv[{k}].ActPt"))
    return int(get(705, f"Crv[{k}].DeptRef")), tuple(
        (round(float(get(705, f"Crv[{k}].Pt[{i}].V")), 1),
         round(float(get(705, f"Crv[{k}].Pt[{i}].Var")), 1)) for i in range(1, n + 1))


def _persisted(state: str) -> Curve:
    """The persisted volt-var settings as the device holds them."""
    c = desired_volt_var_curve(SettingsStore(state, "rule21").load()[0])
    return Q_REFS[c.ref], tuple((round(v, 1), round(q, 1)) for v, q in c.points)


def _ena(sim: SimProcess) -> int:
    return int(sim.control.get_point(705, "Ena"))


def _ena_writes(sim: SimProcess) -> list[str]:
    """Every value written to the device's 705 Ena, in order (the simulator logs each
    write; :func:`_gateway` keeps all its lines)."""
    return [line.rsplit("705/Ena <- ", 1)[1].strip() for line in list(sim.stderr_lines)
            if "705/Ena <- " in line]


def _until(fn: Any, deadline: float, what: str, interval: float = 0.05) -> float:
    """Poll ``fn`` until truthy before ``deadline`` (monotonic): the time it was seen."""
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"{what}: not by the deadline (last {last!r})")


@contextmanager
def _gateway(tmp_path: Any) -> Iterator[tuple[SimProcess, AgentProcess, ForeignMaster, Curve]]:
    """The simulator, the agent on it with its DNP3 outstation, the master, and the
    persisted curve, once that curve is the device's curve in use."""
    root = str(tmp_path)
    state = _state_dir(root)  # rule21, volt-var on (response time 1 s)
    persisted = _persisted(state)
    dnp3_port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f"[dnp3]\nenabled = true\nport = {dnp3_port}\n")
    sim = SimProcess("--profile", PROFILE, "--tau", "0.2", "--seed", "7")
    sim.stderr_lines = collections.deque()  # all of its log: every 705 write is read
    with sim:
        assert int(sim.control.get_point(705, "NCrv")) >= 3  # two free curves besides 1
        agent = AgentProcess(root, "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}",
                             "--config", str(config), poll_period=POLL).start()
        try:
            start = time.monotonic()
            _until(lambda: _curve(sim) == persisted, start + 30, "the persisted curve in use")
            _until(lambda: _accepts(dnp3_port), start + 30, "the DNP3 outstation")
            yield sim, agent, ForeignMaster(dnp3_port), persisted
        finally:
            agent.terminate()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _send_temporary(master: ForeignMaster) -> tuple[float, float]:
    """The timed volt-var curve (WINDOW_S): the bounds of its window's end (monotonic)."""
    ai = master.integrity_poll().ai
    followed = {int(ai[297][0]), int(ai[248][0])}  # volt-var's and volt-watt's: locked
    number = min(set(range(1, 9)) - followed)
    t0 = time.monotonic()
    statuses = master.operate_in_turn([("AO", 215, WINDOW_S),
                                       *curve_writes(number, VOLT_VAR, PCT_VARS, list(TEMP)),
                                       ("AO", 217, number), ("BO", 29, True)])
    t1 = time.monotonic()
    assert statuses == [SUCCESS] * len(statuses)
    return t0 + WINDOW_S, t1 + WINDOW_S


def _temporary_in_use(sim: SimProcess, persisted: Curve, sent: float) -> float:
    """(a): the temporary curve is the device's curve in use within 15 s, with the
    persisted curve as its revert curve and the reversion armed; when it was seen."""
    seen = _until(lambda: _curve(sim) == TEMP_CURVE, sent + 15.0, "the temporary curve in use")
    back = int(sim.control.get_point(705, "RvrtCrv"))
    assert back >= 2 and _curve(sim, back) == persisted
    tms = int(sim.control.get_point(705, "RvrtTms"))
    assert 0 < tms <= WINDOW_S + REVERT_MARGIN_S + 1
    assert _ena(sim) == 1
    return seen


def test_a_temporary_curve_is_in_use_for_its_window_then_the_persisted_one(tmp_path):
    with _gateway(tmp_path) as (sim, agent, master, persisted):
        end_lo, end_hi = _send_temporary(master)
        seen = _temporary_in_use(sim, persisted, end_lo - WINDOW_S)
        # (b) held through the window, then the living gateway puts the persisted curve
        # back, before the device's own timer (window end + margin) would have
        held_to = seen
        while (now := time.monotonic()) < end_lo - 0.3:
            assert _curve(sim) == TEMP_CURVE, f"left {end_lo - now:.1f} s before the end"
            held_to = now
            time.sleep(0.05)
        restored = _until(lambda: _curve(sim) == persisted, end_hi + REVERT_MARGIN_S / 2,
                          "the persisted curve back after the window")
        print(f"\ntemporary curve in use {seen - (end_lo - WINDOW_S):.2f} s after the "
              f"command, held to {held_to - end_lo:+.2f} s, persisted curve back "
              f"{restored - end_hi:+.2f} s after the window's end")
        assert _ena(sim) == 1 and "0" not in _ena_writes(sim)
        assert int(sim.control.get_point(705, "RvrtTms")) == 0  # no reversion pending
        assert agent.alive()


def test_a_gateway_killed_in_the_window_leaves_the_device_reverting_by_itself(tmp_path):
    with _gateway(tmp_path) as (sim, agent, master, persisted):
        end_lo, end_hi = _send_temporary(master)
        _temporary_in_use(sim, persisted, end_lo - WINDOW_S)
        # The device counts RvrtRem down on its own tick after the adoption: wait for the
        # count to show before reading it (it read 0 once, right after the adoption).
        _until(lambda: int(sim.control.get_point(705, "RvrtRem")) > 0, time.monotonic() + 5.0,
               "the device's reversion counting down")
        assert agent.proc is not None and time.monotonic() < end_lo  # inside the window
        rem = int(sim.control.get_point(705, "RvrtRem"))
        killed = time.monotonic()
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(5)
        ena = []

        def reverted() -> bool:
            ena.append(_ena(sim))
            return _curve(sim) == persisted

        at = _until(reverted, end_hi + REVERT_MARGIN_S + 3.0, "the device's own reversion")
        print(f"\nkilled {end_lo - killed:.2f} s before the window's end with RvrtRem "
              f"{rem} s; the device reverted {at - killed:.2f} s after the kill, "
              f"{at - end_hi:+.2f} s after the window's end ({len(ena)} polls)")
        assert set(ena) == {1}, "the device's volt-var went off"  # never Ena 0
        writes = _ena_writes(sim)
        print(f"705 Ena written: {writes}")
        assert "1" in writes and "0" not in writes, writes  # and never written off
        assert abs(at - (killed + rem)) <= 1.5  # at its timer, not sooner or later
        assert at >= end_lo  # the temporary curve held its whole window
        assert _ena(sim) == 1 and int(sim.control.get_point(705, "RvrtRem")) == 0


@pytest.mark.parametrize("back_after", ["window", "device_reversion"])
def test_a_link_lost_in_the_window_and_back_after_it_leaves_the_persisted_curve(
        tmp_path, back_after):
    """The device's Modbus link cut inside the window and back after it: just after the
    window's end (the gateway, back on the link, restores the persisted curve before the
    device's own timer would) or after the device reverted by itself (the gateway, back,
    leaves it)."""
    with _gateway(tmp_path) as (sim, agent, master, persisted):
        end_lo, end_hi = _send_temporary(master)
        _temporary_in_use(sim, persisted, end_lo - WINDOW_S)
        assert time.monotonic() < end_lo
        ups = agent.log().count("inverter link up")
        sim.control.fault("silent")  # the device answers no Modbus request
        cut = time.monotonic()
        try:
            if back_after == "window":
                while time.monotonic() < end_hi + 0.5:  # the window ends with the link down
                    assert _ena(sim) == 1 and _curve(sim) == TEMP_CURVE
                    time.sleep(0.1)
            else:
                _until(lambda: _curve(sim) == persisted, end_hi + REVERT_MARGIN_S + 3.0,
                       "the device's own reversion with the link down")
                assert time.monotonic() >= end_lo + REVERT_MARGIN_S - 1.5  # at its timer
        finally:
            sim.control.fault("none")
        back = time.monotonic()
        restored = _until(lambda: _curve(sim) == persisted, back + REVERT_MARGIN_S + 10.0,
                          "the persisted curve after the link came back")
        _until(lambda: agent.log().count("inverter link up") > ups, back + 15.0,
               "the gateway back on the link")
        relinked = time.monotonic()
        print(f"\nlink cut {end_lo - cut:.2f} s before the window's end, back "
              f"{back - end_hi:+.2f} s after it; persisted curve in use "
              f"{restored - back:+.2f} s from then; gateway back on the link "
              f"{relinked - back:.2f} s after it")
        if back_after == "window":  # by the gateway, ahead of the device's own timer
            assert restored < end_lo + REVERT_MARGIN_S - 1
        assert _ena(sim) == 1
        # and it stays: the gateway, back on the link, does not put the temporary one back
        hold = time.monotonic() + 3.0
        while time.monotonic() < hold:
            assert _curve(sim) == persisted and _ena(sim) == 1
            time.sleep(0.1)
        assert "0" not in _ena_writes(sim)
        assert int(sim.control.get_point(705, "RvrtRem")) == 0
        assert agent.alive()
