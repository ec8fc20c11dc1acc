"""Set active power of a storage DER (IEEE 1547-2018 / Rule 21 Phase 3 "set active
power"; IEC 61850-7-420 DWGC): a charge or discharge setpoint for the battery.

Sign convention (SunSpec's, kept end to end): positive discharges (the DER
exports), negative charges (from PV or the grid). The setpoint is ``w`` in W,
or ``w_pct`` in % of the inverter's rated W when that is set (a utility's
command in % of setMaxW; writing ``w`` over MMS clears it).

:func:`step` is pure (time is an argument) and never drives the battery past
what it can do: no discharge at or below the reserve (the higher of the
device's own and ``reserve_pct``), no charge at or above the device's highest
SoC, never beyond the device's charge / discharge rates. What combines with
the other functions (protection first, an active-power limit bounds a
discharge and never forces one) is decided in ``core/arbitration.py``
(``storage_setpoint``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .ranges import rng

#: Sanity bound of an absolute setpoint, W (a typo must not reach a battery).
W_SANITY = 10_000_000.0


@dataclass(frozen=True)
class SetActivePowerSettings:
    """Charge (-) or discharge (+) setpoint of the storage."""

    enabled: bool = False
    #: Setpoint, W (+ discharge, - charge; 0 holds the battery).
    w: float = field(default=0.0, metadata=rng(-W_SANITY, W_SANITY, "sanity"))
    #: Setpoint in % of the inverter's rated W (+ discharge, - charge); when set it
    #: applies instead of ``w``.
    w_pct: float | None = field(default=None, metadata=rng(-100.0, 100.0, "sanity"))
    #: Reserve the site keeps on top of the device's own, % SoC: no discharge below it.
    reserve_pct: float = field(default=0.0, metadata=rng(0.0, 100.0, "sanity"))


@dataclass(frozen=True, slots=True)
class StorageState:
    """What the function needs of the battery this cycle (all understood and finite)."""

    soc_pct: float
    wh_rtg: float
    w_cha_max: float  # most charging power, W (positive)
    w_dis_max: float  # most discharging power, W
    reserve_pct: float  # the device's reserve, % SoC
    soc_max_pct: float  # the device's highest SoC, %
    w_rtg: float  # the inverter's rated W (the base of w_pct)


@dataclass(frozen=True, slots=True)
class StorageCommand:
    """The battery power to hold (W, + discharge) and what bounded it ("" when the
    request went through as asked)."""

    w: float
    requested_w: float
    limited_by: str = ""


def requested(s: SetActivePowerSettings, w_rtg: float) -> float:
    """The setpoint as asked, W."""
    return float(s.w) if s.w_pct is None else s.w_pct / 100.0 * w_rtg


def step(s: SetActivePowerSettings, st: StorageState | None, t: float) -> StorageCommand | None:
    """The battery power for this cycle, or None: nothing commanded (the function is
    off, or the storage is not understood), so the device manages its battery itself.

    ``t`` (monotonic seconds) is the cycle time; the setpoint holds until changed
    (a schedule ends it through the settings' arbitration)."""
    del t  # no dynamics of its own: the device's ramp gradients shape the response
    if not s.enabled or st is None:
        return None
    want = requested(s, st.w_rtg)
    if not math.isfinite(want):
        return None
    w, why = want, ""
    reserve = max(st.reserve_pct, s.reserve_pct)
    if w > 0:
        if st.soc_pct <= reserve:
            w, why = 0.0, f"reserve {reserve:g} % reached (SoC {st.soc_pct:g} %)"
        elif w > st.w_dis_max:
            w, why = st.w_dis_max, f"discharge rate {st.w_dis_max:g} W"
    elif w < 0:
        if st.soc_pct >= st.soc_max_pct:
            w, why = 0.0, f"full: SoC {st.soc_pct:g} % at its highest {st.soc_max_pct:g} %"
        elif -w > st.w_cha_max:
            w, why = -st.w_cha_max, f"charge rate {st.w_cha_max:g} W"
    return StorageCommand(w, want, why)


def available(st: StorageState, reserve_pct: float = 0.0) -> tuple[float, float]:
    """(charge, discharge) power the battery can take or give now, W (positive)."""
    cha = 0.0 if st.soc_pct >= st.soc_max_pct else st.w_cha_max
    dis = 0.0 if st.soc_pct <= max(st.reserve_pct, reserve_pct) else st.w_dis_max
    return cha, dis
