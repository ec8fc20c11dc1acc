"""Voltage and frequency ride-through / must-trip supervision (backup protection).

Implements the timing logic of IEEE 1547-2018 6.4 (voltage, Tables 11-16) and
6.5 (frequency, Tables 17-21), and the California Rule 21 Hh.2.b / Hh.2.c
ride-through tables (UL 1741 SA Table SA9.1 for voltage).

A table is a set of regions beyond thresholds on each side of the continuous
operation region (NN). Each threshold has its own timer, as a trip relay does:
the timer runs while the value is beyond the threshold, including while it is
beyond a more severe one, so the clearing time of every setting is met (this is
also how the 1547 must-trip settings and OpenDER's trip criteria work).

The gateway does not replace the inverter's certified protection, which trips
first. It issues cease-to-energize as BACKUP: it fires at
``max(ride_through_s, clearing_time_s - trip_margin_s)`` after the first sample
beyond the threshold, so that with ``trip_margin_s`` at least one control period
plus the command latency the command leaves no later than the clearing time and
never before the ride-through duration ends.

Momentary cessation (1547-2018 6.4.2.7; Rule 21 HV1 / LV3): while the most
severe region the value is in has mode MOMENTARY_CESSATION, the DER must cease
to energize (within 0.16 s) without tripping; output resumes when the value is
back in a continuous or mandatory-operation region.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .blocks import held_for, hold_since
from .ranges import rng


class Side(enum.Enum):
    """Which side of the continuous region a threshold guards."""

    OVER = "over"
    UNDER = "under"


class RegionMode(enum.Enum):
    """Required DER behaviour while the value is in a region (1547-2018 1.4 definitions)."""

    CONTINUOUS = "continuous"
    MANDATORY_OPERATION = "mandatory_operation"
    PERMISSIVE_OPERATION = "permissive_operation"
    MOMENTARY_CESSATION = "momentary_cessation"
    MUST_TRIP = "must_trip"


@dataclass(frozen=True)
class Region:
    """One region beyond a threshold.

    Attributes:
        name: e.g. "HV1", "OV2", "LF1".
        threshold: pu for voltage, Hz for frequency.
        inclusive: the region includes the threshold itself (V >= 1.20
            rather than V > 1.20).
        mode: behaviour required in the region.
        ride_through_s: the DER must stay connected at least this long
            (None = no ride-through requirement known to the gateway).
        clearing_time_s: must trip within this time (None = no trip).
    """

    name: str
    threshold: float
    inclusive: bool = False
    mode: RegionMode = RegionMode.PERMISSIVE_OPERATION
    ride_through_s: float | None = None
    clearing_time_s: float | None = None


@dataclass(frozen=True)
class RideThroughSettings:
    """A ride-through / must-trip table.

    ``over`` thresholds ascend (HV1, HV2), ``under`` thresholds descend
    (LV1, LV2, LV3). ``enabled`` False disables the gateway's backup trip and
    momentary cessation (the inverter's own protection still acts).
    """

    enabled: bool = True
    over: tuple[Region, ...] = ()
    under: tuple[Region, ...] = ()
    trip_margin_s: float = field(default=0.1, metadata=rng(0.0, 1.0, "sanity"))


@dataclass(frozen=True)
class RideThroughState:
    """Per-threshold timers: since when the value has been beyond each threshold."""

    over_since: tuple[float | None, ...] = ()
    under_since: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class RideThroughOutput:
    """Result of one step.

    Attributes:
        region: name of the most severe region the value is in ("NN" if none).
        mode: that region's mode.
        cease: momentary cessation required now.
        trip: a must-trip setting has timed out (backup trip).
        trip_region: which setting tripped.
    """

    region: str
    mode: RegionMode
    cease: bool
    trip: bool
    trip_region: str | None = None


def trip_delay(region: Region, margin_s: float) -> float | None:
    """Seconds beyond the threshold after which the gateway issues its backup trip."""
    if region.clearing_time_s is None:
        return None
    fire = region.clearing_time_s - margin_s
    if region.ride_through_s is not None:
        fire = max(fire, region.ride_through_s)
    return fire


def _beyond(region: Region, side: Side, x: float) -> bool:
    if side is Side.OVER:
        return x >= region.threshold if region.inclusive else x > region.threshold
    return x <= region.threshold if region.inclusive else x < region.threshold


def step(
    settings: RideThroughSettings,
    x_over: float,
    x_under: float,
    state: RideThroughState | None,
    t: float,
) -> tuple[RideThroughOutput, RideThroughState]:
    """Advance the ride-through supervision to time ``t`` (IEEE 1547-2018 6.4 / 6.5).

    ``x_over`` is compared with the over thresholds (highest phase voltage, or
    frequency), ``x_under`` with the under thresholds (lowest phase voltage,
    or frequency). ``state`` None starts with all timers stopped.
    """
    if state is None or len(state.over_since) != len(settings.over) or len(
        state.under_since
    ) != len(settings.under):
        state = RideThroughState(
            over_since=(None,) * len(settings.over), under_since=(None,) * len(settings.under)
        )
    if not settings.enabled:
        return RideThroughOutput("NN", RegionMode.CONTINUOUS, False, False), state

    region, mode = "NN", RegionMode.CONTINUOUS
    trip_region: str | None = None
    new_since: dict[Side, tuple[float | None, ...]] = {}
    for side, regions, olds, x in (
        (Side.OVER, settings.over, state.over_since, x_over),
        (Side.UNDER, settings.under, state.under_since, x_under),
    ):
        sinces = []
        for reg, since in zip(regions, olds, strict=True):
            beyond = _beyond(reg, side, x)
            since = hold_since(since, beyond, t)
            sinces.append(since)
            if beyond:
                # Regions are ordered by severity: the last one beyond wins.
                region, mode = reg.name, reg.mode
                delay = trip_delay(reg, settings.trip_margin_s)
                if delay is not None and held_for(since, t) >= delay and trip_region is None:
                    trip_region = reg.name
        new_since[side] = tuple(sinces)
    out = RideThroughOutput(
        region=region,
        mode=mode,
        cease=mode is RegionMode.MOMENTARY_CESSATION,
        trip=trip_region is not None,
        trip_region=trip_region,
    )
    return out, RideThroughState(new_since[Side.OVER], new_since[Side.UNDER])


MO = RegionMode.MANDATORY_OPERATION
MC = RegionMode.MOMENTARY_CESSATION
PO = RegionMode.PERMISSIVE_OPERATION
MT = RegionMode.MUST_TRIP


def rule21_voltage_table(trip_margin_s: float = 0.1) -> RideThroughSettings:
    """Rule 21 default L/HVRT (UL 1741 SA Table SA9.1).

    Source of every number: Delta M42U manual Appendix A-1 "Default operating
    parameters that correspond to Rule 21 L/HVRT"; same durations in SunSpec
    svp_energy_lab Lib/svpelab/rt_profile.py (see DOMAIN.md).
    """
    return RideThroughSettings(
        enabled=True,
        over=(
            # HV1: 110 < V < 120 %, ride through 12 s in momentary cessation, trip 13 s.
            Region("HV1", 1.10, False, MC, ride_through_s=12.0, clearing_time_s=13.0),
            # HV2: V >= 120 %, no ride-through, trip 0.16 s.
            Region("HV2", 1.20, True, MT, ride_through_s=None, clearing_time_s=0.16),
        ),
        under=(
            # LV1: 70 <= V < 88 %, ride through 20 s mandatory operation, trip 21 s.
            Region("LV1", 0.88, False, MO, ride_through_s=20.0, clearing_time_s=21.0),
            # LV2: 50 <= V < 70 %, ride through 10 s mandatory operation, trip 11 s.
            Region("LV2", 0.70, False, MO, ride_through_s=10.0, clearing_time_s=11.0),
            # LV3: V < 50 %, ride through 1 s momentary cessation, trip 1.5 s.
            Region("LV3", 0.50, False, MC, ride_through_s=1.0, clearing_time_s=1.5),
        ),
        trip_margin_s=trip_margin_s,
    )


def rule21_frequency_table(trip_margin_s: float = 0.1) -> RideThroughSettings:
    """Rule 21 frequency ride-through (Hh.2.c) as a vendor grid profile sets it.

    Source: vendor "US_Rule21_240V" grid profile (OpenDTU pull request 1590),
    vendor data, not the tariff text (DOMAIN.md). The profile gives trip
    frequency and time only; the ride-through durations are not in it, so
    none are enforced here (the trip time is the only bound the gateway uses).
    """
    return RideThroughSettings(
        enabled=True,
        over=(
            Region("HF1", 60.5, False, MO, clearing_time_s=300.0),  # 60.5 Hz, 300 s
            Region("HF2", 62.0, False, MT, clearing_time_s=0.16),  # 62 Hz, 0.16 s
        ),
        under=(
            Region("LF1", 58.5, False, MO, clearing_time_s=300.0),  # 58.5 Hz, 300 s
            Region("LF2", 57.0, False, MT, clearing_time_s=0.16),  # 57 Hz, 0.16 s
        ),
        trip_margin_s=trip_margin_s,
    )


def ieee1547_voltage_table(category: str, trip_margin_s: float = 0.1) -> RideThroughSettings:
    """IEEE 1547-2018 default voltage trip settings, Tables 11 (I), 12 (II), 13 (III).

    Values from EPRI OpenDER common_file_format.py / "AS-with std-values.csv"
    (DOMAIN.md): OV2 1.20 pu 0.16 s; OV1 1.10 pu 2 s (III: 13 s); UV1 0.70 pu
    2 s (I) / 10 s (II) (III: 0.88 pu 21 s); UV2 0.45 pu 0.16 s (III: 0.50 pu 2 s).
    Momentary cessation: Category III only, at V >= 1.10 and V <= 0.50 pu, as
    OpenDER enables it (MC_ENABLE for CAT_III, MC_HVRT_V1 1.1, MC_LVRT_V1 0.5);
    Categories I and II are permissive operation. The minimum ride-through
    durations (Tables 14-16) are not carried here: they are the inverter's
    certified behaviour, and the gateway only bounds the clearing time.
    """
    cat = category.upper()
    if cat == "III":
        over = (
            Region("OV1", 1.10, False, MC, clearing_time_s=13.0),
            Region("OV2", 1.20, False, MT, clearing_time_s=0.16),
        )
        under = (
            Region("UV1", 0.88, False, MO, clearing_time_s=21.0),
            Region("UV2", 0.50, False, MC, clearing_time_s=2.0),
        )
    elif cat in ("I", "II"):
        over = (
            Region("OV1", 1.10, False, PO, clearing_time_s=2.0),
            Region("OV2", 1.20, False, MT, clearing_time_s=0.16),
        )
        under = (
            Region("UV1", 0.70, False, PO, clearing_time_s=2.0 if cat == "I" else 10.0),
            Region("UV2", 0.45, False, MT, clearing_time_s=0.16),
        )
    else:
        raise ValueError(f"abnormal performance category {category!r}: expected I, II or III")
    return RideThroughSettings(True, over, under, trip_margin_s)


def ieee1547_frequency_table(trip_margin_s: float = 0.1) -> RideThroughSettings:
    """IEEE 1547-2018 default frequency trip settings (Table 19, all categories).

    OF2 62.0 Hz 0.16 s; OF1 61.2 Hz 300 s; UF1 58.5 Hz 300 s; UF2 56.5 Hz 0.16 s
    (OpenDER defaults, DOMAIN.md). Between the OF1/UF1 thresholds and the
    continuous band the DER must ride through (mandatory operation, 6.5.2).
    """
    return RideThroughSettings(
        enabled=True,
        over=(
            Region("OF1", 61.2, False, MO, clearing_time_s=300.0),
            Region("OF2", 62.0, False, MT, clearing_time_s=0.16),
        ),
        under=(
            Region("UF1", 58.5, False, MO, clearing_time_s=300.0),
            Region("UF2", 56.5, False, MT, clearing_time_s=0.16),
        ),
        trip_margin_s=trip_margin_s,
    )
