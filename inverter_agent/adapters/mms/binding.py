"""Bind the function logical nodes of an :class:`MmsServer` to a SettingsService.

The lead wires it like this (the server must not be started yet)::

    server = MmsServer(functions_model_spec(ld), host, port, ied_name, max_connections)
    binding = attach_functions(server, service, controller.status_view, ld_inst=ld)
    server.start()
    agent.publishers += [server.publish, binding.publish]   # both take the snapshot
    ...
    binding.close(); server.stop()

What it does:

* every writable SP attribute (``functions_model.SETTINGS`` and ``CURVES``)
  gets a write handler that turns the MMS value into a settings change
  (units per the ``functions_model`` docstring) and calls
  ``service.write(changes, who)``, which validates with the one validator and
  persists atomically *before* the handler returns, i.e. before the MMS
  response. A refused change answers OBJECT_VALUE_INVALID and lands nowhere.
  A partial curve write is validated as the whole curve with that part
  replaced. A storage command (DWGC1: on, a setpoint, the reserve) while the
  core commands no battery (``core.storage.commanded``) is refused the same way,
  and a DWGC1 operate answers AddCause not-supported; switching it off is taken.
* every control (``functions_model.CONTROLS``) is checked *and applied* in
  the perform-check handler, because with direct-with-normal-security the
  positive response goes out before the control handler runs
  (LIBIEC61850.md). ``ControlRefused.cause`` becomes the AddCause.
* writes and operates call ``service.heard_from_client()``; reads run no Python
  at all: the service asks ``server.clients_heard()`` (associations, and the
  kernel's per-connection byte counters) about once a second while a temporary
  command is active. The communication-loss revert itself runs in
  ``service.tick()``, which the agent calls every cycle.
* with an ``AuditLog`` on the server (``MmsServer(..., audit=...)``) every
  accepted or refused setting write (who, old, new) and control is recorded;
  access refusals (roles) are recorded by the server itself.
* settings shown over MMS are ``service.effective_dict()``: refreshed by a
  small thread right after every accepted write or control, and at every
  :meth:`FunctionBinding.publish`. A refresh re-reads the settings if a write
  was accepted meanwhile, so a stale value never stays on top of an accepted
  one.

Threading: handlers run in libiec61850 threads with the GIL taken by ctypes.
They call the service (its own lock) and never the data-model lock. Do not
call the binding or the server from inside the service's ``apply`` callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from inverter_agent.core.api import BAD_VALUE, Commands
from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.core.settings_service import CONTROLS as SERVICE_CONTROLS
from inverter_agent.core.settings_service import ControlRefused
from inverter_agent.core.storage import commanded, is_command
from inverter_agent.core.view import StorageView
from inverter_agent.security.access import RIGHT_WRITE

from .der_model import DEFAULT_LD_INST
from .functions_model import (
    CONTROLS,
    CURVES,
    SETTING_CONTROLS,
    SETTINGS,
    Control,
    Curve,
    Setting,
    SettingControl,
    curve_paths,
    derived_values,
    get_path,
    status_values,
    zone_values,
)
from .server import MmsServer

log = logging.getLogger(__name__)

#: The core's refusal cause -> IEC 61850-7-2 AddCause code. 7-2 has no "value out of
#: range": the nearest is inconsistent-parameters (26).
ADD_CAUSE: dict[RefusalCause, int] = {
    RefusalCause.NOT_SUPPORTED: 1,        # not-supported
    RefusalCause.INVALID_VALUE: 26,       # inconsistent-parameters
    RefusalCause.CONFLICT: 6,             # parameter-change-in-execution
    RefusalCause.NOT_AUTHORIZED: 20,      # no-access-authority
    RefusalCause.BLOCKED: 9,              # blocked-by-process
    RefusalCause.EXPIRED: 16,             # time-limit-over
}
_INCONSISTENT = 26

StatusSource = Callable[[], Mapping[str, Any]]
#: The inverter's battery as the core last saw it (None: no storage, or no cycle yet).
StorageSource = Callable[[], StorageView | None]


class FunctionBinding:
    """Handlers, refresh and status publishing for one server and one service."""

    def __init__(self, server: MmsServer, service: Commands,
                 status_source: StatusSource | None = None,
                 ld_inst: str = DEFAULT_LD_INST, heard_interval_s: float = 1.0,
                 storage: StorageSource | None = None) -> None:
        self.server = server
        self.service = service
        self.status_source = status_source
        #: Where the core's view of the battery comes from; None: storage commands are
        #: not checked here (a bare binding without the core's view).
        self.storage = storage
        self.ld = ld_inst
        self.heard_interval_s = heard_interval_s
        self._last_heard = 0.0
        self._generation = 0  # bumped by every accepted change
        self._refresh_lock = threading.Lock()
        self._shown: dict[str, Any] = {}  # key -> value last written to the model
        self._version_shown = -1  # service.version of the settings last shown
        self._refusals: dict[str, tuple[float, int]] = {}  # key -> (last logged, suppressed)
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._refresher, name="mms-settings-refresh",
                                        daemon=True)

    # --- installation ------------------------------------------------------------------
    def install(self) -> None:
        for setting in SETTINGS:
            self.server.set_complex_write_validator(self._key(setting.target),
                                                    self._setting_writer(setting))
        for curve in CURVES:
            self.server.set_complex_write_validator(self._key(f"{curve.target}.crvPts"),
                                                    self._curve_writer(curve))
        for control in CONTROLS:
            self.server.set_control(self._key(control.target), self._control_check(control),
                                    control.ctl_model)
        for setting_control in SETTING_CONTROLS:
            # a setting, whatever the CDC: the client needs the right to write settings
            self.server.set_control(self._key(setting_control.target),
                                    self._setting_control_check(setting_control),
                                    setting_control.ctl_model, RIGHT_WRITE)
        # Reads run no Python (they are served at the library's speed): presence for
        # the communication-loss revert comes from associations and the kernel's
        # per-connection counters, asked by the service when it needs to know.
        self.service.set_presence(self.server.clients_heard)
        self.server.add_start_hook(self._on_start)
        self._thread.start()

    def close(self) -> None:
        """Stop the refresh thread (the server is stopped by its owner)."""
        self._stopping.set()
        self._kick.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    # --- publishing --------------------------------------------------------------------
    def publish(self, _snapshot: Any = None) -> None:
        """Agent publisher: status from ``status_source`` plus the settings."""
        self.publish_status(self.status_source() if self.status_source else None)

    def publish_status(self, view: Mapping[str, Any] | None) -> None:
        """Publish a ``Controller.status_view()`` dict (None: settings only)."""
        if view is not None:
            status = status_values(view) | zone_values(view, self.service.effective_dict())
            values = {self._key(k): v for k, v in status.items()}
            with self._refresh_lock:  # _shown is shared with the refresh thread
                self._show(values)
        # The settings shown change only when the service's do (client writes,
        # controls, communication-loss reverts): don't rebuild them every cycle,
        # it costs the MMS server's readers a locked section each time.
        if self.service.version != self._version_shown or not self._shown:
            self.refresh_settings()

    def refresh_settings(self) -> None:
        """Show the effective settings and control states; retried if a write lands meanwhile."""
        with self._refresh_lock:
            version = self.service.version
            for _ in range(5):
                generation = self._generation
                # The guard runs inside the data-model lock: values computed before
                # a client's accepted write are never written over the value that
                # write stores once its handler returns (the handler bumps the
                # generation before returning).
                if self._show(self._settings_values(),
                              guard=lambda g=generation: g == self._generation):
                    self._version_shown = version
                    return

    def _show(self, values: Mapping[str, Any],
              guard: Callable[[], bool] | None = None) -> bool:
        """Write what differs from what is shown; False if the guard refused."""
        changed = {k: v for k, v in values.items()
                   if k not in self._shown or self._shown[k] != v}
        if not changed:
            return True
        if self.server.update(changed, guard=guard):
            self._shown.update(changed)
            return True
        return False

    def _settings_values(self) -> dict[str, Any]:
        effective = self.service.effective_dict()
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            out[self._key(setting.target)] = setting.to_mms(effective)
        for curve in CURVES:
            out[self._key(f"{curve.target}.numPts")] = len(get_path(effective, curve.path))
            values = [v for element in curve.elements(effective) for v in element]
            for path, value in zip(curve_paths(curve), values, strict=True):
                out[self._key(path)] = value
        for setting_control in SETTING_CONTROLS:
            value = setting_control.to_mms(effective)
            out[self._key(setting_control.target)] = value
            if setting_control.kind == "mod":  # the LN's behaviour follows its mode
                out[self._key(setting_control.target.replace(".Mod", ".Beh"))] = value
        for target, value in derived_values(effective).items():
            out[self._key(target)] = value
        temporary = self.service.temporary()
        for control in CONTROLS:
            key = self._key(control.target)
            if control.control == "release":
                out[key] = bool(temporary)
            elif control.values:  # an ENC command: show the ctlVal of the effective state
                state = get_path(effective, control.status)
                out[key] = next(code for code, v in control.values if v == state)
            else:
                out[key] = get_path(effective, control.status)
        return out

    def _on_start(self) -> None:
        self._shown.clear()  # a new model: everything must be written again
        self.publish()

    def _changed(self) -> None:
        """An accepted change: forget what is shown (the client's value landed) and refresh."""
        self._generation += 1
        self._shown.clear()
        self._kick.set()

    def _refresher(self) -> None:
        while not self._stopping.is_set():
            self._kick.wait()
            self._kick.clear()
            if self._stopping.is_set():
                return
            try:
                self.refresh_settings()
            except Exception:  # keep refreshing after a bug; the next cycle retries anyway
                log.exception("settings refresh failed")

    # --- handlers (libiec61850 threads) -----------------------------------------------------
    def _setting_writer(self, setting: Setting) -> Callable[[Any, str, str], bool]:
        def write(value: Any, _path: str, peer: str) -> bool:
            return self._write({setting.path: lambda: setting.to_setting(
                value, self.service.persisted_dict())}, peer)
        return write

    def _curve_writer(self, curve: Curve) -> Callable[[Any, str, str], bool]:
        def write(value: Any, path: str, peer: str) -> bool:
            persisted = self.service.persisted_dict()
            return self._write({curve.path: lambda: curve.apply_write(value, path, persisted)},
                               peer)
        return write

    def _write(self, build: Mapping[str, Callable[[], Any]], peer: str) -> bool:
        return self._submit(build, peer) is None

    def _submit(self, build: Mapping[str, Callable[[], Any]], peer: str
                ) -> RefusalCause | None:
        """Convert and hand the changes to the core, which validates, persists and
        audits them (accepted or refused); a value that does not convert, or a storage
        command with no battery the core commands, is refused here and audited through
        the core too. None: accepted; else why refused."""
        self._last_heard = time.monotonic()
        self.service.heard_from_client()
        who = f"mms {peer}"
        try:
            changes = {path: make() for path, make in build.items()}
        except BAD_VALUE as exc:
            self._log_refusal(",".join(build), f"MMS write from {peer} refused: {exc}")
            self.service.refused("setting.write", who, ",".join(build), None, str(exc))
            return RefusalCause.INVALID_VALUE
        why = self._storage_refusal(changes)
        if why is not None:
            cause = RefusalCause.NOT_SUPPORTED
            self._log_refusal(",".join(build), f"MMS write from {peer} refused: {why}")
            self.service.refused("setting.write", who, ",".join(build), dict(changes),
                                 f"{why} ({cause})")
            return cause
        try:
            self.service.write(changes, who=who)
        except CommandRefused as exc:
            self._log_refusal(",".join(build), f"MMS write from {peer} refused: {exc}")
            return exc.cause
        self._changed()
        return None

    def _storage_refusal(self, changes: Mapping[str, Any]) -> str | None:
        """Why these changes are refused as a storage command (no battery the core
        commands), or None; switching the mode off is always taken."""
        if self.storage is None or not any(is_command(p, v) for p, v in changes.items()):
            return None
        sto = self.storage()
        return commanded([sto] if sto is not None else [])[1]

    def _control_check(self, control: Control) -> Callable[[Any, str], int | None]:
        def check(value: Any, peer: str) -> int | None:
            self._last_heard = time.monotonic()
            self.service.heard_from_client()
            if value is None:
                return None  # select (SBO read): nothing to validate yet
            who = f"mms {peer}"
            try:
                self._operate(control, value, who)
            except CommandRefused as exc:
                self._log_refusal(control.target, f"MMS control {control.target} = {value!r} "
                                  f"from {peer} refused: {exc} ({exc.cause})")
                if not getattr(exc, "audited", False):
                    self.service.refused("control.operate", who, control.target, value,
                                         f"{exc} ({exc.cause})")
                return ADD_CAUSE[exc.cause]
            self._changed()
            return None
        return check

    def _setting_control_check(self, control: SettingControl
                               ) -> Callable[[Any, str], int | None]:
        """A controllable setting: validated and persisted before the positive response."""
        def check(value: Any, peer: str) -> int | None:
            if value is None:
                self._last_heard = time.monotonic()
                return None  # select: nothing to validate yet
            build = {control.path: lambda: control.to_setting(value)}
            if control.clears:  # the same setpoint's other form gives way
                build[control.clears] = lambda: None
            cause = self._submit(build, peer)
            if cause is None:
                return None
            # no battery to command: not-supported; any other refusal, as before
            return ADD_CAUSE[cause] if cause is RefusalCause.NOT_SUPPORTED else _INCONSISTENT
        return check

    def _operate(self, control: Control, value: Any, who: str) -> None:
        if control.control == "p_limit_pct":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ControlRefused(RefusalCause.INVALID_VALUE,
                                     f"ctlVal {value!r} is not a number")
            previous = self.service.temporary().get(SERVICE_CONTROLS["p_limit_pct"])
            self.service.operate("p_limit_pct", float(value), who)
            try:
                self.service.operate("p_limit_enabled", True, who)
            except ControlRefused:
                self.service.operate("p_limit_pct", previous, who)  # all or nothing
                raise
            return
        if control.values:
            mapped = dict(control.values)
            if isinstance(value, bool) or value not in mapped:
                raise ControlRefused(RefusalCause.INVALID_VALUE, f"ctlVal {value!r}: one of "
                                     f"{', '.join(str(c) for c in mapped)}")
            value = mapped[value]
        if not isinstance(value, bool):
            raise ControlRefused(RefusalCause.INVALID_VALUE, f"ctlVal {value!r} is not a boolean")
        if control.control == "release":
            if value:
                self.service.release(who)
            return
        self.service.operate(control.control, value, who)

    def _log_refusal(self, key: str, message: str) -> None:
        """Warn at most once a second per setting (a client retrying must not flood the log)."""
        now = time.monotonic()
        last, suppressed = self._refusals.get(key, (-1e9, 0))
        if now - last < 1.0:
            self._refusals[key] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more refused in the last second)" if suppressed else ""
        log.warning("%s%s", message, more)
        self._refusals[key] = (now, 0)

    def _key(self, target: str) -> str:
        return f"{self.ld}/{target}"


def attach_functions(server: MmsServer, service: Commands,
                     status_source: StatusSource | None = None,
                     ld_inst: str = DEFAULT_LD_INST,
                     storage: StorageSource | None = None) -> FunctionBinding:
    """Install settings writes, controls and status on ``server`` (before ``start()``).

    ``server`` must serve :func:`~inverter_agent.adapters.mms.functions_model.functions_model_spec`
    for ``ld_inst``. ``status_source`` (e.g. ``controller.status_view``) is called
    by :meth:`FunctionBinding.publish`, from the caller's thread. ``storage`` gives
    the inverter's battery as the core sees it: a storage command (DWGC1) is refused
    while the core commands no battery.
    """
    binding = FunctionBinding(server, service, status_source, ld_inst, storage=storage)
    binding.install()
    return binding
