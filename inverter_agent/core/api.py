"""The core's command API: what every adapter may ask of the core, and nothing more.

Adapters call these from their own threads (a libiec61850 handler, the 2030.5
client's asyncio loop, a DNP3 engine's callback): every call is thread-safe,
synchronous and short. A write is validated by the one validator and
persisted before it returns, so an adapter acknowledges only what is durable.
A refusal raises :class:`~inverter_agent.core.commands.CommandRefused` with a
protocol-neutral cause; nothing has changed then.

Every command an adapter hands in, accepted or refused, is written to the
hash-chained audit log here, by the core, with who sent it (``who`` names the
protocol first: ``"mms CN=eng1 role=engineer"``, ``"ieee2030_5"``), so no
adapter can forget to audit and every protocol's entries look alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from inverter_agent.core import arbitration
from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.core.settings_service import CONTROLS, SettingsService
from inverter_agent.core.view import CycleView
from inverter_agent.functions import Settings, SettingsError
from inverter_agent.functions.settings import SettingsConflict

log = logging.getLogger(__name__)

#: Errors a value conversion or the validator raises for a bad value.
BAD_VALUE = (SettingsError, ValueError, TypeError, IndexError, KeyError)


class Auditor(Protocol):
    def record(self, action: str, who: str, outcome: str = "ok", obj: str | None = None,
               old: Any = None, new: Any = None, **extra: Any) -> Any: ...


class Commands:
    """One inverter's command port: the settings service's surface, audited.

    Reads (``persisted_dict``, ``effective_dict``, ``temporary``, ``version``) are
    the service's own; commands (``write``, ``operate``) are audited here.
    """

    def __init__(self, name: str, service: SettingsService,
                 audit: Auditor | None = None) -> None:
        self.name = name
        self.service = service
        self.audit = audit
        self._lock = threading.Lock()  # keeps a command and its audit entry together

    # -- reads
    @property
    def version(self) -> int:
        return int(self.service.version)

    def persisted_dict(self) -> dict[str, Any]:
        return self.service.persisted_dict()

    def effective_dict(self) -> dict[str, Any]:
        return self.service.effective_dict()

    def effective(self) -> Settings:
        return self.service.effective()

    def temporary(self) -> dict[str, Any]:
        return self.service.temporary()

    # -- presence (communication-loss revert)
    def heard_from_client(self) -> None:
        self.service.heard_from_client()

    def set_presence(self, heard: Callable[[], bool] | None) -> None:
        self.service.set_presence(heard)

    # -- commands
    def check(self, changes: Mapping[str, Any]) -> None:
        """Raise :class:`CommandRefused` if ``changes`` would be refused; change nothing."""
        try:
            self.service.check(changes)
        except BAD_VALUE as exc:
            raise CommandRefused(RefusalCause.CONFLICT if isinstance(exc, SettingsConflict)
                                 else RefusalCause.INVALID_VALUE, str(exc)) from None

    def write(self, changes: Mapping[str, Any], who: str) -> Settings:
        """Validate, persist, apply ``changes`` (dotted setting paths); all or nothing."""
        with self._lock:
            before = self.service.persisted_dict()
            try:
                effective = self.service.write(changes, who=who)
            except BAD_VALUE as exc:
                self.refused("setting.write", who, ",".join(changes), dict(changes), str(exc))
                refused = CommandRefused(RefusalCause.CONFLICT if isinstance(exc, SettingsConflict)
                                         else RefusalCause.INVALID_VALUE, str(exc))
                refused.audited = True
                raise refused from None
            for path, value in changes.items():
                self._record("setting.write", who, "ok", path, _get(before, path), value)
            return effective

    def operate(self, control: str, value: Any, who: str) -> Settings:
        """A temporary command (``value`` None releases it)."""
        with self._lock:
            try:
                effective = self.service.operate(control, value, who)
            except CommandRefused as exc:
                self.refused("control.operate", who, control, value, f"{exc} ({exc.cause})")
                exc.audited = True  # the adapter must not audit it again
                raise
            self._record("control.operate", who, "ok", control, None, value)
            return effective

    def release(self, who: str) -> Settings:
        """Release every temporary command (operator and utility overrides of this
        inverter's settings); audited as one ``release`` command."""
        with self._lock:
            temporary = self.service.temporary()
            released = [name for name, path in CONTROLS.items() if path in temporary]
            effective = self.service.effective()
            for name in released:
                effective = self.service.operate(name, None, who)
            self._record("control.operate", who, "ok", "release", None, released)
            return effective

    def refused(self, action: str, who: str, obj: str | None, new: Any, reason: str) -> None:
        """Audit a command the adapter refused before it reached the core (bad encoding)."""
        self._record(action, who, "refused", obj, None, new, reason=reason)

    def _record(self, action: str, who: str, outcome: str, obj: str | None, old: Any,
                new: Any, **extra: Any) -> None:
        _audit(self.audit, action, who, outcome, obj, old, new, **extra)


def _audit(audit: Auditor | None, action: str, who: str, outcome: str, obj: str | None,
           old: Any, new: Any, **extra: Any) -> None:
    """One audit entry; auditing must never break a protocol thread."""
    if audit is None:
        return
    try:
        audit.record(action, who, outcome, obj, old, new, **extra)
    except Exception:
        log.exception("audit record failed")


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted``, or None where the settings have none (an audit's "old")."""
    try:
        return arbitration.get_path(d, dotted)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


class Core:
    """What adapters get: the last :class:`CycleView`, each inverter's :class:`Commands`,
    one utility schedule per source, the plant limit and the event log."""

    def __init__(self, commands: Mapping[str, Commands], audit: Auditor | None = None,
                 plant: Any = None, record: Callable[[str, str, str], None] | None = None,
                 state_dir: str | None = None) -> None:
        self._commands = dict(commands)
        self.audit = audit
        self.plant = plant
        self._record = record
        self.state_dir = state_dir
        self._view: CycleView | None = None
        self._schedules: dict[str, arbitration.UtilitySchedule] = {}
        self._lock = threading.Lock()

    @property
    def inverters(self) -> tuple[str, ...]:
        return tuple(self._commands)

    @property
    def functions(self) -> bool:
        """Whether the grid functions run (commands are possible at all)."""
        return bool(self._commands)

    def commands(self, inverter: str) -> Commands:
        try:
            return self._commands[inverter]
        except KeyError:
            raise CommandRefused(RefusalCause.NOT_SUPPORTED,
                                 f"no inverter {inverter!r}") from None

    # -- the view
    def publish(self, view: CycleView) -> None:
        """Called by the loop at the end of each cycle."""
        self._view = view

    def view(self) -> CycleView | None:
        """The last cycle's view (None before the first cycle)."""
        return self._view

    # -- the plant
    def write_plant(self, name: str, value: Any, who: str) -> None:
        """Set a plant-limit setting (several inverters at one point of connection):
        validated and persisted before returning, audited either way."""
        if self.plant is None:
            raise CommandRefused(RefusalCause.NOT_SUPPORTED, "no plant: one inverter")
        obj = f"{self.plant.ld}/{name}"
        old = getattr(self.plant.limit, name, None)
        try:
            self.plant.write(name, value, who)
        except (ValueError, TypeError, OSError) as exc:  # PlantSettingError is a ValueError
            self.audit_command("setting.write", who, "refused", obj, new=value, reason=str(exc))
            refused = CommandRefused(RefusalCause.INVALID_VALUE, str(exc))
            refused.audited = True
            raise refused from None
        self.audit_command("setting.write", who, "ok", obj, old, value)

    # -- utility schedules
    def schedule(self, source: str) -> arbitration.UtilitySchedule:
        """The utility schedule of ``source`` (one per protocol), arbitrated by every
        inverter's settings with the others by the rule of ``docs/arbitration.md``;
        created on first use, persisted in the state directory (a gateway restarted
        during an outage runs what it had)."""
        with self._lock:
            if source not in self._schedules:
                path = (arbitration.schedule_path(self.state_dir, source)
                        if self.state_dir else None)
                schedule = arbitration.UtilitySchedule(source=source, path=path)
                for c in self._commands.values():
                    c.service.attach_utility(schedule)
                self._schedules[source] = schedule
            return self._schedules[source]

    def check_utility(self, control: arbitration.UtilityControl) -> str | None:
        """Why a utility control would be refused by any inverter's settings, or None."""
        return next((why for c in self._commands.values()
                     if (why := c.service.check_utility(control))), None)

    # -- events and audit
    def record(self, kind: str, detail: str, who: str) -> None:
        """A command received by an adapter outside the settings (a utility event, a
        default control, one refused): in the event log and, like every command, in
        the audit log (``*_refused`` kinds as refused)."""
        if self._record is not None:
            self._record(kind, detail, who)
        outcome = "refused" if kind.endswith("_refused") else "ok"
        self.audit_command(f"command.{kind}", who, outcome, kind, new=detail)

    def audit_command(self, action: str, who: str, outcome: str, obj: str | None,
                      old: Any = None, new: Any = None, **extra: Any) -> None:
        """Audit a command that is not an inverter's setting (e.g. the plant limit)."""
        _audit(self.audit, action, who, outcome, obj, old, new, **extra)
