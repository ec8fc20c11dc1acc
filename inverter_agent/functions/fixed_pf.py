"""Constant power factor (IEEE 1547-2018 5.3.2; Rule 21 Hh.2.m fixed power factor).

The gateway does not close the PF loop itself: it commands the inverter's own
constant-PF mode (SunSpec OutPFSet), whose response time (1547.1-2020 5.14.3:
90 % of the Q step within 10 s) is the inverter's. This module only bounds the
commanded power factor to the limits the DER category allows (Cat A and B:
0.90 injecting; absorbing 0.97 Cat A, 0.90 Cat B - DOMAIN.md, 1547.1 facts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .ranges import rng


@dataclass(frozen=True)
class FixedPfSettings:
    """Constant power factor settings.

    Attributes:
        pf: displacement power factor, 0 < pf <= 1 (1547-2018 default 1.0).
        absorbing: True = absorbing reactive power (under-excited).
        pf_min_injecting / pf_min_absorbing: the lowest pf the DER supports in
            each direction (nameplate / category requirement).
    """

    enabled: bool = False
    pf: float = 1.0
    absorbing: bool = False
    # 0.80 is the lowest pf any 1547 category or SunSpec profile here asks for; pf itself
    # lies between the direction's minimum and 1 (settings.validate).
    pf_min_injecting: float = field(default=0.90, metadata=rng(0.8, 1.0, "sanity"))
    pf_min_absorbing: float = field(default=0.90, metadata=rng(0.8, 1.0, "sanity"))


def setpoint(settings: FixedPfSettings) -> tuple[float, bool]:
    """Commanded (pf, absorbing), pf bounded to [pf_min of its direction, 1] (5.3.2)."""
    pf_min = settings.pf_min_absorbing if settings.absorbing else settings.pf_min_injecting
    return max(pf_min, min(1.0, settings.pf)), settings.absorbing


def reactive_pu(p_pu: float, pf: float, absorbing: bool) -> float:
    """Reactive power (pu, + = inject) that yields ``pf`` at active power ``p_pu``."""
    q = abs(p_pu) * math.tan(math.acos(pf))
    return -q if absorbing else q
