"""Constant reactive power (BO27, AO203) and the frequency-watt enable (BO16) over DNP3,
end to end: the simulated inverter -> the gateway -> dnp3py's master.

Shown: constant var is refused beside volt-var (one reactive mode at a time, blocked,
nothing changed), accepted once volt-var is off, persisted and read back, and reaches
the inverter as reactive power; a timed constant var (AO202) reverts; frequency-watt
is switched over BO16 and read back at BI68.
"""

from __future__ import annotations

from inverter_agent.adapters.dnp3.maps import REFUSALS
from inverter_agent.core.commands import RefusalCause
from simulator import wait_until

from .conftest import ONLINE, SUCCESS


def test_constant_var_beside_volt_var_is_blocked_then_applied_alone(gateway, master):
    commands = gateway.commands
    assert commands.persisted_dict()["volt_var"]["enabled"] is True
    before = commands.persisted_dict()
    assert master.operate_in_turn([("AO", 203, -200), ("BO", 27, True)]) == [
        SUCCESS, REFUSALS[RefusalCause.CONFLICT]]  # the target alone is a setting
    assert commands.persisted_dict()["constant_var"] == {**before["constant_var"],
                                                         "q_pct": -20.0}
    assert commands.persisted_dict()["constant_var"]["enabled"] is False
    assert master.operate_in_turn([("BO", 29, False), ("BO", 27, True)]) == [SUCCESS] * 2
    assert commands.persisted_dict()["constant_var"] == {"enabled": True, "q_pct": -20.0}
    points = master.integrity_poll()
    assert points.ai[281] == (-200.0, ONLINE) and points.bi[79] == (True, ONLINE)
    rated_var = 2200.0
    wait_until(lambda: abs(gateway.sim.control.state()["units"]["1"]["plant"]["var"]
                           + 0.2 * rated_var) < 0.05 * rated_var, timeout=20)
    assert master.operate_in_turn([("BO", 27, False), ("BO", 29, True)]) == [SUCCESS] * 2


def test_a_timed_constant_var_reverts(gateway, master):
    commands = gateway.commands
    persisted = commands.persisted_dict()
    assert persisted["volt_var"]["enabled"] is True
    statuses = master.operate_in_turn([("AO", 202, 2), ("AO", 203, 150), ("BO", 27, True)])
    assert statuses == [SUCCESS] * 3
    # the timed mode replaces volt-var for its time (an event ranks above the settings)
    wait_until(lambda: commands.effective_dict()["constant_var"] == {"enabled": True,
                                                                    "q_pct": 15.0}, timeout=5)
    assert commands.effective_dict()["volt_var"]["enabled"] is False
    wait_until(lambda: commands.effective_dict()["volt_var"]["enabled"], timeout=10)
    assert commands.effective_dict()["constant_var"] == persisted["constant_var"]
    assert commands.persisted_dict() == persisted
    assert master.direct_operate_analog(202, 0) == SUCCESS


def test_frequency_watt_is_switched_and_read_back(gateway, master):
    commands = gateway.commands
    was = commands.persisted_dict()["freq_watt"]["enabled"]
    assert master.direct_operate_binary(16, not was) == SUCCESS
    assert commands.persisted_dict()["freq_watt"]["enabled"] is (not was)
    assert master.integrity_poll().bi[68][0] is (not was)
    assert master.direct_operate_binary(16, was) == SUCCESS
    assert commands.persisted_dict()["freq_watt"]["enabled"] is was
    assert master.integrity_poll().bi[35] == (True, ONLINE)  # "supports"
