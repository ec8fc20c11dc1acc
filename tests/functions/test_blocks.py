"""Properties of the reusable blocks (curve, low-pass, ramp, timer)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions.blocks import (
    held_for,
    hold_since,
    interpolate,
    low_pass,
    rate_limit,
    tau_from_response_time,
)

FAST = settings(max_examples=200, deadline=None)
finite = st.floats(-1e3, 1e3, allow_nan=False)


@st.composite
def curves(draw):
    xs = sorted(draw(st.lists(st.floats(0.5, 1.5), min_size=2, max_size=8)))
    ys = draw(st.lists(st.floats(-100, 100), min_size=len(xs), max_size=len(xs)))
    return list(zip(xs, ys, strict=True))


@FAST
@given(curves(), st.floats(0.0, 2.0))
def test_interpolate_stays_within_curve_values_and_clamps(curve, x):
    y = interpolate(curve, x)
    ys = [p[1] for p in curve]
    assert min(ys) - 1e-9 <= y <= max(ys) + 1e-9
    if x < curve[0][0]:
        assert y == curve[0][1]
    if x >= curve[-1][0]:
        assert y == curve[-1][1]


def test_interpolate_table():
    curve = [(0.92, 44.0), (0.98, 0.0), (1.02, 0.0), (1.08, -44.0)]
    for x, y in [(0.5, 44.0), (0.92, 44.0), (0.95, 22.0), (1.0, 0.0), (1.05, -22.0), (1.2, -44.0)]:
        assert math.isclose(interpolate(curve, x), y, abs_tol=1e-9), x
    # Equal neighbours: vertical step, right value at and after the step.
    step = [(0.9, 10.0), (1.0, 10.0), (1.0, -10.0), (1.1, -10.0)]
    assert interpolate(step, 0.99) == 10.0
    assert interpolate(step, 1.0) == -10.0


def test_time_constant_reaches_90_percent_at_response_time():
    assert math.isclose(1 - math.exp(-5.0 / tau_from_response_time(5.0)), 0.9)


@FAST
@given(finite, finite, st.floats(0.0, 100.0), st.floats(0.1, 100.0),
       st.integers(1, 50))
def test_first_order_never_overshoots(y0, target, dt, tr, n):
    y = y0
    for _ in range(n):
        new = low_pass(y, target, dt, tr)
        lo, hi = sorted((y, target))
        assert lo - 1e-9 <= new <= hi + 1e-9  # between previous value and target
        y = new


@FAST
@given(st.floats(0.1, 60.0), st.integers(1, 400))
def test_low_pass_step_hits_90_percent_at_tr_whatever_the_step_count(tr, n):
    y = 0.0
    for _ in range(n):
        y = low_pass(y, 1.0, tr / n, tr)
    assert math.isclose(y, 0.9, abs_tol=1e-9)


@FAST
@given(finite, finite, st.floats(0.0, 10.0), st.none() | st.floats(0.01, 100.0),
       st.none() | st.floats(0.01, 100.0))
def test_rate_limit_never_exceeds_rate_times_dt(prev, target, dt, up, down):
    new = rate_limit(prev, target, dt, up, down)
    lo, hi = sorted((prev, target))
    assert lo <= new <= hi
    if up is not None:
        assert new - prev <= up * dt + 1e-9
    if down is not None:
        assert prev - new <= down * dt + 1e-9


def test_hold_since_restarts_when_condition_drops():
    since = None
    since = hold_since(since, True, 1.0)
    since = hold_since(since, True, 3.0)
    assert held_for(since, 3.0) == pytest.approx(2.0)
    since = hold_since(since, False, 3.5)
    assert since is None and held_for(since, 4.0) == 0.0
    assert hold_since(since, True, 4.0) == 4.0
