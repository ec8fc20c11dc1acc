"""MMS server: serves a :class:`~inverter_agent.adapters.mms.model.ModelSpec` with libiec61850.

libiec61850 runs its own threads (listener and one per connection); the agent
calls :meth:`MmsServer.publish` from its Python thread once per cycle. All
calls into the library go through ctypes (``_native``) so that the GIL is
released while we wait for the data model lock (LIBIEC61850.md: a SWIG
``lockDataModel`` deadlocks against a Python callback).

Clients must live in another process than the server: an in-process SWIG
client holds the GIL for the whole request and stalls the server's Python
callbacks (pure-Python clients such as open61850 are fine in-process).

Security (the settings and rules are :mod:`inverter_agent.security`'s, shared by
every adapter; ``security.py`` has MMS's ports and bind check, ``guard.py`` applies
roles, audit, admission and idle timeouts to the connections)::

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
  ``admission`` (``inverter_agent.security.admission.AdmissionLimits``) keeps the
  cap from locking everyone out (see :class:`~inverter_agent.adapters.mms.guard.ConnectionGuard`).
"""

from __future__ import annotations

import atexit
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
from inverter_agent.security.access import (
    RIGHT_CONTROL,
    RIGHT_READ,
    RIGHT_WRITE,
    ROLE_RIGHTS,
    AccessPolicy,
    Identity,
)
from inverter_agent.security.admission import AdmissionLimits
from inverter_agent.security.audit import AuditLog
from inverter_agent.security.tls import CertStatus, TlsSettings, log_cert_status

from . import _native as nat
from .guard import ConnectionGuard, client_peer
from .hardening import refuse_client_renegotiation
from .model import BuiltModel, ModelSpec, PointHandles, build_model, ex_values
from .security import PLAIN_PORT, TLS_PORT

log = logging.getLogger(__name__)

#: libiec61850's compile-time CONFIG_MAXIMUM_TCP_CLIENT_CONNECTIONS in the
#: pyiec61850-ng wheel: a 6th association is rejected whatever the server asks.
LIBRARY_MAX_CONNECTIONS = 5

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
        self._guard = ConnectionGuard(self, admission)

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
            self._activity.sample()  # can the idle timeout be enforced? (warns if not)
            self._guard.start()
            # A server left running at interpreter exit would call ctypes callbacks
            # into a finalising interpreter: stop it first.
            atexit.register(self.stop)
            log.info("MMS server %s listening on %s:%d (%d data points, %s, roles %s, "
                     "idle timeout %s)", self.ied_name, self.host, self.port,
                     len(model.points), "TLS" if tls_config else "plain",
                     "enforced" if self.access is not None else "off (full rights)",
                     "off" if not self.idle_timeout_s else f"{self.idle_timeout_s:g} s"
                     + (", NOT ENFORCED: sock_diag unavailable" if self.idle_close_off()
                        else ""))
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

    def client_gone(self) -> None:
        """One associated client was removed without a connection indication (the guard
        aborted it: libiec61850 1.6.1 calls no indication after an abort)."""
        self._clients = max(0, self._clients - 1)

    def last_heard(self) -> dict[tuple[str, int], float] | None:
        """Per client endpoint, the monotonic time it last sent anything, from the kernel's
        counters; None when they cannot be read (then nobody can be judged silent)."""
        return self._activity.sample()

    def _on_connection(self, _server: int, connection: int, connected: bool,
                       _param: int) -> None:
        # Runs in a libiec61850 thread; ctypes takes the GIL for us. Never
        # raise out of a callback, and never call publish() from here.
        try:
            self._clients += 1 if connected else -1
            if connected:
                self._activity.associated()
            peer = client_peer(connection)
            if connected:
                self.wire.opened(peer, time.time())
            else:  # still in CLOSE_WAIT after a client's close: its final counts
                self.wire.closed(peer, time.time(), self.wire_final(peer))
            log.info("MMS client %s %s (%d connected)", client_peer(connection),
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

    def idle_close_off(self) -> str | None:
        """Why an idle timeout is set but silent clients cannot be closed (the kernel's
        counters are unreadable); None when it is enforced or when none is set."""
        return self._activity.unreadable if self.idle_timeout_s else None

    def security_status(self) -> dict[str, Any]:
        """For the status view: TLS on/off, server certificate expiry, roles, connections."""
        return {
            "tls": self.tls is not None,
            "tls_renegotiation": self.renegotiation,
            "port": self.port,
            "roles_enforced": self.access is not None,
            "certificate": self.cert_status.as_dict() if self.cert_status else None,
            "idle_timeout_s": self.idle_timeout_s,
            "idle_close_off": self.idle_close_off(),
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
        self.cert_status = log_cert_status(tls.cert, what="MMS TLS server certificate")
        return config


ADD_CAUSE_NO_ACCESS_AUTHORITY = 20  # IEC 61850-7-2 AddCause "No-access-authority"


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
        #: Why the counters cannot be read (None while they can): then no client can
        #: be judged silent, so the idle timeout is not enforced.
        self.unreadable: str | None = None

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
            self.unreadable = f"cannot read TCP counters (sock_diag): {exc}"
            if not self._warned:
                self._warned = True
                timeout = self.server.idle_timeout_s
                log.warning(
                    "%s. Idle-connection closing is OFF%s: a client that associates and "
                    "then sends nothing keeps one of the %d connection slots until it "
                    "disconnects, and every associated client counts as present (no "
                    "communication-loss revert while one stays connected). Reading them needs "
                    "the kernel's TCP sock_diag (CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG), "
                    "which qemu-user emulation does not pass through",
                    self.unreadable,
                    f" (security.idle_timeout {timeout:g} s is not enforced)" if timeout
                    else "", self.server.max_connections)
            with self._lock:
                self._any = self._any or self.server.connected_clients() > 0
                return None
        self.unreadable = None
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
