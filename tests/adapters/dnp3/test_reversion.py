"""Reversion timeouts (AN2018-001 AO85 / AO209 / AO215) through the core's utility
schedule, end to end: the simulated inverter -> the gateway -> a foreign master.

Shown: with a function's reversion timeout set, its setpoints are held (the persisted
settings untouched), enabling it puts them in force for that many seconds, and when
the time is up what was in force before applies again: also after the master's link
is gone (each dnp3py exchange is its own association; the yadnp3 master is shut down
while the command is in force). A held setpoint the core refuses changes nothing.
"""

from __future__ import annotations

import time

import pytest

from simulator import wait_until

from .conftest import ONLINE, OUT_OF_RANGE, SUCCESS, curve_writes


def _limit(commands) -> tuple[bool, float]:
    lim = commands.effective_dict()["active_power_limit"]
    return lim["enabled"], lim["p_limit_pct"]


def test_a_timed_limit_reverts_when_its_timeout_expires(gateway, master):
    commands = gateway.commands
    assert master.direct_operate_binary(17, False) == SUCCESS
    persisted, before = commands.persisted_dict(), _limit(commands)
    assert before[0] is False
    assert master.operate_in_turn([("AO", 85, 3), ("AO", 88, 300)]) == [SUCCESS, SUCCESS]
    assert commands.persisted_dict() == persisted  # held, not written
    assert _limit(commands) == before
    t0 = time.monotonic()
    assert master.direct_operate_binary(17, True) == SUCCESS  # the master's link ends here
    wait_until(lambda: _limit(commands) == (True, 30.0), timeout=5)  # within a cycle or two
    assert commands.persisted_dict() == persisted
    timed = gateway.app.adapters[0].status()["timed"]["active_power_limit"]
    assert timed["timeout_s"] == 3.0 and 0 < timed["left_s"] <= 3.0
    points = master.integrity_poll()
    assert points.ai[145] == (3.0, ONLINE) and points.ai[149] == (300.0, ONLINE)
    wait_until(lambda: _limit(commands) == before, timeout=15)
    took = time.monotonic() - t0
    assert 2.5 <= took <= 6.0, took  # 3 s, and a control cycle or two
    assert commands.persisted_dict() == persisted
    assert master.direct_operate_analog(85, 0) == SUCCESS


def test_a_held_setpoint_the_core_refuses_changes_nothing(gateway, master):
    commands = gateway.commands
    persisted, effective = commands.persisted_dict(), commands.effective_dict()
    statuses = master.operate_in_turn([("AO", 209, 5), ("AO", 210, 50), ("AO", 209, 0)])
    assert statuses == [SUCCESS, OUT_OF_RANGE, SUCCESS]  # PF 0.50: below the minimum
    assert commands.persisted_dict() == persisted
    assert commands.effective_dict() == effective


def test_a_timed_volt_var_curve_reverts_to_the_persisted_one(gateway, master):
    commands = gateway.commands
    persisted = commands.persisted_dict()
    assert persisted["volt_var"]["enabled"] is True
    flat = [(90.0, 15.0), (110.0, 15.0)]
    writes = [("AO", 215, 3), *curve_writes(6, 2, 2, flat), ("AO", 217, 6), ("BO", 29, True)]
    statuses = master.operate_in_turn(writes)
    assert statuses == [SUCCESS] * len(statuses)
    wait_until(lambda: commands.effective_dict()["volt_var"]["q_base"] == "rated_var",
               timeout=5)
    shown = commands.effective_dict()["volt_var"]
    assert shown["enabled"] is True and shown["q_base"] == "rated_var"
    assert shown["curve"] == [{"v_pu": 0.9, "q_pct": 15.0}, {"v_pu": 1.1, "q_pct": 15.0}]
    assert commands.persisted_dict() == persisted
    wait_until(lambda: commands.effective_dict()["volt_var"] == persisted["volt_var"],
               timeout=15)
    assert master.direct_operate_analog(215, 0) == SUCCESS


def test_a_timed_power_factor_reverts_after_the_yadnp3_master_is_gone(gateway):
    pytest.importorskip("opendnp3", reason="yadnp3 has wheels for x86_64 and Windows only")
    from .test_yadnp3 import YadMaster

    commands = gateway.commands
    persisted = commands.persisted_dict()
    assert persisted["fixed_pf"]["enabled"] is False and persisted["volt_var"]["enabled"]
    master = YadMaster(gateway.port)
    try:
        assert master.analog(209, 3) == SUCCESS  # 3 s
        assert master.analog(210, 95) == SUCCESS  # PF 0.95 (x0.01)
        t0 = time.monotonic()
        assert master.latch(28, True) == SUCCESS
        wait_until(lambda: commands.effective_dict()["fixed_pf"]["enabled"], timeout=5)
        shown = commands.effective_dict()
        assert shown["fixed_pf"]["enabled"] is True and shown["fixed_pf"]["pf"] == 0.95
        assert shown["volt_var"]["enabled"] is False  # one reactive mode at a time
    finally:
        master.close()  # the link is lost while the command is in force
    wait_until(lambda: commands.effective_dict()["fixed_pf"]["enabled"] is False, timeout=15)
    took = time.monotonic() - t0
    assert 2.5 <= took <= 6.0, took
    assert commands.effective_dict()["volt_var"]["enabled"] is True
    assert commands.persisted_dict() == persisted
    state = gateway.app.adapters[0].reversion.schedule.comms
    assert state["state"] == "lost"


def test_two_timed_functions_each_revert_at_their_own_time(gateway, master):
    """A timed limit (2 s) and a timed volt-watt curve (5 s): consecutive events of the
    DNP3 schedule, the limit ends first, the curve later, each to the persisted value."""
    commands = gateway.commands
    assert master.direct_operate_binary(17, False) == SUCCESS
    persisted = commands.persisted_dict()
    assert persisted["volt_watt"]["enabled"] is True  # the profile's default: locked curve
    number = int(master.integrity_poll().ai[248][0]) % 8 + 1  # another curve than its own
    writes = [("AO", 85, 2), ("AO", 88, 450), ("AO", 171, 5),
              *curve_writes(number, 5, 5, [(103.0, 100.0), (109.0, 20.0)]),
              ("AO", 173, number), ("BO", 17, True), ("BO", 25, True)]
    t0 = time.monotonic()
    statuses = master.operate_in_turn(writes)
    answered = time.monotonic()  # both timers run from operates answered by now
    assert statuses == [SUCCESS] * len(statuses)
    timed_curve = [{"v_pu": 1.03, "p_pct": 100.0}, {"v_pu": 1.09, "p_pct": 20.0}]
    wait_until(lambda: _limit(commands) == (True, 45.0)
               and commands.effective_dict()["volt_watt"]["curve"] == timed_curve, timeout=5)
    wait_until(lambda: _limit(commands) == (False, persisted["active_power_limit"][
        "p_limit_pct"]), timeout=10)
    limit_ended = time.monotonic() - answered
    assert commands.effective_dict()["volt_watt"]["curve"] == timed_curve  # still timed
    wait_until(lambda: commands.effective_dict()["volt_watt"] == persisted["volt_watt"],
               timeout=15)
    curve_ended = time.monotonic() - t0
    # Each at its own time: the limit's 2 s (room for a loaded machine: 2.5 s), while
    # the curve was still timed (above); the curve not before its 5 s (t0 is before
    # any operate, so load only makes this later).
    assert limit_ended < 2 + 2.5 and curve_ended >= 5 - 1.0, (limit_ended, curve_ended)
    assert commands.persisted_dict() == persisted
    assert master.operate_in_turn([("AO", 85, 0), ("AO", 171, 0)]) == [SUCCESS, SUCCESS]
