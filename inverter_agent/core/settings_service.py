"""Settings and controls as remote clients see them, behind one lock.

Two layers make the settings the functions run with:

- *persisted* settings: changed by setting writes (IEC 61850 FC SP), validated
  by the one validator, written atomically to the state directory *before* the
  write is acknowledged, and restored at restart;
- *temporary* commands: utility controls such as "limit maximum active power"
  or "cease to energize". They override the persisted values until released,
  and revert to the persisted values when no client has been heard from for
  ``revert_after_s`` (communication loss, like SunSpec RvrtTms).

Every change is validated as a whole (the effective settings must pass
``validate``) before anything changes; a refused change leaves everything as
it was. Accepted changes reach the controller at once, so they apply within
one control cycle.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
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
from inverter_agent.functions.registry import REACTIVE

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
}


#: Seconds between presence checks while a temporary command is active.
PRESENCE_EVERY_S = 1.0


#: A refused temporary command (the core's one refusal type; kept under its old name).
ControlRefused = CommandRefused


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
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


class SettingsService:
    """The one place settings and temporary commands change."""

    def __init__(self, store: SettingsStore, events: EventLog,
                 apply: Callable[[Settings], None] | None = None,
                 revert_after_s: float | None = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.events = events
        self._apply = apply
        self.revert_after_s = revert_after_s
        self._clock = clock
        self._lock = threading.RLock()
        persisted, self.origin = store.load()
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
        #: Utility commands (IEEE 2030.5 events and default control), arbitrated
        #: over the persisted settings and operator commands (arbitration.py).
        self.utility: arbitration.UtilitySchedule | None = None
        self.wall: Callable[[], float] = time.time
        self._in_force = arbitration.InForce()
        self._utility_refused: object = None

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
                _set(candidate, path, value)
            persisted = settings_from_dict(candidate)  # validates
            return self._compose(settings_to_dict(persisted), self._temporary)

    def write(self, changes: Mapping[str, Any], who: str) -> Settings:
        """Validate, persist (atomically, before returning), apply. All or nothing."""
        with self._lock:
            candidate = copy.deepcopy(self._persisted)
            old = {p: _get(self._persisted, p) for p in changes}
            for path, value in changes.items():
                _set(candidate, path, value)
            persisted = settings_from_dict(candidate)
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
                raise ControlRefused(RefusalCause.CONFLICT if "mutually exclusive" in str(exc)
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
        """Arbitrate ``schedule`` (utility events, default control) into the settings."""
        with self._lock:
            self.utility = schedule
            self._follow_utility()

    def check_utility(self, control: arbitration.UtilityControl) -> str | None:
        """Why ``control``, in force as a utility event now, would be refused by the
        settings' validator (None: it would apply). Changes nothing."""
        with self._lock:
            base = self._compose_local(self._persisted, self._temporary)
            event = arbitration.ScheduledControl("check", float("-inf"), float("inf"), control)
            try:
                settings_from_dict(arbitration.apply(settings_to_dict(base), arbitration.InForce(
                    event, None), self._temporary))
            except SettingsError as exc:
                return f"outside this DER's settings: {exc}"
            return None

    def utility_comms(self) -> dict[str, Any] | None:
        """The utility protocol client's link (state, seconds since the server last
        answered), as its adapter reports it; None when no utility client runs."""
        u = self.utility
        if u is None:
            return None
        last = u.comms.get("last_contact")
        return {"state": u.comms.get("state"),
                "since_contact_s": None if last is None else round(self.wall() - last, 1)}

    def in_force(self) -> arbitration.InForce:
        """The utility commands the effective settings include now."""
        with self._lock:
            return self._in_force

    def _follow_utility(self) -> bool:
        """Recompose when the utility commands in force changed (an event started,
        ended, was cancelled; a new default). Under the lock."""
        if self.utility is None:
            return False
        now = self.wall()
        self.utility.expire(now)
        in_force = self.utility.in_force(now)
        if in_force.key == self._in_force.key:
            return False
        self._in_force = in_force
        self._set_effective(self._compose(self._persisted, self._temporary))
        ev = in_force.event
        self.events.record("utility_control", (
            f"event {ev.ident} until {ev.end:.0f} (primacy {ev.primacy}): "
            f"{ev.control.describe()}" if ev is not None else
            f"no event; default control: "
            f"{in_force.default.describe() if in_force.default else 'none'}"),
            who=in_force.default_source or "utility")
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
        """Persisted settings, operator commands, then the utility commands in force
        (arbitration.apply). Utility commands that would make the settings invalid are
        left out (logged once): they never block a local change, never reach the
        inverter."""
        base = self._compose_local(persisted, temporary)
        in_force = self._in_force
        if in_force.event is None and in_force.default is None:
            return base
        try:
            return settings_from_dict(arbitration.apply(settings_to_dict(base), in_force,
                                                        temporary))
        except SettingsError as exc:
            if self._utility_refused != in_force.key:
                self._utility_refused = in_force.key
                log.warning("utility control refused, local settings kept: %s", exc)
                self.events.record("utility_control_refused", str(exc))
            return base

    @staticmethod
    def _compose_local(persisted: Mapping[str, Any], temporary: Mapping[str, Any]) -> Settings:
        d = copy.deepcopy(dict(persisted))
        for path, value in temporary.items():
            _set(d, path, value)
        # Switching one reactive mode on by command switches the others off (1547 5.3.1).
        for path, value in temporary.items():
            if value is True and path in {f"{m}.enabled" for m in REACTIVE}:
                for other in REACTIVE:
                    if f"{other}.enabled" != path and f"{other}.enabled" not in temporary:
                        d[other]["enabled"] = False
        return settings_from_dict(d)

    def bind(self, apply: Callable[[Settings], None]) -> None:
        """Send every future change of the effective settings to ``apply``."""
        with self._lock:
            self._apply = apply

    def _set_effective(self, effective: Settings) -> None:
        self._effective = effective
        self.version += 1
        if self._apply is not None:
            self._apply(effective)
