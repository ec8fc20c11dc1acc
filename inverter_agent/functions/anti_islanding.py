"""Anti-islanding supervision (IEEE 1547-2018 8.1; Rule 21 Hh.2.a; UL 1741).

What this does:
- checks the anti-islanding state the inverter reports, and turns it into a
  status: OK, NOT_REPORTED (the device does not say), DISABLED_ALARM (the
  device says its protection is off) or TRIPPED (the device tripped on it);
- adds passive backup windows: the voltage and frequency ride-through /
  must-trip tables (``ride_through``) already trip the DER outside its
  windows, and this module adds an optional rate-of-change-of-frequency
  (ROCOF) window that must be exceeded for a set duration.

What this does NOT do: detect an island. Unintentional islanding must be
detected within 2 s (1547-2018 8.1.2) by active methods that perturb the
output within a cycle; only the inverter can do that. A gateway that samples
every 0.1 s or more slowly, over Modbus, sees only the passive symptoms above,
and an island whose load matches the DER output shows none of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .blocks import held_for, hold_since
from .measurements import AntiIslandingReport
from .ranges import rng


class AntiIslandingStatus(enum.Enum):
    """Supervision result."""

    OK = "ok"
    NOT_REPORTED = "not_reported"
    DISABLED_ALARM = "disabled_alarm"
    TRIPPED = "tripped"


@dataclass(frozen=True)
class AntiIslandingSettings:
    """Supervision settings.

    Attributes:
        enabled: run the supervision at all.
        cease_on_disabled: command cease-to-energize while the inverter reports
            its anti-islanding disabled (Rule 21 Hh.2.a requires it; running
            without it is not compliant).
        rocof_enabled / rocof_hz_per_s / rocof_time_s: optional passive ROCOF
            window: |df/dt| above the threshold for the duration -> backup trip.
    """

    enabled: bool = True
    cease_on_disabled: bool = True
    rocof_enabled: bool = False
    rocof_hz_per_s: float = field(default=2.0, metadata=rng(0.0, 10.0, "sanity", lo_open=True))
    rocof_time_s: float = field(default=0.5, metadata=rng(0.0, 10.0, "sanity"))


@dataclass(frozen=True)
class AntiIslandingState:
    """Previous frequency sample and since when ROCOF has been above its threshold."""

    f_prev_hz: float | None = None
    t_prev: float | None = None
    rocof_since: float | None = None


@dataclass(frozen=True)
class AntiIslandingOutput:
    """Status, whether the gateway must cease to energize, and the ROCOF seen."""

    status: AntiIslandingStatus
    cease: bool
    rocof_trip: bool
    rocof_hz_per_s: float


def status_of(report: AntiIslandingReport | None) -> AntiIslandingStatus:
    """Map the inverter-reported state to the supervision status."""
    if report is None or report is AntiIslandingReport.UNKNOWN:
        return AntiIslandingStatus.NOT_REPORTED
    if report is AntiIslandingReport.DISABLED:
        return AntiIslandingStatus.DISABLED_ALARM
    if report is AntiIslandingReport.TRIPPED:
        return AntiIslandingStatus.TRIPPED
    return AntiIslandingStatus.OK


def step(
    settings: AntiIslandingSettings,
    report: AntiIslandingReport | None,
    f_hz: float,
    state: AntiIslandingState,
    t: float,
) -> tuple[AntiIslandingOutput, AntiIslandingState]:
    """Supervise the reported state and the ROCOF window at time ``t``."""
    status = status_of(report)
    rocof = 0.0
    if state.f_prev_hz is not None and state.t_prev is not None and t > state.t_prev:
        rocof = (f_hz - state.f_prev_hz) / (t - state.t_prev)
    if not settings.enabled:
        return AntiIslandingOutput(status, False, False, rocof), AntiIslandingState(f_hz, t)
    since = hold_since(state.rocof_since, settings.rocof_enabled
                       and abs(rocof) > settings.rocof_hz_per_s, t)
    rocof_trip = since is not None and held_for(since, t) >= settings.rocof_time_s
    cease = status is AntiIslandingStatus.TRIPPED or (
        status is AntiIslandingStatus.DISABLED_ALARM and settings.cease_on_disabled
    )
    out = AntiIslandingOutput(status, cease, rocof_trip, rocof)
    return out, AntiIslandingState(f_hz, t, since)
