"""Normal ramp rate (Rule 21 Hh.2.k): never faster than rate x dt."""

from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions import ramp
from inverter_agent.functions.ramp import RampSettings


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 100.0), st.floats(0.01, 100.0), st.floats(0.0, 100.0),
       st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 5.0)), min_size=1, max_size=50))
def test_ramp_never_exceeds_rate_times_dt(up, down, start, trace):
    s = RampSettings(True, up, down)
    p = start
    for target, dt in trace:
        new = ramp.step(s, p, target, dt)
        assert new - p <= up * dt + 1e-9
        assert p - new <= down * dt + 1e-9
        assert min(p, target) - 1e-9 <= new <= max(p, target) + 1e-9
        p = new


def test_ramp_reaches_target_in_expected_time():
    s = RampSettings(True, up_pct_per_s=10.0, down_pct_per_s=50.0)
    p, t = 0.0, 0.0
    while p < 100.0:
        p, t = ramp.step(s, p, 100.0, 0.1), t + 0.1
    assert 9.9 < t < 10.1  # 100 % at 10 %/s
    assert ramp.step(s, 100.0, 0.0, 1.0) == 50.0  # down rate is separate


def test_disabled_or_unlimited_ramp_follows_target():
    assert ramp.step(RampSettings(False, 1.0, 1.0), 0.0, 100.0, 0.1) == 100.0
    assert ramp.step(RampSettings(True, None, 1.0), 0.0, 100.0, 0.1) == 100.0
    assert ramp.step(RampSettings(True, 1.0, None), 100.0, 0.0, 0.1) == 0.0
