"""Set active power (storage): the battery's own limits, pure, time as an argument."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inverter_agent.functions import SettingsError, get_profile, settings_from_dict, validate
from inverter_agent.functions.registry import BY_NAME
from inverter_agent.functions.set_active_power import (
    SetActivePowerSettings,
    StorageState,
    available,
    step,
)

BAT = StorageState(soc_pct=50.0, wh_rtg=10000.0, w_cha_max=5000.0, w_dis_max=4000.0,
                   reserve_pct=20.0, soc_max_pct=95.0, w_rtg=5000.0)


def on(**kw) -> SetActivePowerSettings:
    return SetActivePowerSettings(enabled=True, **kw)


def test_off_or_not_understood_commands_nothing():
    assert step(SetActivePowerSettings(), BAT, 0.0) is None
    assert step(on(w=-1000.0), None, 0.0) is None


@pytest.mark.parametrize(("settings", "w"), [
    (on(w=-3000.0), -3000.0),  # charge as asked
    (on(w=2000.0), 2000.0),  # discharge as asked
    (on(w_pct=-40.0), -2000.0),  # % of the inverter's rated W
    (on(w_pct=0.0), 0.0),  # hold
])
def test_a_setpoint_within_the_battery_goes_through(settings, w):
    cmd = step(settings, BAT, 0.0)
    assert cmd is not None and cmd.w == pytest.approx(w) and cmd.limited_by == ""


def test_rates_limit_never_pass_through():
    assert step(on(w=9000.0), BAT, 0.0).w == 4000.0
    assert "discharge rate" in step(on(w=9000.0), BAT, 0.0).limited_by
    assert step(on(w=-9000.0), BAT, 0.0).w == -5000.0


@pytest.mark.parametrize("soc", [20.0, 19.0, 0.0])
def test_no_discharge_at_or_below_the_reserve(soc):
    st_ = dataclasses.replace(BAT, soc_pct=soc)
    cmd = step(on(w=3000.0), st_, 0.0)
    assert cmd.w == 0.0 and "reserve" in cmd.limited_by
    assert step(on(w=-3000.0), st_, 0.0).w == -3000.0  # charging is fine


def test_the_sites_reserve_adds_to_the_devices():
    cmd = step(on(w=3000.0, reserve_pct=60.0), BAT, 0.0)  # SoC 50 %
    assert cmd.w == 0.0 and "reserve 60" in cmd.limited_by
    assert available(BAT, 60.0) == (5000.0, 0.0)


def test_no_charge_at_the_highest_soc():
    full = StorageState(95.0, 10000.0, 5000.0, 4000.0, 20.0, 95.0, 5000.0)
    assert step(on(w=-3000.0), full, 0.0).w == 0.0
    assert step(on(w=3000.0), full, 0.0).w == 3000.0
    assert available(full) == (0.0, 4000.0)


@given(st.floats(-1e5, 1e5), st.floats(0.0, 100.0), st.floats(0.0, 1e4))
def test_never_past_reserve_soc_limits_or_rates(w, soc, t):
    state = StorageState(soc, 10000.0, 5000.0, 4000.0, 20.0, 95.0, 5000.0)
    cmd = step(on(w=w), state, t)
    assert -5000.0 <= cmd.w <= 4000.0
    if soc <= 20.0:
        assert cmd.w <= 0.0
    if soc >= 95.0:
        assert cmd.w >= 0.0
    assert abs(cmd.w) <= abs(w)  # limited, never amplified or reversed
    assert cmd.w == 0.0 or (cmd.w > 0) == (w > 0)


def test_declared_in_the_registry_with_ranges():
    spec = BY_NAME["set_active_power"]
    assert spec.settings is SetActivePowerSettings and spec.follows == "storage"
    base = get_profile("rule21")
    assert base.set_active_power.enabled is False  # off unless asked
    s = settings_from_dict({"set_active_power": {"enabled": True, "w_pct": -50.0}}, base=base)
    validate(s)
    with pytest.raises(SettingsError, match="w_pct"):
        settings_from_dict({"set_active_power": {"w_pct": 150.0}}, base=base)
    with pytest.raises(SettingsError, match="reserve_pct"):
        settings_from_dict({"set_active_power": {"reserve_pct": -1.0}}, base=base)
