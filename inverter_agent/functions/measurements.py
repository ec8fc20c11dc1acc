"""What the engine consumes (:class:`Measurements`) and produces (:class:`Setpoints`).

Engineering units only: per unit of the inverter ratings, hertz, percent. No
register, scale factor or SunSpec point name appears here; the HAL/SunSpec
layer maps these to Model 123 / 704 points (Conn, WMaxLimPct, OutPFSet,
VArPct ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .set_active_power import StorageState


class AntiIslandingReport(enum.Enum):
    """Anti-islanding state as the inverter reports it (where it reports it at all)."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    TRIPPED = "tripped"
    UNKNOWN = "unknown"


class ReactiveMode(enum.Enum):
    """Reactive power mode commanded to the inverter (IEEE 1547-2018 5.3.1: one at a time)."""

    NONE = "none"
    CONSTANT_PF = "constant_pf"
    CONSTANT_Q = "constant_q"


@dataclass(frozen=True)
class Measurements:
    """One control cycle's view of the inverter and the grid at its terminals.

    Attributes:
        valid: False when the link or the readings are invalid (quality not
            good); the other fields are then ignored.
        v_pu: per-phase voltages in per unit of nominal (one value for a
            single-phase unit). Over-voltage trip uses the highest phase and
            under-voltage the lowest (IEEE 1547-2018 6.4.1: any phase);
            volt-var, volt-watt and enter service use the average.
        f_hz: frequency.
        p_pu: active power, per unit of rated W.
        q_pu: reactive power, per unit of rated VA, + = injecting.
        p_avail_pu: available active (DC) power if the inverter reports it.
        connected: the inverter reports it is energizing (SunSpec Conn state).
        anti_islanding: the inverter-reported anti-islanding state, None if
            the device does not report one.
    """

    valid: bool
    v_pu: tuple[float, ...] = (1.0,)
    f_hz: float = 60.0
    p_pu: float = 0.0
    q_pu: float = 0.0
    p_avail_pu: float | None = None
    connected: bool = False
    anti_islanding: AntiIslandingReport | None = None
    #: The battery of a hybrid, when the device offers storage control and the core
    #: understands it (SoC, capacity and rates plausible); None otherwise.
    storage: StorageState | None = None

    @property
    def v_max(self) -> float:
        """Highest phase voltage, pu."""
        return max(self.v_pu)

    @property
    def v_min(self) -> float:
        """Lowest phase voltage, pu."""
        return min(self.v_pu)

    @property
    def v_avg(self) -> float:
        """Average phase voltage, pu (OpenDER's default applicable voltage)."""
        return sum(self.v_pu) / len(self.v_pu)


@dataclass(frozen=True)
class Setpoints:
    """What the gateway commands to the inverter this cycle.

    Attributes:
        connect: False = cease to energize (command Conn = 0).
        p_limit_pct: active power limit, % of rated W, 0..100.
        reactive_mode: which reactive setpoint applies.
        pf: power factor for CONSTANT_PF, 0 < pf <= 1.
        pf_absorbing: True = absorbing reactive power (under-excited).
        q_pct: reactive power for CONSTANT_Q, % of rated VAr, + = inject.
        cause: short text saying which function set the active power limit
            (for the setpoint-change log).
    """

    connect: bool
    p_limit_pct: float
    reactive_mode: ReactiveMode = ReactiveMode.NONE
    pf: float = 1.0
    pf_absorbing: bool = False
    q_pct: float = 0.0
    cause: str = ""
    #: Battery power to hold, W (+ discharge, - charge); None: storage not commanded
    #: (the device manages its battery itself). Set by set_active_power, then
    #: arbitrated with the rest (core/arbitration.py storage_setpoint).
    storage_w: float | None = None
    #: What bounded ``storage_w`` ("" when it went through as asked).
    storage_cause: str = ""


#: Commands that cease to energize: connection off, no power, no reactive setpoint.
CEASE = Setpoints(connect=False, p_limit_pct=0.0, cause="cease to energize")
