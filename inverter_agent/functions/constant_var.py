"""Constant reactive power (IEEE 1547-2018 5.3.4).

Not a Rule 21 Phase 1 function; kept so the reactive-mode arbitration covers
every mode the inverter's controls offer (SunSpec VArPct).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ranges import rng


@dataclass(frozen=True)
class ConstantVarSettings:
    """Constant reactive power, % of rated VAr, + = inject."""

    enabled: bool = False
    q_pct: float = field(default=0.0, metadata=rng(-100.0, 100.0, "sanity"))


def setpoint(settings: ConstantVarSettings) -> float:
    """Commanded reactive power in % of rated VAr, clamped to +-100 %."""
    return max(-100.0, min(100.0, settings.q_pct))
