"""The DNP3 outstation end to end on loopback: the simulated inverter (its own
process) -> the gateway (App: HAL, core, DNP3 adapter) -> dnp3py's master.

Shown: an integrity poll reports what the inverter measures (within 2 %) with
ONLINE; a direct-operated active power limit is persisted by the core before
SUCCESS and reaches the inverter; an out-of-range value, a value the core's
validator refuses and a point not served are refused with the command status
the refusal cause maps to, and nothing changes; a lost inverter link is sent as
COMM_LOST, never as a stale value marked good; plain DNP3 off loopback is refused.
"""

from __future__ import annotations

import pytest

from inverter_agent import app as app_mod
from inverter_agent import config
from inverter_agent.adapters.dnp3.maps import REFUSALS
from inverter_agent.core.commands import RefusalCause
from inverter_agent.security.errors import InsecureBindError
from simulator import wait_until

from .conftest import (
    COMM_LOST,
    NOT_SUPPORTED,
    ONLINE,
    OUT_OF_RANGE,
    SUCCESS,
    assert_meter_matches_the_inverter,
    free_port,
)


def test_integrity_poll_reports_the_inverters_values_within_2_percent(gateway, master):
    points = master.integrity_poll()
    assert_meter_matches_the_inverter(points.ai, gateway.sim.control.state())
    # states: link good, connected and generating; the served functions say "supported"
    assert points.bi[0] == (False, ONLINE)
    assert points.bi[19] == (True, ONLINE) and points.bi[23] == (True, ONLINE)
    assert all(points.bi[i] == (True, ONLINE) for i in (36, 47, 48))


def test_direct_operate_active_power_limit_is_persisted_and_reaches_the_inverter(
        gateway, master):
    commands = gateway.commands
    assert master.direct_operate_analog(88, 500) == SUCCESS  # 50.0 % (x0.1)
    # persisted before the outstation answered
    assert commands.persisted_dict()["active_power_limit"]["p_limit_pct"] == 50.0
    assert master.direct_operate_binary(17, True) == SUCCESS
    assert commands.persisted_dict()["active_power_limit"]["enabled"] is True

    def limited() -> bool:
        unit = gateway.sim.control.state()["units"]["1"]
        return unit["effective"]["w_limit"] is not None and unit["plant"]["w"] <= 2500 * 1.02
    wait_until(limited, timeout=15)
    # the readbacks now say what is in force, online (the function is enabled)
    points = master.integrity_poll()
    assert points.ai[149] == (500.0, ONLINE)
    assert points.bi[69] == (True, ONLINE)
    # undo, over DNP3 too
    assert master.direct_operate_binary(17, False) == SUCCESS
    assert commands.persisted_dict()["active_power_limit"]["enabled"] is False


def test_select_before_operate_sets_the_limit_and_a_refused_select_changes_nothing(
        gateway, master):
    commands = gateway.commands
    assert master.select_operate_analog(88, 730) == (SUCCESS, SUCCESS)  # 73.0 %
    assert commands.persisted_dict()["active_power_limit"]["p_limit_pct"] == 73.0
    before = commands.persisted_dict()
    selected, operated = master.select_operate_analog(210, 50)  # PF 0.50: the core refuses
    assert selected == OUT_OF_RANGE and operated != SUCCESS
    assert commands.persisted_dict() == before


def test_volt_var_enable_and_a_second_reactive_mode_refused(gateway, master):
    commands = gateway.commands
    assert commands.persisted_dict()["volt_var"]["enabled"] is True  # the profile's default
    assert master.direct_operate_binary(29, False) == SUCCESS
    assert commands.persisted_dict()["volt_var"]["enabled"] is False
    assert master.integrity_poll().bi[81] == (False, ONLINE)
    assert master.direct_operate_binary(29, True) == SUCCESS
    assert master.integrity_poll().bi[81] == (True, ONLINE)
    # constant power factor beside volt-var: two reactive modes at once, refused whole,
    # with the status the adapter maps a conflict to (blocked), not "out of range"
    before = commands.persisted_dict()
    assert master.direct_operate_binary(28, True) == REFUSALS[RefusalCause.CONFLICT]
    assert commands.persisted_dict() == before
    assert master.integrity_poll().bi[80] == (False, ONLINE)


@pytest.mark.parametrize(("index", "raw", "status", "why"), [
    (88, 1500, OUT_OF_RANGE, "150 %: outside the point's range (0-1000 x0.1 %)"),
    (210, 50, OUT_OF_RANGE, "PF 0.50: in the point's range, refused by the core's validator"),
    (87, 500, NOT_SUPPORTED, "AO87 (charging limit): not served on a PV inverter"),
])
def test_a_refused_control_changes_nothing(gateway, master, index, raw, status, why):
    commands = gateway.commands
    before = commands.persisted_dict()
    effective = commands.effective_dict()
    assert master.direct_operate_analog(index, raw) == status, why
    assert commands.persisted_dict() == before
    assert commands.effective_dict() == effective


def test_a_lost_inverter_link_is_sent_comm_lost_never_good(gateway, master):
    control = gateway.sim.control
    master.class_poll()  # what is buffered so far, read and confirmed
    control.fault("silent")
    try:
        wait_until(lambda: not gateway.view().link_up, timeout=15)
        # the change reaches the master as events: link lost, the meter COMM_LOST
        events = master.class_poll()
        assert events.bi[0] == (True, ONLINE)
        assert events.ai[537][1] & COMM_LOST and not events.ai[537][1] & ONLINE
        points = master.integrity_poll()
        for index in (537, 541, 545, 546, 536, 547):
            value, flags = points.ai[index]
            assert flags & COMM_LOST and not flags & ONLINE, (index, flags)
        assert points.bi[0] == (True, ONLINE)  # "communication error", known for sure
        assert points.bi[19][1] & COMM_LOST
    finally:
        control.fault("none")
    wait_until(lambda: gateway.view().link_up, timeout=20)
    assert master.integrity_poll().ai[537][1] == ONLINE


def test_plain_dnp3_off_loopback_is_refused(tmp_path):
    cfg = config.load(None, {"inverter.modbus_tcp": f"127.0.0.1:{free_port()}",
                             "agent.state_dir": str(tmp_path), "mms.enabled": False,
                             "dnp3.enabled": True, "dnp3.host": "0.0.0.0"})
    with pytest.raises(InsecureBindError, match="DNP3"):
        app_mod.App(cfg)


def test_event_classes_and_deadbands_come_from_the_map(gateway):
    outstation = gateway.app.adapters[0].outstation
    # deadbands in transmitted units: 0.5 V at x0.1, 20 W at x1, 0.01 Hz at x0.001
    assert outstation.deadband(547) == 5 and outstation.deadband(537) == 20
    assert outstation.deadband(536) == 10
    from py1815.profile import Kind
    assert outstation.event_class(Kind.AI, 537) == 3 and outstation.event_class(Kind.BI, 0) == 1
    assert outstation.event_class(Kind.BI, 36) == 0  # "supports": static only
