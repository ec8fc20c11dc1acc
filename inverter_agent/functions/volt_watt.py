"""Volt-watt (IEEE 1547-2018 5.4.2; Rule 21 Phase 3, mandatory to activate since 2018).

The active power limit follows a piecewise-linear curve of the applicable
voltage (1547-2018 Table 10: (V1 1.06 pu, P1 100 %), (V2 1.10 pu, P2)) through a
first-order lag with open-loop response time Tr (default 10 s), as OpenDER
section 3.7.1.1 does. The output is a power limit in % of rated W.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .blocks import interpolate, low_pass
from .ranges import rng


@dataclass(frozen=True)
class VoltWattPoint:
    """One curve point: voltage in pu, active power limit in % of rated W."""

    v_pu: float = field(metadata=rng(1.0, 1.5, "sanity"))
    p_pct: float = field(metadata=rng(0.0, 100.0, "sanity"))


@dataclass(frozen=True)
class VoltWattSettings:
    """Volt-watt settings; defaults from 1547-2018 Table 10 via OpenDER (DOMAIN.md).

    P2 = 0 %: 1547-2018 sets P2 to the lesser of 0.2 x Prated and Pmin, and a PV
    inverter's Pmin is 0 (DOMAIN.md: "1.10 pu -> P 0 (or 0.2)").
    """

    enabled: bool = False
    curve: tuple[VoltWattPoint, ...] = (VoltWattPoint(1.06, 100.0), VoltWattPoint(1.10, 0.0))
    response_time_s: float = field(default=10.0, metadata=rng(0.5, 60.0, "1547 Table 10"))


def curve_p_pct(settings: VoltWattSettings, v_pu: float) -> float:
    """Steady-state active power limit (% of rated W) at ``v_pu``."""
    return interpolate([(p.v_pu, p.p_pct) for p in settings.curve], v_pu)


def step(
    settings: VoltWattSettings, v_pu: float, dt: float, state: float | None
) -> tuple[float, float]:
    """Advance volt-watt by ``dt``: returns (limit % of rated W, new state) (5.4.2).

    ``state`` is the lagged limit; None starts at the steady state for ``v_pu``.
    """
    target = curve_p_pct(settings, v_pu)
    if state is None:
        return target, target
    p = low_pass(state, target, dt, settings.response_time_s)
    return p, p
