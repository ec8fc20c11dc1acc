"""Volt-watt (1547-2018 5.4.2) and frequency droop (6.5.2.7): properties and 1547.1 tables."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions import freq_watt, volt_watt
from inverter_agent.functions.freq_watt import FreqWattSettings
from inverter_agent.functions.volt_watt import VoltWattSettings

FAST = settings(max_examples=150, deadline=None)
P_MRA = 5.0  # % of rated (1547-2018 Table 3)
VW = VoltWattSettings(enabled=True)
FW = FreqWattSettings(enabled=True)


@FAST
@given(st.lists(st.tuples(st.floats(0.8, 1.3), st.floats(0.0, 30.0)), min_size=1, max_size=40))
def test_volt_watt_limit_within_curve_and_monotone(trace):
    state = None
    for v, dt in trace:
        p, state = volt_watt.step(VW, v, dt, state)
        assert 0.0 - 1e-9 <= p <= 100.0 + 1e-9
    vs = sorted(v for v, _ in trace)
    ps = [volt_watt.curve_p_pct(VW, v) for v in vs]
    assert all(a >= b for a, b in zip(ps, ps[1:], strict=False))


# IEEE 1547.1-2020 5.14.9 (volt-watt) characteristic points, default curve.
@pytest.mark.parametrize(("v", "p_expected"), [
    (1.00, 100.0), (1.06, 100.0), (1.07, 75.0), (1.08, 50.0), (1.09, 25.0), (1.10, 0.0),
    (1.15, 0.0),
])
def test_1547_1_5_14_9_volt_watt_characteristic(v, p_expected):
    p, state = volt_watt.step(VW, 1.0, 0.0, None)
    for _ in range(200):  # 2 Tr at 0.1 s
        p, state = volt_watt.step(VW, v, 0.1, state)
    assert abs(p - p_expected) <= 1.5 * P_MRA
    assert math.isclose(p, p_expected, abs_tol=1.0)
    # open loop: 90 % of the change at Tr = 10 s
    p, state = volt_watt.step(VW, 1.0, 0.0, None)
    for _ in range(100):
        p, state = volt_watt.step(VW, v, 0.1, state)
    assert math.isclose(p, 100.0 + 0.9 * (p_expected - 100.0), abs_tol=1e-6)


@FAST
@given(st.floats(0.0, 100.0), st.lists(st.tuples(st.floats(57.0, 63.0), st.floats(0.0, 5.0)),
                                       min_size=1, max_size=40))
def test_freq_droop_limit_bounded_and_never_below_pmin(p_now, trace):
    state = None
    for f, dt in trace:
        p, state = freq_watt.step(FW, f, 60.0, p_now, dt, state)
        assert FW.p_min_pct - 1e-9 <= p <= 100.0 + 1e-9


@FAST
@given(st.floats(0.0, 100.0), st.floats(59.0, 60.036))
def test_freq_droop_inactive_in_deadband_and_under_frequency(p_now, f):
    p, _ = freq_watt.step(FW, f, 60.0, p_now, 0.0, None)
    assert p == 100.0


# IEEE 1547.1-2020 5.15 (frequency droop): (pre-disturbance P %, f Hz) -> limit %.
# p = p_pre - (f - 60.036) / (60 x 0.05) per unit.
@pytest.mark.parametrize(("p_pre", "f", "p_expected"), [
    (100.0, 60.036, 100.0),
    (100.0, 60.336, 90.0),
    (100.0, 61.0, 100.0 - 100.0 * 0.964 / 3.0),
    (50.0, 60.5, 50.0 - 100.0 * 0.464 / 3.0),
    (50.0, 62.0, 0.0),
    (100.0, 59.5, 100.0),
])
def test_1547_1_5_15_frequency_droop_characteristic(p_pre, f, p_expected):
    p, state = freq_watt.step(FW, 60.0, 60.0, p_pre, 0.0, None)
    for _ in range(150):  # 3 Tr at 0.1 s; measured P follows the limit, p_pre must not
        p, state = freq_watt.step(FW, f, 60.0, min(p_pre, p), 0.1, state)
    assert abs(p - p_expected) <= 1.5 * P_MRA
    assert math.isclose(p, p_expected, abs_tol=0.5)
