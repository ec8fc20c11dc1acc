"""Pass / fail evaluation on synthetic data: each criterion passes inside its
tolerance and fails outside it (IEEE 1547.1-2020 5.14.4, 5.14.3, 5.6.2, 5.4/5.5)."""

from __future__ import annotations

import math

import pytest

from inverter_agent.conformance import enter_service
from inverter_agent.conformance.bench import Sample
from inverter_agent.conformance.evaluate import (
    MRA,
    cease_timing,
    crossing_time,
    curve_band,
    curve_y,
    judge_cease,
    judge_curve_point,
    judge_response,
    pf_q_pct,
    ramp_excess,
    response_time,
    volt_var_test_voltages,
)

CAT_B = [(0.92, 44.0), (0.98, 0.0), (1.02, 0.0), (1.08, -44.0)]  # % of rated VA


# ---------------------------------------------------------------- 5.14.4 volt-var


def test_curve_values_and_clamping():
    assert curve_y(CAT_B, 1.05) == pytest.approx(-22.0)
    assert curve_y(CAT_B, 0.95) == pytest.approx(22.0)
    assert curve_y(CAT_B, 0.80) == 44.0 and curve_y(CAT_B, 1.20) == -44.0
    assert curve_y(CAT_B, 1.00) == 0.0


def test_tolerance_band_on_a_slope_is_the_curve_over_x_pm_1_5_mra_widened_by_1_5_mra():
    expected, lo, hi = curve_band(CAT_B, 1.05, MRA.v_pu, MRA.q_pct)
    # X +- 0.015 pu on a slope of -44 % / 0.06 pu = -+11 %; then -+7.5 % (1.5 x 5 %).
    assert expected == pytest.approx(-22.0)
    assert lo == pytest.approx(-22.0 - 11.0 - 7.5)
    assert hi == pytest.approx(-22.0 + 11.0 + 7.5)


def test_tolerance_band_at_a_corner_includes_the_breakpoint():
    # At 1.02 (V3) the window [1.005, 1.035] spans the flat part and the slope.
    _, lo, hi = curve_band(CAT_B, 1.02, MRA.v_pu, MRA.q_pct)
    assert hi == pytest.approx(0.0 + 7.5)
    assert lo == pytest.approx(curve_y(CAT_B, 1.035) - 7.5)


def test_a_point_inside_the_band_passes_and_one_outside_fails():
    _, lo, hi = curve_band(CAT_B, 1.05, MRA.v_pu, MRA.q_pct)
    ok = judge_curve_point("volt-var", "in", CAT_B, 1.05, hi - 0.1)
    bad = judge_curve_point("volt-var", "out", CAT_B, 1.05, hi + 0.1)
    flat_bad = judge_curve_point("volt-var", "flat", CAT_B, 1.00, 8.0)  # deadband, > 7.5 %
    assert ok.passed and not bad.passed and not flat_bad.passed
    assert ok.inputs["v_measured_pu"] == 1.05 and ok.unit == "% rated VA"


def test_the_5_14_4_voltage_sequence_visits_every_breakpoint_pm_av():
    av = 1.5 * MRA.v_pu
    volts = volt_var_test_voltages(CAT_B, av)
    for v in (0.92, 0.98, 1.02, 1.08):
        assert round(v - av, 4) in volts and round(v + av, 4) in volts
    assert 1.05 in volts and 0.95 in volts  # the midpoints of the slopes


def _first_order(t_step: float, y0: float, y1: float, tr: float, dt: float = 0.1,
                 t_end: float = 10.0, dead: float = 0.0) -> list[tuple[float, float]]:
    tau = tr / math.log(10)
    out = []
    t = t_step - 1.0
    while t <= t_end:
        k = 0.0 if t < t_step + dead else 1 - math.exp(-(t - t_step - dead) / tau)
        out.append((round(t, 6), y0 + (y1 - y0) * k))
        t += dt
    return out


@pytest.mark.parametrize("y0,y1", [(0.0, -22.0), (-44.0, 0.0), (10.0, 30.0)])
def test_response_time_of_a_first_order_lag_is_its_tr(y0, y1):
    series = _first_order(0.0, y0, y1, tr=5.0, dt=0.05)
    assert response_time(series, 0.0, y0, y1) == pytest.approx(5.0, abs=0.01)


def test_open_loop_response_within_tr_passes_and_a_slow_one_fails():
    limit = 1.0 * (1 + MRA.time_frac) + 0.1
    fast = _first_order(0.0, 0.0, -22.0, tr=1.0, dead=0.05)
    slow = _first_order(0.0, 0.0, -22.0, tr=1.0, dead=0.25)
    assert judge_response("vv", "fast", fast, 0.0, 0.0, -22.0, limit, "c").passed
    res = judge_response("vv", "slow", slow, 0.0, 0.0, -22.0, limit, "c")
    assert not res.passed and res.measured == pytest.approx(1.25, abs=0.02)
    never = [(t, 0.0) for t in range(10)]
    assert not judge_response("vv", "never", never, 0.0, 0.0, -22.0, limit, "c").passed


def test_crossing_time_interpolates_between_samples():
    series = [(0.0, 0.0), (1.0, 0.0), (2.0, 10.0)]
    assert crossing_time(series, 0.5, 5.0, rising=True) == pytest.approx(1.5)
    assert crossing_time(series, 0.5, 50.0, rising=True) is None
    # already beyond the level when the step happens: zero response time
    assert response_time([(0.0, 10.0), (1.0, 10.0)], 0.5, 0.0, 10.0) == 0.0


# ---------------------------------------------------------------- 5.14.3 constant PF


def test_pf_reactive_power_signs_and_values():
    assert pf_q_pct(80.0, 0.9, absorbing=False) == pytest.approx(80 * math.tan(math.acos(0.9)))
    assert pf_q_pct(80.0, 0.9, absorbing=True) == pytest.approx(-38.746, abs=1e-3)
    assert pf_q_pct(80.0, 1.0, absorbing=False) == pytest.approx(0.0)


def test_pf_response_within_10_s_passes_and_after_10_s_fails():
    q = pf_q_pct(77.6, 0.9, False)
    ok = judge_response("pf", "ok", _first_order(0.0, 0.0, q, 8.0, t_end=20.0), 0.0, 0.0, q,
                        10.0, "c")
    late = judge_response("pf", "late", _first_order(0.0, 0.0, q, 12.0, t_end=20.0), 0.0, 0.0,
                          q, 10.0, "c")
    assert ok.passed and not late.passed


# ---------------------------------------------------------------- 5.4 / 5.5 trip timing


def _ceased_at(t_cease: float, dt: float = 0.1, t_end: float = 2.0,
               blip: float | None = None) -> list[tuple[float, bool]]:
    out = []
    for i in range(int(t_end / dt) + 1):
        t = round(-0.5 + i * dt, 6)
        ceased = t >= t_cease and not (blip is not None and abs(t - blip) < dt / 2)
        out.append((t, ceased))
    return out


def test_cease_within_clearing_plus_allowance_passes():
    timing = cease_timing(_ceased_at(0.25), 0.0)
    assert timing.first_ceased == pytest.approx(0.3)
    assert timing.last_energized == pytest.approx(0.2)
    assert timing.resolution == pytest.approx(0.1)
    step = judge_cease("voltage-trip", "HV2", timing, 0.16, 0.1, {})
    assert step.passed and step.high == pytest.approx(0.26)


def test_energizing_seen_after_the_limit_fails():
    step = judge_cease("voltage-trip", "HV2", cease_timing(_ceased_at(0.45), 0.0), 0.16, 0.1,
                       {})
    assert not step.passed and step.measured == pytest.approx(0.5)


def test_an_energizing_reading_counts_from_when_its_poll_began():
    # (t_read, t_complete, ceased): the poll that still saw it energizing began at 0.25 s
    # and completed at 0.28 s; the first ceased sample completed at 0.38 s.
    series = [(-0.05, -0.02, False), (0.05, 0.08, False), (0.15, 0.18, False),
              (0.25, 0.28, False), (0.35, 0.38, True), (0.45, 0.48, True)]
    timing = cease_timing(series, 0.0)
    assert timing.last_energized == pytest.approx(0.25)
    assert timing.first_ceased == pytest.approx(0.38)
    assert judge_cease("voltage-trip", "OV2", timing, 0.16, 0.1, {}).passed
    late = [*series[:4], (0.27, 0.30, False), (0.35, 0.38, True)]
    assert not judge_cease("voltage-trip", "OV2", cease_timing(late, 0.0), 0.16, 0.1,
                           {}).passed


def test_never_ceasing_or_re_energizing_fails():
    never = judge_cease("frequency-trip", "HF2", cease_timing(_ceased_at(99.0), 0.0), 0.16,
                        0.1, {})
    assert not never.passed and never.measured is None
    # ceased in time, but energized again at 0.8 s: it did not stay ceased
    blip = cease_timing(_ceased_at(0.1, blip=0.8), 0.0)
    assert blip.last_energized == pytest.approx(0.8)
    assert not judge_cease("frequency-trip", "HF2", blip, 0.16, 0.1, {}).passed


# ---------------------------------------------------------------- 5.6.2 enter service


def _sample(t: float, p: float, energizing: bool) -> Sample:
    return Sample(t, True, 1.0, 1.0, 1.0, 60.0, p, 0.0, energizing, energizing, "x")


def _return_series(delay: float, ramp: float, enter_at: float, p_avail: float = 80.0,
                   cap_slope: float = 1.0, dt: float = 0.1,
                   t_end: float | None = None) -> list[Sample]:
    """Out until ``enter_at``, then a linear cap (x ``cap_slope``) up to ``p_avail``."""
    end = t_end if t_end is not None else delay + ramp + 2.0
    out = []
    for i in range(int(end / dt) + 1):
        t = round(i * dt, 6)
        if t < enter_at:
            out.append(_sample(t, 0.0, False))
        else:
            p = min(p_avail, cap_slope * 100.0 * (t - enter_at) / ramp)
            out.append(_sample(t, p, True))
    return out


def _by_name(steps):
    return {s.step: s for s in steps}


def test_enter_service_by_the_book_passes_every_step():
    steps, t_entry = enter_service.judge(_return_series(4.0, 4.0, 4.05), 0.0, 4.0, 4.0, 80.0,
                                         0.1)
    assert all(s.passed for s in steps), [s.step for s in steps if not s.passed]
    assert t_entry == pytest.approx(4.0)
    assert len(steps) == 5


def test_export_before_98_5_percent_of_the_delay_fails():
    steps, _ = enter_service.judge(_return_series(4.0, 4.0, 3.8), 0.0, 4.0, 4.0, 80.0, 0.1)
    s = _by_name(steps)
    assert not s["no export before 98.5 % of the delay"].passed
    # at 3.8 s it energizes at 0 W; the first sample above 2 % of rated is the export
    assert s["no export before 98.5 % of the delay"].timings["first_early_sample_s"] == \
        pytest.approx(3.9)


def test_a_ramp_faster_than_the_ramp_time_fails():
    fast = _return_series(4.0, 4.0, 4.05, p_avail=100.0, cap_slope=2.0)
    s = _by_name(enter_service.judge(fast, 0.0, 4.0, 4.0, 100.0, 0.1)[0])
    assert not s["output follows the soft-start ramp"].passed
    assert not s["rated power not reached before the ramp time"].passed
    assert s["no export before 98.5 % of the delay"].passed


def test_never_entering_service_fails():
    out = _return_series(4.0, 4.0, 99.0)
    steps, t_entry = enter_service.judge(out, 0.0, 4.0, 4.0, 80.0, 0.1)
    s = _by_name(steps)
    assert t_entry is None and not s["enters service after the delay"].passed


def test_ramp_excess_is_measured_against_the_line():
    on_line = [(t / 10, 100.0 * (t / 10) / 4.0) for t in range(41)]
    assert ramp_excess(on_line, 0.0, 4.0)[0] == pytest.approx(0.0, abs=1e-9)
    jump = [(0.0, 0.0), (1.0, 60.0), (2.0, 60.0)]
    excess, at = ramp_excess(jump, 0.0, 4.0)
    assert excess == pytest.approx(35.0) and at == 1.0
