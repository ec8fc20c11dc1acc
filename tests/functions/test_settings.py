"""Settings: validation with named paths, dict round trip, profiles."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions.profiles import PROFILES, get_profile
from inverter_agent.functions.ride_through import Region
from inverter_agent.functions.settings import (
    SettingsError,
    settings_from_dict,
    settings_to_dict,
    validate,
)
from inverter_agent.functions.volt_var import VoltVarPoint

FAST = settings(max_examples=100, deadline=None)
RULE21 = get_profile("rule21")


def with_(s, section, **changes):
    return dataclasses.replace(s, **{section: dataclasses.replace(getattr(s, section), **changes)})


@st.composite
def valid_settings(draw):
    s = get_profile(draw(st.sampled_from(sorted(PROFILES))))
    n = draw(st.integers(2, 8))
    vs = sorted(draw(st.lists(st.floats(0.8, 1.2), min_size=n, max_size=n, unique=True)))
    qs = draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n))
    s = with_(s, "volt_var", curve=tuple(map(VoltVarPoint, vs, qs)),
              response_time_s=draw(st.floats(1.0, 90.0)), vref_auto=draw(st.booleans()))
    s = with_(s, "enter_service", delay_s=draw(st.floats(0, 600)),
              random_delay_s=draw(st.floats(0, 600)), v_low_pu=draw(st.floats(0.88, 0.95)))
    s = with_(s, "ramp", enabled=draw(st.booleans()),
              up_pct_per_s=draw(st.none() | st.floats(0.01, 100)))
    s = with_(s, "active_power_limit", p_limit_pct=draw(st.floats(0, 100)))
    return s


@FAST
@given(valid_settings())
def test_round_trip_through_plain_json(s):
    validate(s)
    d = json.loads(json.dumps(settings_to_dict(s)))
    assert settings_from_dict(d) == s


def test_dict_keys_are_stable():
    d = settings_to_dict(RULE21)
    assert list(d) == ["nameplate", "safety", "active_power_limit", "ramp", "voltage_ride_through",
                       "frequency_ride_through", "anti_islanding", "enter_service", "volt_var",
                       "fixed_pf", "constant_var", "volt_watt", "freq_watt", "set_active_power"]
    assert d["volt_var"]["curve"][0] == {"v_pu": 0.92, "q_pct": 44.0}
    assert d["voltage_ride_through"]["over"][0]["mode"] == "momentary_cessation"


@FAST
@given(st.permutations(range(4)))
def test_validate_rejects_non_monotone_curve_naming_the_point(order):
    pts = [RULE21.volt_var.curve[i] for i in order]
    bad = next((i for i in range(1, 4) if pts[i].v_pu < pts[i - 1].v_pu), None)
    s = with_(RULE21, "volt_var", curve=tuple(pts))
    if bad is None:
        validate(s)
        return
    with pytest.raises(SettingsError) as e:
        validate(s)
    assert f"volt_var.curve[{bad}].v_pu = {pts[bad].v_pu!r}" in str(e.value)
    assert "must not decrease" in str(e.value)


@pytest.mark.parametrize(("section", "changes", "path", "allowed"), [
    ("enter_service", {"v_low_pu": 0.95, "v_high_pu": 0.95}, "enter_service.v_high_pu",
     "[1, 1.2]"),
    ("enter_service", {"v_low_pu": 1.0, "v_high_pu": 1.0}, "enter_service.v_low_pu",
     "must be below enter_service.v_high_pu"),
    ("enter_service", {"f_low_hz": 60.0, "f_high_hz": 60.0}, "enter_service.f_low_hz",
     "must be below"),
    ("enter_service", {"v_high_pu": 1.15}, "enter_service.v_high_pu", "HV1 threshold"),
    ("volt_var", {"curve": (VoltVarPoint(0.9, 150.0), VoltVarPoint(1.1, 0.0))},
     "volt_var.curve[0].q_pct", "[-100, 100]"),
    ("volt_var", {"curve": (VoltVarPoint(1.0, 0.0),)}, "volt_var.curve", "2 to 8 points"),
    ("volt_var", {"curve": tuple(VoltVarPoint(1.0, 0.0) for _ in range(3))},
     "volt_var.curve[2].v_pu", "at most two"),
    ("volt_var", {"response_time_s": 0.1}, "volt_var.response_time_s", "[1, 90]"),
    ("fixed_pf", {"enabled": True}, "fixed_pf.enabled", "mutually exclusive"),
    ("freq_watt", {"k_of": 0.5}, "freq_watt.k_of", "[0.02, 0.05]"),
    ("active_power_limit", {"p_limit_pct": 120.0}, "active_power_limit.p_limit_pct", "[0, 100]"),
    ("ramp", {"up_pct_per_s": 0.0}, "ramp.up_pct_per_s", "(0, 1000]"),
])
def test_validate_names_path_value_and_range(section, changes, path, allowed):
    with pytest.raises(SettingsError) as e:
        validate(with_(RULE21, section, **changes))
    msg = str(e.value)
    assert msg.startswith(f"{path} = ") and allowed in msg


@pytest.mark.parametrize(("over", "path", "allowed"), [
    ((Region("HV1", 1.2, clearing_time_s=13.0), Region("HV2", 1.1, clearing_time_s=0.16)),
     "voltage_ride_through.over[1].threshold", "strictly ascend"),
    ((Region("HV1", 0.9, clearing_time_s=13.0),), "voltage_ride_through.over[0].threshold",
     "(1, 2]"),
    ((Region("HV1", 1.1, clearing_time_s=0.0),), "voltage_ride_through.over[0].clearing_time_s",
     "(0.1, 3600]"),
    ((Region("HV1", 1.1, ride_through_s=13.0, clearing_time_s=13.0),),
     "voltage_ride_through.over[0].ride_through_s", "[0, 12.9]"),
    ((Region("HV1", 1.1, clearing_time_s=1.0), Region("HV1", 1.2, clearing_time_s=0.16)),
     "voltage_ride_through.over[1].name", "unique"),
])
def test_validate_rejects_inconsistent_trip_tables(over, path, allowed):
    with pytest.raises(SettingsError) as e:
        validate(with_(RULE21, "voltage_ride_through", over=over))
    assert str(e.value).startswith(f"{path} = ") and allowed in str(e.value)


def test_trip_thresholds_must_be_ordered_on_the_under_side():
    under = (Region("UV2", 0.45, clearing_time_s=0.16), Region("UV1", 0.7, clearing_time_s=10.0))
    with pytest.raises(SettingsError, match=r"^voltage_ride_through\.under\[1\]\.threshold"):
        validate(with_(RULE21, "voltage_ride_through", under=under))


def test_from_dict_rejects_unknown_keys_by_name():
    d = settings_to_dict(RULE21)
    d["volt_var"]["respnse_time_s"] = 5.0
    with pytest.raises(SettingsError, match=r"^volt_var\.respnse_time_s = 5\.0: unknown setting"):
        settings_from_dict(d)
    d = settings_to_dict(RULE21)
    d["voltage_ride_through"]["over"][1]["clearing"] = 1
    with pytest.raises(SettingsError, match=r"^voltage_ride_through\.over\[1\]\.clearing"):
        settings_from_dict(d)
    with pytest.raises(SettingsError, match=r"^colour = "):
        settings_from_dict({**settings_to_dict(RULE21), "colour": "blue"})


def test_from_dict_types_and_missing_keys():
    d = settings_to_dict(RULE21)
    d["volt_var"]["enabled"] = "yes"
    with pytest.raises(SettingsError, match=r"^volt_var\.enabled = 'yes': must be true or false"):
        settings_from_dict(d)
    d = settings_to_dict(RULE21)
    d["safety"]["on_invalid_measurements"] = "panic"
    with pytest.raises(SettingsError, match=r"hold_last, cease_to_energize"):
        settings_from_dict(d)
    with pytest.raises(SettingsError, match=r"^safety = None: missing setting"):
        settings_from_dict({k: v for k, v in settings_to_dict(RULE21).items() if k != "safety"})


def test_from_dict_partial_update_on_a_base_still_validates():
    s = settings_from_dict({"volt_var": {"response_time_s": 10}}, base=RULE21)
    assert s.volt_var.response_time_s == 10.0 and s.volt_var.curve == RULE21.volt_var.curve
    assert s.enter_service == RULE21.enter_service
    with pytest.raises(SettingsError, match=r"^volt_var\.response_time_s = 100\.0"):
        settings_from_dict({"volt_var": {"response_time_s": 100}}, base=RULE21)


def test_get_profile_lists_valid_names_on_error():
    with pytest.raises(ValueError, match="rule21, ieee1547-2018-cat-a, ieee1547-2018-cat-b"):
        get_profile("rule22")


def test_profiles_carry_the_documented_values():
    r21, a, b = (get_profile(n) for n in ("rule21", "ieee1547-2018-cat-a", "ieee1547-2018-cat-b"))
    assert get_profile() == r21
    assert [(p.v_pu, p.q_pct) for p in r21.volt_var.curve] == [
        (0.92, 44.0), (0.98, 0.0), (1.02, 0.0), (1.08, -44.0)]
    assert r21.volt_var.enabled and r21.volt_var.response_time_s == 5.0
    assert [(p.v_pu, p.q_pct) for p in a.volt_var.curve] == [
        (0.90, 25.0), (1.0, 0.0), (1.0, 0.0), (1.10, -25.0)]
    assert a.volt_var.response_time_s == 10.0
    assert a.fixed_pf.pf_min_absorbing == 0.97 and b.fixed_pf.pf_min_absorbing == 0.90
    assert a.voltage_ride_through.under[0].clearing_time_s == 2.0  # Category I
    assert b.voltage_ride_through.under[0].clearing_time_s == 10.0  # Category II
    for s in (r21, a, b):
        es = s.enter_service
        assert (es.v_low_pu, es.v_high_pu, es.f_low_hz, es.f_high_hz, es.delay_s,
                es.ramp_time_s) == (0.917, 1.05, 59.5, 60.1, 300.0, 300.0)
        assert (s.freq_watt.db_of_hz, s.freq_watt.k_of, s.freq_watt.response_time_s) == (
            0.036, 0.05, 5.0)
        assert [(p.v_pu, p.p_pct) for p in s.volt_watt.curve] == [(1.06, 100.0), (1.10, 0.0)]
        assert not s.ramp.enabled  # no citable default ramp rate
