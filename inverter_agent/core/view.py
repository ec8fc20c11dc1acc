"""What the core offers every adapter once a cycle: one immutable :class:`CycleView`.

An adapter is handed the view in :meth:`Adapter.publish` and reads nothing else of
the core's live objects: the view is built on the control loop's thread at the
end of a cycle and never changes afterwards, so a protocol thread may keep it
and read it at leisure. Quantities keep their :class:`~hal.reading.Reading`
(value, quality, time), so an adapter can serve a lost link as invalid rather
than a stale value marked good.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hal.reading import Reading
from inverter_agent.functions import OutOfService

#: The trip cause as a kind (the engine's :class:`OutOfService`), never a text to search.
TripCause = OutOfService

#: IEC 61850 HealthKind values, used by every adapter's health view.
HEALTH_OK, HEALTH_WARNING, HEALTH_ALARM = 1, 2, 3


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class FunctionState:
    """One grid function: enabled in the settings, active now, followed by the inverter."""

    enabled: bool
    active: bool
    #: None: not checked (inactive, or no follow check for this function).
    followed: bool | None


@dataclass(frozen=True, slots=True)
class SetpointsView:
    connect: bool
    p_limit_pct: float
    reactive_mode: str
    pf: float | None
    pf_absorbing: bool
    q_pct: float | None


@dataclass(frozen=True, slots=True)
class FunctionsStatus:
    """What the grid functions of one inverter did last cycle."""

    running: bool
    reason: str
    state: str
    out_of_service_cause: str | None
    out_of_service_kind: TripCause | None
    voltage_region: str
    frequency_region: str
    anti_islanding: str
    enter_service_remaining_s: float
    functions: Mapping[str, FunctionState]
    not_followed: Mapping[str, str]
    setpoints: SetpointsView | None
    last_event: str | None
    plant_cap_pct: float | None
    standing_aside: str | None
    notes: tuple[str, ...]
    health: int
    #: Each utility source's link (source name -> plain data), if any is attached.
    utility: Mapping[str, Any] | None = None
    #: Per function the device could run itself: {"by": "native" | "gateway", "why": ...}.
    steering: Mapping[str, Mapping[str, str]] | None = None
    #: Alarms of the device's own functions (a refused program, a change at the panel).
    alarms: tuple[str, ...] = ()
    #: When the device's own volt-var / volt-watt were first seen and recorded (UTC,
    #: ISO 8601; the record in the state directory), or None: no record.
    own_recorded: str | None = None

    @property
    def tripped(self) -> bool:
        """Out of service on a protection trip (clearing time, ROCOF, island)."""
        return self.out_of_service_kind is not None and self.out_of_service_kind.is_trip

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``status.json``, the CLI and table-driven protocol maps."""
        sp = self.setpoints
        return {
            "running": self.running, "reason": self.reason, "state": self.state,
            "out_of_service_cause": self.out_of_service_cause,
            "out_of_service_kind": (self.out_of_service_kind.value
                                    if self.out_of_service_kind else None),
            "tripped": self.tripped,
            "voltage_region": self.voltage_region, "frequency_region": self.frequency_region,
            "anti_islanding": self.anti_islanding,
            "enter_service_remaining_s": self.enter_service_remaining_s,
            "functions": {n: {"enabled": f.enabled, "active": f.active, "followed": f.followed}
                          for n, f in self.functions.items()},
            "not_followed": dict(self.not_followed),
            "setpoints": None if sp is None else {
                "connect": sp.connect, "p_limit_pct": sp.p_limit_pct,
                "reactive_mode": sp.reactive_mode, "pf": sp.pf,
                "pf_absorbing": sp.pf_absorbing, "q_pct": sp.q_pct},
            "last_event": self.last_event, "plant_cap_pct": self.plant_cap_pct,
            "standing_aside": self.standing_aside, "notes": list(self.notes),
            "health": self.health,
            **({"utility": self.utility} if self.utility is not None else {}),
            **({"steering": {f: dict(c) for f, c in self.steering.items()}}
               if self.steering is not None else {}),
            **({"alarms": list(self.alarms)} if self.alarms else {}),
            **({"own_recorded": self.own_recorded} if self.own_recorded else {}),
        }


@dataclass(frozen=True, slots=True)
class StorageView:
    """The battery of a hybrid at the end of a cycle (built by ``core/storage.py``).

    Sign convention (SunSpec's, every protocol's): battery power positive while
    discharging, negative while charging. Quantities keep their HAL reading
    (value, quality, time); a value the device does not state is invalid, never
    assumed.
    """

    #: State of charge, % of capacity (713 SoC, 802 SoC or 124 ChaState).
    soc_pct: Reading
    #: Energy capacity, Wh (713 / 802 / 120 WHRtg).
    wh_rtg: Reading
    #: Usable energy above the reserve, Wh.
    wh_avail: Reading
    #: Battery power, W (+ discharge, - charge); invalid where the device states none.
    w: Reading
    #: The device's most charging / discharging power, W (positive).
    w_cha_max: Reading
    w_dis_max: Reading
    #: The device's reserve and highest SoC, %.
    reserve_pct: Reading
    soc_max_pct: Reading
    #: Power the battery can take / give now, W (0 when full / at its reserve; None unknown).
    avail_cha_w: float | None
    avail_dis_w: float | None
    #: SunSpec ChaSt (1 off, 2 empty, 3 discharging, 4 charging, 5 full, 6 holding,
    #: 7 testing) and 802 State (1 disconnected .. 99 fault); None not stated.
    cha_st: int | None
    state: int | None
    #: The device's storage alarms (802 Evt1, 713 Sta, 714 DCAlrm) by name.
    alarms: tuple[str, ...]
    #: The device takes a battery power command (model 124).
    controllable: bool
    #: The battery power the core commands now, W (None: not commanding; the device
    #: manages its battery itself) and what bounded it ("" when as asked).
    setpoint_w: float | None = None
    setpoint_cause: str = ""
    #: Why the core makes no storage command (storage not understood: it stands aside
    #: for storage only, with this alarm); None when it understands the battery.
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``status.json`` and table-driven protocol maps."""
        def v(r: Reading) -> Any:
            return r.value if r.quality.good else None

        return {"soc_pct": v(self.soc_pct), "wh_rtg": v(self.wh_rtg),
                "wh_avail": v(self.wh_avail), "w": v(self.w), "w_cha_max": v(self.w_cha_max),
                "w_dis_max": v(self.w_dis_max), "reserve_pct": v(self.reserve_pct),
                "soc_max_pct": v(self.soc_max_pct), "avail_cha_w": self.avail_cha_w,
                "avail_dis_w": self.avail_dis_w, "cha_st": self.cha_st, "state": self.state,
                "alarms": list(self.alarms), "controllable": self.controllable,
                "setpoint_w": self.setpoint_w, "setpoint_cause": self.setpoint_cause,
                "problem": self.problem}


@dataclass(frozen=True, slots=True)
class InverterView:
    """One inverter at the end of a cycle."""

    #: The inverter's name in the core (its logical device where a protocol needs one).
    name: str
    #: Measurements, ratings and states with their quality (the HAL's names).
    readings: Mapping[str, Reading]
    link_up: bool
    #: None when the grid functions are off (``--no-functions``).
    functions: FunctionsStatus | None = None
    #: The effective settings (after arbitration) as plain data; None without functions.
    settings: Mapping[str, Any] | None = None
    #: The battery of a hybrid (SoC, capacity, rates, setpoint); None: no storage model.
    storage: StorageView | None = None

    def good(self, name: str) -> Any:
        """The value of ``name`` if present and of good quality, else None."""
        r = self.readings.get(name)
        return r.value if r is not None and r.value is not None and r.quality.good else None


@dataclass(frozen=True, slots=True)
class PlantView:
    """The plant (several inverters at one point of common coupling)."""

    name: str
    limit: Mapping[str, Any]
    totals: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SiteMeterView:
    """The site meter at the point of common coupling (``[meter]``), as of this cycle.

    ``readings`` are the HAL's meter names (``hal.meter``: W and VAr positive when the
    site imports) with their quality after the core's checks (stale or implausible
    values invalid). ``export_limit`` says how an export limit in force is held:
    ``limit_w``, ``mode`` ("none", "closed_loop", "generation_limit"), ``cap_w``,
    ``load_w``, ``reason``.
    """

    name: str
    readings: Mapping[str, Reading]
    link_up: bool
    export_limit: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    #: HealthKind: alarm while the link is down or the export limit falls back.
    health: int = HEALTH_OK
    alarm: str | None = None

    def good(self, name: str) -> Any:
        r = self.readings.get(name)
        return r.value if r is not None and r.value is not None and r.quality.good else None


@dataclass(frozen=True, slots=True)
class CycleView:
    """Everything an adapter may serve, as of time ``t`` (seconds since the epoch)."""

    t: float
    inverters: tuple[InverterView, ...]
    plant: PlantView | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    #: The site meter at the connection point, where one is configured.
    site: SiteMeterView | None = None

    def inverter(self, name: str) -> InverterView:
        for inv in self.inverters:
            if inv.name == name:
                return inv
        raise KeyError(name)


def inverter_view(name: str, snapshot: Mapping[str, Reading], link_up: bool,
                  functions: FunctionsStatus | None = None,
                  settings: Mapping[str, Any] | None = None,
                  storage: StorageView | None = None) -> InverterView:
    """An :class:`InverterView` whose mappings cannot be changed through the view."""
    return InverterView(name, _frozen(snapshot), link_up, functions,
                        None if settings is None else _frozen(settings), storage)
