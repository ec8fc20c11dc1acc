"""Curves through the AN2018-001 / IEEE 1815.2 curve edit buffer, end to end on
loopback: the simulated inverter -> the gateway -> dnp3py's master.

Shown: a volt-var curve written through the buffer (selector, mode type, number of
points, units, X / Y pairs) and applied by pointing volt-var at it (AO217) is one
settings write of the core (persisted before SUCCESS) and reads back over DNP3; a
volt-watt curve edited while volt-watt is off is applied when it is enabled; a curve
with a gap, with X decreasing, with a point out of the core's range, of another mode
type or with too many points, and an edit of the curve an enabled function follows,
are refused with the status their cause maps to, and nothing changes.
"""

from __future__ import annotations

import pytest

from inverter_agent.adapters.dnp3.maps import REFUSALS
from inverter_agent.core.commands import RefusalCause

from .conftest import NOT_SUPPORTED, ONLINE, OUT_OF_RANGE, SUCCESS, curve_writes

VOLT_VAR, VOLT_WATT = 2, 5  # AN2018-001 curve mode types
PCT_VARS, PCT_WATTS = 2, 5  # Y units: % of max VArs, % of max Watts
CURVE = [(90.0, 30.0), (95.0, 20.0), (105.0, 20.0), (110.0, -30.0)]  # V %, Q % of max VArs


def test_the_window_shows_the_curve_a_function_follows_in_the_buffers_units(
        gateway, master):
    # the profile's volt-var curve: Q in % of rated VA (44 % of VA is the max VArs)
    settings = gateway.commands.effective_dict()
    assert settings["volt_var"]["q_base"] == "rated_va"
    assert settings["nameplate"]["var_max_pct"] == 44.0
    number = int(master.integrity_poll().ai[297][0])
    assert master.direct_operate_analog(244, number) == SUCCESS
    ai = master.integrity_poll().ai
    assert ai[329][0] == VOLT_VAR and ai[331][0] == 129 and ai[332][0] == PCT_VARS
    shown = [v for i in range(int(ai[330][0])) for v in (ai[333 + 2 * i][0] / 10,
                                                          ai[334 + 2 * i][0] / 10)]
    assert shown == pytest.approx([v for p in settings["volt_var"]["curve"]
                                   for v in (p["v_pu"] * 100, p["q_pct"] * 100 / 44.0)])
    assert master.integrity_poll().bi[107] == (True, ONLINE)  # followed by a function


def test_a_volt_var_curve_written_through_the_edit_buffer_is_persisted_and_read_back(
        gateway, master):
    commands = gateway.commands
    before = commands.persisted_dict()["volt_var"]["curve"]
    statuses = master.operate_in_turn(curve_writes(3, VOLT_VAR, PCT_VARS, CURVE))
    assert statuses == [SUCCESS] * len(statuses)
    # only a draft so far: the core has not changed
    assert commands.persisted_dict()["volt_var"]["curve"] == before
    assert master.direct_operate_analog(217, 3) == SUCCESS  # volt-var follows curve 3
    persisted = commands.persisted_dict()["volt_var"]
    assert persisted["curve"] == [{"v_pu": x / 100, "q_pct": y} for x, y in CURVE]
    assert persisted["q_base"] == "rated_var"
    assert commands.effective_dict()["volt_var"]["curve"] == persisted["curve"]
    # read back over DNP3: the function's curve index, and the window on curve 3
    assert master.direct_operate_analog(244, 3) == SUCCESS
    ai = master.integrity_poll().ai
    assert ai[297] == (3.0, ONLINE) and ai[328] == (3.0, ONLINE)
    assert ai[329][0] == VOLT_VAR and ai[330][0] == 4 and ai[331][0] == 129
    assert [(ai[333 + 2 * i][0], ai[334 + 2 * i][0]) for i in range(4)] == [
        (x * 10, y * 10) for x, y in CURVE]


def test_a_curve_edited_while_its_function_is_off_is_applied_when_it_is_enabled(
        gateway, master):
    commands = gateway.commands
    number = int(master.integrity_poll().ai[248][0])  # the curve volt-watt follows
    points = [(104.0, 100.0), (108.0, 40.0)]
    writes = curve_writes(number, VOLT_WATT, PCT_WATTS, points)
    # volt-watt on (the profile's default): its curve is locked; off, it may be edited
    assert commands.persisted_dict()["volt_watt"]["enabled"] is True
    assert master.operate_in_turn(writes[:2]) == [SUCCESS, REFUSALS[RefusalCause.BLOCKED]]
    assert master.direct_operate_binary(25, False) == SUCCESS
    statuses = master.operate_in_turn(writes)
    assert statuses == [SUCCESS] * len(statuses)
    assert commands.persisted_dict()["volt_watt"]["curve"] != [
        {"v_pu": 1.04, "p_pct": 100.0}, {"v_pu": 1.08, "p_pct": 40.0}]  # a draft so far
    assert master.direct_operate_binary(25, True) == SUCCESS  # enable: the draft with it
    persisted = commands.persisted_dict()["volt_watt"]
    assert persisted["enabled"] is True
    assert persisted["curve"] == [{"v_pu": 1.04, "p_pct": 100.0}, {"v_pu": 1.08, "p_pct": 40.0}]
    assert master.integrity_poll().bi[77] == (True, ONLINE)


def _refused(gateway, master, writes, apply, status):
    commands = gateway.commands
    before, effective = commands.persisted_dict(), commands.effective_dict()
    statuses = master.operate_in_turn([*writes, apply])
    assert statuses[-1] == status, statuses
    assert commands.persisted_dict() == before
    assert commands.effective_dict() == effective
    return statuses


@pytest.mark.parametrize(("number", "writes", "status", "detail", "why"), [
    (4, curve_writes(4, VOLT_VAR, PCT_VARS, CURVE)[:-2], OUT_OF_RANGE, "gap",
     "4 points declared, the 4th never written: a gap"),
    (5, curve_writes(5, VOLT_VAR, PCT_VARS, [(95.0, 10.0), (90.0, 0.0)]), OUT_OF_RANGE,
     "must not decrease", "X decreasing: the core's validator refuses it"),
    (6, curve_writes(6, VOLT_VAR, PCT_VARS, [(95.0, 150.0), (105.0, 0.0)]), OUT_OF_RANGE,
     "q_pct", "Q 150 %: outside the core's range for a volt-var point"),
    (7, curve_writes(7, VOLT_WATT, PCT_WATTS, [(104.0, 100.0), (108.0, 0.0)]), NOT_SUPPORTED,
     "mode type", "a volt-watt curve named as volt-var's"),
])
def test_a_bad_volt_var_curve_is_refused_and_nothing_changes(gateway, master, number, writes,
                                                            status, detail, why):
    statuses = _refused(gateway, master, writes, ("AO", 217, number), status)
    assert statuses[:-1] == [SUCCESS] * (len(statuses) - 1), why  # the edits: drafts only
    said = gateway.app.adapters[0].status()["commands"]["last_refusal"]
    assert said.startswith(f"AO217={number}") and detail in said, said


def test_more_points_than_the_core_takes_is_out_of_range(gateway, master):
    before = gateway.commands.persisted_dict()
    assert master.operate_in_turn([("AO", 244, 8), ("AO", 246, 9)]) == [SUCCESS, OUT_OF_RANGE]
    assert gateway.commands.persisted_dict() == before


def test_the_curve_an_enabled_function_follows_is_locked(gateway, master):
    commands = gateway.commands
    assert commands.persisted_dict()["volt_var"]["enabled"] is True
    number = int(master.integrity_poll().ai[297][0])
    before = commands.persisted_dict()
    statuses = master.operate_in_turn([("AO", 244, number), ("AO", 249, 920)])
    assert statuses == [SUCCESS, REFUSALS[RefusalCause.BLOCKED]]
    assert commands.persisted_dict() == before


#: AN2018-001's ride-through curve indices: HV / LV must trip, HV / LV momentary
#: cessation, HF / LF must trip (maps.NOT_OFFERED and docs/dnp3.md say why not served).
RIDE_THROUGH_CURVE_INDICES = (23, 24, 25, 26, 28, 29)


def test_a_must_trip_curve_is_not_taken_and_protection_is_unchanged(gateway, master):
    """A stepwise HV must-trip shape (2 s at 110 %, 13 s at 105 %) written through the
    buffer as a draft (under volt-var's mode type: the must-trip types' values are what
    the project cannot confirm), then named as each ride-through curve: NOT_SUPPORTED
    every time, the trip tables untouched."""
    commands = gateway.commands
    tables = {k: commands.effective_dict()[k]
              for k in ("voltage_ride_through", "frequency_ride_through")}
    writes = curve_writes(8, VOLT_VAR, PCT_VARS, [(2.0, 110.0), (13.0, 105.0)])
    assert master.operate_in_turn(writes) == [SUCCESS] * len(writes)  # a draft only
    for index in RIDE_THROUGH_CURVE_INDICES:
        _refused(gateway, master, [], ("AO", index, 8), NOT_SUPPORTED)
    assert {k: commands.effective_dict()[k] for k in tables} == tables
    assert {k: commands.persisted_dict()[k] for k in tables} == tables
