"""The plant arithmetic: totals over the inverters that answer, the plant limit
shared by rating, and a lost inverter's share kept in reserve."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from hal.reading import Detail, Validity
from inverter_agent.core.plant import InverterView, allocate, totals


def _v(name, up=True, w=1000.0, var=0.0, rtg=5000.0):
    return InverterView(name, up, w if up else None, var if up else None,
                        abs(w) if up else None, rtg)


def test_totals_of_all_inverters_are_good():
    t = totals([_v("A", w=1000, var=-200), _v("B", w=2500, var=100)])
    assert (t.w, t.var, t.reporting, t.configured, t.w_rtg) == (3500, -100, 2, 2, 10000)
    assert t.quality.good


def test_a_missing_inverter_leaves_the_others_total_marked_questionable():
    t = totals([_v("A", w=1000), _v("B", up=False), _v("C", w=3000)])
    assert t.w == 4000 and t.reporting == 2 and t.configured == 3
    assert t.quality.validity == Validity.QUESTIONABLE
    assert Detail.INACCURATE in t.quality.detail
    assert t.w_rtg == 15000  # the lost one's last known rating still counts


def test_no_inverter_answering_is_invalid():
    t = totals([_v("A", up=False), _v("B", up=False)])
    assert t.reporting == 0 and t.quality.validity == Validity.INVALID
    assert Detail.FAILURE in t.quality.detail


def test_no_plant_limit_gives_no_caps():
    a = allocate(None, [_v("A"), _v("B")], {"A": 100.0})
    assert a.caps_pct == {"A": None, "B": None} and not a.shares_w and not a.limiting


def test_the_limit_is_shared_in_proportion_to_rating():
    a = allocate(6000.0, [_v("A", rtg=5000), _v("B", rtg=10000)], {})
    assert a.caps_pct["A"] == a.caps_pct["B"] == 40.0
    assert a.shares_w == {"A": 2000.0, "B": 4000.0} and a.limiting


def test_a_limit_above_the_ratings_caps_nothing_below_100_percent():
    a = allocate(50000.0, [_v("A"), _v("B")], {})
    assert a.caps_pct == {"A": 100.0, "B": 100.0} and not a.limiting


def test_a_lost_inverter_keeps_its_last_share_reserved():
    first = allocate(6000.0, [_v("A"), _v("B"), _v("C")], {})
    assert first.shares_w["C"] == 2000.0
    second = allocate(3000.0, [_v("A"), _v("B"), _v("C", up=False)], first.shares_w)
    assert second.reserved_w == 2000.0
    assert second.caps_pct["A"] == second.caps_pct["B"] == 10.0  # 1000 W over 10 kW
    assert second.caps_pct["C"] is None and second.shares_w["C"] == 2000.0


def test_an_inverter_never_limited_reserves_its_rating_and_the_rest_may_be_zero():
    a = allocate(4000.0, [_v("A"), _v("B", up=False)], {})
    assert a.reserved_w == 5000.0 and a.caps_pct["A"] == 0.0


views = st.lists(st.tuples(st.booleans(), st.floats(100, 1e6)), min_size=1, max_size=16)


@given(views, st.floats(0, 1e7), st.lists(st.floats(0, 1e6), min_size=16, max_size=16))
def test_live_shares_plus_reserve_never_exceed_the_limit(spec, w_max, held):
    vs = [_v(f"I{i}", up=up, rtg=rtg) for i, (up, rtg) in enumerate(spec)]
    held_w = {f"I{i}": h for i, h in enumerate(held)}
    a = allocate(w_max, vs, held_w)
    live = math.fsum(a.shares_w[v.name] for v in vs if v.reporting)
    assert live <= max(0.0, w_max - a.reserved_w) * (1 + 1e-9) + 1e-6
    for v in vs:
        cap = a.caps_pct[v.name]
        assert (cap is None) == (not v.reporting)
        assert cap is None or 0.0 <= cap <= 100.0
