"""Every layer of arbitration, in one place (docs/arbitration.md has the table).

Protocol-neutral: an adapter (IEC 61850 MMS, IEEE 2030.5, DNP3 next) turns what
its protocol says into the values here, and this module decides who wins. The
layers, applied in this order, each a pure function (time is an argument,
values are frozen, no I/O):

1. **Persisted settings** (setting writes, or the profile defaults): the input.
2. **Operator** (:func:`operator_layer`): temporary commands (IEC 61850 MMS
   controls) replace the persisted value of the setting they name until
   released or reverted on communication loss; switching one reactive mode on
   switches the others off (1547-2018 5.3.1).
3. **Utility sources by priority** (:func:`select` within a source,
   :func:`utility_layer` across sources): each source's event in force (by
   program primacy, then the newest), or outside its events its default
   control. Across sources, :func:`by_priority` orders them (:data:`UTILITY_ORDER`):
   limits combine (the lowest in force wins), a disconnect from anyone wins, and
   a reactive mode or curve comes from the highest-ranked command that sets it:
   events (highest-priority source first), then an operator's mode, then default
   controls (highest-priority source first), then the persisted settings.
   :func:`compose` runs layers 1-3 and validates; a source whose commands would
   make the settings invalid is left out whole, the others apply.
4. **Plant cap** (:func:`plant_cap`): the inverter's share of the plant limit
   caps the setpoint the engine produced, every cycle.

Not here, by design: protection (must-trip, momentary cessation,
anti-islanding) and the autonomous functions' own limits (volt-watt, droop,
soft start, the normal ramp) run in ``functions/engine.py`` on the settings
:func:`compose` gives; they carry state from cycle to cycle and a trip or a
cease overrides everything within the cycle.

The one mutable holder, :class:`UtilitySchedule`, is what an adapter writes and
the settings service reads (one per source); it keeps events already received,
so they run to their end whatever happens to the link they came over.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inverter_agent.functions import (
    Setpoints,
    Settings,
    SettingsError,
    settings_from_dict,
)
from inverter_agent.functions.registry import REACTIVE as REGISTRY_REACTIVE

log = logging.getLogger(__name__)

#: The reactive modes (1547-2018 5.3.1: mutually exclusive) and their enable paths.
REACTIVE = REGISTRY_REACTIVE  # the registry's reactive functions, in priority order


@dataclass(frozen=True, slots=True)
class UtilityControl:
    """What one utility command asks; None leaves that function alone.

    Units are the core's: active power in % of rated W, reactive power in % of
    rated var (as ``constant_var.q_pct``), curves as the settings' points.
    """

    connect: bool | None = None
    energize: bool | None = None
    p_limit_pct: float | None = None
    #: (power factor 0..1, absorbing?)
    fixed_pf: tuple[float, bool] | None = None
    fixed_var_pct: float | None = None
    #: ((v_pu, q_pct), ...) and it enables volt-var; q_pct in % of ``volt_var_q_base``
    volt_var_curve: tuple[tuple[float, float], ...] | None = None
    #: what the volt-var curve's Q is a percentage of: "rated_var" (default) or "rated_va"
    volt_var_q_base: str | None = None
    #: ((v_pu, p_pct), ...) and it enables volt-watt
    volt_watt_curve: tuple[tuple[float, float], ...] | None = None
    #: (db_of_hz, db_uf_hz, k_of, k_uf, response_time_s or None) in the core's
    #: freq_watt units (Hz, per-unit droop, seconds; None keeps the persisted response
    #: time), and it enables frequency-watt (1547-2018 droop on pre-disturbance power)
    freq_droop: tuple[float, float, float, float, float | None] | None = None
    #: An export limit at the connection point, W (CSIP-AUS opModExpLimW with a site
    #: meter): held by the site meter service (core/meter.py), not a settings value
    export_limit_w: float | None = None
    #: set active power (storage): % of rated W, + discharge, - charge; it enables
    #: set_active_power for as long as the command is in force
    storage_w_pct: float | None = None

    def __post_init__(self) -> None:
        # 1547-2018 5.3.1: one reactive mode at a time. A command asking two (fixed PF and
        # a volt-var curve, say) is not understood: the adapter refuses it whole.
        modes = [m for m, v in (("volt_var", self.volt_var_curve), ("fixed_pf", self.fixed_pf),
                                ("constant_var", self.fixed_var_pct)) if v is not None]
        if len(modes) > 1:
            raise ValueError(f"one reactive mode at a time (1547-2018 5.3.1): {modes}")

    def reactive_mode(self) -> str | None:
        if self.volt_var_curve is not None:
            return "volt_var"
        if self.fixed_pf is not None:
            return "fixed_pf"
        if self.fixed_var_pct is not None:
            return "constant_var"
        return None

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__slots__)

    def describe(self) -> str:
        parts = [f"{f}={getattr(self, f)!r}" for f in self.__slots__
                 if getattr(self, f) is not None]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True, slots=True)
class ScheduledControl:
    """A utility event: ``control`` from ``start`` (inclusive) to ``end`` (exclusive),
    epoch seconds, effective times (randomization already applied)."""

    ident: str
    start: float
    end: float
    control: UtilityControl
    #: Program primacy: lower is more important (IEEE 2030.5 DERProgram.primacy).
    primacy: int = 0
    #: Creation time; among equal primacy the newest wins (2030.5 supersession).
    created: float = 0.0
    source: str = "utility"

    def in_force(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class InForce:
    """The utility commands of one source that apply at one instant."""

    event: ScheduledControl | None = None
    default: UtilityControl | None = None
    source: str = ""

    @property
    def key(self) -> tuple[Any, ...]:
        """Changes exactly when the commands in force change, an event updated in place
        (same mRID, new values or window) included."""
        return (self.source, self.event, self.default)

    @property
    def control(self) -> UtilityControl | None:
        """What applies: the event's control, or outside events the default control
        (IEEE 2030.5 DefaultDERControl applies when none of its server's events does)."""
        return self.event.control if self.event is not None else self.default


def select(events: Iterable[ScheduledControl], default: UtilityControl | None,
           t: float, source: str = "") -> InForce:
    """The event of one source in force at ``t`` (primacy, then newest) and its default.

    Overlapping events of equal rank: the one created last wins (IEEE 2030.5
    supersession), and, as a last tie-break, the one that started last.
    """
    live = [e for e in events if e.in_force(t)]
    best = min(live, key=lambda e: (e.primacy, -e.created, -e.start, e.ident), default=None)
    return InForce(best, default, source)


#: Utility sources, highest priority first, for what does not combine (reactive mode,
#: curves). DNP3 first: it is the utility's SCADA commanding this DER directly, while
#: IEEE 2030.5 programs are scheduled, often aggregated, commands. Limits and
#: disconnects do not depend on it (the most restrictive wins whoever sent it).
UTILITY_ORDER: tuple[str, ...] = ("dnp3", "ieee2030_5")


def by_priority(sources: Iterable[str], order: Iterable[str] = UTILITY_ORDER) -> list[str]:
    """``sources`` highest priority first: those named in ``order`` by their place in
    it, then any other in alphabetical order (deterministic, never by arrival)."""
    rank = {s: i for i, s in enumerate(order)}
    return sorted(set(sources), key=lambda s: (rank.get(s, len(rank)), s))


def get_path(d: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` ("volt_var.curve.0.v_pu") in a settings dict."""
    node: Any = d
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in a settings dict; an unknown setting raises SettingsError."""
    *path, last = dotted.split(".")
    node: Any = d
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        if last not in node:
            raise SettingsError(f"{dotted}: no such setting")
        node[last] = value


def operator_layer(persisted: Mapping[str, Any], temporary: Mapping[str, Any]) -> dict[str, Any]:
    """Persisted settings (plain dict) with the operator's temporary commands (settings
    path -> value) in place of the values they name. Does not validate."""
    d = copy.deepcopy(dict(persisted))
    for path, value in temporary.items():
        set_path(d, path, value)
    # Switching one reactive mode on by command switches the others off (1547 5.3.1).
    for path, value in temporary.items():
        if value is True and path in {f"{m}.enabled" for m in REACTIVE}:
            for other in REACTIVE:
                if f"{other}.enabled" != path and f"{other}.enabled" not in temporary:
                    d[other]["enabled"] = False
    # An operator's battery setpoint is one to follow: it enables set active power, and
    # one in W replaces a persisted one in % (the same setpoint's other form).
    if {"set_active_power.w", "set_active_power.w_pct"} & set(temporary) \
            and "set_active_power.enabled" not in temporary:
        d["set_active_power"]["enabled"] = True
    if "set_active_power.w" in temporary and "set_active_power.w_pct" not in temporary:
        d["set_active_power"]["w_pct"] = None
    return d


def utility_layer(settings: Mapping[str, Any], in_force: Iterable[InForce],
                  operator: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Settings (plain dict, as ``settings_to_dict``) with every source's commands applied.

    ``settings`` is the output of :func:`operator_layer`; ``in_force`` is one entry
    per source, highest priority first (:func:`by_priority`); ``operator`` is the
    temporary commands, so that an operator's reactive mode can be told from a
    persisted one. Does not validate; :func:`compose` does.
    """
    operator = operator or {}
    d = copy.deepcopy(dict(settings))
    in_force = list(in_force)
    # Highest rank first: every source's event (by source priority), then the default
    # controls of sources with no event in force (by source priority).
    ranked = [(True, f.event.control) for f in in_force if f.event is not None]
    ranked += [(False, f.default) for f in in_force if f.event is None and f.default is not None]

    # Active power: every limit in force is a ceiling, the lowest wins.
    lim = d["active_power_limit"]
    limits = [float(lim["p_limit_pct"])] if lim["enabled"] else []
    limits += [c.p_limit_pct for _, c in ranked if c.p_limit_pct is not None]
    if limits:
        d["active_power_limit"] = {**lim, "enabled": True, "p_limit_pct": min(limits)}

    # Connect / energize: a disconnect from anyone wins.
    if any(c.connect is False or c.energize is False for _, c in ranked):
        d["enter_service"] = {**d["enter_service"], "enabled": False}

    # Reactive mode: the highest-ranked command that sets one; an operator's mode
    # ranks below every event and above every default control.
    operator_mode = any(operator.get(f"{m}.enabled") is True for m in REACTIVE)
    modal = next(((ev, c) for ev, c in ranked if c.reactive_mode() is not None), None)
    if modal is not None and (modal[0] or not operator_mode):
        c = modal[1]
        mode = c.reactive_mode()
        for m in REACTIVE:
            d[m] = {**d[m], "enabled": m == mode}
        if mode == "fixed_pf":
            pf, absorbing = c.fixed_pf  # type: ignore[misc]
            d["fixed_pf"] = {**d["fixed_pf"], "pf": pf, "absorbing": absorbing}
        elif mode == "constant_var":
            d["constant_var"] = {**d["constant_var"], "q_pct": c.fixed_var_pct}
        else:
            # The utility's curve as sent: its own Q base, about nominal voltage.
            d["volt_var"] = {**d["volt_var"], "curve": [
                {"v_pu": v, "q_pct": q} for v, q in c.volt_var_curve],  # type: ignore[union-attr]
                "q_base": c.volt_var_q_base or "rated_var", "vref_pu": 1.0,
                "vref_auto": False}

    # Curves: the highest-ranked command that carries one replaces the persisted one.
    vw = next((c for _, c in ranked if c.volt_watt_curve is not None), None)
    if vw is not None:
        d["volt_watt"] = {**d["volt_watt"], "enabled": True, "curve": [
            {"v_pu": v, "p_pct": p} for v, p in vw.volt_watt_curve]}  # type: ignore[union-attr]
    fd = next((c for _, c in ranked if c.freq_droop is not None), None)
    if fd is not None:
        db_of, db_uf, k_of, k_uf, tr = fd.freq_droop  # type: ignore[misc]
        d["freq_watt"] = {**d["freq_watt"], "enabled": True, "db_of_hz": db_of,
                          "db_uf_hz": db_uf, "k_of": k_of, "k_uf": k_uf}
        if tr is not None:
            d["freq_watt"]["response_time_s"] = tr

    # Storage: a battery setpoint is not a limit and does not combine: the highest-ranked
    # command that sets one, an operator's ranking below every event and above every
    # default control (as a reactive mode does).
    operator_storage = any(k.startswith("set_active_power.") for k in operator)
    sto = next(((ev, c) for ev, c in ranked if c.storage_w_pct is not None), None)
    if sto is not None and (sto[0] or not operator_storage):
        d["set_active_power"] = {**d["set_active_power"], "enabled": True,
                                 "w_pct": sto[1].storage_w_pct}
    return d


@dataclass(frozen=True, slots=True)
class Composed:
    """The effective settings, and the sources left out of them (source, why)."""

    settings: Settings
    left_out: tuple[tuple[InForce, str], ...] = ()


def compose(persisted: Mapping[str, Any], temporary: Mapping[str, Any],
            in_force: Iterable[InForce] = ()) -> Composed:
    """Persisted -> operator -> utility sources (highest priority first), validated.

    Raises SettingsError when the persisted settings with the operator's commands are
    invalid (the operator's command is refused). A source whose commands, added to
    those of the sources above it, would make the settings invalid is left out whole
    (``left_out``): a utility command never blocks a local change and never reaches
    the inverter half applied.
    """
    local = operator_layer(persisted, temporary)
    settings = settings_from_dict(local)
    accepted: list[InForce] = []
    left_out: list[tuple[InForce, str]] = []
    for f in in_force:
        if f.event is None and f.default is None:
            continue
        try:
            candidate = settings_from_dict(utility_layer(local, [*accepted, f], temporary))
        except SettingsError as exc:
            left_out.append((f, str(exc)))
            continue
        accepted.append(f)
        settings = candidate
    return Composed(settings, tuple(left_out))


def plant_cap(setpoints: Setpoints, cap_pct: float | None) -> Setpoints:
    """The setpoints capped at this inverter's share of the plant limit (% of its
    rating; None: no plant limit). Applied to the engine's output every cycle, so the
    share follows the site's allocation at once (no ramp) and never lifts a lower limit."""
    return _capped(setpoints, cap_pct, "plant limit")


def _capped(setpoints: Setpoints, cap_pct: float | None, cause: str) -> Setpoints:
    """``setpoints`` with the active-power limit lowered to ``cap_pct`` (None: as they are)."""
    if cap_pct is not None and cap_pct < setpoints.p_limit_pct:
        return dataclasses.replace(setpoints, p_limit_pct=cap_pct, cause=cause)
    return setpoints


def export_limit_w(in_force: Iterable[InForce]) -> float | None:
    """The export limit at the connection point in force (W): the lowest any source's
    command in force asks (limits combine, as the active-power limit does); None."""
    limits = [f.control.export_limit_w for f in in_force
              if f.control is not None and f.control.export_limit_w is not None]
    return min(limits) if limits else None


def pcc_cap(setpoints: Setpoints, cap_pct: float | None) -> Setpoints:
    """The setpoints capped at this inverter's share of the generation an export limit at
    the connection point allows (% of its rating; None: none); never lifts a lower limit."""
    return _capped(setpoints, cap_pct, "export limit")


def storage_setpoint(setpoints: Setpoints, w_rtg: float | None) -> Setpoints:
    """The battery power of ``setpoints`` (set_active_power, already within the battery's
    reserve, SoC limits and rates) combined with every other function's output, after
    the plant cap:

    - protection first: while ceasing to energize (a trip, momentary cessation, permit
      service off) the battery holds 0 W, neither discharging nor charging;
    - the active-power limit in force (lowest of every source, volt-watt, droop, the
      plant cap) bounds a discharge and never forces one: a discharge above it is
      lowered to it, nothing is ever raised, and no storage command is made up when
      set_active_power is off (``storage_w`` None stays None);
    - a charge is not output: no limit bounds it, and the reactive setpoints (volt-var,
      constant PF, constant var) are left exactly as the engine made them.

    ``w_rtg`` is the inverter's rated W (the limit's base); unknown: no discharge.
    """
    w = setpoints.storage_w
    if w is None:
        return setpoints
    if not setpoints.connect:
        return dataclasses.replace(setpoints, storage_w=0.0,
                                   storage_cause=f"cease to energize ({setpoints.cause})")
    if w > 0:
        cap = 0.0 if w_rtg is None else setpoints.p_limit_pct / 100.0 * w_rtg
        if w > cap:
            return dataclasses.replace(
                setpoints, storage_w=cap, storage_cause=f"active power limit "
                f"{setpoints.p_limit_pct:g} % ({setpoints.cause or 'limit'})")
    return setpoints


def finite(*values: float | None) -> bool:
    """True when every given number is a finite float (None is skipped)."""
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)
                             and math.isfinite(v)) for v in values)


@dataclass
class UtilitySchedule:
    """The utility commands received, shared by the adapter (writer) and the core (reader).

    Events stay until their end whatever happens to the link they came over:
    this is what makes a schedule survive a lost link. Thread-safe; ``version``
    changes with every update.
    """

    source: str = "utility"
    #: If set, the schedule is kept here (atomically, on every change) and read back at
    #: start: a gateway restarted during an outage still runs what it had received.
    path: str | None = None
    _events: dict[str, ScheduledControl] = field(default_factory=dict)
    _default: UtilityControl | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 0
    #: Link state an adapter reports (for status and the MMS view).
    comms: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path is not None:
            self._load()

    def put_event(self, event: ScheduledControl) -> None:
        with self._lock:
            if self._events.get(event.ident) == event:
                return
            self._events[event.ident] = event
            self._changed()

    def remove_event(self, ident: str) -> bool:
        with self._lock:
            gone = self._events.pop(ident, None) is not None
            if gone:
                self._changed()
            return gone

    def set_default(self, control: UtilityControl | None) -> None:
        with self._lock:
            new = None if control is None or control.is_empty() else control
            if new != self._default:
                self._default = new
                self._changed()

    def events(self) -> list[ScheduledControl]:
        with self._lock:
            return list(self._events.values())

    def default(self) -> UtilityControl | None:
        with self._lock:
            return self._default

    def expire(self, t: float) -> list[str]:
        """Forget events that ended before ``t`` (bounded memory); returns their ids."""
        with self._lock:
            old = [i for i, e in self._events.items() if e.end <= t]
            for i in old:
                del self._events[i]
            if old:
                self._changed()
            return old

    def in_force(self, t: float) -> InForce:
        with self._lock:
            return select(self._events.values(), self._default, t, self.source)

    # -- persistence (under the lock) ---------------------------------------------------------
    def _changed(self) -> None:
        self.version += 1
        if self.path is None:
            return
        from inverter_agent.core.files import write_atomic

        body = {"schema": SCHEDULE_SCHEMA, "source": self.source,
                "default": None if self._default is None else _control_dict(self._default),
                "events": [{**dataclasses.asdict(e), "control": _control_dict(e.control)}
                           for e in self._events.values()]}
        try:
            write_atomic(self.path, json.dumps(body).encode())
        except OSError as exc:  # the schedule still runs from memory
            log.warning("cannot keep the utility schedule in %s: %s", self.path, exc)

    def _load(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8") as fh:
                body = json.load(fh)
            if body.get("schema") != SCHEDULE_SCHEMA:
                raise ValueError(f"schema {body.get('schema')!r}")
            if body.get("source", self.source) != self.source:  # another source's file
                raise ValueError(f"source {body.get('source')!r}, not {self.source!r}")
            default = body.get("default")
            self._default = None if default is None else _control_from(default)
            for e in body.get("events", []):
                ev = ScheduledControl(**{**e, "control": _control_from(e["control"])})
                if not (finite(ev.start, ev.end, ev.created) and ev.end > ev.start):
                    raise ValueError(f"event {ev.ident!r}: bad window")
                self._events[ev.ident] = ev
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # A damaged file is not a reason to apply half of it: start empty, say so.
            log.warning("utility schedule %s not read (%s): starting without it", self.path, exc)
            self._events.clear()
            self._default = None


SCHEDULE_SCHEMA = 1


def schedule_path(state_dir: str, source: str) -> str:
    """Where a source's schedule is kept: one file per source in the state directory.
    IEEE 2030.5 keeps the name it always had (``utility_schedule.json``), so a schedule
    written before several sources existed still loads."""
    name = "utility_schedule.json" if source == "ieee2030_5" else f"utility_schedule.{source}.json"
    return os.path.join(state_dir, name)


def _control_dict(c: UtilityControl) -> dict[str, Any]:
    return {f: getattr(c, f) for f in c.__slots__ if getattr(c, f) is not None}


def _control_from(d: Mapping[str, Any]) -> UtilityControl:
    """A control read back from the schedule file, checked like any other input."""
    fields = set(UtilityControl.__slots__)
    if not isinstance(d, Mapping) or set(d) - fields:
        raise ValueError(f"unknown control fields {sorted(set(d) - fields)}")
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in ("connect", "energize"):
            if not isinstance(v, bool):
                raise ValueError(f"{k}: a boolean")
            out[k] = v
        elif k == "export_limit_w":
            if not finite(v) or not 0.0 <= v <= 1e9:
                raise ValueError(f"{k} = {v!r}")
            out[k] = float(v)
        elif k in ("p_limit_pct", "fixed_var_pct", "storage_w_pct"):
            lo = 0.0 if k == "p_limit_pct" else -100.0
            if not finite(v) or not lo <= v <= 100.0:
                raise ValueError(f"{k} = {v!r}")
            out[k] = float(v)
        elif k == "fixed_pf":
            pf, absorbing = v
            if not finite(pf) or not 0.0 < pf <= 1.0 or not isinstance(absorbing, bool):
                raise ValueError(f"fixed_pf = {v!r}")
            out[k] = (float(pf), absorbing)
        elif k == "volt_var_q_base":
            if v not in ("rated_var", "rated_va"):
                raise ValueError(f"volt_var_q_base = {v!r}")
            out[k] = v
        elif k == "freq_droop":
            if not isinstance(v, list | tuple) or len(v) != 5 or not finite(*v) \
                    or any(x is None for x in v[:4]):
                raise ValueError(f"freq_droop = {v!r}")
            out[k] = tuple(None if x is None else float(x) for x in v)
        else:
            out[k] = tuple(tuple(float(x) for x in p) for p in v)
    return UtilityControl(**out)
