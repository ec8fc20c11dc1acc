"""Limit maximum active power (IEEE 1547-2018 4.6.2; Rule 21 Hh.2.k's base limit).

The engine takes the lowest of this limit (ramped by :mod:`.ramp`), volt-watt,
frequency droop and the enter-service soft start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ranges import rng


@dataclass(frozen=True)
class PowerLimitSettings:
    """Utility / base active power limit (limit maximum active power), % of rated W."""

    enabled: bool = False
    p_limit_pct: float = field(default=100.0, metadata=rng(0.0, 100.0, "sanity"))
