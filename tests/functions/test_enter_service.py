"""Enter service / soft start (1547-2018 4.10, Rule 21 Hh.2.l) and IEEE 1547.1-2020 5.6.2."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions import engine
from inverter_agent.functions import enter_service as es
from inverter_agent.functions.enter_service import EnterServiceSettings, EnterServiceState
from inverter_agent.functions.measurements import Measurements
from inverter_agent.functions.profiles import get_profile

FAST = settings(max_examples=150, deadline=None)

samples = st.tuples(
    st.sampled_from([1.0, 0.99, 1.04, 0.90, 1.06]),  # in / out of 0.917-1.05
    st.sampled_from([60.0, 59.9, 60.05, 59.4, 60.2]),  # in / out of 59.5-60.1
    st.floats(0.5, 40.0),  # time to hold this sample
)


@FAST
@given(st.lists(samples, min_size=1, max_size=60), st.floats(0.0, 600.0),
       st.floats(0.0, 300.0), st.floats(1.0, 600.0), st.floats(0.0, 0.999))
def test_never_exports_before_delay_nor_reaches_rated_before_ramp_time(
        trace, delay, random_delay, ramp_time, u):
    s = EnterServiceSettings(True, 0.917, 1.05, 59.5, 60.1, delay, random_delay, ramp_time)
    total = delay + random_delay * u
    state, t = EnterServiceState.waiting(), 0.0
    window_start = None  # independent bookkeeping of the continuous in-window interval
    reconnect_t = None
    for v, f, hold in trace:
        for _ in range(max(1, int(hold))):
            t += hold / max(1, int(hold))
            ok = 0.917 <= v <= 1.05 and 59.5 <= f <= 60.1
            if reconnect_t is None:
                window_start = (window_start if window_start is not None else t) if ok else None
            out, state = es.step(s, v, v, f, state, t, u)
            if out.connect and reconnect_t is None:
                reconnect_t = t
                assert window_start is not None and t - window_start >= total - 1e-9
            if reconnect_t is None:
                assert not out.connect and out.p_cap_pct == 0.0
            else:
                assert out.connect
                assert out.p_cap_pct <= 100.0 * (t - reconnect_t) / ramp_time + 1e-9
                if t - reconnect_t < ramp_time:
                    assert out.p_cap_pct < 100.0


def test_leaving_the_window_restarts_the_delay():
    s = EnterServiceSettings(delay_s=300.0, ramp_time_s=300.0)
    state = EnterServiceState.waiting()
    for t in range(0, 250):
        out, state = es.step(s, 1.0, 1.0, 60.0, state, float(t))
    out, state = es.step(s, 1.0, 1.0, 60.2, state, 250.0)  # f out of window once
    for t in range(251, 550):
        out, state = es.step(s, 1.0, 1.0, 60.0, state, float(t))
        assert not out.connect
    out, state = es.step(s, 1.0, 1.0, 60.0, state, 551.0)
    assert out.connect


def test_randomized_delay_uses_the_given_draw():
    s = EnterServiceSettings(delay_s=300.0, random_delay_s=100.0)
    assert es.total_delay(s, 0.0) == 300.0 and es.total_delay(s, 0.5) == 350.0


def test_permit_service_off_keeps_out_of_service():
    s = EnterServiceSettings(enabled=False, delay_s=0.0)
    out, _ = es.step(s, 1.0, 1.0, 60.0, EnterServiceState.in_service(), 10.0)
    assert not out.connect


# IEEE 1547.1-2020 5.6.2: (delay, ramp time) -> checks at fractions of the delay / ramp.
@pytest.mark.parametrize(("delay", "ramp_time"), [(300.0, 300.0), (60.0, 1.0), (0.0, 100.0),
                                                  (600.0, 1000.0)])
def test_1547_1_5_6_2_enter_service(delay, ramp_time):
    base = get_profile("ieee1547-2018-cat-b")
    s = dataclasses.replace(base, enter_service=dataclasses.replace(
        base.enter_service, delay_s=delay, ramp_time_s=ramp_time))
    dt = 0.1
    meas = Measurements(True, (1.0,), 60.0, 1.0, 0.0, p_avail_pu=1.0, connected=False)
    state = engine.EngineState.initial(0.0)
    t, samples = 0.0, []
    while t < delay + ramp_time + 2.0:
        t = round(t + dt, 6)
        sp, state, _ = engine.step(s, meas, state, t)
        samples.append((t, sp))
    for t, sp in samples:
        if t < 0.985 * delay:  # no export before 98.5 % of the delay
            assert not sp.connect and sp.p_limit_pct == 0.0
        if t >= delay + dt:
            assert sp.connect
        elapsed = t - delay
        if elapsed < ramp_time * 0.999:  # rated not reached before the ramp time
            assert sp.p_limit_pct < 100.0
        if t > delay:
            # Linear ramp from the reconnection, which may come one sample after the
            # delay (the window timer starts at the first sample): never faster than
            # the ramp, at most one sample (and the 5 % P accuracy) behind it.
            fastest = min(100.0, 100.0 * elapsed / ramp_time)
            slowest = min(100.0, 100.0 * max(0.0, elapsed - dt) / ramp_time)
            assert slowest - 5.0 <= sp.p_limit_pct <= fastest + 1e-9
    assert samples[-1][1].p_limit_pct == 100.0
