"""MMS server: serves a :class:`~inverter_agent.adapters.mms.model.ModelSpec` with libiec61850.

libiec61850 runs its own threads (listener and one per connection); the agent
calls :meth:`MmsServer.publish` from its Python thread once per cycle. All
calls into the library go through ctypes (``_native``) so that the GIL is
released while we wait for the data model lock (LIBIEC61850.md: a SWIG
``lockDataModel`` deadlocks against a Python callback).

Clients must live in another process than the server: an in-process SWIG
client holds the GIL for the whole request and stalls the server's Python
callbacks (pure-Python clients such as open61850 are fine in-process).

Security (``security.py`` has the settings and the rules)::

    check_bind(host, tls is not None, allow_insecure)       # before anything listens
    server = MmsServer(spec, host, None, ied_name, max_connections,
                       tls=TlsSettings(cert, key, ca, crl, allow),   # None: plain MMS
                       access=AccessPolicy.from_config(cfg_section),  # None: see below
                       audit=AuditLog(folder), idle_timeout_s=300)
    server.cert_status / server.security_status()           # for the status view

* ``port=None`` is 3782 with TLS, 10102 without.
* ``access=None`` with TLS means roles from the certificate OU; without TLS and
  without a policy every client has full rights (the old behaviour), which
  :func:`~inverter_agent.adapters.mms.security.check_bind` allows on loopback only
  unless the operator opts in.
* With a policy, the authenticator (ACSE; called after the TLS handshake with
  the client certificate, or with the ACSE password) gives each association
  an identity and role; reads (and directory browsing), setting writes and
  controls are checked against the role in every callback, before any
  validation. Refusals answer object-access-denied (controls: AddCause 20,
  no-access-authority) and are logged and audited (at most once a second per
  client, right and object, with a count of the suppressed ones).
* Audit entries: ``mms.associate`` ok (identity, role) and ``mms.disconnect``
  of associated clients, ``mms.read`` / ``mms.write`` / ``mms.control``
  refusals of authenticated clients, ``mms.idle_close``; the binding adds
  ``setting.write`` (who, old, new) and ``control.operate``. Refusals of
  unauthenticated peers (``mms.tls``: other CA, revoked, expired, unlisted,
  plain client, old protocol, no common suite; ``mms.associate`` refused;
  ``mms.connect``: no association in time, closed before associating,
  connecting too fast; ``mms.penalty``) are aggregated per address and
  minute (``audit.RefusalAggregator``) into the audit log's second chain.
* ``idle_timeout_s``: an association with no request for that long is
  aborted, unless it has a report control block enabled (it is waiting for
  reports). ``max_connections`` bounds the number of associations;
  ``admission`` (``security.AdmissionLimits``) keeps the cap from locking
  everyone out (see :class:`_ConnectionGuard`).
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hal.reading import Quality, Reading, Validity
from inverter_agent.adapters._shared.wirestats import (
    TcpCounters,
    WireLedger,
    parse_peer,
    sample_tcp,
)
from inverter_agent.security.audit import AuditLog, RefusalAggregator, peer_host

from . import _native as nat
from . import hardening
from .hardening import refuse_client_renegotiation, server_sockets
from .model import BuiltModel, ModelSpec, PointHandles, build_model, ex_values
from .security import (
    PLAIN_PORT,
    PRIVILEGED_ROLES,
    RIGHT_CONTROL,
    RIGHT_READ,
    RIGHT_WRITE,
    ROLE_RIGHTS,
    TLS_PORT,
    AccessPolicy,
    Admission,
    AdmissionLimits,
    CertStatus,
    Identity,
    TlsSettings,
    log_cert_status,
)

log = logging.getLogger(__name__)

LEVEL_SETTINGS, LEVEL_REPORTS = "settings", "reports"
#: libiec61850's compile-time CONFIG_MAXIMUM_TCP_CLIENT_CONNECTIONS in the
#: pyiec61850-ng wheel: a 6th association is rejected whatever the server asks.
LIBRARY_MAX_CONNECTIONS = 5
#: How often the connection watcher looks at the server's sockets while any connection
#: is unassociated or new ones keep coming, and when all is quiet.
WATCH_PERIOD_S = 0.05
WATCH_IDLE_PERIOD_S = 0.25

#: FCs libiec61850 lets any client write by default; all denied, and a write
#: handler installed per attribute re-opens exactly what is validated.
_DENIED_FCS = (nat.FC_SP, nat.FC_DC, nat.FC_CF, nat.FC_SV, nat.FC_SE)

_INVALID_NO_DATA = Quality(Validity.INVALID)

_FLOAT_TYPES = (nat.DA_FLOAT32, nat.DA_FLOAT64)
_INT_TYPES = (nat.DA_INT8, nat.DA_INT16, nat.DA_INT32, nat.DA_ENUMERATED)
_UNSIGNED_TYPES = (nat.DA_INT8U, nat.DA_INT16U, nat.DA_INT24U, nat.DA_INT32U)
_STRING_TYPES = (nat.DA_VISIBLE_STRING_32, nat.DA_VISIBLE_STRING_64, nat.DA_VISIBLE_STRING_65,
                 nat.DA_VISIBLE_STRING_129, nat.DA_VISIBLE_STRING_255)

#: A validator gets the written value (float/int/bool) and returns True to accept it.
WriteValidator = Callable[[Any], bool]
#: A complex-attribute validator gets the value, the path of the written node
#: relative to the attribute ("" for the whole attribute, "2" for array element 2,
#: "2.xVal" for one field of it) and the client's address; True accepts.
ComplexValidator = Callable[[Any, str, str], bool]
#: A control check gets ctlVal (None for a select) and the client's address and
#: returns None to accept or an IEC 61850-7-2 AddCause code to refuse.
ControlCheck = Callable[[Any, str], int | None]


def mms_quality(quality: Quality) -> int:
    """libiec61850 ``Quality`` word for a HAL quality.

    The HAL numbers validity as the 7-3 enumeration (invalid = 1); libiec61850
    numbers the two validity bits in bit-string order, so invalid is 2 and
    reserved is 1 (QUALITY_VALIDITY_INVALID = 2). Copying as_bits() verbatim
    would put "reserved" on the wire: swap the two validity bits. Detail bits
    share positions.
    """
    bits = quality.as_bits()
    validity = bits & 0b11
    return (bits & ~0b11) | ((validity & 1) << 1) | (validity >> 1)


def _setter(handles: PointHandles) -> Callable[[int, int, Any], None] | None:
    lib = nat.lib()
    kind = handles.value_type
    if kind in _FLOAT_TYPES:
        return lambda srv, da, v: lib.IedServer_updateFloatAttributeValue(srv, da, float(v))
    if kind in _INT_TYPES:
        return lambda srv, da, v: lib.IedServer_updateInt32AttributeValue(srv, da, int(v))
    if kind == nat.DA_INT64:
        return lambda srv, da, v: lib.IedServer_updateInt64AttributeValue(srv, da, int(v))
    if kind in _UNSIGNED_TYPES:  # INT16U must go through the unsigned setter (LIBIEC61850.md)
        return lambda srv, da, v: lib.IedServer_updateUnsignedAttributeValue(srv, da, int(v))
    if kind == nat.DA_BOOLEAN:
        return lambda srv, da, v: lib.IedServer_updateBooleanAttributeValue(srv, da, bool(v))
    if kind == nat.DA_CODEDENUM:  # DPC stVal (Dbpos): 1 off, 2 on
        return lambda srv, da, v: lib.IedServer_updateDbposValue(srv, da, int(v))
    if kind in _STRING_TYPES:
        return lambda srv, da, v: lib.IedServer_updateVisibleStringAttributeValue(
            srv, da, str(v).encode("ascii", "replace")[:255])
    return None


def _coerce(handles: PointHandles, value: Any) -> Any:
    """Python value that the setter will accept; raises ValueError/TypeError if none."""
    kind = handles.value_type
    if kind in _FLOAT_TYPES:
        return float(value)
    if kind in _INT_TYPES or kind in _UNSIGNED_TYPES or kind in (nat.DA_INT64, nat.DA_CODEDENUM):
        return int(value)
    if kind == nat.DA_BOOLEAN:
        return bool(value)
    return str(value)


class MmsServer:
    """An IEC 61850 MMS server for one model.

    ``start()`` builds the model and listens on ``host:port``; ``stop()``
    closes every connection, releases the port and frees the model (safe to
    call twice; ``start()`` again works). ``publish()`` copies a snapshot of
    readings into the model in one locked section.
    """

    def __init__(self, model_spec: ModelSpec, host: str = "127.0.0.1", port: int | None = None,
                 ied_name: str = "GW", max_connections: int = 5, *,
                 tls: TlsSettings | None = None, access: AccessPolicy | None = None,
                 audit: AuditLog | None = None, idle_timeout_s: float | None = None,
                 admission: AdmissionLimits | None = None) -> None:
        if port is None:
            port = TLS_PORT if tls is not None else PLAIN_PORT
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range 1..65535")
        if not 1 <= max_connections <= LIBRARY_MAX_CONNECTIONS:
            raise ValueError(f"max_connections {max_connections}: 1..{LIBRARY_MAX_CONNECTIONS} "
                             "(the bundled libiec61850 accepts no more associations)")
        self.spec = model_spec
        self.host = host
        self.port = port
        self.ied_name = ied_name
        self.max_connections = max_connections
        self._lock = threading.Lock()  # start/stop/publish from Python threads
        self._server = 0
        self._model: BuiltModel | None = None
        self._clients = 0
        self._callbacks: list[Any] = []  # CFUNCTYPE objects must outlive the server
        self._validators: dict[str, WriteValidator] = {}
        self._complex: dict[str, ComplexValidator] = {}
        self._controls: dict[str, tuple[ControlCheck, int, str]] = {}
        #: Client presence without a callback per read: associations and the kernel's
        #: per-connection byte counters (see :meth:`clients_heard`).
        self._activity = _Activity(self)
        #: Bytes on the wire per client and level of service (kernel counters).
        self.wire = WireLedger()
        self._bindings_by_ld: dict[str | None, tuple[Any, ...]] = {}
        self._start_hooks: list[Callable[[], None]] = []
        self._resolved: dict[str, tuple[Callable[..., None] | None, PointHandles]] = {}
        self._warned: set[str] = set()
        if idle_timeout_s is not None and idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s {idle_timeout_s} must be > 0 (or None)")
        self.tls = tls
        # TLS without an explicit policy still enforces roles (from the certificate OU).
        self.access = access if access is not None or tls is None else AccessPolicy()
        self.audit = audit
        self.idle_timeout_s = idle_timeout_s
        self.cert_status: CertStatus | None = None
        self._tls_config = 0
        #: TLS renegotiation by clients: "refused" once the TLS configuration is built.
        self.renegotiation: str | None = None
        self._guard = _ConnectionGuard(self, admission)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self._server)

    def start(self) -> None:
        """Build the model and listen. Raises OSError if the port cannot be bound."""
        with self._lock:
            if self._server:
                return
            lib = nat.lib()
            if self.tls is not None:
                nat.require_tls()
            model = build_model(self.spec, self.ied_name)
            try:
                writable = {target: model.attribute(target)
                            for target in (*self._validators, *self._complex)}
                controls = {target: model.objects[target] for target in self._controls}
                paths = {target: _subtree_paths(writable[target]) for target in self._complex}
            except KeyError as exc:
                model.destroy()
                raise KeyError(f"unknown write or control target {exc}") from None
            callbacks: list[Any] = []
            tls_config = 0
            if self.tls is not None:
                try:
                    tls_config = self._tls_configuration(callbacks)
                except Exception:
                    model.destroy()
                    raise
            config = lib.IedServerConfig_create()
            lib.IedServerConfig_setMaxMmsConnections(config, self.max_connections)
            server = lib.IedServer_createWithConfig(model.ptr, tls_config or None, config)
            lib.IedServerConfig_destroy(config)
            if not server:
                model.destroy()
                if tls_config:
                    lib.TLSConfiguration_destroy(tls_config)
                raise MemoryError("IedServer_createWithConfig failed")
            for fc in _DENIED_FCS:
                lib.IedServer_setWriteAccessPolicy(server, fc, nat.ACCESS_POLICY_DENY)
            callbacks.append(nat.CONNECTION_INDICATION(self._on_connection))
            lib.IedServer_setConnectionIndicationHandler(server, callbacks[-1], None)
            callbacks += self._guard.install(server)
            for target, validator in self._validators.items():
                handler = nat.WRITE_ACCESS_HANDLER(self._write_handler(target, validator))
                callbacks.append(handler)
                lib.IedServer_handleWriteAccess(server, writable[target], handler, None)
            for target, complex_validator in self._complex.items():
                handler = nat.WRITE_ACCESS_HANDLER(
                    self._complex_handler(target, complex_validator, paths[target]))
                callbacks.append(handler)
                lib.IedServer_handleWriteAccessForComplexAttribute(server, writable[target],
                                                                   handler, None)
            for target, (check, ctl_model, right) in self._controls.items():
                check_cb = nat.PERFORM_CHECK_HANDLER(self._check_handler(target, check, right))
                control_cb = nat.CONTROL_HANDLER(_control_done)
                callbacks += [check_cb, control_cb]
                lib.IedServer_setPerformCheckHandler(server, controls[target], check_cb, None)
                lib.IedServer_setControlHandler(server, controls[target], control_cb, None)
                # Through the server so that its control object and ctlModel agree.
                lib.IedServer_updateCtlModel(server, controls[target], ctl_model)
            # No Python on the read path: a callback per read takes the GIL and cost a
            # quarter of the library's read rate. A read check is installed only if some
            # role may not read (every associated client has a role, from the
            # authenticator, and today every role may read).
            if self._read_check_needed():
                read_cb = nat.READ_ACCESS_HANDLER(self._read_handler())
                callbacks.append(read_cb)
                lib.IedServer_setReadAccessHandler(server, read_cb, None)
            self._initialise(server, model)
            lib.IedServer_setLocalIpAddress(server, self.host.encode())
            lib.IedServer_start(server, self.port)
            if not lib.IedServer_isRunning(server):
                lib.IedServer_destroy(server)
                model.destroy()
                if tls_config:
                    lib.TLSConfiguration_destroy(tls_config)
                raise OSError(f"MMS server could not listen on {self.host}:{self.port}")
            self._server, self._model, self._callbacks = server, model, callbacks
            self._tls_config = tls_config
            self._clients = 0
            self._resolved = {}
            self._bindings_by_ld = {}
            self._activity.reset()
            self._guard.start()
            # A server left running at interpreter exit would call ctypes callbacks
            # into a finalising interpreter: stop it first.
            atexit.register(self.stop)
            log.info("MMS server %s listening on %s:%d (%d data points, %s, roles %s, "
                     "idle timeout %s)", self.ied_name, self.host, self.port,
                     len(model.points), "TLS" if tls_config else "plain",
                     "enforced" if self.access is not None else "off (full rights)",
                     f"{self.idle_timeout_s:g} s" if self.idle_timeout_s else "off")
            hooks = list(self._start_hooks)
        for hook in hooks:  # outside self._lock: hooks call update()
            try:
                hook()
            except Exception:
                log.exception("MMS start hook %r failed", hook)

    def stop(self) -> None:
        """Stop serving and free the model; idempotent."""
        with self._lock:
            if not self._server:
                return
            atexit.unregister(self.stop)
            lib = nat.lib()
            server, self._server = self._server, 0
            self._guard.stop()  # the idle reaper must not abort connections of a dying server
            lib.IedServer_stop(server)  # joins libiec61850's threads: no callback runs after
            lib.IedServer_destroy(server)
            if self._tls_config:
                lib.TLSConfiguration_destroy(self._tls_config)
                self._tls_config = 0
            if self._model is not None:
                self._model.destroy()
                self._model = None
            self._callbacks = []
            self._resolved = {}
            self._clients = 0
            log.info("MMS server %s on %s:%d stopped", self.ied_name, self.host, self.port)

    def __enter__(self) -> MmsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- data ------------------------------------------------------------------------------
    def publish(self, snapshot: Mapping[str, Reading], ld: str | None = None) -> bool:
        """Copy value, q and t of every bound point present in ``snapshot``.

        With ``ld``, only the bindings into that logical device (one inverter of
        several). A reading whose value is None keeps the last value but takes
        the given quality and time. Conversion happens before the data model
        lock so the locked section is only the C updates. Returns False if not
        running.
        """
        with self._lock:
            if not self._server or self._model is None:
                return False
            ops = self._plan(snapshot, self._model, ld)
            lib, server = nat.lib(), self._server
            lib.IedServer_lockDataModel(server)
            try:
                for setter, handle, value in ops:
                    setter(server, handle, value)
            finally:
                lib.IedServer_unlockDataModel(server)
            return True

    def update(self, values: Mapping[str, Any], t: float | None = None,
               guard: Callable[[], bool] | None = None) -> bool:
        """Set attributes or data points by stable key, in one locked section.

        A key naming a data point (``"INV1/DGEN1.Trip"``) sets its value and,
        where the CDC has them, q and t: a :class:`Reading` gives all three, a
        plain value is good at ``t`` (default now), and None marks the point
        invalid keeping its value. Any other key is an attribute path
        (``"INV1/DVVR1.VVArCrv.crvPts.0.xVal"``, ``"INV1/DWMX1.RpuMax.setMag.f"``)
        and takes the value only. Unknown keys and unconvertible values are
        logged once and skipped. Returns False if not running.

        ``guard``, if given, is asked inside the locked section; when it says
        False nothing is written and False is returned (a caller whose values
        went stale while it waited for the lock tries again).
        """
        stamp = time.time() if t is None else t
        with self._lock:
            if not self._server or self._model is None:
                return False
            lib = nat.lib()
            ops: list[tuple[Callable[..., None], int, Any]] = []
            for key, value in values.items():
                resolved = self._resolve(key, self._model)
                if resolved is None:
                    continue
                setter, handles = resolved
                reading = value if isinstance(value, Reading) else (
                    Reading(None, _INVALID_NO_DATA, stamp) if value is None
                    else Reading.good(value, stamp))
                quality = reading.quality
                if reading.value is not None and setter is not None:
                    try:
                        ops.append((setter, handles.value, _coerce(handles, reading.value)))
                    except (TypeError, ValueError) as exc:
                        self._warn_once(key, f"{key}={reading.value!r} not convertible: {exc}")
                        quality = Quality(Validity.INVALID, quality.detail)
                if handles.q is not None:
                    ops.append((lib.IedServer_updateQuality, handles.q, mms_quality(quality)))
                if handles.t is not None:
                    ops.append((lib.IedServer_updateUTCTimeAttributeValue, handles.t,
                                int(round(reading.timestamp * 1000))))
            server = self._server
            lib.IedServer_lockDataModel(server)
            try:
                if guard is not None and not guard():
                    return False
                for setter_fn, handle, v in ops:
                    setter_fn(server, handle, v)
            finally:
                lib.IedServer_unlockDataModel(server)
            return True

    def _resolve(self, key: str, model: BuiltModel
                 ) -> tuple[Callable[..., None] | None, PointHandles] | None:
        if key in self._resolved:
            return self._resolved[key]
        handles = model.points.get(key)
        if handles is None:
            try:
                attr = model.attribute(key)
            except KeyError:
                self._warn_once(key, f"no data point or attribute {key}")
                return None
            handles = PointHandles(attr, nat.lib().DataAttribute_getType(attr), None, None)
        setter = _setter(handles)
        if setter is None:
            self._warn_once(key, f"{key}: attribute type {handles.value_type} not supported")
        self._resolved[key] = (setter, handles)
        return self._resolved[key]

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def publisher(self, ld: str) -> Callable[[Mapping[str, Reading]], bool]:
        """An agent publisher for the inverter in logical device ``ld``."""
        def publish(snapshot: Mapping[str, Reading]) -> bool:
            return self.publish(snapshot, ld)
        publish.__qualname__ = f"MmsServer.publish[{ld}]"
        return publish

    def _plan(self, snapshot: Mapping[str, Reading], model: BuiltModel,
              ld: str | None = None) -> list[tuple[Callable[..., None], int, Any]]:
        lib = nat.lib()
        ops: list[tuple[Callable[..., None], int, Any]] = []
        if ld not in self._bindings_by_ld:
            self._bindings_by_ld[ld] = tuple(
                b for b in model.spec.bindings
                if ld is None or b.target.startswith(f"{ld}/"))
        for binding in self._bindings_by_ld[ld]:
            reading = snapshot.get(binding.point)
            if reading is None:
                continue
            handles = model.points[binding.target]
            quality = reading.quality
            if reading.value is not None:
                setter = _setter(handles)
                try:
                    raw = binding.convert(reading.value) if binding.convert else reading.value
                    value = _coerce(handles, raw)
                except (TypeError, ValueError) as exc:
                    if binding.target not in self._warned:
                        self._warned.add(binding.target)
                        log.warning("point %s=%r not convertible for %s: %s", binding.point,
                                    reading.value, binding.target, exc)
                    quality = Quality(Validity.INVALID, quality.detail)
                else:
                    if setter is not None:
                        ops.append((setter, handles.value, value))
            if handles.q is not None:
                ops.append((lib.IedServer_updateQuality, handles.q, mms_quality(quality)))
            if handles.t is not None:
                ops.append((lib.IedServer_updateUTCTimeAttributeValue, handles.t,
                            int(round(reading.timestamp * 1000))))
        return ops

    def _initialise(self, server: int, model: BuiltModel) -> None:
        """Every point invalid until published; fixed values (``init``) good, t = now."""
        lib = nat.lib()
        now_ms = int(time.time() * 1000)
        lib.IedServer_lockDataModel(server)
        try:
            for handles in model.points.values():
                # t is the time q became invalid, not 1970 (nothing sets t for us).
                if handles.q is not None:
                    lib.IedServer_updateQuality(server, handles.q, mms_quality(_INVALID_NO_DATA))
                if handles.t is not None:
                    lib.IedServer_updateUTCTimeAttributeValue(server, handles.t, now_ms)
            for ld in model.spec.logical_devices:
                for ln in ld.logical_nodes:
                    for do in ln.data_objects:
                        fixed = {**ex_values(do), **do.init}  # dataNs of private objects too
                        if not fixed:
                            continue
                        key = f"{ld.inst}/{ln.name}.{do.name}"
                        for path, value in fixed.items():
                            if isinstance(value, str):  # ORG references name the LD
                                value = value.replace("{ld}", f"{model.ied_name}{ld.inst}")
                            attr = model.attribute(f"{key}.{path}")
                            handles = PointHandles(attr, lib.DataAttribute_getType(attr),
                                                   None, None)
                            setter = _setter(handles)
                            if setter is None:
                                raise ValueError(f"cannot initialise {key}.{path}")
                            setter(server, attr, _coerce(handles, value))
                        point = model.points.get(key)
                        if point is not None and point.q is not None:
                            lib.IedServer_updateQuality(server, point.q, 0)
                        if point is not None and point.t is not None:
                            lib.IedServer_updateUTCTimeAttributeValue(server, point.t, now_ms)
        finally:
            lib.IedServer_unlockDataModel(server)

    # --- clients ---------------------------------------------------------------------------
    def connected_clients(self) -> int:
        """Number of associated MMS clients (kept by the connection indication handler)."""
        return self._clients

    def _on_connection(self, _server: int, connection: int, connected: bool,
                       _param: int) -> None:
        # Runs in a libiec61850 thread; ctypes takes the GIL for us. Never
        # raise out of a callback, and never call publish() from here.
        try:
            self._clients += 1 if connected else -1
            if connected:
                self._activity.associated()
            peer = _peer(connection)
            if connected:
                self.wire.opened(peer, time.time())
            else:  # still in CLOSE_WAIT after a client's close: its final counts
                self.wire.closed(peer, time.time(), self.wire_final(peer))
            log.info("MMS client %s %s (%d connected)", _peer(connection),
                     "connected" if connected else "disconnected", self._clients)
            self._guard.connection(connection, connected)
        except Exception:  # pragma: no cover - a raise here would only print and be lost
            log.exception("connection indication handler failed")

    # --- bytes on the wire -------------------------------------------------------------------
    def wire_final(self, peer: str) -> TcpCounters | None:
        """The kernel's counters of one client's connection now (None if gone or unreadable)."""
        key = parse_peer(peer)
        if key is None:
            return None
        try:
            return sample_tcp(self.port).get(key)
        except OSError as exc:
            self._warn_once("wire", f"cannot read TCP counters (sock_diag): {exc}")
            return None

    def wire_status(self) -> dict[str, Any]:
        """Bytes on the wire per client and per level of service (monitoring, settings,
        reports), from a fresh sample of the kernel's counters; for the status file."""
        now = time.time()
        try:
            counters = sample_tcp(self.port)
        except OSError as exc:
            return {"error": f"cannot read TCP counters (sock_diag): {exc}"}
        self.wire.update(counters, now, close_missing=True)
        return self.wire.snapshot(now)

    # --- validated writes (settings, FC SP) --------------------------------------------------
    def set_write_validator(self, target: str, validator: WriteValidator) -> None:
        """Let clients write attribute ``target`` (stable key + path, e.g.
        ``"INV1/DGEN1.WMax.setMag.f"``) when ``validator(value)`` returns True.

        Its FC stays denied for every other attribute. Takes effect at the next
        start(). The validator runs in a libiec61850 thread with the data model
        locked: keep it short and do not call publish() from it.
        """
        with self._lock:
            if self._server:
                raise RuntimeError("set_write_validator() must be called before start()")
            self._validators[target] = validator

    def _write_handler(self, target: str, validator: WriteValidator) -> Callable[..., int]:
        def handler(_attr: int, value: int, connection: int, _param: int) -> int:
            # The role is checked before the value is even looked at.
            if not self._guard.allowed(connection, RIGHT_WRITE, target):
                return nat.DATA_ACCESS_ERROR_OBJECT_ACCESS_DENIED
            python_value = None
            try:
                python_value = nat.mms_value_to_python(value)
                accepted = python_value is not None and bool(validator(python_value))
            except Exception:
                log.exception("write validator for %s failed", target)
                accepted = False
            log.info("write %s = %r %s", target, python_value,
                     "accepted" if accepted else "refused")
            return (nat.DATA_ACCESS_ERROR_SUCCESS if accepted
                    else nat.DATA_ACCESS_ERROR_OBJECT_VALUE_INVALID)
        return handler

    def set_complex_write_validator(self, target: str, validator: ComplexValidator) -> None:
        """Let clients write the complex attribute ``target`` (e.g. a curve's
        ``"INV1/DVVR1.VVArCrv.crvPts"``) and any part of it, when ``validator(value,
        path)`` returns True (see :data:`ComplexValidator`). Same rules as
        :meth:`set_write_validator`.
        """
        with self._lock:
            if self._server:
                raise RuntimeError("set_complex_write_validator() must be called before start()")
            self._complex[target] = validator

    def set_control(self, target: str, check: ControlCheck, ctl_model: int,
                    right: str = RIGHT_CONTROL) -> None:
        """Make the controllable data object ``target`` (``"INV1/DCTE1.CeaEgzReqCtl"``) operable.

        ``check(ctlVal)`` runs in the perform-check handler, i.e. before the
        positive response (with direct-with-normal-security libiec61850 answers
        before the control handler runs, LIBIEC61850.md): it must validate and
        apply the command there, and return None, or an AddCause code to refuse
        (the client sees object-value-invalid plus LastApplError). For a select
        (sbo-with-normal-security reads SBO) it gets None. ``right`` is the role right
        the client needs: RIGHT_WRITE for a setting the standard makes controllable
        (an APC set point, an LN's Mod), so that operating it asks what writing does.
        """
        with self._lock:
            if self._server:
                raise RuntimeError("set_control() must be called before start()")
            self._controls[target] = (check, ctl_model, right)

    def clients_heard(self) -> bool:
        """Whether any client associated or sent anything since the last call.

        For the communication-loss revert. Nothing runs per request: this reads
        the kernel's byte counters of the server's connections (sock_diag, as
        :mod:`~inverter_agent.adapters._shared.wirestats` does; ~0.5 ms) and compares them with the
        previous call's; an association seen by the connection indication counts
        too. If the counters cannot be read, any associated client counts as heard
        (a revert must not fire on our own blindness).
        """
        return self._activity.heard_since_last_call()

    def add_start_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` after every start(), once the server listens (e.g. to set values)."""
        with self._lock:
            self._start_hooks.append(hook)

    def _complex_handler(self, target: str, validator: ComplexValidator,
                         paths: dict[int, str]) -> Callable[..., int]:
        def handler(attr: int, value: int, connection: int, _param: int) -> int:
            path = paths.get(attr or 0, "?")
            obj = f"{target}.{path}" if path else target
            if not self._guard.allowed(connection, RIGHT_WRITE, obj):
                return nat.DATA_ACCESS_ERROR_OBJECT_ACCESS_DENIED
            python_value = None
            try:
                python_value = nat.mms_value_to_python(value)
                accepted = python_value is not None and bool(
                    validator(python_value, path, self._guard.who(connection)))
            except Exception:
                log.exception("write validator for %s failed", target)
                accepted = False
            log.info("write %s%s = %r %s", target, f" [{path}]" if path else "", python_value,
                     "accepted" if accepted else "refused")
            return (nat.DATA_ACCESS_ERROR_SUCCESS if accepted
                    else nat.DATA_ACCESS_ERROR_OBJECT_VALUE_INVALID)
        return handler

    def _check_handler(self, target: str, check: ControlCheck,
                       right: str = RIGHT_CONTROL) -> Callable[..., int]:
        def handler(action: int, _param: int, ctl_val: int, _test: bool,
                    _interlock: bool) -> int:
            lib = nat.lib()
            connection = lib.ControlAction_getClientConnection(action)
            if not self._guard.allowed(connection, right, target):
                lib.ControlAction_setAddCause(action, ADD_CAUSE_NO_ACCESS_AUTHORITY)
                return nat.CONTROL_OBJECT_ACCESS_DENIED
            value = None
            try:
                value = nat.mms_value_to_python(ctl_val) if ctl_val else None
                if isinstance(value, list) and len(value) == 1:  # APC ctlVal is {f}
                    value = value[0]
                peer = self._guard.who(connection)
                if ctl_val is None or lib.ControlAction_isSelect(action):
                    cause = check(None, peer)
                else:
                    cause = check(value, peer)
            except Exception:
                log.exception("control check for %s failed", target)
                cause = 0  # unknown
            if cause is None:
                log.info("control %s = %r accepted", target, value)
                return nat.CONTROL_ACCEPTED
            log.info("control %s = %r refused (AddCause %d)", target, value, cause)
            lib.ControlAction_setAddCause(action, int(cause))
            return nat.CONTROL_VALUE_INVALID
        return handler

    def _read_check_needed(self) -> bool:
        return self.access is not None and not all(RIGHT_READ in rights
                                                   for rights in ROLE_RIGHTS.values())

    def _read_handler(self) -> Callable[..., int]:
        def handler(_ld: int, _ln: int, _do: int, _fc: int, connection: int,
                    _param: int) -> int:
            if not self._guard.allowed(connection, RIGHT_READ, "read"):
                return nat.DATA_ACCESS_ERROR_OBJECT_ACCESS_DENIED
            return nat.DATA_ACCESS_ERROR_SUCCESS
        return handler

    # --- security ------------------------------------------------------------------------------
    def identity(self, connection: int) -> Identity | None:
        """The authenticated identity of a libiec61850 ClientConnection (None if none)."""
        return self._guard.identity(connection)

    def security_status(self) -> dict[str, Any]:
        """For the status view: TLS on/off, server certificate expiry, roles, connections."""
        return {
            "tls": self.tls is not None,
            "tls_renegotiation": self.renegotiation,
            "port": self.port,
            "roles_enforced": self.access is not None,
            "certificate": self.cert_status.as_dict() if self.cert_status else None,
            "idle_timeout_s": self.idle_timeout_s,
            "max_connections": self.max_connections,
            "connected": self._clients,
            "admission": self._guard.limits.describe(),
            "closed_by_admission": self._guard.cuts,
            "penalised": self._guard.admission.penalised(time.monotonic()),
        }

    def _tls_configuration(self, callbacks: list[Any]) -> int:
        """A libiec61850 TLSConfiguration from :attr:`tls`; raises SecurityConfigError-style
        ValueError naming the file that did not load. Never logs key material."""
        tls = self.tls
        assert tls is not None
        lib = nat.lib()
        config = lib.TLSConfiguration_create()
        if not config:
            raise MemoryError("TLSConfiguration_create failed")
        try:
            if not lib.TLSConfiguration_setOwnCertificateFromFile(config, tls.cert.encode()):
                raise ValueError(f"TLS certificate {tls.cert} could not be loaded")
            if not lib.TLSConfiguration_setOwnKeyFromFile(config, tls.key.encode(), None):
                raise ValueError(f"TLS key {tls.key} could not be loaded")
            for ca in tls.ca:
                if not lib.TLSConfiguration_addCACertificateFromFile(config, ca.encode()):
                    raise ValueError(f"TLS CA bundle {ca} could not be loaded")
            for crl in tls.crl:
                if not lib.TLSConfiguration_addCRLFromFile(config, crl.encode()):
                    raise ValueError(f"TLS CRL {crl} could not be loaded")
            lib.TLSConfiguration_setChainValidation(config, True)
            lib.TLSConfiguration_setTimeValidation(config, True)
            if tls.allow is not None:
                lib.TLSConfiguration_setAllowOnlyKnownCertificates(config, True)
                for path in tls.allow:
                    if not lib.TLSConfiguration_addAllowedCertificateFromFile(config,
                                                                              path.encode()):
                        raise ValueError(f"TLS allowed client certificate {path} "
                                         "could not be loaded")
            lib.TLSConfiguration_setMinTlsVersion(
                config, nat.TLS_VERSION_TLS_1_3 if tls.min_version == "1.3"
                else nat.TLS_VERSION_TLS_1_2)
            # libiec61850's default list starts with TLS_RSA_WITH_AES_128_CBC_SHA256
            # (no forward secrecy): replace it with ours.
            lib.TLSConfiguration_clearCipherSuiteList(config)
            for suite in tls.suites:
                lib.TLSConfiguration_addCipherSuite(config, suite)
            # 1.6.1 leaves mbedTLS renegotiation on and has no switch for it: a client
            # could renegotiate without limit (a handshake's CPU each time).
            self.renegotiation = ("refused" if refuse_client_renegotiation(lib, config)
                                  else "allowed (library default)")
            if self.renegotiation != "refused":
                log.error("MMS TLS: could not disable client-initiated renegotiation in "
                          "this libiec61850 build; TLS 1.2 clients can renegotiate (use "
                          "tls_min_version = 1.3 to rule it out)")
            event_cb = nat.TLS_EVENT_HANDLER(self._guard.tls_event)
            callbacks.append(event_cb)
            lib.TLSConfiguration_setEventHandler(config, event_cb, None)
        except Exception:
            lib.TLSConfiguration_destroy(config)
            raise
        self.cert_status = log_cert_status(tls.cert)
        return config


ADD_CAUSE_NO_ACCESS_AUTHORITY = 20  # IEC 61850-7-2 AddCause "No-access-authority"


class _ConnectionGuard:
    """Per-connection identity, access decisions, audit, admission and timeouts of one server.

    libiec61850 1.6.1 offers no per-connection user data besides the ACSE
    security token: the authenticator (called once per association, after the
    TLS handshake, with the client certificate as ACSE_AUTH_TLS or the ACSE
    password) stores a small integer there, and every later callback that has
    a ClientConnection reads it back (ClientConnection_getSecurityToken) and
    looks the :class:`Identity` up here.

    Admission (``security.AdmissionLimits``): the library accepts a connection,
    takes one of its few slots and, over TLS, runs the handshake in its one
    listener thread with no time limit, before any callback is told; a silent
    peer stalls every other client, and connections that never associate hold
    slots until the idle timeout. So a watcher thread looks at the server's
    sockets themselves (``hardening.server_sockets``, every
    :data:`WATCH_PERIOD_S`) and shuts down (``hardening.cut``) any that has
    not associated within ``associate_within_s``, and at once any from a peer
    address that is over its rate of unassociated connections, in penalty,
    or already holding its share of unassociated connections. Refusals of
    unauthenticated peers go to the audit log aggregated
    (``audit.RefusalAggregator``), never one entry each.
    """

    def __init__(self, server: MmsServer, limits: AdmissionLimits | None = None) -> None:
        self.server = server
        self.limits = limits or AdmissionLimits()
        self.admission = Admission(self.limits)
        self.refusals = RefusalAggregator(server.audit)
        self._lock = threading.Lock()
        self._identities: dict[int, Identity] = {}
        self._next_token = 1
        self._seen: dict[int, float] = {}         # connection -> last request (monotonic)
        self._subscribed: dict[int, int] = {}     # connection -> enabled report blocks
        self._refusals: dict[tuple[str, str, str], tuple[float, int]] = {}
        # libiec61850 calls the connection indication and then the authenticator
        # in the same thread, but the 1.6.1 wheel serves every connection from one
        # thread: the authenticator (not told the caller) can name its peer only
        # when exactly one connection is waiting to associate ("?" otherwise). The
        # watcher later finds each association by its security token and records
        # it with its true peer.
        self._pending_peer: dict[int, list[str]] = {}
        self._assoc_conns: set[int] = set()  # connections whose association was seen
        # peers (ip, port) that associated -> their role (None without roles)
        self._associated: dict[tuple[str, int], str | None] = {}
        # (fd, inode) -> (peer, first seen) of the server's sockets, and those cut
        self._sockets: dict[tuple[int, int], tuple[tuple[str, int], float]] = {}
        self._cut: set[tuple[int, int]] = set()
        self._ended: set[tuple[str, int]] = set()  # associations that ended
        # endpoints already counted against their address's rate (bounded, oldest out)
        self._counted: dict[tuple[str, int], None] = {}
        self._blocked: list[str] = []  # addresses in the listening socket's SYN filter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Sockets shut down by the watcher (for the status view, tests and the bench).
        self.cuts = 0

    @property
    def active(self) -> bool:
        """Whether reads etc. must be seen (roles enforced or idle timeout on)."""
        return self.server.access is not None or self.server.idle_timeout_s is not None

    # --- installation --------------------------------------------------------------------
    def install(self, server: int) -> list[Any]:
        lib = nat.lib()
        callbacks: list[Any] = []
        with self._lock:
            self._identities.clear()
            self._seen.clear()
            self._subscribed.clear()
            self._associated.clear()
            self._sockets.clear()
            self._cut.clear()
            self._ended.clear()
            self._blocked = []
        # Always: without a policy it only notes that the association happened (the
        # watcher closes connections that never get there).
        auth_cb = nat.AUTHENTICATOR(self._authenticate)
        callbacks.append(auth_cb)
        lib.IedServer_setAuthenticator(server, auth_cb, None)
        # Report subscriptions are always seen: they keep a client from being idle
        # and make its level of service "reports".
        rcb_cb = nat.RCB_EVENT_HANDLER(self._rcb_event)
        callbacks.append(rcb_cb)
        lib.IedServer_setRCBEventHandler(server, rcb_cb, None)
        if self.active:
            dir_cb = nat.DIRECTORY_ACCESS_HANDLER(self._directory)
            callbacks.append(dir_cb)
            lib.IedServer_setDirectoryAccessHandler(server, dir_cb, None)
        return callbacks

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="mms-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.refusals.flush()

    # --- identity ------------------------------------------------------------------------
    def identity(self, connection: int | None) -> Identity | None:
        if not connection:
            return None
        token = nat.lib().ClientConnection_getSecurityToken(connection)
        if not token:
            return None
        with self._lock:
            return self._identities.get(int(token))

    def who(self, connection: int | None) -> str:
        identity = self.identity(connection)
        peer = _peer(connection)
        return f"{identity.who} role={identity.role} from {peer}" if identity else peer

    def _authenticate(self, _param: int, auth: int, token: Any, _app_ref: int) -> bool:
        # libiec61850 thread, during association; never raise out of here.
        policy = self.server.access
        try:
            with self._lock:
                pending = self._pending_peer.get(threading.get_ident(), [])
                peer = pending.pop() if len(pending) == 1 else "?"
                number = self._next_token
                self._next_token += 1
            log.debug("authenticating %s in thread %d", peer, threading.get_ident())
            if policy is None:  # no roles: every association has full rights
                token[0] = number  # (no identity behind it: marks the association)
                return True
            if not auth:
                identity, reason = None, "no authentication parameter"
            else:
                param = nat.AcseAuthParameter.from_address(auth)
                data = ctypes.string_at(param.buf, param.length) if param.buf else b""
                if param.mechanism == nat.ACSE_AUTH_TLS:
                    identity, reason = policy.certificate_identity(data, peer)
                elif param.mechanism == nat.ACSE_AUTH_PASSWORD:
                    identity, reason = policy.password_identity(data, peer)
                else:
                    identity, reason = None, ("no client certificate or password" if
                                              self.server.tls is None
                                              else "no client certificate")
            if identity is not None and not self._slot_for(identity):
                identity, reason = None, (f"role {identity.role}: the last "
                                          f"{self.limits.reserved} connection slot(s) are kept "
                                          f"for {'/'.join(sorted(PRIVILEGED_ROLES))}")
            if identity is None:
                self._failed(peer, "mms.associate", reason)
                return False
            with self._lock:
                self._identities[number] = identity
            token[0] = number  # the watcher logs and audits it, with its true peer
            return True
        except Exception:
            log.exception("MMS authenticator failed")
            return False

    def _slot_for(self, identity: Identity) -> bool:
        """False when this association would take a slot kept for privileged roles."""
        reserved = self.limits.reserved
        if identity.role in PRIVILEGED_ROLES or not reserved:
            return True
        if self.server.max_connections <= reserved:
            return True  # nothing left to share: the reservation would lock viewers out
        with self._lock:  # (not the library's count: its lock may be held right now)
            open_now = len(self._seen)
        return open_now <= self.server.max_connections - reserved

    def _failed(self, peer: str, action: str, reason: str) -> None:
        """An unauthenticated peer was refused: aggregated audit, rate-limited log,
        and a failure towards its penalty."""
        endpoint = parse_peer(peer)
        host = endpoint[0] if endpoint else peer_host(peer)
        first = self.refusals.refused(peer, action, reason)
        (log.warning if first else log.debug)(
            "MMS %s from %s refused: %s%s", action.removeprefix("mms."), peer, reason,
            " (further refusals of this kind from this address are counted, not logged, "
            f"for {self.refusals.window_s:g} s)" if first else "")
        self.admission.failed(host, time.monotonic())  # the watcher logs a new penalty

    # --- decisions -----------------------------------------------------------------------
    def allowed(self, connection: int | None, right: str, obj: str) -> bool:
        """Note the request (idle timer, level of service) and decide; refusals are
        logged and audited."""
        if connection:
            if connection not in self._assoc_conns:  # its first request: audit the association
                self._discover_associations(connection)
            with self._lock:
                if connection in self._seen:
                    self._seen[connection] = time.monotonic()
            if right != RIGHT_READ:
                self.server.wire.used(_peer(connection), LEVEL_SETTINGS)
        if self.server.access is None:
            return True  # no roles configured: every client may do everything
        identity = self.identity(connection)
        if identity is not None and identity.can(right):
            return True
        who = self.who(connection)
        self._refused(who, right, obj)
        return False

    def _refused(self, who: str, right: str, obj: str) -> None:
        """Log and audit a refusal, at most once a second per (who, right, object)."""
        key = (who, right, obj)
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._refusals.get(key, (-1e9, 0))
            if now - last < 1.0:
                self._refusals[key] = (last, suppressed + 1)
                return
            self._refusals[key] = (now, 0)
            if len(self._refusals) > 1000:  # bounded: forget the oldest half
                for old in sorted(self._refusals, key=lambda k: self._refusals[k][0])[:500]:
                    del self._refusals[old]
        log.warning("MMS %s of %s refused for %s (no access authority)%s", right, obj, who,
                    f" ({suppressed} more in the last second)" if suppressed else "")
        self._audit(f"mms.{right}", who, "refused", obj=obj, reason="no access authority",
                    suppressed=suppressed)

    def _audit(self, action: str, who: str, outcome: str = "ok", obj: str | None = None,
               **extra: Any) -> None:
        audit = self.server.audit
        if audit is None:
            return
        try:
            audit.record(action, who, outcome, obj, **extra)
        except Exception:  # auditing must never break the protocol thread
            log.exception("audit record failed")

    # --- connections ---------------------------------------------------------------------------
    def connection(self, connection: int, connected: bool) -> None:
        who = self.who(connection)
        endpoint = parse_peer(_peer(connection))
        with self._lock:
            if connected:
                self._seen[connection] = time.monotonic()
                self._pending_peer.setdefault(threading.get_ident(), []).append(who)
                fresh = endpoint is not None and endpoint not in self._counted
                if fresh:
                    self._counted[endpoint] = None
            else:
                for waiting in self._pending_peer.values():
                    if who in waiting:  # association never came
                        waiting.remove(who)
        if connected and fresh:
            assert endpoint is not None
            # Counted here too: a short connection may come and go between two looks.
            self.admission.opened(endpoint[0], time.monotonic())
        if not connected:
            self._discover_associations(connection)  # one too short for the watcher to see
            with self._lock:
                associated = endpoint is not None and endpoint in self._associated
                if associated:
                    self._ended.add(endpoint)  # type: ignore[arg-type]
            self._forget(connection, nat.lib().ClientConnection_getSecurityToken(connection),
                         count=False)
            if associated:  # unassociated ones were refused (aggregated) or just went
                self._audit("mms.disconnect", who, protect=self.server.access is not None)

    def _forget(self, connection: int, token: int | None, count: bool = True) -> None:
        """Drop what is kept about a connection (and its security token); ``count``:
        also update the server's client count (the indication handler does that itself)."""
        with self._lock:
            known = self._seen.pop(connection, None) is not None
            self._subscribed.pop(connection, None)
            self._assoc_conns.discard(connection)
            if token:
                self._identities.pop(int(token), None)
        if count and known:
            self.server._clients = max(0, self.server._clients - 1)

    def _rcb_event(self, _param: int, _rcb: int, connection: int, event: int,
                   _name: bytes | None, _error: int) -> None:
        if not connection:
            return
        with self._lock:
            if connection not in self._seen:
                return
            self._seen[connection] = time.monotonic()
            if event == nat.RCB_EVENT_ENABLE:
                self._subscribed[connection] = self._subscribed.get(connection, 0) + 1
                self.server.wire.used(_peer(connection), LEVEL_REPORTS)
            elif event == nat.RCB_EVENT_DISABLE and self._subscribed.get(connection):
                self._subscribed[connection] -= 1

    def _directory(self, _param: int, connection: int, _category: int, _ld: int) -> bool:
        return self.allowed(connection, RIGHT_READ, "directory")

    # --- the watcher: admission, association deadline, idle timeout ---------------------------
    def _watch(self) -> None:
        last_idle = last_tick = time.monotonic()
        period = WATCH_PERIOD_S
        while not self._stop.wait(period):
            now = time.monotonic()
            try:
                busy = self._admit(now)
                period = WATCH_PERIOD_S if busy else WATCH_IDLE_PERIOD_S
                if now - last_tick >= 1.0:
                    last_tick = now
                    self.refusals.tick()
                timeout = self.server.idle_timeout_s
                if timeout is not None and now - last_idle >= min(1.0, timeout / 4):
                    last_idle = now
                    self._close_idle(timeout)
            except Exception:  # the watcher must keep watching
                log.exception("MMS connection watcher failed")

    def _discover_associations(self, only: int | None = None) -> None:
        """Connections whose security token is set have associated: note their true
        peer and role, then log and audit the association. ``only``: just that
        connection (from a callback of it: its first request, its disconnection)."""
        lib = nat.lib()
        found: list[tuple[str, Identity | None]] = []
        with self._lock:  # a connection in _seen cannot be freed while we hold it
            candidates = [only] if only is not None and only in self._seen else (
                [] if only is not None else list(self._seen))
            for connection in candidates:
                if connection in self._assoc_conns:
                    continue
                token = lib.ClientConnection_getSecurityToken(connection)
                if not token:
                    continue
                self._assoc_conns.add(connection)
                peer = _peer(connection)
                identity = self._identities.get(int(token))
                if identity is not None:
                    identity = dataclasses.replace(identity, peer=peer)
                    self._identities[int(token)] = identity
                for waiting in self._pending_peer.values():
                    for who in [w for w in waiting if w == peer]:
                        waiting.remove(who)
                endpoint = parse_peer(peer)
                if endpoint is not None:
                    self._associated[endpoint] = identity.role if identity else None
                found.append((peer, identity))
        now = time.monotonic()
        for peer, identity in found:
            endpoint = parse_peer(peer)
            if endpoint is not None:
                self.admission.associated(endpoint[0], now)
            if identity is None:  # no roles configured: full rights, nobody authenticated
                log.debug("MMS association from %s (no roles configured: full rights)", peer)
                # Unprotected: without authentication anyone could make these by the
                # thousand (what they then change is audited, and protected).
                self._audit("mms.associate", peer, "ok", method="none", protect=False)
                continue
            log.info("MMS association: %s", identity.describe())
            self._audit("mms.associate", identity.describe(), "ok", role=identity.role,
                        method=identity.method)

    def _admit(self, now: float) -> bool:
        """One look at the server's sockets: close what may not keep its slot. True
        while there is something to watch closely (new or unassociated connections,
        addresses in penalty)."""
        self._discover_associations()
        port = self.server.port
        penalised = self.admission.penalised(now)
        if penalised != self._blocked:
            for host in sorted(set(penalised) - set(self._blocked)):
                log.warning("MMS: %s in penalty for %g s (more than %d connections at once "
                            "or %g/s, or %d failed ones in %g s): its connection attempts "
                            "are dropped", host, self.limits.penalty_s, self.limits.burst,
                            self.limits.rate, self.limits.failures,
                            self.limits.failure_window_s)
                self.refusals.refused(host, "mms.penalty", "connecting too fast or failing "
                                      "too often", penalty_s=self.limits.penalty_s)
            # Before accept(): a penalised address's SYNs are dropped by the kernel.
            if hardening.set_syn_filter(port, penalised) or not penalised:
                self._blocked = penalised
        blocked = set(penalised)
        # Every connection the kernel holds for the port, accepted or still in the
        # backlog: the library's single thread may be far behind a flood, so the
        # rate is counted here, not from what the library gets round to.
        try:
            kernel = list(sample_tcp(port))
        except OSError:
            kernel = []
        with self._lock:
            fresh = [e for e in kernel if e not in self._counted]
            for endpoint in fresh:
                self._counted[endpoint] = None
        for endpoint in fresh:
            self.admission.opened(endpoint[0], now)
        sockets = server_sockets(port)
        current = {(fd, inode): peer for fd, (inode, peer) in sockets.items()}
        to_cut: list[tuple[int, int, tuple[str, int], str, bool]] = []
        gone: list[tuple[str, int]] = []
        with self._lock:
            for key in [k for k in self._sockets if k not in current]:
                peer, _first = self._sockets.pop(key)
                if key not in self._cut and peer not in self._associated:
                    gone.append(peer)  # closed (by the library or the peer) unassociated
                self._cut.discard(key)
            pending: dict[str, int] = {}
            for key, peer in sorted(current.items(), key=lambda kv: self._sockets.get(
                    kv[0], (None, now))[1]):
                if key in self._cut:
                    continue
                associated = peer in self._associated
                role = self._associated.get(peer)
                known = self._sockets.get(key)
                if known is None or known[0] != peer:
                    self._sockets[key] = (peer, now)
                    reason = None
                    if peer not in self._counted:
                        self._counted[peer] = None
                        reason = self.admission.opened(peer[0], now)
                    if reason is not None and role not in PRIVILEGED_ROLES:
                        to_cut.append((*key, peer, reason, False))
                        continue
                    if not associated:
                        if reason is None and pending.get(peer[0], 0) >= \
                                self.limits.pending_per_peer:
                            reason = (f"already {pending[peer[0]]} unassociated "
                                      "connection(s) from this address")
                        if reason is not None:
                            to_cut.append((*key, peer, reason, True))
                            continue
                elif not associated and now - known[1] > self.limits.associate_within_s:
                    to_cut.append((*key, peer, "no MMS association within "
                                   f"{self.limits.associate_within_s:g} s", True))
                    continue
                if peer[0] in blocked and role not in PRIVILEGED_ROLES:
                    # A penalised address keeps no connection but privileged sessions.
                    to_cut.append((*key, peer, "address in penalty", False))
                    continue
                if not associated:
                    pending[peer[0]] = pending.get(peer[0], 0) + 1
            to_cut += self._fair_share(current, {(fd, inode) for fd, inode, *_ in to_cut})
            self._cut.update((fd, inode) for fd, inode, *_ in to_cut)
            if len(self._counted) > 4096:
                for endpoint in list(self._counted)[:2048]:
                    del self._counted[endpoint]
            # Associations that ended and whose socket is gone: forget them now (not at
            # the indication, or the socket would look as if it never associated).
            live = set(current.values())
            for endpoint in [e for e in self._ended if e not in live]:
                self._ended.discard(endpoint)
                self._associated.pop(endpoint, None)
        busy = bool(fresh or to_cut or gone or penalised or
                    any(p not in self._associated for p in current.values()))
        for peer in gone:
            self._failed(_peer_text(peer), "mms.connect", "closed before association")
        for fd, inode, peer, reason, failure in to_cut:
            if hardening.cut(fd, inode):
                self.cuts += 1
                if failure:
                    self._failed(_peer_text(peer), "mms.connect", reason)
                else:
                    self.refusals.refused(_peer_text(peer), "mms.connect", reason)
        return busy

    def _fair_share(self, current: dict[tuple[int, int], tuple[str, int]],
                    cutting: set[tuple[int, int]]
                    ) -> list[tuple[int, int, tuple[str, int], str, bool]]:
        """Near the cap (one slot or none free), an address holding more than one
        unassociated connection loses its newest ones until a slot is free again
        or every address holds one: one peer cannot take the last slots."""
        live = {k: p for k, p in current.items() if k not in self._cut and k not in cutting}
        free = self.server.max_connections - len(live)
        out: list[tuple[int, int, tuple[str, int], str, bool]] = []
        while free < 2:
            by_host: dict[str, list[tuple[int, int]]] = {}
            for key, peer in live.items():
                if peer not in self._associated:  # associated clients keep theirs
                    by_host.setdefault(peer[0], []).append(key)
            host, keys = max(by_host.items(), key=lambda kv: len(kv[1]), default=("", []))
            if len(keys) < 2:
                break
            newest = max(keys, key=lambda k: self._sockets.get(k, (None, 0.0))[1])
            peer = live.pop(newest)
            out.append((*newest, peer, f"the connection cap is near and {host} holds "
                        f"{len(keys)} connections", True))
            free += 1
        return out

    def _close_idle(self, timeout: float) -> None:
        """Abort associations silent for longer than the idle timeout.

        A client with an enabled report control block is not idle: it is
        waiting for reports, which is the normal way to watch the gateway.
        """
        lib = nat.lib()
        # Reads run no Python: what a client sent is in the kernel's counters.
        active = self.server._activity.sample()
        if active is None:  # reads run no Python: without the counters, never judge silence
            return
        now = time.monotonic()
        idle: list[int] = []
        with self._lock:
            for connection in self._seen:
                heard = active.get(parse_peer(_peer(connection)) or ("?", 0))
                if heard is not None and heard > self._seen[connection]:
                    self._seen[connection] = heard
            for connection, seen in self._seen.items():
                if now - seen > timeout and not self._subscribed.get(connection):
                    # Claimed under our lock: the disconnect indication (which needs
                    # the lock) cannot free it before we are done with it.
                    idle.append(lib.ClientConnection_claimOwnership(connection))
                    self._seen[connection] = now  # one abort per timeout at most
        for connection in idle:
            who = self.who(connection)
            peer = _peer(connection)
            token = lib.ClientConnection_getSecurityToken(connection)
            # No indication follows an abort and the socket is gone right after
            # it: take its last byte counts now.
            final = self.server.wire_final(peer)
            try:
                aborted = lib.ClientConnection_abort(connection)
                if aborted:
                    self.server.wire.closed(peer, time.time(), final)
                    # 1.6.1 removes an aborted connection without calling the
                    # connection indication: do its bookkeeping here.
                    self._forget(connection, token)
                    endpoint = parse_peer(peer)
                    with self._lock:
                        if endpoint is not None:
                            self._ended.add(endpoint)
            finally:
                lib.ClientConnection_release(connection)
            log.warning("MMS connection %s idle for more than %g s: %s", who, timeout,
                        "closed" if aborted else "already gone")
            self._audit("mms.idle_close", who, "ok" if aborted else "gone",
                        idle_timeout_s=timeout)

    # --- TLS events -------------------------------------------------------------------------------
    def tls_event(self, _param: int, level: int, code: int, message: bytes | None,
                  connection: int) -> None:
        """TLS layer events: failed handshakes (other CA, revoked, expired, plain
        client, old protocol, no common suite) are refusals of an unauthenticated
        peer: aggregated in the audit log and counted towards its penalty."""
        try:
            text = message.decode(errors="replace") if message else f"TLS event {code}"
            peer = "?"
            if connection:
                buffer = ctypes.create_string_buffer(130)
                raw = nat.lib().TLSConnection_getPeerAddress(connection, buffer)
                peer = raw.decode(errors="replace") if raw else "?"
            if level >= nat.TLS_SEC_EVT_INCIDENT:
                self._failed(peer, "mms.tls", text)
            elif level == nat.TLS_SEC_EVT_WARNING:
                self._warn_once(code, f"MMS TLS from {peer}: {text}")
            else:
                log.debug("MMS TLS from %s: %s", peer, text)
        except Exception:
            log.exception("TLS event handler failed")

    def _warn_once(self, code: int, message: str) -> None:
        key = ("tls-warning", str(code), "")
        with self._lock:
            if key in self._refusals:
                return
            self._refusals[key] = (time.monotonic(), 0)
        log.warning("%s (further warnings of this kind are not logged)", message)


def _peer_text(peer: tuple[str, int]) -> str:
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


class _Activity:
    """When each client of one server last sent anything, from the kernel's counters.

    A connection whose received-byte count grew between two samples (or that
    is new) was active at the later sample; an association counts at once.
    """

    def __init__(self, server: MmsServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._bytes_in: dict[tuple[str, int], int] = {}
        self._heard: dict[tuple[str, int], float] = {}
        self._any = False  # something heard since the last heard_since_last_call()
        self._warned = False

    def reset(self) -> None:
        with self._lock:
            self._bytes_in.clear()
            self._heard.clear()
            self._any = False

    def associated(self) -> None:
        with self._lock:
            self._any = True

    def sample(self) -> dict[tuple[str, int], float] | None:
        """Per peer, the monotonic time it was last seen sending (as of now); None when
        the kernel's counters cannot be read (then nobody can be judged silent)."""
        now = time.monotonic()
        try:
            counters = sample_tcp(self.server.port)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot read TCP counters (sock_diag): %s; every associated "
                            "client counts as heard from, none is closed as idle", exc)
            with self._lock:
                self._any = self._any or self.server.connected_clients() > 0
                return None
        with self._lock:
            for key, c in counters.items():
                if c.bytes_in > self._bytes_in.get(key, -1):
                    self._heard[key] = now
                    self._any = True
            self._bytes_in = {k: c.bytes_in for k, c in counters.items()}
            self._heard = {k: t for k, t in self._heard.items() if k in counters}
            return dict(self._heard)

    def heard_since_last_call(self) -> bool:
        self.sample()
        with self._lock:
            heard, self._any = self._any, False
            return heard


def _peer(connection: int | None) -> str:
    if not connection:
        return "?"
    peer = nat.lib().ClientConnection_getPeerAddress(connection)
    return peer.decode(errors="replace") if peer else "?"


def _control_done(_action: int, _param: int, _ctl_val: int, _test: bool) -> int:
    """Control handler: the command was applied in the perform-check handler."""
    return nat.CONTROL_RESULT_OK


def _subtree_paths(attr: int) -> dict[int, str]:
    """Pointer -> path below ``attr`` for every node of a complex attribute.

    Walked before IedServer_create (walking the model through SWIG after it
    crashed, LIBIEC61850.md; these are ctypes calls). Array elements have no
    name and are numbered.
    """
    lib = nat.lib()
    out = {attr: ""}

    def walk(node: int, prefix: str) -> None:
        for i in range(lib.ModelNode_getChildCount(node)):
            child = lib.ModelNode_getChildWithIdx(node, i)
            name = lib.ModelNode_getName(child)
            part = name.decode() if name else str(i)
            path = f"{prefix}.{part}" if prefix else part
            out[int(child)] = path
            walk(child, path)

    walk(attr, "")
    return out
