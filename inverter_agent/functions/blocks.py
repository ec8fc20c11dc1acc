"""Reusable pure blocks for the grid-support functions.

The same building blocks EPRI OpenDER uses (low-pass filter, ramp, time delay,
piecewise-linear curve), written as pure functions: the caller keeps the state
and passes the elapsed time ``dt`` explicitly.

- The open-loop response time Tr of IEEE 1547-2018 (clause 1.4 definition, used
  by 5.3.3 volt-var, 5.4.2 volt-watt and 6.5.2.7 frequency droop) is the time to
  reach 90 % of a step change. A first-order lag reaches 1 - exp(-Tr / tau) of a
  step at Tr, so 90 % gives tau = Tr / ln(10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LN10 = math.log(10.0)

#: Tolerance on time comparisons, so that float sums of sample periods (0.1 + 0.1 ...)
#: do not push a timer one sample late.
TIME_EPS_S = 1e-9


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Evaluate a piecewise-linear curve at ``x``, clamped to the end values.

    ``points`` are (x, y) pairs with non-decreasing x. Equal neighbouring x
    values (a vertical segment, e.g. the 1.0 pu deadband of the Cat A
    volt-var curve) are allowed: left of the step the left y applies, at and
    right of it the right y.
    """
    if not points:
        raise ValueError("a curve needs at least one point")
    if x < points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    # Last point at or left of x; the next one is then strictly right of x.
    i = max(k for k, (xk, _) in enumerate(points) if xk <= x)
    (x0, y0), (x1, y1) = points[i], points[i + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def tau_from_response_time(response_time_s: float) -> float:
    """Time constant of a first-order lag that reaches 90 % of a step at Tr."""
    return response_time_s / LN10


def low_pass(previous: float, target: float, dt: float, response_time_s: float) -> float:
    """Advance a first-order lag by ``dt`` towards ``target``.

    Exact discretisation of dy/dt = (target - y) / tau with tau = Tr / ln(10):
    the new value is a convex combination of ``previous`` and ``target``, so it
    never overshoots whatever ``dt`` is. ``response_time_s <= 0`` means no lag.
    """
    if response_time_s <= 0.0 or dt < 0.0:
        return target if response_time_s <= 0.0 else previous
    alpha = 1.0 - math.exp(-dt / tau_from_response_time(response_time_s))
    return previous + (target - previous) * alpha


def rate_limit(
    previous: float, target: float, dt: float, up_per_s: float | None, down_per_s: float | None
) -> float:
    """Move from ``previous`` towards ``target`` by at most rate x ``dt``.

    ``None`` for a rate means that direction is not limited.
    """
    dt = max(dt, 0.0)
    if target > previous:
        if up_per_s is None:
            return target
        return min(target, previous + up_per_s * dt)
    if target < previous:
        if down_per_s is None:
            return target
        return max(target, previous - down_per_s * dt)
    return target


def hold_since(since: float | None, condition: bool, t: float) -> float | None:
    """Track since when ``condition`` has held continuously (a timer / delay).

    Returns the time the condition became true, or None when it is false; the
    condition has then held for ``t - since`` seconds.
    """
    if not condition:
        return None
    return t if since is None else since


def held_for(since: float | None, t: float) -> float:
    """Seconds a condition tracked with :func:`hold_since` has held (0 if not).

    Includes :data:`TIME_EPS_S`, so ``held_for(...) >= delay`` is robust to float sums.
    """
    return 0.0 if since is None else t - since + TIME_EPS_S
