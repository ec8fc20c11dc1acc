"""Settings and controls as remote clients see them, behind one lock.

The service holds the layers and asks :mod:`inverter_agent.core.arbitration`
(``compose``) for the settings the functions run with; it decides nothing
itself. Its layers:

- *persisted* settings: changed by setting writes (IEC 61850 FC SP), validated
  by the one validator, written atomically to the state directory *before* the
  write is acknowledged, and restored at restart;
- *temporary* commands: utility controls such as "limit maximum active power"
  or "cease to energize". They override the persisted values until released,
  and revert to the persisted values when no client has been heard from for
  ``revert_after_s`` (communication loss, like SunSpec RvrtTms);
- *utility schedules*, one per source (``UtilitySchedule.source``: "ieee2030_5",
  "dnp3"), ranked by ``utility_order``.

Every change is validated as a whole (the effective settings must pass
``validate``) before anything changes; a refused change leaves everything as
it was. Accepted changes reach the controller at once, so they apply within
one control cycle.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from inverter_agent.core import arbitration
from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import (
    Settings,
    SettingsError,
    settings_from_dict,
    settings_to_dict,
)
from inverter_agent.functions.settings import SettingsConflict, check_fixed

log = logging.getLogger(__name__)

#: Temporary commands clients may operate, and the settings path each overrides.
CONTROLS: dict[str, str] = {
    "connect": "enter_service.enabled",  # 1547 "permit service": False ceases to energize
    "p_limit_pct": "active_power_limit.p_limit_pct",
    "p_limit_enabled": "active_power_limit.enabled",
    "fixed_pf_enabled": "fixed_pf.enabled",
    "volt_var_enabled": "volt_var.enabled",
    "volt_watt_enabled": "volt_watt.enabled",
    "freq_watt_enabled": "freq_watt.enabled",
    "constant_var_enabled": "constant_var.enabled",
    # storage (set active power): + discharge, - charge
    "storage_enabled": "set_active_power.enabled",
    "storage_w_pct": "set_active_power.w_pct",
    "storage_w": "set_active_power.w",
}


#: Seconds between presence checks while a temporary command is active.
PRESENCE_EVERY_S = 1.0


#: A refused temporary command (the core's one refusal type; kept under its old name).
ControlRefused = CommandRefused


class SettingsService:
    """The one place settings and temporary commands change."""

    def __init__(self, store: SettingsStore, events: EventLog,
                 apply: Callable[[Settings], None] | None = None,
                 revert_after_s: float | None = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 utility_order: Iterable[str] = arbitration.UTILITY_ORDER) -> None:
        self.store = store
        self.events = events
        self._apply = apply
        self.revert_after_s = revert_after_s
        self._clock = clock
        self._lock = threading.RLock()
        persisted, self.origin = store.load()
        #: What no write may change (the profile's abnormal category: check_fixed).
        self._fixed = persisted
        self._persisted = settings_to_dict(persisted)
        self._temporary: dict[str, Any] = {}  # settings path -> value
        self._last_heard = clock()
        #: Asked whether any client was heard from since the last asking (the MMS
        #: server's associations and kernel byte counters); None: requests only.
        self._presence: Callable[[], bool] | None = None
        self._presence_asked = -1e18
        self._effective = persisted
        #: Bumped by every change of the effective settings (for cheap "changed?" checks).
        self.version = 0
        #: Utility schedules by source (IEEE 2030.5, DNP3: events and default control),
        #: arbitrated over the persisted settings and operator commands (arbitration.py).
        self._utility: dict[str, arbitration.UtilitySchedule] = {}
        #: Sources highest priority first, for what does not combine (modes, curves).
        self.utility_order = tuple(utility_order)
        self.wall: Callable[[], float] = time.time
        #: What each source has in force, highest priority first.
        self._in_force: tuple[arbitration.InForce, ...] = ()
        self._utility_refused: dict[str, object] = {}

    # -- reading
    def effective(self) -> Settings:
        with self._lock:
            return self._effective

    def persisted_dict(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._persisted)

    def effective_dict(self) -> dict[str, Any]:
        with self._lock:
            return settings_to_dict(self._effective)

    def temporary(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._temporary)

    # -- writing settings
    def check(self, changes: Mapping[str, Any]) -> Settings:
        """The effective settings ``changes`` would give; raises SettingsError. Changes nothing."""
        with self._lock:
            candidate = copy.deepcopy(self._persisted)
            for path, value in changes.items():
                arbitration.set_path(candidate, path, value)
            persisted = settings_from_dict(candidate)  # validates
            check_fixed(persisted, self._fixed)
            return self._compose(settings_to_dict(persisted), self._temporary)

    def write(self, changes: Mapping[str, Any], who: str) -> Settings:
        """Validate, persist (atomically, before returning), apply. All or nothing."""
        with self._lock:
            candidate = copy.deepcopy(self._persisted)
            old = {p: arbitration.get_path(self._persisted, p) for p in changes}
            for path, value in changes.items():
                arbitration.set_path(candidate, path, value)
            persisted = settings_from_dict(candidate)
            check_fixed(persisted, self._fixed)
            effective = self._compose(settings_to_dict(persisted), self._temporary)
            self.store.save(persisted)  # durable before acknowledged
            self._persisted = settings_to_dict(persisted)
            self._set_effective(effective)
            self.events.record("setting_change", ", ".join(
                f"{p}: {old[p]!r} -> {v!r}" for p, v in changes.items()), who=who)
            return effective

    # -- temporary commands
    def operate(self, control: str, value: Any, who: str) -> Settings:
        """A temporary command; ``value`` None releases it. Raises ControlRefused."""
        if control not in CONTROLS:
            raise ControlRefused(RefusalCause.NOT_SUPPORTED, f"no control {control!r}")
        path = CONTROLS[control]
        with self._lock:
            temporary = dict(self._temporary)
            if value is None:
                temporary.pop(path, None)
            else:
                temporary[path] = value
            try:
                effective = self._compose(self._persisted, temporary)
            except SettingsError as exc:
                raise ControlRefused(RefusalCause.CONFLICT if isinstance(exc, SettingsConflict)
                                     else RefusalCause.INVALID_VALUE,
                                     str(exc)) from None
            self._temporary = temporary
            self._last_heard = self._clock()
            self._set_effective(effective)
            self.events.record("control", f"{control} = {value!r}", who=who)
            return effective

    def heard_from_client(self) -> None:
        """Any client request: communication is alive."""
        with self._lock:
            self._last_heard = self._clock()

    def set_presence(self, heard: Callable[[], bool] | None) -> None:
        """``heard()`` says whether any client was heard from since it was last asked.

        Asked by :meth:`tick` at most once every :data:`PRESENCE_EVERY_S` while a
        temporary command is active, and always before reverting one.
        """
        with self._lock:
            self._presence = heard
            self._presence_asked = -1e18

    def attach_utility(self, schedule: arbitration.UtilitySchedule) -> None:
        """Arbitrate ``schedule`` (utility events, default control) into the settings,
        beside the other sources' schedules; it replaces one of the same source."""
        with self._lock:
            self._utility[schedule.source] = schedule
            self._follow_utility()

    def utility_sources(self) -> list[str]:
        """The attached sources, highest priority first."""
        with self._lock:
            return arbitration.by_priority(self._utility, self.utility_order)

    def check_utility(self, control: arbitration.UtilityControl) -> str | None:
        """Why ``control``, in force as a utility event now, would be refused by the
        settings' validator (None: it would apply). Changes nothing."""
        with self._lock:
            event = arbitration.ScheduledControl("check", float("-inf"), float("inf"), control)
            composed = arbitration.compose(self._persisted, self._temporary,
                                           [arbitration.InForce(event, None, "check")])
            if composed.left_out:
                return f"outside this DER's settings: {composed.left_out[0][1]}"
            return None

    def utility_comms(self) -> dict[str, Any] | None:
        """Each utility source's link (state, seconds since its server last answered), as
        its adapter reports it, under ``sources`` (highest priority first); None when no
        utility source is attached. ``state`` / ``since_contact_s`` at the top sum them
        up: "connected" only when every source is, else the first source's that is not;
        the longest silence (None while any source was never heard)."""
        with self._lock:
            schedules = [self._utility[n] for n in self.utility_sources()]
        sources: dict[str, dict[str, Any]] = {}
        for schedule in schedules:
            name, comms = schedule.source, schedule.comms
            last = comms.get("last_contact")
            sources[name] = {"state": comms.get("state"), "since_contact_s": None
                             if last is None else round(self.wall() - last, 1)}
        if not sources:
            return None
        down = [c["state"] for c in sources.values() if c["state"] != "connected"]
        silences = [c["since_contact_s"] for c in sources.values()
                    if c["since_contact_s"] is not None]
        return {"state": down[0] if down else "connected",
                "since_contact_s": max(silences) if len(silences) == len(sources) else None,
                "sources": sources}

    def in_force(self, source: str | None = None) -> arbitration.InForce:
        """The utility commands of ``source`` the effective settings include now; without
        a source, the highest-priority source's that has any in force."""
        with self._lock:
            found = [f for f in self._in_force if source is None or f.source == source]
            live = [f for f in found if f.control is not None]
            return (live or found or [arbitration.InForce(source=source or "")])[0]

    def _follow_utility(self) -> bool:
        """Recompose when the utility commands in force changed (an event started,
        ended, was cancelled; a new default) at any source. Under the lock."""
        if not self._utility:
            return False
        now = self.wall()
        in_force = []
        for name in arbitration.by_priority(self._utility, self.utility_order):
            self._utility[name].expire(now)
            in_force.append(self._utility[name].in_force(now))
        before = {f.source: f.key for f in self._in_force}
        changed = [f for f in in_force  # a source just attached had nothing in force
                   if before.get(f.source, arbitration.InForce(source=f.source).key) != f.key]
        self._in_force = tuple(in_force)
        if not changed:
            return False
        self._set_effective(self._compose(self._persisted, self._temporary))
        for f in changed:
            ev = f.event
            self.events.record("utility_control", (
                f"event {ev.ident} until {ev.end:.0f} (primacy {ev.primacy}): "
                f"{ev.control.describe()}" if ev is not None else
                f"no event; default control: {f.default.describe() if f.default else 'none'}"),
                who=f.source or "utility")
        return True

    def tick(self) -> bool:
        """Called every control cycle: follow the utility schedule, and revert temporary
        commands on communication loss."""
        with self._lock:
            followed = self._follow_utility()
            if not self._temporary or self.revert_after_s is None:
                return followed
            now = self._clock()
            if self._presence is not None and (
                    now - self._presence_asked >= PRESENCE_EVERY_S
                    or now - self._last_heard >= self.revert_after_s):
                self._presence_asked = now
                try:
                    if self._presence():
                        self._last_heard = now
                except Exception:  # never revert because presence could not be asked
                    log.exception("client presence check failed")
                    self._last_heard = now
            silent = now - self._last_heard
            if silent < self.revert_after_s:
                return followed
            reverted = sorted(self._temporary)
            self._temporary = {}
            self._set_effective(self._compose(self._persisted, {}))
            self.events.record("comm_loss_revert", f"no client for {silent:.0f} s: "
                               f"reverted {', '.join(reverted)} to persisted settings")
            return True

    # -- internals
    def _compose(self, persisted: Mapping[str, Any], temporary: Mapping[str, Any]) -> Settings:
        """The effective settings (arbitration.compose); raises SettingsError when the
        local layers are invalid. A source left out (its commands would make the
        settings invalid) is logged once per change of its commands."""
        composed = arbitration.compose(persisted, temporary, self._in_force)
        for f, why in composed.left_out:
            if self._utility_refused.get(f.source) != f.key:
                self._utility_refused[f.source] = f.key
                log.warning("utility control from %s refused, left out: %s", f.source, why)
                self.events.record("utility_control_refused", why, who=f.source or "utility")
        return composed.settings

    def window(self) -> tuple[Settings, float] | None:
        """While temporary settings are in force until a known time (an operator command
        until the communication-loss revert, a utility event until its end): the settings
        without them (persisted, with any utility default control) and the earliest such
        time on this service's clock; None otherwise (a device programmed with a temporary
        curve reverts by itself to the first at the second: Steering)."""
        with self._lock:
            ends = []
            if self._temporary and self.revert_after_s is not None:
                ends.append(self._last_heard + self.revert_after_s)
            offset = self._clock() - self.wall()
            ends += [f.event.end + offset for f in self._in_force if f.event is not None]
            if not ends:
                return None
            defaults = [dataclasses.replace(f, event=None) for f in self._in_force]
            return arbitration.compose(self._persisted, {}, defaults).settings, min(ends)

    def bind(self, apply: Callable[[Settings], None]) -> None:
        """Send every future change of the effective settings to ``apply``."""
        with self._lock:
            self._apply = apply

    def _set_effective(self, effective: Settings) -> None:
        self._effective = effective
        self.version += 1
        if self._apply is not None:
            self._apply(effective)
