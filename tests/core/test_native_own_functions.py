"""Issue 18, first do no harm on IEEE 1547-2018 devices: a function the effective
settings have off is left to the device (its own 705 / 706 never switched off by the
gateway, and put back as first seen when the settings turn it off after the gateway
had programmed it); standing aside or stopping leaves the device its own volt-watt;
a point the device does not state is unknown, not 0; a set in use that the device
refuses to adopt is written back as it was.

Through the real HAL over loopback Modbus TCP against the simulator; the device's own
settings are put in by the simulator's control channel (its panel), as a device ships
them, before the gateway's first cycle.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from inverter_agent.functions import get_profile
from simulator.profile import PROFILE_DIR
from tests.core import test_steering as base

rig = base.rig  # the simulator, the HAL and a controller (rule21) on it
run, point, kinds, writes = base.run, base.point, base.kinds, base.writes
SELECTOR, REFUSES = base.SELECTOR, base.REFUSES
PROTECTION = PROFILE_DIR / "1547-native-protection.json"
VW_MODELS = "1,701,702,703,704,705,706"
#: The device's own volt-watt, unlike the rule21 curve (106 % -> 100, 110 % -> 0).
OWN_VW = ((105.0, 100.0), (109.0, 20.0))
#: The selector profile's own volt-var curve 1 (pysunspec2's device data).
OWN_VV_LAST = (107.0, -30.0)

RULE21 = get_profile("rule21")
VW_OFF = replace(RULE21, volt_watt=replace(RULE21.volt_watt, enabled=False))
NO_REACTIVE = replace(RULE21, volt_var=replace(RULE21.volt_var, enabled=False))


def derived(tmp_path, quirks: dict | None = None, points: dict | None = None) -> str:
    """The 1547-native-protection profile (701-712) with quirks or points changed."""
    prof = json.loads(PROTECTION.read_text())
    prof["quirks"].update(quirks or {})
    for m, pts in (points or {}).items():
        prof.setdefault("points", {}).setdefault(str(m), {}).update(pts)
    path = tmp_path / "derived.json"
    path.write_text(json.dumps(prof))
    return str(path)


def flat(curve) -> list[float]:
    return [x for p in curve for x in p]


def model_writes(sim, model: int) -> dict[str, int]:
    return {k: n for k, n in sim.control.unit_state(1)["writes"].items()
            if k.startswith(f"{model}/")}


def own_volt_watt_on(sim) -> None:
    """The device ships its own volt-watt on, with its own curve (the panel)."""
    for i, (v, w) in enumerate(OWN_VW, start=1):
        sim.control.set_point(706, f"Crv[1].Pt[{i}].V", v)
        sim.control.set_point(706, f"Crv[1].Pt[{i}].W", w)
    sim.control.set_point(706, "Ena", 1)


def vw_curve(sim) -> tuple[tuple[float, float], ...]:
    n = point(sim, 706, "Crv[1].ActPt")
    return tuple((point(sim, 706, f"Crv[1].Pt[{i}].V"), point(sim, 706, f"Crv[1].Pt[{i}].W"))
                 for i in range(1, n + 1))


def vv_last(sim) -> tuple[float, float]:
    n = point(sim, 705, "Crv[1].ActPt")
    return point(sim, 705, f"Crv[1].Pt[{n}].V"), point(sim, 705, f"Crv[1].Pt[{n}].Var")


def test_volt_watt_off_in_the_settings_leaves_the_devices_own_706_on_untouched(rig):
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    own_volt_watt_on(sim)
    ctl.apply_settings(VW_OFF)
    run(inv, ctl, 5)
    assert point(sim, 706, "Ena") == 1
    assert model_writes(sim, 706) == {}  # nothing written to 706 at all
    assert flat(vw_curve(sim)) == pytest.approx(flat(OWN_VW))
    choice = ctl.status.steering["volt_watt"]
    assert choice["by"] == "device" and "never switched off" in choice["why"]


def test_volt_watt_on_then_off_puts_the_devices_own_curve_back(rig):
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    own_volt_watt_on(sim)
    t = run(inv, ctl, 4)  # rule21: volt-watt on, the gateway's curve programmed
    assert ctl.status.steering["volt_watt"]["by"] == "native"
    assert flat(vw_curve(sim)) == pytest.approx([106.0, 100.0, 110.0, 0.0])
    ctl.apply_settings(VW_OFF)  # the utility turns volt-watt off
    run(inv, ctl, 3, t0=t)
    assert point(sim, 706, "Ena") == 1
    assert flat(vw_curve(sim)) == pytest.approx(flat(OWN_VW))  # the device's own, as first seen
    choice = ctl.status.steering["volt_watt"]
    assert choice["by"] == "device" and "put back" in choice["why"]
    assert "native_restored" in kinds(events)
    n = len(model_writes(sim, 706))
    run(inv, ctl, 3, t0=t + 1.0)  # put back once, then left alone
    assert len(model_writes(sim, 706)) == n


def test_volt_watt_off_before_and_on_at_the_device_again_is_its_own_off_state(rig):
    """A device whose own volt-watt was off gets Ena 0 back after the gateway's: its
    own state, not less than it had."""
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    assert point(sim, 706, "Ena") == 0
    t = run(inv, ctl, 4)
    assert point(sim, 706, "Ena") == 1  # the gateway's volt-watt programmed
    ctl.apply_settings(VW_OFF)
    run(inv, ctl, 3, t0=t)
    assert point(sim, 706, "Ena") == 0
    assert ctl.status.steering["volt_watt"]["by"] == "device"


def test_standing_aside_and_stopping_leave_the_devices_own_volt_watt_on(rig):
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    own_volt_watt_on(sim)
    ctl.apply_settings(VW_OFF)
    run(inv, ctl, 5)
    run(inv, ctl, 3, drop="Hz")  # a measurement not understood: stand aside
    assert ctl.status.standing_aside is not None
    assert point(sim, 706, "Ena") == 1
    run(inv, ctl, 3)  # steering again
    ctl.on_stop()
    assert point(sim, 706, "Ena") == 1
    assert flat(vw_curve(sim)) == pytest.approx(flat(OWN_VW))


def test_standing_aside_switches_an_own_volt_watt_found_off_on_again(rig):
    """On when first seen, off at stand-aside (the gateway's curve or a failed put-back):
    the device gets its volt-watt back."""
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    own_volt_watt_on(sim)
    ctl.apply_settings(VW_OFF)
    run(inv, ctl, 3)
    sim.control.set_point(706, "Ena", 0)  # off now, not by the gateway's settings
    run(inv, ctl, 3, drop="Hz")
    assert point(sim, 706, "Ena") == 1
    assert flat(vw_curve(sim)) == pytest.approx(flat(OWN_VW))
    assert "native_restored" in kinds(events)


def test_no_reactive_mode_in_the_settings_leaves_the_devices_own_volt_var_on(rig):
    sim, inv, ctl, events = rig(SELECTOR)
    ctl.apply_settings(NO_REACTIVE)
    run(inv, ctl, 5)
    assert point(sim, 705, "Ena") == 1
    assert writes(sim, "705/Ena") == 0
    assert vv_last(sim) == pytest.approx(OWN_VV_LAST)
    choice = ctl.status.steering["volt_var"]
    assert choice["by"] == "device" and "never switched off" in choice["why"]


def test_volt_var_on_then_no_reactive_mode_puts_the_devices_own_curve_back(rig):
    sim, inv, ctl, events = rig(SELECTOR)
    t = run(inv, ctl, 4)
    assert vv_last(sim) == pytest.approx(base.CAT_B_LAST)  # the gateway's curve
    ctl.apply_settings(NO_REACTIVE)
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(OWN_VV_LAST)
    assert ctl.status.steering["volt_var"]["by"] == "device"


def test_constant_pf_switches_the_devices_volt_var_off_while_running_and_back_after(rig):
    """Reactive modes exclude each other: with constant PF on, 705 is off (the gateway
    carries the PF), with no alarm at its read-backs; standing aside, it is on again."""
    sim, inv, ctl, events = rig(SELECTOR, verify_every_s=0.5)
    ctl.apply_settings(get_profile("ieee1547-2018-cat-b"))  # constant PF 1.0
    t = run(inv, ctl, 4)
    run(inv, ctl, 4, t0=t + 1.0)  # read-backs due: the device's off curve is what it holds
    assert point(sim, 705, "Ena") == 0
    choice = ctl.status.steering["volt_var"]
    assert choice["by"] == "native" and "fixed_pf is on" in choice["why"]
    assert "native_curve_mismatch" not in kinds(events) and not ctl.status.alarms
    run(inv, ctl, 3, drop="Hz")
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(OWN_VV_LAST)


def test_after_standing_aside_a_pf_profile_switches_the_devices_volt_var_off_again(rig):
    """Not a selector: nothing but the gateway switches 705 off for the PF mode. Back
    from standing aside (705 on again), it is off again at once, not at the next
    read-back with a drift alarm."""
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    sim.control.set_point(705, "Ena", 1)  # the device's own volt-var on
    ctl.apply_settings(get_profile("ieee1547-2018-cat-b"))
    t = run(inv, ctl, 3)
    assert point(sim, 705, "Ena") == 0
    t = run(inv, ctl, 3, t0=t, drop="Hz")
    assert point(sim, 705, "Ena") == 1
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Ena") == 0
    assert "native_curve_mismatch" not in kinds(events) and not ctl.status.alarms


def test_unstated_703_and_711_points_are_unknown_and_programmed(rig, tmp_path):
    """The profile's enter service and droop equal the device's, except one point the
    device leaves unstated (not implemented): unknown, not 0, so it is programmed."""
    sim, inv, ctl, events = rig(derived(tmp_path, points={703: {"ESRndTms": None},
                                                          711: {"Ctl[1].PMin": None}}))
    es, fd = inv.read_enter_service(), inv.read_freq_droop()
    assert es.random_s is None and fd.p_min_pct is None
    run(inv, ctl, 6)
    assert point(sim, 703, "ESRndTms") == 0
    assert point(sim, 711, "Ctl[1].PMin") == 0
    assert writes(sim, "711/AdptCtlReq") >= 1
    assert ctl.status.steering["enter_service"]["by"] == "native"
    assert ctl.status.steering["freq_watt"]["by"] == "native"


#: Per model, points of set 1 that the gateway's program would change.
SET1 = {705: ("Crv[1].Pt[4].V", "Crv[1].Pt[4].Var", "Crv[1].DeptRef"),
        706: ("Crv[1].Pt[1].V", "Crv[1].Pt[2].V", "Crv[1].Pt[2].W"),
        708: ("Crv[1].MustTrip.Pt[1].Tms", "Crv[1].MustTrip.ActPt", "Crv[1].MomCess.ActPt"),
        710: ("Crv[1].MustTrip.Pt[1].Hz", "Crv[1].MustTrip.Pt[1].Tms"),
        711: ("Ctl[1].DbOf", "Ctl[1].KOf")}


def test_a_refused_adoption_of_the_set_in_use_leaves_it_as_it_was(rig, tmp_path):
    """Set 1 writable (the program goes into the set in use) and every adoption refused:
    the set is written back as it was, not left half-written."""
    sim, inv, ctl, events = rig(derived(tmp_path, quirks={"refuse_adoption": True}))
    for model in (705, 706, 708, 710):
        sim.control.set_point(model, "Crv[1].ReadOnly", 0)
    sim.control.set_point(711, "Ctl[1].ReadOnly", 0)
    sim.control.set_point(711, "Ctl[1].DbOf", 0.05)  # unlike the profile's: programmed
    before = {m: [point(sim, m, p) for p in pts] for m, pts in SET1.items()}
    run(inv, ctl, 5)
    for f in ("volt_var", "volt_watt", "hv_trip", "hf_trip", "freq_watt"):
        assert ctl.status.steering[f]["by"] == "gateway", f
    assert writes(sim, "705/Crv[1].Pt[4].Var") >= 1  # it was written into set 1 ...
    after = {m: [point(sim, m, p) for p in pts] for m, pts in SET1.items()}
    assert after == before  # ... and written back


# -- the device's own functions as first seen, kept across restarts (device_own.json)

CAT_B = get_profile("ieee1547-2018-cat-b")  # constant PF 1.0: 705 Ena written 0


def restart(inv, settings, state_dir):
    """The gateway started again on the same device (the last one killed, never
    stopped): discovered afresh, a new controller over the same state directory."""
    from inverter_agent.core.controller import Controller
    from inverter_agent.core.events import EventLog
    inv.connect()
    events = EventLog(state_dir)
    return Controller(inv, settings, events, control_period_s=0.2,
                      state_dir=state_dir), events


def record(tmp_path) -> dict:
    return json.loads((tmp_path / "device_own.json").read_text())["devices"]


def test_a_restart_after_a_kill_in_a_pf_mode_switches_the_devices_own_volt_var_on(
        rig, tmp_path):
    """Killed after it wrote 705 Ena 0 for a PF mode: at the next start, with volt-var
    off and no reactive mode, the device's own volt-var (as first seen) is on again."""
    sim, inv, ctl, events = rig(PROTECTION)
    own_last = vv_last(sim)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0 and writes(sim, "705/Ena") >= 1
    assert all(r["functions"]["volt_var"]["written"] for r in record(tmp_path).values())
    ctl2, events2 = restart(inv, NO_REACTIVE, str(tmp_path))  # no on_stop: killed
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(own_last)
    choice = ctl2.status.steering["volt_var"]
    assert choice["by"] == "device" and "put back" in choice["why"]
    restored = [e for e in events2.read() if e["kind"] == "native_restored"]
    assert restored and "before it restarted" in restored[-1]["detail"]
    assert not any(r["functions"]["volt_var"]["written"] for r in record(tmp_path).values())
    n = writes(sim, "705/Ena")
    run(inv, ctl2, 3, t0=t + 1.0)  # put back once, then left alone
    assert writes(sim, "705/Ena") == n


def test_a_restart_after_a_kill_puts_the_devices_own_volt_watt_curve_back(rig, tmp_path):
    sim, inv, ctl, events = rig(None, models=VW_MODELS)
    own_volt_watt_on(sim)
    t = run(inv, ctl, 4)  # rule21: the gateway's volt-watt curve programmed
    assert flat(vw_curve(sim)) == pytest.approx([106.0, 100.0, 110.0, 0.0])
    ctl2, events2 = restart(inv, VW_OFF, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 706, "Ena") == 1
    assert flat(vw_curve(sim)) == pytest.approx(flat(OWN_VW))
    assert "native_restored" in kinds(events2)


def test_a_restart_with_no_gateway_write_since_leaves_the_device_untouched(rig, tmp_path):
    """The record's own differs from the device now (switched off at its panel), but
    the gateway never wrote it: the device's state stands, nothing is written."""
    sim, inv, ctl, events = rig(PROTECTION)
    ctl.apply_settings(replace(NO_REACTIVE, volt_watt=VW_OFF.volt_watt))
    t = run(inv, ctl, 4)
    assert model_writes(sim, 705) == {} and model_writes(sim, 706) == {}
    sim.control.set_point(705, "Ena", 0)  # at the panel, by the installer
    ctl2, events2 = restart(inv, ctl.settings, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert model_writes(sim, 705) == {} and model_writes(sim, 706) == {}
    assert point(sim, 705, "Ena") == 0
    assert "native_restored" not in kinds(events2)
    own = next(iter(record(tmp_path).values()))["functions"]["volt_var"]
    assert own["enabled"] is True and own["written"] is False  # as first seen
    recorded = ctl2.status_view()["own_recorded"]  # shown in status: the first run's
    assert recorded == ctl.status_view()["own_recorded"] and recorded.endswith("Z")


def test_a_corrupt_record_is_logged_with_its_path_and_the_device_read_afresh(
        rig, tmp_path, caplog):
    path = tmp_path / "device_own.json"
    path.write_text('{"version": 1, "devices": {"SunSim/SIM-1')  # torn
    sim, inv, ctl, events = rig(PROTECTION)
    own_last = vv_last(sim)
    ctl.apply_settings(CAT_B)
    with caplog.at_level("WARNING"):
        t = run(inv, ctl, 3)
    assert any(str(path) in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)
    assert (tmp_path / "device_own.json.corrupt").exists()
    own = next(iter(record(tmp_path).values()))["functions"]["volt_var"]
    assert own["enabled"] is True and own["points"][-1] == pytest.approx(list(own_last))
    assert point(sim, 705, "Ena") == 0  # the PF mode steered as ever
    ctl2, _ = restart(inv, NO_REACTIVE, str(tmp_path))  # and the new record serves
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 705, "Ena") == 1


def test_another_device_identity_gets_its_own_record(rig, tmp_path):
    """A device swapped on the same unit (another serial number) is read afresh: the
    old device's record, with the gateway's write in it, is not applied to it."""
    sim, inv, ctl, events = rig(PROTECTION)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0
    sim.control.set_point(1, "SN", "SWAP00002")  # the new device, its volt-var off
    ctl2, events2 = restart(inv, NO_REACTIVE, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 705, "Ena") == 0  # its own state, left as it is
    assert "native_restored" not in kinds(events2)
    devices = record(tmp_path)
    assert set(devices) == {"SunSim/SIM-10000/SIM00001", "SunSim/SIM-10000/SWAP00002"}
    assert devices["SunSim/SIM-10000/SIM00001"]["functions"]["volt_var"]["written"] is True
    new = devices["SunSim/SIM-10000/SWAP00002"]["functions"]["volt_var"]
    assert new["enabled"] is False and new["written"] is False


def test_a_restart_after_a_kill_gives_a_selector_its_volt_var_back_after_a_var_enable(
        rig, tmp_path):
    """The gateway carried volt-var itself (autonomous VRef: 705 never written) with the
    var enable, which switched the selector's own volt-var off; killed, then started
    with no reactive mode: the device's own volt-var is on again."""
    sim, inv, ctl, events = rig(SELECTOR)
    s = get_profile("rule21")
    ctl.apply_settings(replace(s, volt_var=replace(s.volt_var, vref_auto=True)))
    t = run(inv, ctl, 6)
    assert point(sim, 704, "VarSetEna") == 1 and point(sim, 705, "Ena") == 0
    assert model_writes(sim, 705) == {}
    ctl2, events2 = restart(inv, NO_REACTIVE, str(tmp_path))
    run(inv, ctl2, 4, t0=t)
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(OWN_VV_LAST)
    assert "native_restored" in kinds(events2)


def test_a_rediscovery_uses_the_record_not_what_the_gateway_left_in_the_device(
        rig, tmp_path):
    """The link lost and back (the device discovered again) in a PF mode, then no
    reactive mode: the device's own volt-var as first seen, not the Ena 0 of the
    gateway's PF mode, is put back."""
    sim, inv, ctl, events = rig(PROTECTION)
    own_last = vv_last(sim)
    ctl.apply_settings(CAT_B)
    t = run(inv, ctl, 4)
    assert point(sim, 705, "Ena") == 0
    inv.connect()  # rediscovered: a new device map, read afresh
    t = run(inv, ctl, 2, t0=t)
    ctl.apply_settings(NO_REACTIVE)
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Ena") == 1
    assert vv_last(sim) == pytest.approx(own_last)
    assert ctl.status.steering["volt_var"]["by"] == "device"


def test_a_device_stating_no_serial_is_recorded_by_its_unit(rig, tmp_path):
    sim, inv, ctl, events = rig(PROTECTION)
    sim.control.set_point(1, "SN", "")  # no serial number stated
    inv.connect()
    run(inv, ctl, 2)
    assert set(record(tmp_path)) == {"SunSim/SIM-10000/unit 1 (no serial stated)"}
    assert inv.identity() == {"unit": 1, "manufacturer": "SunSim", "model": "SIM-10000",
                              "serial": None}
