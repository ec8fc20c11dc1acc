"""Ramp rate for normal active-power changes (Rule 21 Hh.2.k; IEEE 1547-2018 4.6.3 / 4.10.3).

Limits how fast the *normal* active-power limit (the utility / base limit) may
move, in % of rated W per second, separately up and down. Responses to
abnormal conditions (trip, momentary cessation, volt-watt, frequency droop)
are not rate limited here: those functions carry their own response times.

No default rate is set anywhere citable for Rule 21 2014 (DOMAIN.md), so the
profiles ship the function disabled with no rate; a rate of None means that
direction is unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .blocks import rate_limit
from .ranges import rng


@dataclass(frozen=True)
class RampSettings:
    """Normal ramp rates, % of rated W per second (None = unlimited)."""

    enabled: bool = False
    up_pct_per_s: float | None = field(default=None, metadata=rng(0.0, 1000.0, "sanity",
                                                                  lo_open=True))
    down_pct_per_s: float | None = field(default=None, metadata=rng(0.0, 1000.0, "sanity",
                                                                    lo_open=True))


def step(settings: RampSettings, previous_pct: float, target_pct: float, dt: float) -> float:
    """Next value of a ramped limit: never moves more than rate x ``dt`` (Hh.2.k)."""
    if not settings.enabled:
        return target_pct
    return rate_limit(previous_pct, target_pct, dt, settings.up_pct_per_s, settings.down_pct_per_s)
