"""Pass / fail evaluation of IEEE 1547.1-2020 test steps, as pure functions.

No I/O and no clock: every function takes recorded samples (time, value) and
the settings, and returns numbers or a :class:`StepResult`. The tolerances are
the minimum required accuracies (MRA) of IEEE 1547-2018 Table 3, steady state,
as IEEE 1547.1-2020 uses them (DOMAIN.md, "IEEE 1547.1-2020 test facts"):
V +-1 % of nominal, f 10 mHz, P and Q +-5 % of rated VA, time 1 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Accuracy:
    """Minimum required measurement accuracy (IEEE 1547-2018 Table 3, steady state)."""

    v_pu: float = 0.01  # 1 % of nominal
    f_hz: float = 0.01  # 10 mHz
    p_pct: float = 5.0  # % of rated VA
    q_pct: float = 5.0  # % of rated VA
    time_frac: float = 0.01  # 1 % of the measured time


MRA = Accuracy()


@dataclass
class StepResult:
    """One judged test step, as it goes into report.json.

    ``expected`` is the target value, ``low`` / ``high`` the pass band (either
    may be None for a one-sided limit), ``measured`` what was seen; ``timings``
    holds the times the step measured (seconds) and ``inputs`` what was applied.
    """

    procedure: str
    step: str
    passed: bool
    measured: float | None
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""
    criterion: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("measured", "expected", "low", "high"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 5)
        d["timings"] = {k: (None if v is None else round(v, 4)) for k, v in self.timings.items()}
        return d


def within(value: float | None, low: float | None, high: float | None) -> bool:
    """``low <= value <= high`` with open ends for None bounds; None value fails."""
    if value is None or math.isnan(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


# ---------------------------------------------------------------- curves


def curve_y(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear curve value, clamped to the end values (as the functions do)."""
    if x <= points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            if x1 == x0:
                return y1
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]  # unreachable for sorted points


def curve_band(points: Sequence[tuple[float, float]], x: float, mra_x: float,
               mra_y: float, k: float = 1.5) -> tuple[float, float, float]:
    """(expected, low, high): Y(X +- k MRA_X) -+ k MRA_Y (1547.1-2020 5.14.4 criterion).

    The band is the range of the curve over ``[x - k mra_x, x + k mra_x]``
    (end points and any curve points inside), widened by ``k mra_y`` each way.
    """
    xa, xb = x - k * mra_x, x + k * mra_x
    ys = [curve_y(points, xa), curve_y(points, xb)]
    ys += [curve_y(points, px) for px, _ in points if xa < px < xb]
    ys += [py for px, py in points if xa < px < xb]
    return curve_y(points, x), min(ys) - k * mra_y, max(ys) + k * mra_y


def volt_var_test_voltages(points: Sequence[tuple[float, float]], av: float) -> list[float]:
    """Voltage steps through a 4-point volt-var curve (1547.1-2020 5.14.4.2, simplified).

    Up through V3 and V4, back, then down through V2 and V1 and back:
    V3 - av, V3 + av, (V3 + V4)/2, V4 - av, V4 + av, (V3 + V4)/2, V3 + av, V3 - av,
    V2 + av, V2 - av, (V1 + V2)/2, V1 + av, V1 - av, (V1 + V2)/2, V2 - av, V2 + av.
    ``av`` is 1.5 x the voltage MRA. Curves with other than 4 points step through
    each breakpoint +- av in order.
    """
    xs = [p[0] for p in points]
    if len(xs) != 4:
        out = []
        for x in xs:
            out += [x - av, x + av]
        return out
    v1, v2, v3, v4 = xs
    up = [v3 - av, v3 + av, (v3 + v4) / 2, v4 - av, v4 + av, (v3 + v4) / 2, v3 + av, v3 - av]
    down = [v2 + av, v2 - av, (v1 + v2) / 2, v1 + av, v1 - av, (v1 + v2) / 2, v2 - av,
            v2 + av]
    return [round(v, 4) for v in up + down]


# ---------------------------------------------------------------- time responses


def crossing_time(series: Sequence[tuple[float, float]], t_from: float, level: float,
                  rising: bool) -> float | None:
    """First time at or after ``t_from`` the series crosses ``level``, interpolated.

    ``series`` is (t, y) sorted by t. Linear interpolation between the last
    sample short of the level and the first beyond it; None if never crossed.
    """
    prev: tuple[float, float, bool] | None = None
    for t, y in series:
        hit = y >= level if rising else y <= level
        if t >= t_from and hit:
            if prev is None:
                return t
            t0, y0, prev_hit = prev
            if prev_hit or y == y0:
                return max(t_from, t0)
            return max(t_from, t0 + (t - t0) * (level - y0) / (y - y0))
        prev = (t, y, hit)
    return None


def response_time(series: Sequence[tuple[float, float]], t_step: float, y_initial: float,
                  y_final: float, fraction: float = 0.9) -> float | None:
    """Seconds from ``t_step`` until the output covered ``fraction`` of its change.

    The 1547-2018 open-loop response time is the time to 90 % of the step
    change (clause 3.1 definition; 1547.1-2020 5.14.4 / 5.14.3). None if the
    output never got there, 0 for a change too small to time.
    """
    change = y_final - y_initial
    if change == 0:
        return 0.0
    level = y_initial + fraction * change
    t = crossing_time(series, t_step, level, rising=change > 0)
    return None if t is None else t - t_step


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# ---------------------------------------------------------------- trip / cease timing


@dataclass(frozen=True)
class CeaseTiming:
    """When the DER was seen to cease after a step (bench seconds from the step).

    ``last_energized`` is the last sample still energizing, ``first_ceased`` the
    first sample from which it stays ceased (None if it never did). The
    cessation happened between the two: their gap is the resolution.
    """

    last_energized: float | None
    first_ceased: float | None

    @property
    def resolution(self) -> float | None:
        if self.first_ceased is None:
            return None
        return self.first_ceased - (self.last_energized or 0.0)


def cease_timing(series: Sequence[tuple[float, bool] | tuple[float, float, bool]],
                 t_step: float) -> CeaseTiming:
    """Cessation after ``t_step`` from (t, ceased) or (t_read, t, ceased) samples.

    With ``t_read`` (when the poll that produced the sample began) an
    energizing sample counts from its read time and a ceased one from ``t``
    (when the sample was complete), so the bracket is never narrower than the
    truth. The DER must stay ceased: energizing again restarts the search.
    """
    last_on: float | None = None
    first_off: float | None = None
    for item in series:
        t_read, t, ceased = (item[0], item[0], item[1]) if len(item) == 2 else item
        if t < t_step:
            continue
        if ceased:
            if first_off is None:
                first_off = t
        else:
            last_on, first_off = t_read, None
    return CeaseTiming(None if last_on is None else last_on - t_step,
                       None if first_off is None else first_off - t_step)


def judge_cease(procedure: str, step: str, timing: CeaseTiming, clearing_s: float,
                allowance_s: float, inputs: dict[str, Any], note: str = "") -> StepResult:
    """5.4 / 5.5: cease to energize within the clearing time (+ the documented allowance).

    Judged on observations: fail if the DER is seen energizing later than
    ``clearing_s + allowance_s`` after the step (by the time its reading
    began), or never seen ceased. The measured time is the first sample from
    which it stays ceased (an upper bound; the resolution is the gap to the
    last energizing reading).
    """
    limit = clearing_s + allowance_s
    ok = timing.first_ceased is not None and (timing.last_energized or 0.0) <= limit
    return StepResult(
        procedure, step, ok, timing.first_ceased, expected=clearing_s, low=None, high=limit,
        unit="s", criterion=f"cease to energize within clearing time {clearing_s:g} s + "
                            f"allowance {allowance_s:g} s (no energizing sample after "
                            f"{limit:g} s)",
        inputs=inputs,
        timings={"first_ceased_s": timing.first_ceased,
                 "last_energizing_s": timing.last_energized,
                 "resolution_s": timing.resolution, "clearing_time_s": clearing_s,
                 "limit_s": limit},
        note=note)


# ---------------------------------------------------------------- constant PF


def pf_q_pct(p_pct_va: float, pf: float, absorbing: bool) -> float:
    """Q (% of rated VA, + = injecting) that gives power factor ``pf`` at ``p_pct_va``."""
    q = abs(p_pct_va) * math.tan(math.acos(max(0.0, min(1.0, pf))))
    return -q if absorbing else q


# ---------------------------------------------------------------- enter service


def first_export(series: Sequence[tuple[float, float]], t_from: float,
                 threshold_pct: float) -> float | None:
    """First time at or after ``t_from`` that output exceeds ``threshold_pct``."""
    for t, p in series:
        if t >= t_from and p > threshold_pct:
            return t
    return None


def ramp_excess(series: Sequence[tuple[float, float]], t_start: float, ramp_s: float,
                full_pct: float = 100.0) -> tuple[float, float | None]:
    """Largest excess of output over the soft-start line (1547-2018 4.10.3).

    The line goes from 0 at ``t_start`` to ``full_pct`` at ``t_start + ramp_s``.
    Returns (excess in % points, time of the worst sample); <= 0 means the
    output stayed under the line.
    """
    worst, at = -math.inf, None
    for t, p in series:
        if t < t_start or t > t_start + ramp_s:
            continue
        line = full_pct * (t - t_start) / ramp_s if ramp_s > 0 else full_pct
        if p - line > worst:
            worst, at = p - line, t
    return (worst if at is not None else 0.0), at


# ---------------------------------------------------------------- step judges


def judge_curve_point(procedure: str, step: str, curve: Sequence[tuple[float, float]],
                      v_pu: float, q_pct: float, inputs: dict[str, Any] | None = None,
                      timings: dict[str, float | None] | None = None,
                      k: float = 1.5) -> StepResult:
    """5.14.4 steady state: Q within Y(X +- k MRA_X) -+ k MRA_Y at the measured V."""
    expected, lo, hi = curve_band(curve, v_pu, MRA.v_pu, MRA.q_pct, k)
    return StepResult(procedure, step, within(q_pct, lo, hi), q_pct, expected, lo, hi,
                      "% rated VA", f"Q within Y(X +- {k:g} MRA_X) -+ {k:g} MRA_Y after 2 Tr",
                      {"v_measured_pu": round(v_pu, 5), **(inputs or {})}, dict(timings or {}))


def judge_response(procedure: str, step: str, series: Sequence[tuple[float, float]],
                   t_step: float, y_initial: float, y_final: float, limit_s: float,
                   criterion: str, expected_s: float | None = None,
                   inputs: dict[str, Any] | None = None) -> StepResult:
    """Open-loop response: 90 % of the change from ``y_initial`` to ``y_final`` by ``limit_s``."""
    t90 = response_time(series, t_step, y_initial, y_final)
    return StepResult(procedure, step, t90 is not None and t90 <= limit_s, t90, expected_s,
                      None, limit_s, "s", criterion,
                      {"from": round(y_initial, 3), "to": round(y_final, 3), **(inputs or {})},
                      {"t_step_s": t_step, "t90_s": t90, "limit_s": limit_s})
