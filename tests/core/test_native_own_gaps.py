"""Issue 18, first do no harm: gaps in keeping the device's own 705 / 706 (as first
seen) found by review, each reproduced against the simulator through the real HAL over
loopback Modbus TCP (the rigs of :mod:`tests.core.test_native_own_functions`).
"""

from __future__ import annotations

import json
import logging

import pytest

from tests.core import test_native_own_functions as own

rig = own.rig
run, point, kinds, writes = own.run, own.point, own.kinds, own.writes
derived, restart, record, vv_last = own.derived, own.restart, own.record, own.vv_last
PROTECTION, CAT_B, NO_REACTIVE = own.PROTECTION, own.CAT_B, own.NO_REACTIVE


def _warnings(caplog, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelname == "WARNING" and text in r.getMessage())


# -- 1. a failing read of one function's own

def unreadable(sim, model: int) -> None:
    """After discovery, the model's ID reads wrong: every read of it raises (the HAL
    takes the map as moved), the other models read as ever."""
    sim.control.request("set_point", model=model, point="ID", value=65000)


def test_a_failing_706_read_keeps_the_selectors_own_volt_var_and_the_other_programs(
        rig, tmp_path, caplog):
    """706 unreadable: its own stays unknown (706 not programmed), but 705's own is kept
    once read, volt-var and the must-trip programs go on, and no var enable switches
    the selector's volt-var off; the failure is logged once, not every cycle."""
    sim, inv, ctl, events = rig(PROTECTION)
    unreadable(sim, 706)
    own_last = vv_last(sim)
    with caplog.at_level(logging.WARNING):
        t = run(inv, ctl, 6)
    assert point(sim, 705, "Ena") == 1
    assert point(sim, 704, "VarSetEna") == 0
    assert ctl.status.steering["volt_var"]["by"] == "native"
    assert ctl.status.steering["hv_trip"]["by"] == "native"
    vw = ctl.status.steering["volt_watt"]
    assert vw["by"] == "gateway" and "could not be read" in vw["why"]
    assert _warnings(caplog, "own volt_watt failed") == 1
    kept = next(iter(record(tmp_path).values()))["functions"]
    assert set(kept) == {"volt_var"}  # the one read is kept, the other still missing
    assert kept["volt_var"]["enabled"] is True
    assert kept["volt_var"]["points"][-1] == pytest.approx(list(own_last))
    run(inv, ctl, 2, t0=t)
    ctl.on_stop()
    assert point(sim, 705, "Ena") == 1


def test_an_unread_705_holds_the_var_enable_back(rig, tmp_path):
    """705's own unknown (its read fails): no var or PF enable is written, which on a
    selector-style device would switch the device's volt-var off."""
    sim, inv, ctl, events = rig(PROTECTION)
    unreadable(sim, 705)
    run(inv, ctl, 6)
    assert point(sim, 705, "Ena") == 1
    assert point(sim, 704, "VarSetEna") == 0 and point(sim, 704, "PFWInjEna") == 0
    vv = ctl.status.steering["volt_var"]
    assert vv["by"] == "device" and "could not be read" in vv["why"]
    assert ctl.status.steering["hv_trip"]["by"] == "native"  # 707-711 programmed as ever


# -- 2. a restart that stands aside (or stops) first; a rediscovery before program()

def _killed_in_pf_mode(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    own_last = vv_last(sim)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0  # the PF mode switched the device's volt-var off
    return sim, inv, ctl, events, t, own_last


def test_a_restart_that_stands_aside_first_puts_the_devices_own_volt_var_back(rig, tmp_path):
    sim, inv, _, _, t, own_last = _killed_in_pf_mode(rig)
    ctl2, events2 = restart(inv, CAT_B, str(tmp_path))
    run(inv, ctl2, 2, t0=t, drop="Hz")  # a measurement not understood at once
    assert ctl2.status.standing_aside is not None
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(own_last)
    assert "native_restored" in kinds(events2)


def test_a_restart_that_stops_at_once_puts_the_devices_own_volt_var_back(rig, tmp_path):
    sim, inv, _, _, t, own_last = _killed_in_pf_mode(rig)
    ctl2, events2 = restart(inv, CAT_B, str(tmp_path))
    ctl2.on_stop()
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(own_last)


def test_standing_aside_after_a_rediscovery_uses_the_new_devices_own(rig, tmp_path):
    """Another device found on the unit (its volt-var off): standing aside before any
    program must not switch on the previous device's volt-var in it."""
    sim, inv, ctl, events, t, _ = _killed_in_pf_mode(rig)
    sim.control.set_point(1, "SN", "SWAP00002")
    inv.connect()  # rediscovered: the next cycle stands aside before any program
    n = writes(sim, "705/Ena")
    run(inv, ctl, 2, t0=t, drop="Hz")
    assert ctl.status.standing_aside is not None
    assert point(sim, 705, "Ena") == 0 and writes(sim, "705/Ena") == n
    assert "native_restored" not in kinds(events)


# -- 3. putting back an own-off function: only over the gateway's own program

def test_an_own_off_volt_watt_switched_on_by_its_owner_is_not_switched_off(rig, tmp_path):
    """A device stating no serial number: the gateway programmed its volt-watt (own off);
    then another device (or the owner) on the unit runs its own volt-watt curve. Started
    with volt-watt off in the settings, the gateway leaves it on: what the device holds
    is not the gateway's program."""
    sim, inv, ctl, events = rig(None, models=own.VW_MODELS)
    sim.control.set_point(1, "SN", "")
    inv.connect()
    assert point(sim, 706, "Ena") == 0
    t = run(inv, ctl, 4)  # rule21: the gateway's volt-watt programmed and on
    assert point(sim, 706, "Ena") == 1
    kept = next(iter(record(tmp_path).values()))["functions"]["volt_watt"]
    assert kept["written"] is True and kept["programmed"][0]["enabled"] is True
    own.own_volt_watt_on(sim)  # the swapped device's own curve, on
    ctl2, events2 = restart(inv, own.VW_OFF, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 706, "Ena") == 1
    assert own.flat(own.vw_curve(sim)) == pytest.approx(own.flat(own.OWN_VW))
    assert "native_owner_changed" in kinds(events2)
    assert "native_restored" not in kinds(events2)
    assert next(iter(record(tmp_path).values()))["functions"]["volt_watt"]["written"] is False


def test_an_own_off_volt_watt_holding_the_gateways_program_is_switched_off_again(
        rig, tmp_path):
    """The same after a restart, the device still holding the gateway's program: Ena 0,
    its own state as first seen."""
    sim, inv, ctl, events = rig(None, models=own.VW_MODELS)
    t = run(inv, ctl, 4)
    assert point(sim, 706, "Ena") == 1
    ctl2, events2 = restart(inv, own.VW_OFF, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 706, "Ena") == 0
    assert "native_restored" in kinds(events2)


# -- 4. steering = "immediate"

def test_immediate_steering_puts_a_selectors_volt_var_back_when_the_settings_leave_it(rig):
    """Immediate: the gateway's var enable switched the selector's volt-var off; the
    settings then have no reactive mode: its own volt-var is on again."""
    sim, inv, ctl, events = rig(own.SELECTOR, steering="immediate")
    t = run(inv, ctl, 4)
    assert point(sim, 704, "VarSetEna") == 1 and point(sim, 705, "Ena") == 0
    ctl.apply_settings(NO_REACTIVE)
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(own.OWN_VV_LAST)
    assert "native_restored" in kinds(events)
    choice = ctl.status.steering["volt_var"]
    assert choice["by"] == "device" and "put back" in choice["why"]


def test_immediate_steering_puts_the_own_volt_watt_back_after_a_restart(rig, tmp_path):
    """Programmed by an auto run, then started with steering = "immediate" and volt-watt
    off: the device's own volt-watt curve is put back."""
    sim, inv, ctl, events = rig(None, models=own.VW_MODELS)
    own.own_volt_watt_on(sim)
    t = run(inv, ctl, 4)
    assert own.flat(own.vw_curve(sim)) == pytest.approx([106.0, 100.0, 110.0, 0.0])
    from inverter_agent.core.controller import Controller
    from inverter_agent.core.events import EventLog
    inv.connect()
    events2 = EventLog(str(tmp_path))
    ctl2 = Controller(inv, own.VW_OFF, events2, steering="immediate", control_period_s=0.2,
                      state_dir=str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 706, "Ena") == 1
    assert own.flat(own.vw_curve(sim)) == pytest.approx(own.flat(own.OWN_VW))


# -- 5. the var maximum unknown

def test_volt_var_is_put_back_while_the_var_maximum_is_unknown(rig):
    """705 Ena 0 written for a PF mode; then no reactive mode, and the device's var
    maximum unreadable: its own volt-var is switched on again all the same."""
    sim, inv, ctl, events = rig(PROTECTION)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0
    ctl.apply_settings(NO_REACTIVE)
    run(inv, ctl, 3, t0=t, drop="VArMaxInj")
    assert ctl.assessment is not None and not ctl.assessment.reactive_ok
    assert point(sim, 705, "Ena") == 1
    assert "native_restored" in kinds(events)


def test_a_pf_mode_not_carried_for_want_of_a_var_maximum_gives_the_device_its_volt_var(rig):
    """The PF mode switched 705 off; the var maximum then unknown, the gateway carries
    no reactive mode: the device's own volt-var is on again, not none at all."""
    sim, inv, ctl, events = rig(PROTECTION)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0
    run(inv, ctl, 3, t0=t, drop="VArMaxInj")
    assert point(sim, 705, "Ena") == 1
    assert ctl.status.steering["volt_var"]["by"] == "device"


# -- 6. optional points the device does not implement

def _ctl_pmin(n: int) -> list[str]:
    return [f"Ctl[{k}].PMin" for k in range(1, n + 1)]


def test_optional_points_the_device_does_not_carry_raise_no_alarm(rig, tmp_path, caplog):
    """703 ESRndTms and 711 PMin are optional in SunSpec; this device does not implement
    them (they read unimplemented, a write of them is ignored): the rest is programmed
    and compared, noted once, no alarm, no fallback, and no re-program at read-backs."""
    path = derived(tmp_path, quirks={"not_implemented": {"703": ["ESRndTms"],
                                                         "711": _ctl_pmin(2)}})
    sim, inv, ctl, events = rig(path, verify_every_s=0.5)
    with caplog.at_level(logging.INFO, logger="hal.settings_native"):
        t = run(inv, ctl, 5)
        n703 = writes(sim, "703/ESVHi")
        run(inv, ctl, 5, t0=t + 1.0)  # read-backs due
    assert point(sim, 703, "ESRndTms") is None and point(sim, 711, "Ctl[1].PMin") is None
    for f, name in (("enter_service", "random_s"), ("freq_watt", "p_min_pct")):
        choice = ctl.status.steering[f]
        assert choice["by"] == "native" and name in choice["why"], choice
    assert not ctl.status.alarms
    assert "native_fallback" not in kinds(events)
    assert "native_curve_mismatch" not in kinds(events)
    assert writes(sim, "703/ESVHi") == n703 >= 1  # programmed once, then held
    notes = [r for r in caplog.records if "does not carry" in r.getMessage()]
    assert len(notes) == 2  # one for 703, one for 711


def test_a_mandatory_point_the_device_leaves_unstated_is_a_refused_program(rig, tmp_path):
    path = derived(tmp_path, quirks={"not_implemented": {"711": ["Ctl[1].KOf", "Ctl[2].KOf"]}})
    sim, inv, ctl, events = rig(path)
    run(inv, ctl, 4)
    assert ctl.status.steering["freq_watt"]["by"] == "gateway"
    assert "freq_watt" in " ".join(ctl.status.alarms)


# -- 7. / 8. the record file: not saved, and never written with this device alone

def test_an_unsaved_record_is_shown_as_not_saved(rig, tmp_path):
    """device_own.json cannot be written (a directory in its place): status says the
    device's own are not saved, and why, never that they were recorded."""
    (tmp_path / "device_own.json").mkdir()
    sim, inv, ctl, events = rig(PROTECTION)
    run(inv, ctl, 2)
    shown = ctl.status_view()["own_recorded"]
    assert shown.startswith("not saved: ") and "device_own.json" in shown


def test_a_failed_read_of_the_record_keeps_the_other_devices(tmp_path, monkeypatch):
    """The file cannot be read when a device's record is saved (an I/O error): the save
    is aborted (logged), the other devices' records stay."""
    import builtins

    from hal.curves import VoltVarCurve
    from inverter_agent.core import own_record
    recs = own_record.OwnRecords(str(tmp_path))
    curve = VoltVarCurve(points=((92.0, 30.0), (108.0, -30.0)), ref="var_max")
    assert recs.save("A/M/1", own_record.OwnRecord(identity={"serial": "1"},
                                                   own={"volt_var": curve}))
    real_open = builtins.open

    def failing(path, *a, **kw):
        if str(path) == recs.path:
            raise OSError(5, "Input/output error")
        return real_open(path, *a, **kw)
    monkeypatch.setattr(builtins, "open", failing)
    assert not recs.save("B/M/2", own_record.OwnRecord(identity={"serial": "2"}))
    assert "cannot be read" in (recs.error or "")
    monkeypatch.undo()
    assert set(json.loads((tmp_path / "device_own.json").read_text())["devices"]) == {"A/M/1"}


# -- 9. a refused adoption leaves a pending reversion as it was

def test_a_refused_adoption_writes_a_pending_reversion_timer_back(rig, tmp_path):
    from hal.curves import CurveError, VoltWattCurve
    sim, inv, ctl, events = rig(derived(tmp_path, quirks={"refuse_adoption_models": [706]}))
    sim.control.set_point(706, "Crv[1].ReadOnly", 0)  # the program goes into set 1
    sim.control.set_point(706, "RvrtTms", 300)  # a temporary curve's reversion pending
    with pytest.raises(CurveError):
        inv.write_volt_watt_curve(VoltWattCurve(points=((106.0, 100.0), (110.0, 0.0)),
                                                ref="w_max"))
    assert writes(sim, "706/RvrtTms") >= 1  # written 0 with the program ...
    assert point(sim, 706, "RvrtTms") == 300  # ... and back
