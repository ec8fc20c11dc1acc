"""The DNP3 adapter: the gateway as an IEEE 1815.2 outstation (py1815), over the core.

The engine runs on its own asyncio loop in its own thread. Its callbacks run on
that loop and stay short: a read takes the last :class:`CycleView` the loop
published (an immutable object, swapped in whole), a control hands the value
to the core's command API (validated, persisted and audited before it returns,
so SUCCESS means durable) and answers with the command status its refusal
cause maps to (:data:`.maps.REFUSALS`). The control loop only ever swaps the
view and schedules an event scan with ``call_soon_threadsafe``: it never waits
on the engine.

Quality: a value is sent with ONLINE only when the core's view has it good and
the inverter link up; with the link down (or the view gone stale) it is sent
COMM_LOST, and before the first cycle RESTART, never a stale value marked good.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.core.storage import commanded, is_command
from inverter_agent.core.view import HEALTH_ALARM, HEALTH_WARNING
from inverter_agent.security.bind import check_bind

from . import curves as curves_mod
from . import points as points_mod
from . import reversion as reversion_mod
from .maps import REFUSALS

if TYPE_CHECKING:
    from inverter_agent.adapters.base import AdapterContext
    from inverter_agent.core.view import CycleView, InverterView

log = logging.getLogger(__name__)

#: A view older than this (seconds) is the control loop stalled: values go COMM_LOST.
STALE_VIEW_S = 10.0
#: How long start() waits for the listener to bind.
START_TIMEOUT_S = 5.0
#: Map sources that are outputs (points.py): a setting, a curve buffer cell, a curve index.
OUTPUT_SOURCES = ("setting", "curve", "curve_ref", "timeout")


def load(ctx: AdapterContext) -> Dnp3Adapter | None:
    return Dnp3Adapter(ctx)


def _addr(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    return text[:2], int(text[2:])


def _decimals(scale: float | None) -> int | None:
    """Digits to round a scaled value to (x0.1 -> 1): 80.00000000000001 % is 80 %."""
    if not scale or scale >= 1:
        return None
    return max(0, round(-math.log10(scale)))


def _get(d: Mapping[str, Any] | None, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def storage_value(inv: InverterView, name: str) -> float | None:
    """A number of the inverter's battery (StorageView attribute ``name``: a Reading, a
    float or a code), or None: no storage model, or not stated / not good."""
    sto = inv.storage
    if sto is None:
        return None
    v = getattr(sto, name)
    if hasattr(v, "quality"):
        v = v.value if v.quality.good else None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _charging(inv: InverterView) -> bool | None:
    w = storage_value(inv, "w")
    if w is None:  # 124 only states no battery power: its charge state (4 charging)
        st = storage_value(inv, "cha_st")
        return None if st is None else st == 4
    return w < -1.0 and bool(inv.good("Conn"))


def _at_max(inv: InverterView) -> bool | None:
    soc, top = storage_value(inv, "soc_pct"), storage_value(inv, "soc_max_pct")
    return None if soc is None or top is None else soc >= top


def _at_reserve(inv: InverterView) -> bool | None:
    dis = storage_value(inv, "avail_dis_w")
    return None if dis is None else dis == 0.0


#: Storage states (BI4, BI7, BI20) from the core's StorageView; None: not known.
STORAGE_STATES: dict[str, Callable[[InverterView], bool | None]] = {
    "charging": _charging, "soc_at_max": _at_max, "soc_at_reserve": _at_reserve}


class Dnp3Adapter:
    """One outstation serving the first inverter of the core."""

    name = "dnp3"

    def __init__(self, ctx: AdapterContext) -> None:
        cfg = ctx.cfg
        self.ctx = ctx
        self.host: str = cfg["dnp3.host"]
        self.port: int = cfg["dnp3.port"]
        self.outstation_address: int = cfg["dnp3.outstation_address"]
        self.master_address: int = cfg["dnp3.master_address"]
        self.unsolicited: bool = cfg["dnp3.unsolicited"]
        self.event_buffer: int = cfg["dnp3.event_buffer"]
        self.idle_timeout: float = cfg["dnp3.idle_timeout"]
        self.tls = self._tls_files(ctx)
        check_bind(self.host, self.tls is not None, cfg["security.allow_insecure_bind"],
                   protocol="DNP3",
                   tls_hint="[dnp3] tls_cert, tls_key, tls_ca and tls_allow (or [security] TLS)",
                   passwords="TLS client certificates")
        self.rows = points_mod.load(cfg["dnp3.point_map"])
        self.inverter = ctx.inverters[0]
        self.commands = ctx.core.commands(self.inverter) if ctx.functions else None
        commands = self.commands
        self._effective_cache: tuple[int, dict[str, Any]] = (-1, {})
        self.curves = curves_mod.CurveEdit(self._effective)
        self.reversion = (None if commands is None else
                          reversion_mod.Reversion(ctx.core, commands.persisted_dict))
        if self.reversion is not None:
            self.reversion.schedule.comms.update(state="waiting")
        #: The last cycle's view and this inverter's part of it (resolved once per
        #: publish, not by every point read of an event scan).
        self._view: tuple[CycleView | None, InverterView | None] = (None, None)
        self._peer: str | None = None
        self._connected = False
        self._accepted = 0
        self._refused = 0
        self._last_refusal: str | None = None
        self._conn_refused = 0
        self._last_refused: str | None = None
        #: DER certificates of TLS peers by (host, port), until the engine admits or
        #: refuses them; the admitted master's identity and whether it may command.
        self._peer_certs: dict[tuple[str, int], bytes] = {}
        self._identity: Any = None
        self._may_command = self.tls is None  # plain: loopback only (check_bind), as MMS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frozen_once = False
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.outstation, self.session = self._build()
        self.ready_text = (f"DNP3 outstation {self.outstation_address} on "
                           f"{self.host}:{self.port} ({'TLS' if self.tls else 'plain'})")

    # -- configuration
    @staticmethod
    def _tls_files(ctx: AdapterContext) -> dict[str, Any] | None:
        cfg = ctx.cfg
        shared = ctx.tls
        cert = cfg["dnp3.tls_cert"] or (shared.cert if shared else None)
        key = cfg["dnp3.tls_key"] or (shared.key if shared else None)
        ca = ([cfg["dnp3.tls_ca"]] if cfg["dnp3.tls_ca"]
              else list(shared.ca) if shared else [])
        allow = list(cfg["dnp3.tls_allow"]) or list((shared.allow or ()) if shared else ())
        if not (cert or key or cfg["dnp3.tls_ca"] or cfg["dnp3.tls_allow"]):
            return None
        from inverter_agent.config import ConfigError
        if not (cert and key and ca):
            raise ConfigError("[dnp3] TLS needs tls_cert, tls_key and tls_ca (or [security]'s)")
        if not allow:
            raise ConfigError("[dnp3] TLS needs tls_allow: the master certificates allowed "
                              "(subject names or sha256:<hex> fingerprints); trusting the CA "
                              "alone admits every certificate it issued")
        return {"cert": cert, "key": key, "ca": ca, "allow": allow}

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls["cert"], self.tls["key"])
        for ca in self.tls["ca"]:
            context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    # -- the engine
    def _build(self) -> tuple[Any, Any]:
        from py1815.profile import Binding, DerOutstation, Kind, Point, PointMap

        pts = {}
        binding = Binding()
        for row in self.rows:
            kind = Kind(row.kind)
            assoc = _addr(row.pairs)
            enables = _addr(row.enables)
            point = Point(kind, row.index, row.name, section="dnp3", purpose=row.function,
                          event_class=row.cls, multiplier=row.scale, minimum=row.lo,
                          maximum=row.hi, units=row.units,
                          associated=None if assoc is None else (Kind(assoc[0]), assoc[1]),
                          enabled_by=None if enables is None else (Kind(enables[0]),
                                                                   enables[1]),
                          frozen=kind is Kind.CTR,
                          frozen_event_class=row.cls if kind is Kind.CTR else None)
            source, _, arg = row.source.partition(":")
            if source in OUTPUT_SOURCES:
                if self.commands is None:
                    continue  # monitoring only: no output is served, "supports" says so
                pts[point.address] = point
                apply, check, status = self._output(source, arg, row)
                binding.output(kind, row.index, apply, check=check, status=status)
                continue
            if source == "reading":
                pts[point.address] = point
                binding.read(kind, row.index, self._reader(arg), deadband=(
                    None if row.deadband is None
                    else row.deadband / (row.scale or 1.0)))
            elif source == "state":
                pts[point.address] = point
                binding.read(kind, row.index, self._state(arg))
            elif source == "curve_state":
                pts[point.address] = point
                binding.read(kind, row.index,
                             lambda: self.curves.referenced_by(self.curves.selected) is not None)
            elif source == "storage":
                pts[point.address] = point
                binding.read(kind, row.index, self._storage(arg), deadband=(
                    None if row.deadband is None
                    else row.deadband / (row.scale or 1.0)))
            elif source in ("mirror", "supports"):
                pts[point.address] = point  # the engine derives them from the outputs
            else:
                raise ValueError(f"{row.kind}{row.index}: unknown source {row.source!r}")
        outputs = {a for a, p in pts.items() if p.kind.is_output}
        for address, point in list(pts.items()):  # a mirror of an unserved output goes too
            if point.associated is not None and point.associated[0].is_output \
                    and point.associated not in outputs and address not in binding.readers:
                del pts[address]
        outstation = DerOutstation(PointMap(pts), binding, strict=False,
                                   event_capacity=self.event_buffer)
        session = outstation.session(outstation_address=self.outstation_address,
                                     master_address=self.master_address,
                                     unsolicited=self.unsolicited)
        return outstation, session

    def _inverter_view(self) -> tuple[InverterView | None, bool]:
        """The inverter's view and whether it is fresh (None before the first cycle)."""
        view, inv = self._view  # one tuple: the engine thread reads it whole
        if view is None or inv is None:
            return None, False
        return inv, time.time() - view.t <= STALE_VIEW_S

    def _reader(self, name: str) -> Callable[[], Any]:
        from py1815.profile import Quality, Reading

        def read() -> Any:
            inv, fresh = self._inverter_view()
            if inv is None:
                return Reading(0, Quality.NEVER_READ)
            r = inv.readings.get(name)
            value = r.value if r is not None else None
            if not isinstance(value, int | float):  # a bool is an int: kept as it is
                value = None
            if not (inv.link_up and fresh):
                return Reading(0 if value is None else value, Quality.COMM_LOST)
            if r is None or value is None or not r.quality.good:
                return Reading(0 if value is None else value, Quality.OFFLINE)
            return Reading(value)
        return read

    def _state(self, name: str) -> Callable[[], Any]:
        from py1815.profile import Quality, Reading

        def read() -> Any:
            inv, fresh = self._inverter_view()
            if inv is None:
                return Reading(False, Quality.NEVER_READ)
            up = inv.link_up and fresh
            if name == "link_lost":  # the gateway's own knowledge: always good
                return Reading(not up)
            if name == "generating":
                w, conn = inv.good("W"), inv.good("Conn")
                state = bool(conn) and w is not None and w > 0
                return Reading(state, Quality.GOOD if up else Quality.COMM_LOST)
            if name in STORAGE_STATES:
                state = STORAGE_STATES[name](inv)
                if state is None:  # no battery, or the value not stated
                    return Reading(False, Quality.OFFLINE if up else Quality.COMM_LOST)
                return Reading(state, Quality.GOOD if up else Quality.COMM_LOST)
            fs = inv.functions
            if fs is None:  # the functions do not run: nothing to say
                return Reading(False, Quality.OFFLINE)
            quality = Quality.GOOD if fresh else Quality.COMM_LOST
            if name == "tripped":  # the gateway's own decision, known with the link down
                kind = fs.out_of_service_kind
                return Reading(kind is not None and kind.is_trip, quality)
            if name == "health_alarm":
                return Reading(fs.health == HEALTH_ALARM, quality)
            if name == "health_warning":
                return Reading(fs.health == HEALTH_WARNING, quality)
            raise ValueError(f"unknown state {name!r}")
        return read

    def _storage(self, attr: str) -> Callable[[], Any]:
        """A value of the inverter's battery (the core's StorageView; ``-attr`` negated)."""
        from py1815.profile import Quality, Reading

        sign, name = (-1.0, attr[1:]) if attr.startswith("-") else (1.0, attr)

        def read() -> Any:
            inv, fresh = self._inverter_view()
            if inv is None:
                return Reading(0, Quality.NEVER_READ)
            value = storage_value(inv, name)
            if value is None:
                return Reading(0, Quality.OFFLINE)
            value = sign * value + 0.0  # no -0.0
            if not (inv.link_up and fresh):
                return Reading(value, Quality.COMM_LOST)
            return Reading(value)
        return read

    def _storage_refusal(self, path: str, value: Any) -> str | None:
        """Why a charge / discharge command is refused (no battery the core commands), or
        None. Switching the mode off is always taken."""
        if not is_command(path, value):
            return None
        inv, _ = self._inverter_view()
        sto = inv.storage if inv is not None else None
        return commanded([sto] if sto is not None else [])[1]

    def _setting(self, path: str) -> Callable[[], Any]:
        from py1815.profile import Quality, Reading

        def read() -> Any:
            assert self.commands is not None
            value = _get(self._effective(), path)
            if value is None:
                return Reading(0, Quality.NEVER_READ)
            return Reading(value)
        return read

    def _effective(self) -> dict[str, Any]:
        """The effective settings as plain data, rebuilt only when they changed: an
        event scan reads every readback each cycle, and one conversion costs ~1 ms."""
        if self.commands is None:
            return {}
        version = self.commands.version  # first: a change after it only costs a rebuild
        cached_version, cached = self._effective_cache
        if cached_version != version:
            cached = self.commands.effective_dict()
            self._effective_cache = (version, cached)
        return cached

    def _who(self) -> str:
        who = f"dnp3 master={self.master_address} peer={self._peer or '?'}"
        if self._identity is not None:
            who += f" {self._identity.who} role={self._identity.role}"
        return who

    def _not_authorized(self, row: points_mod.Row, path: str, value: Any) -> Any:
        """A control from a master whose role may not command: refused and audited."""
        from py1815.control import CommandStatus

        assert self.commands is not None
        role = self._identity.role if self._identity is not None else "none"
        self._note_refusal(f"{row.kind}{row.index}={value}: role {role} may not command")
        self.commands.refused("setting.write", self._who(), path, value,
                              f"role {role} may not command ({RefusalCause.NOT_AUTHORIZED})")
        return CommandStatus(REFUSALS[RefusalCause.NOT_AUTHORIZED])

    def _value(self, row: points_mod.Row, value: float | bool) -> Any:
        if row.kind == "BO":
            return bool(value)
        digits = _decimals(row.scale)
        return float(value) if digits is None else round(float(value), digits)

    def _output(self, source: str, arg: str, row: points_mod.Row) -> tuple[Any, Any, Any]:
        """(apply, check, status) of one output: ``check`` runs on select and before an
        operate, ``apply`` on operate; each answers None (SUCCESS) or a command status."""
        if source == "setting":
            return (self._control(arg, row, self._setting_work(arg, row, execute=True), True),
                    self._control(arg, row, self._setting_work(arg, row, execute=False)),
                    self._setting(arg))
        if source == "curve_ref":
            fn = curves_mod.FUNCTIONS[arg]
            return (self._control(fn.path, row, self._curve_ref_work(fn, execute=True), True),
                    self._control(fn.path, row, self._curve_ref_work(fn, execute=False)),
                    lambda: self.curves.refs[fn.name])
        if source == "timeout":
            rev = self.reversion
            assert rev is not None

            def set_timeout(v: float | bool) -> None:
                rev.timeout_s[arg] = float(v)
            return (self._control(f"{arg}.reversion_timeout", row, set_timeout, True),
                    self._control(f"{arg}.reversion_timeout", row, lambda v: None),
                    lambda: rev.timeout_s[arg])
        if arg == "select":
            def select(v: float | bool) -> None:
                self.curves.selected = round(float(v))
            return (self._control("curve", row, select, True),
                    self._control("curve", row, lambda v: None),
                    lambda: self.curves.selected)

        def edit(v: float | bool) -> None:
            self.curves.check_edit()
            self.curves.edit(arg, float(v))

        def shown() -> Any:
            from py1815.profile import Quality, Reading

            value = self.curves.shown(self.curves.selected).get(arg)
            return Reading(0, Quality.NEVER_READ) if value is None else Reading(value)
        return (self._control(f"curve.{arg}", row, edit, True),
                self._control(f"curve.{arg}", row, lambda v: self.curves.check_edit()),
                shown)

    def _setting_work(self, path: str, row: points_mod.Row,
                      execute: bool) -> Callable[[float | bool], None]:
        """A setting's write (validated, persisted, audited by the core), or its check.
        Enabling a curve function whose curve has a draft applies the draft with it."""
        def work(v: float | bool) -> None:
            assert self.commands is not None
            changes: dict[str, Any] = {path: v}
            fn_name, _, leaf = path.partition(".")
            fn = curves_mod.FUNCTIONS.get(fn_name)
            number = self.curves.refs.get(fn_name)
            drafted = fn is not None and leaf == "enabled" and v is True \
                and number in self.curves.drafts
            if drafted:
                assert fn is not None and number is not None
                changes.update(self.curves.changes(fn, number))
            if self._temporary(fn_name, changes, execute):
                return
            if not execute:
                self.commands.check(changes)
                return
            self.commands.write(changes, who=self._who())
            if drafted:
                assert fn is not None and number is not None
                self.curves.applied(fn, number)
        return work

    def _temporary(self, function: str, changes: dict[str, Any], execute: bool) -> bool:
        """A command of a function with a reversion timeout: handled as a timed command
        (True), or not one after all (False: write it as a setting)."""
        rev = self.reversion
        if rev is None or not rev.governs(function):
            return False
        return rev.command(function, changes, self._who(), execute)

    def _curve_ref_work(self, fn: curves_mod.CurveFunction,
                        execute: bool) -> Callable[[float | bool], None]:
        """Point ``fn`` at a curve: the whole curve as one settings write."""
        def work(v: float | bool) -> None:
            assert self.commands is not None
            number = round(float(v))
            changes = self.curves.changes(fn, number)
            if self._temporary(fn.name, changes, execute):
                return  # held or timed: the curve keeps its draft, the function its number
            if not execute:
                self.commands.check(changes)
                return
            self.commands.write(changes, who=self._who())
            self.curves.applied(fn, number)
        return work

    def _control(self, what: str, row: points_mod.Row, work: Callable[[float | bool], None],
                 execute: bool = False) -> Callable[[float], Any]:
        """The engine's callback for one output: ``work`` on the value, its refusal
        answered with the status its cause maps to. None answers SUCCESS."""
        from py1815.control import CommandStatus

        def control(value: float) -> Any:
            assert self.commands is not None
            v = self._value(row, value)
            if not self._may_command:
                return self._not_authorized(row, what, v)
            why = self._storage_refusal(what, v)
            if why is not None:
                self._note_refusal(f"{row.kind}{row.index}={v}: {why}")
                self.commands.refused("setting.write", self._who(), what, v,
                                      f"{why} ({RefusalCause.NOT_SUPPORTED})")
                return CommandStatus(REFUSALS[RefusalCause.NOT_SUPPORTED])
            try:
                work(v)
            except CommandRefused as exc:
                self._note_refusal(f"{row.kind}{row.index}={v}: {exc.detail}")
                if not exc.audited:  # a check is not audited by the core; a write is
                    self.commands.refused("setting.write", self._who(), what, v,
                                          f"{exc.detail} ({exc.cause})")
                return CommandStatus(REFUSALS[exc.cause])
            except Exception:
                log.exception("dnp3: %s%d failed", row.kind, row.index)
                self._refused += 1
                return CommandStatus.HARDWARE_ERROR
            if execute:
                self._accepted += 1
            return None
        return control

    def _note_refusal(self, text: str) -> None:
        self._refused += 1
        self._last_refusal = text
        log.info("dnp3: refused %s", text)

    def _observe(self, event: Any) -> None:
        outcome = str(event.outcome)
        key = (event.remote.host, event.remote.port) if event.remote else None
        der = self._peer_certs.pop(key, None) if key is not None else None
        comms = self.reversion.schedule.comms if self.reversion is not None else {}
        if outcome == "accepted":
            comms.update(state="connected", last_contact=time.time())
        elif outcome in ("ended", "displaced"):
            comms.update(state="lost", last_contact=time.time())
        if outcome == "accepted":
            self._connected = True
            peer = f"{event.remote.host}:{event.remote.port}" if event.remote else "?"
            self._peer = f"{peer} {event.peer_identity}" if event.peer_identity else peer
            if self.tls is not None:
                self._admit(der, peer)
        elif outcome in ("ended", "displaced"):
            self._connected = False
        elif outcome == "refused":
            self._conn_refused += 1
            self._last_refused = event.reason or "?"
        log.info("dnp3: connection %s %s %s", outcome,
                 event.remote.host if event.remote else "", event.reason or "")

    def _admit(self, der: bytes | None, peer: str) -> None:
        """The admitted TLS master's role (shared access policy: fingerprint, else the
        certificate's OU); commands need the control or write right. No role: read only."""
        from inverter_agent.security.access import RIGHT_CONTROL, RIGHT_WRITE, AccessPolicy

        policy = self.ctx.access or AccessPolicy()
        identity, why = policy.certificate_identity(der, peer) if der else (None, "no cert")
        self._identity = identity
        self._may_command = identity is not None and (identity.can(RIGHT_CONTROL)
                                                       or identity.can(RIGHT_WRITE))
        if identity is None:
            log.warning("dnp3: master %s has no role (%s): read only", peer, why)
        else:
            log.info("dnp3: master %s%s", identity.describe(),
                     "" if self._may_command else " (read only)")

    # -- the Adapter surface
    def start(self) -> None:
        from py1815.server import OutstationServer

        certs = self._peer_certs

        class Server(OutstationServer):
            """Keeps each TLS peer's certificate for the role decision at admission
            (py1815 reports the allow-list entry matched, not the certificate)."""

            async def _handle(self, reader: Any, writer: Any) -> None:
                ssl_object = writer.get_extra_info("ssl_object")
                peer = writer.get_extra_info("peername")
                if ssl_object is not None and peer:
                    der = ssl_object.getpeercert(binary_form=True)
                    if der:
                        if len(certs) > 32:  # never admitted nor refused: forget them
                            certs.clear()
                        certs[(peer[0], peer[1])] = der
                await super()._handle(reader, writer)

        ready = threading.Event()
        failure: list[BaseException] = []
        self._server = Server(self.session, bind=f"{self.host}:{self.port}",
                                        ssl_context=self._ssl_context(),
                                        authorized_peers=(frozenset(self.tls["allow"])
                                                          if self.tls else None),
                                        idle_timeout=self.idle_timeout,
                                        connection_observer=self._observe)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._server.start())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="dnp3-outstation", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("DNP3 outstation did not start")
        if failure:
            raise failure[0]
        log.info("%s", self.ready_text)

    def publish(self, view: CycleView) -> None:
        try:
            inv: InverterView | None = view.inverter(self.inverter)
        except KeyError:
            inv = None
        self._view = (view, inv)
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._scan)
            except RuntimeError:  # closing
                pass

    def _scan(self) -> None:
        """On the engine's loop: buffer what changed as events; report them unasked.
        The first scan (the first view) freezes the counters, so the frozen counters
        have a value from the first integrity poll on (AN2018-001: "beginning at
        startup"); a master freezes them again with an immediate freeze."""
        try:
            if not self._frozen_once:
                self._frozen_once = True
                self.outstation.freeze_all()
            if self.outstation.poll() and self._server is not None:
                self._server.notify()
        except Exception:
            log.exception("dnp3: event scan failed")

    def status(self) -> dict[str, Any]:
        from py1815.profile import Kind

        events = self.outstation.events
        return {
            "inverter": self.inverter,
            "listening": f"{self.host}:{self._server.port if self._server else self.port}",
            "tls": self.tls is not None,
            "outstation_address": self.outstation_address,
            "master_address": self.master_address,
            "connected": self._connected,
            "peer": self._peer,
            "unsolicited": self.unsolicited,
            "role": (self._identity.role if self._identity is not None
                     else None if self.tls is None else "none"),
            "may_command": self._may_command,
            "connections_refused": self._conn_refused,
            "last_refused": self._last_refused,
            "points": {k.value: len(self.outstation.served(k)) for k in Kind},
            "events_buffered": events.total,
            "events_overflowed": events.overflowed(),
            "commands": {"accepted": self._accepted, "refused": self._refused,
                         "last_refusal": self._last_refusal},
            "curves": {"selected": self.curves.selected, "followed": dict(self.curves.refs),
                       "drafts": sorted(self.curves.drafts)},
            "timed": {} if self.reversion is None else self.reversion.status(),
        }

    def stop(self, timeout_s: float) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running() and self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.stop(), loop)
            try:
                fut.result(timeout=max(0.1, timeout_s - 0.5))
            except Exception:
                log.warning("dnp3: listener did not stop cleanly")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=0.5)
        self._loop = None
