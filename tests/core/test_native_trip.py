"""Issue 18, protection in the device: the active profile's must-trip and momentary
cessation programmed into SunSpec 707-710, adopted and read back, kept right, and the
gateway's own trip a backup that never fires ahead of the device.

Through the real HAL over loopback Modbus TCP against the simulator, whose protection
runs from its 707-710 registers (simulator/protection.py, written from the SunSpec
model text, not from the gateway's functions).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from inverter_agent.core.steering import (
    BACKUP_EXTRA_S,
    TIME_ACCURACY,
    TRIP_FUNCTIONS,
    backup_behind_device,
    desired_trip_curve,
)
from inverter_agent.core.view import HEALTH_ALARM
from inverter_agent.functions import get_profile
from inverter_agent.functions import ride_through as rt
from simulator.profile import PROFILE_DIR
from simulator.protection import Protection
from tests.core import test_steering as base

rig = base.rig  # the simulator, the HAL and a controller (rule21) on it
run, point, kinds = base.run, base.point, base.kinds
PROTECTION = str(PROFILE_DIR / "1547-native-protection.json")
REFUSES_HV = str(PROFILE_DIR / "1547-refuses-hv-trip.json")
#: Rule 21 (the rule21 profile, UL 1741 SA Table SA9.1 and the vendor frequency profile).
RULE21 = {708: {"must": [(110.0, 13.0), (120.0, 0.16)], "cease": [(110.0, 12.0)]},
          707: {"must": [(50.0, 1.5), (70.0, 11.0), (88.0, 21.0)], "cease": [(50.0, 1.0)]},
          709: {"must": [(57.0, 0.16), (58.5, 300.0)], "cease": []},
          710: {"must": [(60.5, 300.0), (62.0, 0.16)], "cease": []}}


def device_curve(sim, model: int, curve: str) -> list[tuple[float, float]]:
    x = "V" if model in (707, 708) else "Hz"
    n = point(sim, model, f"Crv[1].{curve}.ActPt")
    return sorted((round(point(sim, model, f"Crv[1].{curve}.Pt[{i}].{x}"), 3),
                   round(point(sim, model, f"Crv[1].{curve}.Pt[{i}].Tms"), 3))
                  for i in range(1, n + 1))


def protection(sim) -> dict:
    return sim.control.unit_state(1)["protection"]


def test_the_profiles_trip_settings_are_the_devices_in_use(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    assert device_curve(sim, 708, "MustTrip") == [(110.0, 2.0), (120.0, 0.16)]  # factory
    run(inv, ctl, 10)
    for model, want in RULE21.items():
        assert device_curve(sim, model, "MustTrip") == want["must"], model
        # No permitted trip ahead of the must-trip: MayTrip is the same curve.
        assert device_curve(sim, model, "MayTrip") == want["must"], model
        assert device_curve(sim, model, "MomCess") == want["cease"], model
        assert point(sim, model, "Ena") == 1
    assert {f: ctl.status.steering[f]["by"] for f in TRIP_FUNCTIONS} == dict.fromkeys(
        TRIP_FUNCTIONS, "native")
    assert ctl.status.steering["volt_var"]["by"] == "native"
    assert not ctl.status.alarms
    assert kinds(events).count("native_curve_programmed") >= 5  # 705 and 707-710


def test_inside_a_ride_through_region_the_device_ceases_and_neither_trips(rig):
    """Rule 21 HV1 (110-120 %): momentary cessation, ride through 12 s. The device
    ceases itself (its 708 MomCess); nobody trips, the gateway writes no cease."""
    sim, inv, ctl, events = rig(PROTECTION)
    t = run(inv, ctl, 8)
    sim.control.set_grid(v_pu=1.15)
    run(inv, ctl, 25, t0=t)  # about 3 s in the region
    p = protection(sim)
    assert p["ceased"] is not None and p["tripped"] is None
    assert point(sim, 703, "ES") == 1  # no cease or trip written by the gateway
    assert not {"trip", "momentary_cessation", "cease_to_energize"} & set(kinds(events))
    sim.control.set_grid(v_pu=1.0)
    wait = time.monotonic() + 3
    while protection(sim)["ceased"] is not None and time.monotonic() < wait:
        time.sleep(0.05)
    assert protection(sim)["ceased"] is None  # back in service with the grid


def test_the_device_trips_first_and_the_gateway_backs_it_up(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    t = run(inv, ctl, 8)
    sim.control.set_grid(v_pu=1.25)  # beyond HV2 120 %: clearing time 0.16 s
    onset = time.monotonic()
    deadline = onset + 3.0
    device_at = gateway_at = None
    while time.monotonic() < deadline and gateway_at is None:
        t = run(inv, ctl, 1, t0=t)
        now = time.monotonic()
        if device_at is None and protection(sim)["tripped"] is not None:
            device_at = now
            assert point(sim, 703, "ES") == 1  # the gateway had not acted before it
        if point(sim, 703, "ES") == 0:
            gateway_at = now
    print(f"\ndevice trip after {protection(sim)['last_trip_after_s']:.3f} s (its own clock); "
          f"seen {device_at - onset:.2f} s, gateway backup at {gateway_at - onset:.2f} s")
    assert device_at is not None and gateway_at is not None and gateway_at >= device_at
    assert protection(sim)["last_trip_after_s"] <= 0.16 + 0.06  # one simulator step
    assert gateway_at - onset >= 0.16 * (1 + TIME_ACCURACY) + BACKUP_EXTRA_S
    assert "trip" in kinds(events)


def test_a_change_at_the_panel_is_programmed_again_with_an_alarm_naming_it(rig):
    sim, inv, ctl, events = rig(PROTECTION, verify_every_s=1.0)
    t = run(inv, ctl, 6)
    sim.control.set_point(708, "Crv[1].MustTrip.Pt[1].Tms", 2.0)  # the panel: HV1 13 s -> 2 s
    run(inv, ctl, 1, t0=t + 1.5)
    assert "native_curve_mismatch" in kinds(events)
    assert any(a.startswith("hv_trip") for a in ctl.status.alarms)
    assert device_curve(sim, 708, "MustTrip") == RULE21[708]["must"]
    run(inv, ctl, 1, t0=t + 3.0)  # read back equal: the alarm clears
    assert not ctl.status.alarms
    sim.control.set_point(707, "Ena", 0)  # the panel switches the protection off
    run(inv, ctl, 1, t0=t + 4.5)
    assert point(sim, 707, "Ena") == 1
    assert any(a.startswith("lv_trip") for a in ctl.status.alarms)


def test_a_device_refusing_708_falls_back_for_hv_trip_alone(rig):
    sim, inv, ctl, events = rig(REFUSES_HV)
    run(inv, ctl, 10)
    choice = ctl.status.steering["hv_trip"]
    assert choice["by"] == "gateway" and "refused" in choice["why"]
    assert [f for f in (*TRIP_FUNCTIONS, "volt_var")
            if ctl.status.steering[f]["by"] != "native"] == ["hv_trip"]
    assert ctl.health == HEALTH_ALARM and any(a.startswith("hv_trip")
                                              for a in ctl.status.alarms)
    fallback = [e["detail"] for e in events.read() if e["kind"] == "native_fallback"]
    assert len(fallback) == 1 and fallback[0].startswith("hv_trip:")
    # The device keeps its own (factory) high-voltage protection, on; nothing ceased.
    assert device_curve(sim, 708, "MustTrip") == [(110.0, 2.0), (120.0, 0.16)]
    assert point(sim, 708, "Ena") == 1
    assert point(sim, 703, "ES") == 1 and protection(sim)["tripped"] is None


def test_standing_aside_leaves_the_device_its_protection_as_programmed(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    run(inv, ctl, 8)
    run(inv, ctl, 3, drop="Hz")  # a measurement not understood: stand aside
    assert ctl.status.standing_aside is not None
    for model, want in RULE21.items():
        assert point(sim, model, "Ena") == 1
        assert device_curve(sim, model, "MustTrip") == want["must"]
    assert point(sim, 705, "Ena") == 1
    ctl.on_stop()
    assert all(point(sim, m, "Ena") == 1 for m in RULE21)


def test_immediate_steering_leaves_the_devices_trip_settings_alone(rig):
    sim, inv, ctl, events = rig(PROTECTION, steering="immediate")
    run(inv, ctl, 5)
    assert all(ctl.status.steering[f]["by"] == "gateway" for f in TRIP_FUNCTIONS)
    assert device_curve(sim, 708, "MustTrip") == [(110.0, 2.0), (120.0, 0.16)]


# -- the backup margin, without a device


@pytest.mark.parametrize("profile", ["rule21", "ieee1547-2018-cat-b", "ieee1547-2018-cat-a"])
def test_the_backup_never_fires_ahead_of_the_device_inside_a_ride_through_region(profile):
    """For every step to a value beyond a threshold (and at the device's 1 % measurement
    edge), the gateway's backup (its engine on the backup table, sampled every 0.1 s)
    fires no earlier than the simulated device running the programmed curves."""
    s = get_profile(profile)
    backup = backup_behind_device(s, lambda f: True)
    for f, (model, table, side) in TRIP_FUNCTIONS.items():
        curve = desired_trip_curve(s, f)
        assert curve is not None
        volts = table == "voltage_ride_through"
        regions = getattr(getattr(s, table), side)
        for r in regions:
            for d in (0.002, 0.01, 0.02, 0.05):  # beyond the threshold by this much
                x = r.threshold + (d if side == "over" else -d) * (1.0 if volts else 10.0)
                dev = _device_trip_time(model, curve, x, volts)
                gw = _gateway_trip_time(getattr(backup, table), x)
                assert dev is not None or gw is None, (profile, r.name, x)
                if gw is not None:
                    assert gw >= dev, (profile, r.name, x, dev, gw)


class _Image:
    """The registers the simulator's protection reads, for one trip model."""

    def __init__(self, model: int, curve) -> None:
        x = "V" if model in (707, 708) else "Hz"
        self.model, self.v = model, {"Ena": 1}
        for name, pts in (("MustTrip", curve.must_trip), ("MomCess", curve.mom_cess)):
            self.v[f"Crv[1].{name}.ActPt"] = len(pts)
            for i, (xv, tv) in enumerate(pts, start=1):
                self.v[f"Crv[1].{name}.Pt[{i}].{x}"] = xv
                self.v[f"Crv[1].{name}.Pt[{i}].Tms"] = tv

    def find(self, mid):
        return self if mid == self.model else None

    def get(self, mid, path, default=None):
        return self.v.get(path, default)


def _device_trip_time(model, curve, x, volts, horizon=400.0):
    """Stepped every 10 ms for the first 2 s (the short clearing times), 50 ms after."""
    p, img = Protection(), _Image(model, curve)
    t = 0.0
    while t <= horizon:
        v = (x * 100.0,) if volts else (100.0,)
        p.step(img, t, v, x if not volts else 60.0, reconnect_s=1e9)
        if p.tripped is not None:
            return t
        t += 0.01 if t < 2.0 else 0.05
    return None


def _gateway_trip_time(table, x, period=0.1, horizon=400.0):
    state, t = None, 0.0
    while t <= horizon:
        out, state = rt.step(table, x, x, state, t)
        if out.trip:
            return t
        t += period
    return None


# -- enter service (703) and frequency droop (711)


def test_enter_service_and_frequency_droop_are_programmed_and_the_device_droops_itself(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    s = ctl.settings
    ctl.apply_settings(replace(
        s, enter_service=replace(s.enter_service, v_low_pu=0.90, delay_s=120.0),
        freq_watt=replace(s.freq_watt, k_of=0.04)))
    t = run(inv, ctl, 8)
    assert (point(sim, 703, "ESVLo"), point(sim, 703, "ESDlyTms")) == (90.0, 120)
    assert point(sim, 711, "Ctl[1].KOf") == pytest.approx(0.04)
    assert point(sim, 711, "Ena") == 1
    assert {f: ctl.status.steering[f]["by"] for f in ("enter_service", "freq_watt",
                                                        "watt_var")} == {
        "enter_service": "native", "freq_watt": "native", "watt_var": "device"}
    assert point(sim, 712, "Ena") == 0  # never written
    before = base.writes(sim, "704/WMaxLimPct")
    sim.control.set_grid(f_hz=60.4)  # over-frequency, inside the continuous region
    run(inv, ctl, 15, t0=t)
    st = sim.control.unit_state(1)
    w_max, dc = st["effective"]["w_max"], st["plant"]["dc_w"]
    want = (min(dc * 0.97, w_max) / w_max - (60.4 - 60.036) / (60.0 * 0.04)) * w_max
    assert st["effective"]["w_limit"] == pytest.approx(want, rel=0.02)  # the device's droop
    # ... and the gateway does not also limit for it.
    assert base.writes(sim, "704/WMaxLimPct") == before
    assert point(sim, 704, "WMaxLimPctEna") == 0 or point(sim, 704, "WMaxLimPct") >= 99.9


def test_a_panel_change_of_the_droop_is_programmed_again(rig):
    sim, inv, ctl, events = rig(PROTECTION, verify_every_s=1.0)
    t = run(inv, ctl, 6)
    sim.control.set_point(711, "Ctl[1].KOf", 0.02)
    run(inv, ctl, 1, t0=t + 1.5)
    assert point(sim, 711, "Ctl[1].KOf") == pytest.approx(0.05)
    assert any(a.startswith("freq_watt") for a in ctl.status.alarms)


# -- temporary settings (an operator command, a 2030.5 curve event)


def test_a_temporary_curve_and_trip_setting_are_programmed_and_the_previous_restored(rig):
    """The settings service hands the controller the effective settings: a temporary
    command or event for its window, the persisted ones after it (or on link loss, by
    the schedule rules). The device holds each in turn, with no alarm (not drift)."""
    sim, inv, ctl, events = rig(PROTECTION)
    persisted = ctl.settings
    t = run(inv, ctl, 6)
    vv = persisted.volt_var
    hv = persisted.voltage_ride_through
    temp = replace(persisted, volt_var=replace(vv, curve=(
        replace(vv.curve[0], q_pct=30.0), *vv.curve[1:3], replace(vv.curve[3], q_pct=-30.0))),
        voltage_ride_through=replace(hv, over=(hv.over[0], replace(hv.over[1],
                                                                   clearing_time_s=0.12))))
    ctl.apply_settings(temp)  # the window opens
    t = run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(-30.0)
    assert (120.0, 0.12) in device_curve(sim, 708, "MustTrip")
    ctl.apply_settings(persisted)  # the window ends
    run(inv, ctl, 3, t0=t)
    assert point(sim, 705, "Crv[1].Pt[4].Var") == pytest.approx(-44.0)
    assert device_curve(sim, 708, "MustTrip") == RULE21[708]["must"]
    assert not ctl.status.alarms and "native_curve_mismatch" not in kinds(events)


def test_status_text_says_which_functions_the_inverter_runs_itself():
    from inverter_agent.cli import steering_lines

    lines = steering_lines({"hv_trip": {"by": "gateway", "why": "refused"},
                            "lv_trip": {"by": "native", "why": "adopted"},
                            "volt_var": {"by": "native", "why": "adopted"},
                            "watt_var": {"by": "device", "why": "no setting"}})
    assert lines == ["device: watt_var", "gateway: hv_trip", "native: lv_trip, volt_var"]


def test_with_the_devices_own_power_functions_no_limit_is_held_or_refreshed(rig):
    sim, inv, ctl, events = rig(PROTECTION)
    t = run(inv, ctl, 8)
    assert ctl.status.steering["freq_watt"]["by"] == "native"
    assert point(sim, 704, "WMaxLimPctEna") == 0
    before = sim.control.unit_state(1)["writes"]
    run(inv, ctl, 60, t0=t)  # about 15 s: longer than a third of the 30 s revert time
    after = sim.control.unit_state(1)["writes"]
    assert {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)} == {}


def test_standing_aside_after_a_pf_profile_gives_a_selector_device_its_volt_var_back(rig):
    """IEEE 1547 Cat B settings: constant PF (volt-var off). On a selector device that
    ran its own volt-var, the gateway programs 705 off and enables PF; standing aside
    switches its own volt-var on again with its own curve, not the gateway's disabled
    program."""
    sim, inv, ctl, events = rig(str(PROFILE_DIR / "1547-native-volt-var-selector.json"))
    ctl.apply_settings(get_profile("ieee1547-2018-cat-b"))
    run(inv, ctl, 8)
    assert point(sim, 705, "Ena") == 0 and point(sim, 704, "PFWInjEna") == 1
    run(inv, ctl, 3, drop="Hz")  # stand aside
    assert ctl.status.standing_aside is not None
    assert point(sim, 704, "PFWInjEna") == 0
    assert point(sim, 705, "Ena") == 1
    assert (point(sim, 705, "Crv[1].Pt[4].V"), point(sim, 705, "Crv[1].Pt[4].Var")) == \
        pytest.approx((107.0, -30.0))
