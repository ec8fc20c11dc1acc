"""The control-cycle engine: arbitration, events, safe state."""

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions.engine import EngineState, EventKind, OperatingState, step
from inverter_agent.functions.measurements import (
    AntiIslandingReport,
    Measurements,
    ReactiveMode,
)
from inverter_agent.functions.profiles import get_profile
from inverter_agent.functions.settings import InvalidPolicy

RULE21 = get_profile("rule21")
NORMAL = Measurements(True, (1.0, 1.0, 1.0), 60.0, 0.8, 0.0, 1.0, True,
                      AntiIslandingReport.ENABLED)


def meas(v=1.0, f=60.0, **kw):
    return dataclasses.replace(NORMAL, v_pu=(v, v, v), f_hz=f, **kw)


def with_(s, section, **changes):
    return dataclasses.replace(s, **{section: dataclasses.replace(getattr(s, section), **changes)})


def run(s, trace, state=None, t0=0.0, dt=0.1):
    """trace: list of (Measurements, n cycles). Returns list of (t, setpoints, events), state."""
    state = state or EngineState.initial(t0)
    t, out = t0, []
    for m, n in trace:
        for _ in range(n):
            t = round(t + dt, 9)
            sp, state, ev = step(s, m, state, t)
            out.append((t, sp, ev))
    return out, state


def events(out, kind):
    return [(t, e) for t, _, ev in out for e in ev if e.kind is kind]


def test_boot_waits_enter_service_then_soft_starts():
    out, state = run(RULE21, [(meas(), 6200)])
    first_on = next(t for t, sp, _ in out if sp.connect)
    assert 300.0 <= first_on <= 300.2
    assert all(sp.p_limit_pct == 0.0 for t, sp, _ in out if t < first_on)
    assert len(events(out, EventKind.RECONNECT)) == 1
    assert events(out, EventKind.ENTER_SERVICE_START)[0][0] == 0.1
    ramp_done = events(out, EventKind.RAMP_DONE)[0][0]
    assert math.isclose(ramp_done, first_on + 300.0, abs_tol=0.11)
    assert state.status.state is OperatingState.CONTINUOUS
    at = {round(t, 1): sp for t, sp, _ in out}
    assert math.isclose(at[first_on + 150.0].p_limit_pct, 50.0, abs_tol=0.1)
    assert at[first_on + 150.0].cause == "soft start"


def test_overvoltage_trip_then_enter_service_again():
    state = EngineState.initial(0.0, in_service=True)
    out, state = run(RULE21, [(meas(), 10), (meas(v=1.25), 5), (meas(), 4000)], state)
    trips = events(out, EventKind.TRIP)
    assert len(trips) == 1 and "HV2" in trips[0][1].detail
    assert trips[0][0] - 1.1 <= 0.16  # first 1.25 sample at 1.1 s
    t_trip = trips[0][0]
    reconnect = events(out, EventKind.RECONNECT)[0][0]
    assert reconnect - 1.5 >= 300.0  # window held 300 s after V came back at 1.6 s
    assert all(not sp.connect for t, sp, _ in out if t_trip <= t < reconnect)


def test_momentary_cessation_resumes_without_enter_service_delay():
    state = EngineState.initial(0.0, in_service=True)
    out, state = run(RULE21, [(meas(), 10), (meas(v=1.15), 50), (meas(), 10)], state)
    assert [sp.connect for _, sp, _ in out[9:12]] == [True, False, False]
    assert not events(out, EventKind.TRIP)
    assert len(events(out, EventKind.MOMENTARY_CESSATION)) == 1
    resume = events(out, EventKind.RESUME)
    assert len(resume) == 1 and math.isclose(resume[0][0], 6.1)
    assert out[-1][1].connect and state.status.state is OperatingState.CONTINUOUS


def test_no_momentary_cessation_while_out_of_service():
    """At boot the DER is already ceased: HV1 is not reported as a momentary cessation."""
    out, state = run(RULE21, [(meas(v=1.15), 20), (meas(), 5)])
    assert not events(out, EventKind.MOMENTARY_CESSATION) and not events(out, EventKind.RESUME)
    assert state.status.state is OperatingState.OUT_OF_SERVICE


def test_invalid_measurements_hold_then_cease_and_reenter_service():
    s = with_(RULE21, "safety", on_invalid_measurements=InvalidPolicy.HOLD_LAST)
    state = EngineState.initial(0.0, in_service=True)
    bad = Measurements(valid=False)
    out, state = run(s, [(meas(v=1.05), 100), (bad, 100), (meas(), 3100)], state)
    held = out[99][1]
    during = [(t, sp) for t, sp, _ in out[100:200]]
    # First invalid sample at 10.1 s; hold_s = 5 s.
    assert all(sp == held for t, sp in during if t < 15.1 - 1e-6)
    assert all(not sp.connect for t, sp in during if t >= 15.1 - 1e-6)
    safe = events(out, EventKind.SAFE_STATE)
    assert [round(t, 1) for t, _ in safe] == [10.1, 15.1]
    assert events(out, EventKind.MEASUREMENTS_RESTORED)[0][0] == 20.1
    assert events(out, EventKind.RECONNECT)[0][0] >= 20.1 + 300.0


def test_invalid_measurements_never_cease_by_default():
    """The default policy stands aside: the engine holds, it never ceases on unknown input."""
    state = EngineState.initial(0.0, in_service=True)
    out, state = run(RULE21, [(meas(), 5), (Measurements(valid=False), 600)], state)
    assert all(sp.connect and sp.p_limit_pct >= out[4][1].p_limit_pct for _, sp, _ in out[5:])
    assert state.status.state is OperatingState.SAFE_HOLD


def test_invalid_measurements_cease_immediately_when_configured():
    s = with_(RULE21, "safety", on_invalid_measurements=InvalidPolicy.CEASE_TO_ENERGIZE)
    state = EngineState.initial(0.0, in_service=True)
    out, state = run(s, [(meas(), 5), (Measurements(valid=False), 1)], state)
    assert not out[-1][1].connect and state.status.state is OperatingState.SAFE_CEASE


def test_active_power_limit_is_the_minimum_and_volt_watt_is_not_rate_limited():
    s = with_(RULE21, "ramp", enabled=True, up_pct_per_s=1.0, down_pct_per_s=1.0)
    s = with_(s, "active_power_limit", enabled=True, p_limit_pct=80.0)
    state = dataclasses.replace(EngineState.initial(0.0, in_service=True), p_base_pct=100.0)
    out, state = run(s, [(meas(), 100)], state)  # 10 s at 1 %/s: 100 -> 90
    assert math.isclose(out[-1][1].p_limit_pct, 90.0, abs_tol=1e-6)
    assert out[-1][1].cause == "base limit"
    out, state = run(s, [(meas(v=1.08), 100)], state, t0=10.0)  # volt-watt 10 s towards 50 %
    sp = out[-1][1]
    assert sp.cause == "volt-watt" and math.isclose(sp.p_limit_pct, 100 - 0.9 * 50, abs_tol=0.2)


def test_volt_var_is_commanded_as_var_percent():
    state = EngineState.initial(0.0, in_service=True)
    out, state = run(RULE21, [(meas(), 2), (meas(v=1.05), 300)], state)
    sp = out[-1][1]
    assert sp.reactive_mode is ReactiveMode.CONSTANT_Q
    assert math.isclose(sp.q_pct, -22.0 / 44.0 * 100.0, abs_tol=0.1)
    assert math.isclose(state.status.volt_var_q_pct, -22.0, abs_tol=0.05)


def test_anti_islanding_disabled_ceases_and_reported_trip_trips():
    state = EngineState.initial(0.0, in_service=True)
    out, _ = run(RULE21, [(meas(anti_islanding=AntiIslandingReport.DISABLED), 3)], state)
    assert not out[0][1].connect
    assert events(out, EventKind.CEASE_TO_ENERGIZE)[0][1].detail == (
        "inverter anti-islanding disabled")
    out, st_ = run(RULE21, [(meas(anti_islanding=AntiIslandingReport.TRIPPED), 3)], state)
    assert events(out, EventKind.TRIP) and st_.status.out_of_service_cause is not None
    s = with_(RULE21, "anti_islanding", cease_on_disabled=False)
    out, _ = run(s, [(meas(anti_islanding=AntiIslandingReport.DISABLED), 3)], state)
    assert out[-1][1].connect and events(out, EventKind.ANTI_ISLANDING)


def test_permit_service_off_ceases():
    s = with_(RULE21, "enter_service", enabled=False)
    out, state = run(s, [(meas(), 5)], EngineState.initial(0.0, in_service=True))
    assert not any(sp.connect for _, sp, _ in out)
    assert state.status.out_of_service_cause == "permit service off"


samples = st.tuples(
    st.booleans() | st.just(True),
    st.sampled_from([1.0, 1.0, 0.95, 1.04, 1.07, 1.15, 1.25, 0.85, 0.6, 0.4]),
    st.sampled_from([60.0, 60.0, 60.3, 59.8, 61.0, 62.5, 58.0, 56.0]),
    st.integers(1, 300),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(samples, min_size=1, max_size=20), st.sampled_from(
    ["rule21", "ieee1547-2018-cat-a", "ieee1547-2018-cat-b"]), st.booleans())
def test_engine_invariants_on_random_traces(trace, profile, in_service):
    s = get_profile(profile)
    state = EngineState.initial(0.0, in_service=in_service)
    t, last_on = 0.0, None
    for valid, v, f, n in trace:
        m = meas(v=v, f=f) if valid else Measurements(valid=False)
        for _ in range(n):
            t = round(t + 0.1, 9)
            sp, state, ev = step(s, m, state, t)
            assert 0.0 <= sp.p_limit_pct <= 100.0
            if sp.connect:
                assert state.status.out_of_service_cause is None
                last_on = t
            if not in_service and last_on is None:
                assert sp.p_limit_pct == 0.0 or sp.connect
            if any(e.kind is EventKind.TRIP for e in ev):
                assert not sp.connect
    if not in_service and last_on is not None:
        assert last_on >= 300.0  # never export before the enter-service delay
