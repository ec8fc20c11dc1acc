"""Ride-through / must-trip: properties, and IEEE 1547.1-2020 5.4 / 5.5 trip timing tables."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions import ride_through as rt
from inverter_agent.functions.ride_through import RegionMode, Side

FAST = settings(max_examples=150, deadline=None)
MARGIN = 0.1

V_TABLES = {
    "rule21": rt.rule21_voltage_table(MARGIN),
    "cat_I": rt.ieee1547_voltage_table("I", MARGIN),
    "cat_II": rt.ieee1547_voltage_table("II", MARGIN),
    "cat_III": rt.ieee1547_voltage_table("III", MARGIN),
}
F_TABLES = {
    "rule21": rt.rule21_frequency_table(MARGIN),
    "ieee1547": rt.ieee1547_frequency_table(MARGIN),
}


def run(table, xs_and_dts, t0=0.0):
    """Feed (x, dt) samples; return the list of (t, output)."""
    state, t, out = None, t0, []
    for x, dt in xs_and_dts:
        t += dt
        o, state = rt.step(table, x, x, state, t)
        out.append((t, o))
    return out


def first_trip(outputs):
    return next(((t, o.trip_region) for t, o in outputs if o.trip), (None, None))


def regions(table):
    return [(Side.OVER, i, r) for i, r in enumerate(table.over)] + [
        (Side.UNDER, i, r) for i, r in enumerate(table.under)]


ALL_REGIONS = [(name, side, i) for name, tab in {**V_TABLES, **F_TABLES}.items()
               for side, i, _ in regions(tab)]


def table_of(name):
    return {**V_TABLES, **F_TABLES}[name]


def beyond_value(table, side, i, depth):
    """A value beyond region i's threshold by ``depth`` (0..1) towards the next one."""
    regs = table.over if side is Side.OVER else table.under
    thr = regs[i].threshold
    span = 1.0 if thr < 10 else 10.0  # pu or Hz
    sign = 1.0 if side is Side.OVER else -1.0
    far = regs[i + 1].threshold if i + 1 < len(regs) else thr + sign * 0.3 * span
    return thr + (far - thr) * (0.01 + 0.98 * depth)  # strictly inside the region


@FAST
@given(st.sampled_from(ALL_REGIONS), st.floats(0.0, 1.0), st.floats(0.0, 1.0),
       st.floats(0.01, MARGIN), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_must_trip_fires_within_clearing_time(region, depth, extra, dt, wander):
    """Any trace staying beyond a threshold longer than its clearing time trips in time."""
    name, side, i = region
    table = table_of(name)
    reg = (table.over if side is Side.OVER else table.under)[i]
    clearing = reg.clearing_time_s
    dt = max(dt, clearing / 2000)  # keep 300 s traces short enough
    n = int((clearing * (1.0 + extra)) / dt) + 2
    # The value wanders anywhere beyond the threshold (possibly into worse regions).
    regs = table.over if side is Side.OVER else table.under
    values = [beyond_value(table, side, j, w) for j in range(i, len(regs)) for w in wander]
    nominal = 1.0 if reg.threshold < 10 else 60.0
    trace = [(nominal, dt)] + [(values[k % len(values)], dt) for k in range(n)]
    out = run(table, trace)
    t_first_beyond = out[1][0]
    t_trip, _ = first_trip(out)
    assert t_trip is not None
    assert t_trip - t_first_beyond <= clearing + 1e-9


@FAST
@given(st.sampled_from(ALL_REGIONS), st.floats(0.0, 1.0), st.floats(0.005, MARGIN),
       st.floats(0.0, 0.999))
def test_never_trips_before_ride_through_or_trip_delay(region, depth, dt, frac):
    """Staying inside one region, no trip before max(ride-through, clearing - margin)."""
    name, side, i = region
    table = table_of(name)
    reg = (table.over if side is Side.OVER else table.under)[i]
    delay = rt.trip_delay(reg, table.trip_margin_s)
    if reg.ride_through_s is not None:
        assert delay >= reg.ride_through_s
    dt = max(dt, delay / 2000)
    x = beyond_value(table, side, i, depth)
    n = int(delay * frac / dt)
    out = run(table, [(x, dt)] * n)
    assert first_trip(out)[0] is None


@FAST
@given(st.sampled_from(list(V_TABLES)), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50),
       st.floats(0.001, 1.0))
def test_never_trips_or_ceases_in_continuous_region(name, fracs, dt):
    table = V_TABLES[name]
    lo, hi = table.under[0].threshold, table.over[0].threshold
    trace = [(lo + (hi - lo) * f, dt) for f in fracs] * 20
    for _, o in run(table, trace):
        assert not o.trip and not o.cease and o.region == "NN"


@FAST
@given(st.floats(1.101, 1.199), st.floats(0.05, 11.5), st.floats(0.01, 0.1))
def test_rule21_hv1_momentary_cessation_resumes_without_trip(v, duration, dt):
    """Rule 21 HV1: cease within one cycle, no trip before 12 s, resume back in NN."""
    table = V_TABLES["rule21"]
    n = max(1, int(duration / dt))
    out = run(table, [(1.0, dt)] + [(v, dt)] * n + [(1.0, dt)])
    assert not out[0][1].cease
    assert all(o.cease and not o.trip for _, o in out[1:-1])
    assert not out[-1][1].cease and not out[-1][1].trip


def test_lv3_to_lv2_resumes_in_mandatory_operation():
    table = V_TABLES["rule21"]
    out = run(table, [(0.45, 0.1)] * 5 + [(0.6, 0.1)])
    assert out[0][1].cease and out[0][1].mode is RegionMode.MOMENTARY_CESSATION
    assert not out[-1][1].cease and out[-1][1].region == "LV2"


# ---------------------------------------------------------------- IEEE 1547.1-2020 tables

V_MRA = 0.01  # 1 % of nominal (1547-2018 Table 3)
F_MRA = 0.01  # 10 mHz
TIME_ACC = 0.01  # 1 %
DT = 0.01


def trip_rows(tables, mra):
    """(table, value stepped to, expected tripping region, expected clearing time)."""
    rows = []
    for name, tab in tables.items():
        for side, regs in ((Side.OVER, tab.over), (Side.UNDER, tab.under)):
            sign = 1.0 if side is Side.OVER else -1.0
            for i, reg in enumerate(regs):
                # Beyond the setpoint by 2 MRA: this setting trips within its clearing time.
                rows.append((name, reg.threshold + sign * 2 * mra, reg.name, reg.clearing_time_s))
                # Inside by 2 MRA: only the less severe setting (if any) may trip.
                prev = regs[i - 1] if i else None
                rows.append((name, reg.threshold - sign * 2 * mra,
                             prev.name if prev else None, prev.clearing_time_s if prev else None))
    return rows


def check_trip_row(table, nominal, value, region, clearing):
    horizon = 1.5 * (clearing if clearing else max(
        r.clearing_time_s for r in table.over + table.under))
    dt = DT if horizon < 30 else 0.1
    out = run(table, [(nominal, dt)] + [(value, dt)] * int(horizon / dt))
    t_step = out[1][0]
    t_trip, name = first_trip(out)
    if region is None:
        assert t_trip is None
        return
    assert name == region
    elapsed = t_trip - t_step
    # Cease to energize and trip within the clearing time (time accuracy 1 %) ...
    assert elapsed <= clearing * (1 + TIME_ACC)
    # ... and not earlier than the backup margin plus one sample before it.
    assert elapsed >= clearing - table.trip_margin_s - dt - 1e-9


@pytest.mark.parametrize(("name", "value", "region", "clearing"), trip_rows(V_TABLES, V_MRA))
def test_1547_1_5_4_voltage_trip_timing(name, value, region, clearing):
    check_trip_row(V_TABLES[name], 1.0, value, region, clearing)


@pytest.mark.parametrize(("name", "value", "region", "clearing"), trip_rows(F_TABLES, F_MRA))
def test_1547_1_5_5_frequency_trip_timing(name, value, region, clearing):
    check_trip_row(F_TABLES[name], 60.0, value, region, clearing)


def test_1547_1_5_4_expected_clearing_times_match_domain_tables():
    """The numbers themselves (DOMAIN.md), so a typo in a table cannot pass unseen."""
    def summary(tab):
        return [(r.name, r.threshold, r.clearing_time_s) for r in tab.over + tab.under]
    assert summary(V_TABLES["cat_II"]) == [
        ("OV1", 1.10, 2.0), ("OV2", 1.20, 0.16), ("UV1", 0.70, 10.0), ("UV2", 0.45, 0.16)]
    assert summary(V_TABLES["cat_I"])[2] == ("UV1", 0.70, 2.0)
    assert summary(V_TABLES["cat_III"]) == [
        ("OV1", 1.10, 13.0), ("OV2", 1.20, 0.16), ("UV1", 0.88, 21.0), ("UV2", 0.50, 2.0)]
    assert summary(V_TABLES["rule21"]) == [
        ("HV1", 1.10, 13.0), ("HV2", 1.20, 0.16), ("LV1", 0.88, 21.0), ("LV2", 0.70, 11.0),
        ("LV3", 0.50, 1.5)]
    assert [r.ride_through_s for r in V_TABLES["rule21"].under] == [20.0, 10.0, 1.0]
    assert summary(F_TABLES["ieee1547"]) == [
        ("OF1", 61.2, 300.0), ("OF2", 62.0, 0.16), ("UF1", 58.5, 300.0), ("UF2", 56.5, 0.16)]
    assert summary(F_TABLES["rule21"]) == [
        ("HF1", 60.5, 300.0), ("HF2", 62.0, 0.16), ("LF1", 58.5, 300.0), ("LF2", 57.0, 0.16)]


def test_trip_delay_never_precedes_ride_through():
    reg = rt.Region("HV1", 1.10, ride_through_s=12.95, clearing_time_s=13.0)
    assert rt.trip_delay(reg, 0.1) == 12.95
    assert rt.trip_delay(rt.Region("HV2", 1.2, clearing_time_s=0.16), 0.1) == pytest.approx(0.06)
    assert rt.trip_delay(rt.Region("X", 1.2), 0.1) is None


def test_disabled_table_never_trips():
    table = rt.RideThroughSettings(False, V_TABLES["rule21"].over, V_TABLES["rule21"].under)
    assert first_trip(run(table, [(1.5, 0.1)] * 100))[0] is None
