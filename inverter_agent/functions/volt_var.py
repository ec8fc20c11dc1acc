"""Dynamic volt/var (IEEE 1547-2018 5.3.3; Rule 21 Hh.2.i dynamic volt/var).

Q target = curve(V - (VRef - 1)) followed by a first-order lag whose open-loop
response time is Tr (90 % of a step at Tr). With the optional autonomous VRef
adjustment (1547-2018 5.3.3) VRef follows a low-pass filter of the applicable
voltage with its own time constant, bounded to [vref_min_pu, vref_max_pu]
(OpenDER QV_VREF_MIN / QV_VREF_MAX), and the curve shifts with it.

The curve's Q is in % of rated VA or % of rated VAr (``q_base``); the output is
converted to % of rated VAr, the unit of :class:`Setpoints.q_pct`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .blocks import LN10, interpolate, low_pass
from .ranges import rng


class QBase(enum.Enum):
    """What the curve's Q percentages are a percentage of."""

    RATED_VA = "rated_va"
    RATED_VAR = "rated_var"


@dataclass(frozen=True)
class VoltVarPoint:
    """One curve point: voltage in pu of nominal, Q in % of ``q_base``, + = inject."""

    v_pu: float = field(metadata=rng(0.5, 1.5, "sanity"))
    q_pct: float = field(metadata=rng(-100.0, 100.0, "sanity"))


@dataclass(frozen=True)
class VoltVarSettings:
    """Volt-var settings (IEEE 1547-2018 Table 8). Defaults: Category B."""

    enabled: bool = False
    curve: tuple[VoltVarPoint, ...] = (
        VoltVarPoint(0.92, 44.0),
        VoltVarPoint(0.98, 0.0),
        VoltVarPoint(1.02, 0.0),
        VoltVarPoint(1.08, -44.0),
    )
    q_base: QBase = QBase.RATED_VA
    response_time_s: float = field(default=5.0, metadata=rng(1.0, 90.0, "1547 Table 8"))
    vref_pu: float = field(default=1.0, metadata=rng(0.95, 1.05, "1547 Table 8"))
    vref_auto: bool = False
    vref_time_s: float = field(default=300.0, metadata=rng(300.0, 5000.0, "1547 Table 8"))
    vref_min_pu: float = field(default=0.95, metadata=rng(0.9, 1.0, "sanity, OpenDER 0.95"))
    vref_max_pu: float = field(default=1.05, metadata=rng(1.0, 1.1, "sanity, OpenDER 1.05"))


@dataclass(frozen=True)
class VoltVarState:
    """Filter states: the lagged Q (% of q_base) and the low-passed voltage for VRef (pu)."""

    q_pct: float
    v_lpf_pu: float


def applied_vref(settings: VoltVarSettings, v_lpf_pu: float) -> float:
    """VRef in use: the setting, or the bounded low-passed voltage in autonomous mode."""
    if not settings.vref_auto:
        return settings.vref_pu
    return min(settings.vref_max_pu, max(settings.vref_min_pu, v_lpf_pu))


def curve_q_pct(settings: VoltVarSettings, v_pu: float, vref_pu: float) -> float:
    """Steady-state Q (% of ``q_base``) of the curve shifted to ``vref_pu``."""
    shift = vref_pu - 1.0
    return interpolate([(p.v_pu + shift, p.q_pct) for p in settings.curve], v_pu)


def to_var_pct(settings: VoltVarSettings, q_pct: float, var_max_pct_of_va: float) -> float:
    """Convert a Q in % of ``q_base`` to % of rated VAr, clamped to +-100 %."""
    if settings.q_base is QBase.RATED_VA:
        q_pct = q_pct * 100.0 / var_max_pct_of_va
    return max(-100.0, min(100.0, q_pct))


def step(
    settings: VoltVarSettings, v_pu: float, dt: float, state: VoltVarState | None
) -> tuple[float, VoltVarState]:
    """Advance volt-var by ``dt`` and return (Q % of ``q_base``, new state).

    IEEE 1547-2018 5.3.3. ``vref_time_s`` is a time constant (OpenDER filters
    with an open-loop time of 2.3 x QV_VREF_TIME), ``response_time_s`` an
    open-loop response time. ``state`` None initialises both filters at their
    steady state for ``v_pu`` (as OpenDER does on its first step).
    """
    if state is None:
        q = curve_q_pct(settings, v_pu, applied_vref(settings, v_pu))
        return q, VoltVarState(q, v_pu)
    v_lpf = low_pass(state.v_lpf_pu, v_pu, dt, settings.vref_time_s * LN10)
    target = curve_q_pct(settings, v_pu, applied_vref(settings, v_lpf))
    q = low_pass(state.q_pct, target, dt, settings.response_time_s)
    return q, VoltVarState(q, v_lpf)
