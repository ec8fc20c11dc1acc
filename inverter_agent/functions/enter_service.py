"""Enter service / reconnect by soft-start (IEEE 1547-2018 4.10; Rule 21 Hh.2.l).

After a trip, a cease-to-energize command or at boot, the DER may enter service
only once the voltage and frequency have stayed inside the enter-service
window (1547-2018 Table 4 defaults via OpenDER: 0.917-1.05 pu, 59.5-60.1 Hz)
continuously for the delay (default 300 s) plus an optional randomized extra
delay. Leaving the window restarts the delay. It then ramps its active power
limit linearly from 0 to 100 % over the ramp time (default 300 s), so rated
power is never reached before the ramp time (1547.1-2020 5.6.2).

Pure: the random draw is an input (``random_u`` in [0, 1)), never drawn here.
``enabled`` is the 1547-2018 "permit service" setting: False keeps the DER out
of service (cease to energize) whatever the grid does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .blocks import held_for, hold_since
from .ranges import rng


class EnterServicePhase(enum.Enum):
    """Where the DER is in entering service."""

    WAITING = "waiting"  # out of service; the window timer runs while V and f are in it
    RAMPING = "ramping"  # in service, soft-start cap rising
    IN_SERVICE = "in_service"  # soft start finished


@dataclass(frozen=True)
class EnterServiceSettings:
    """Enter-service criteria (1547-2018 4.10.2 / 4.10.3, Table 4 defaults)."""

    enabled: bool = True
    v_low_pu: float = field(default=0.917,
                            metadata=rng(0.5, 1.0, "sanity (1547 Table 4: 0.88-0.95)"))
    v_high_pu: float = field(default=1.05,
                             metadata=rng(1.0, 1.2, "sanity (1547 Table 4: 1.05-1.06)"))
    # the frequency window lies within 5 Hz of nominal (sanity)
    f_low_hz: float = field(default=59.5, metadata=rng(-5.0, 0.0, "sanity",
                                                       relative_to="f_nom_hz"))
    f_high_hz: float = field(default=60.1, metadata=rng(0.0, 5.0, "sanity",
                                                        relative_to="f_nom_hz"))
    delay_s: float = field(default=300.0,
                           metadata=rng(0.0, 3600.0, "sanity (1547 Table 4: 0-600 s)"))
    random_delay_s: float = field(default=0.0, metadata=rng(0.0, 3600.0, "sanity"))
    ramp_time_s: float = field(default=300.0,
                               metadata=rng(0.0, 3600.0, "sanity (1547 Table 4: 1-1000 s)"))


@dataclass(frozen=True)
class EnterServiceState:
    """Phase, since when V and f have been in the window, when the ramp started."""

    phase: EnterServicePhase = EnterServicePhase.WAITING
    window_since: float | None = None
    ramp_start: float | None = None

    @classmethod
    def waiting(cls) -> EnterServiceState:
        """Out of service: enter-service criteria govern reconnection."""
        return cls(EnterServicePhase.WAITING)

    @classmethod
    def in_service(cls) -> EnterServiceState:
        """Already in service with no soft-start cap (warm restart)."""
        return cls(EnterServicePhase.IN_SERVICE)


@dataclass(frozen=True)
class EnterServiceOutput:
    """Result of one step: may the DER energize, and the soft-start power cap."""

    connect: bool
    p_cap_pct: float
    in_window: bool
    remaining_delay_s: float


def total_delay(settings: EnterServiceSettings, random_u: float) -> float:
    """Delay plus the randomized part for the uniform draw ``random_u`` in [0, 1)."""
    return settings.delay_s + settings.random_delay_s * min(max(random_u, 0.0), 1.0)


def in_window(settings: EnterServiceSettings, v_min: float, v_max: float, f_hz: float) -> bool:
    """All phase voltages and the frequency inside the enter-service window (4.10.2)."""
    return (
        settings.v_low_pu <= v_min
        and v_max <= settings.v_high_pu
        and settings.f_low_hz <= f_hz <= settings.f_high_hz
    )


def step(
    settings: EnterServiceSettings,
    v_min: float,
    v_max: float,
    f_hz: float,
    state: EnterServiceState,
    t: float,
    random_u: float = 0.0,
) -> tuple[EnterServiceOutput, EnterServiceState]:
    """Advance enter service to time ``t`` (1547-2018 4.10.3, Rule 21 Hh.2.l)."""
    ok = in_window(settings, v_min, v_max, f_hz)
    delay = total_delay(settings, random_u)
    if not settings.enabled:
        return EnterServiceOutput(False, 0.0, ok, delay), EnterServiceState.waiting()
    if state.phase is EnterServicePhase.WAITING:
        since = hold_since(state.window_since, ok, t)
        waited = held_for(since, t)
        if since is None or waited < delay:
            out = EnterServiceOutput(False, 0.0, ok, delay - waited)
            return out, EnterServiceState(EnterServicePhase.WAITING, since, None)
        state = EnterServiceState(EnterServicePhase.RAMPING, since, t)
    if state.phase is EnterServicePhase.RAMPING:
        assert state.ramp_start is not None
        frac = (t - state.ramp_start) / settings.ramp_time_s if settings.ramp_time_s > 0 else 1.0
        if frac < 1.0:
            return EnterServiceOutput(True, 100.0 * max(frac, 0.0), ok, 0.0), state
        state = EnterServiceState(EnterServicePhase.IN_SERVICE)
    return EnterServiceOutput(True, 100.0, ok, 0.0), state
