"""The CSIP client: py20305's engine on its own thread and event loop, wired to the core.

Discovery and registration (dcap, EndDevice, FunctionSetAssignments,
DERProgram by primacy), DERControl events and the DefaultDERControl (through
:class:`GatewayConnector` into the core's :class:`UtilitySchedule`),
MirrorUsagePoint readings at the server's post rate, LogEvents from DERStatus
alarms, Responses: all by py20305. What this module adds: the TLS material
and options from ``[ieee2030_5]``, a ceiling on the server's poll rates, a
bounded reconnect loop, the DER resources (DERCapability, DERSettings,
DERStatus, DERAvailability) PUT by :class:`~.registration.Registrar` as soon
as the ratings are known and whenever they change, the link state the core
shows in ``status`` and over MMS (``comms``: connected / lost, last server
contact), and a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inverter_agent.core.arbitration import UtilitySchedule

from . import profile, responses
from .connector import GatewayConnector
from .identity import lfdi_sfdi, lfdi_text
from .registration import Registrar
from .site_view import SiteView

log = logging.getLogger(__name__)

#: Reconnect back-off, seconds (bounded: a server down for days is retried every minute).
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """``[ieee2030_5]``, validated by the config loader."""

    server: str
    cert: str
    key: str
    ca: str
    check_hostname: bool = True
    server_2018_compat: bool = True
    max_poll_interval: float | None = None
    post_rate: float = 300.0
    pin: int | None = None
    dcap_path: str = "/dcap"
    profile: str = "auto"
    connection_point_id: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> ClientSettings:
        s = dict(cfg.values["ieee2030_5"])
        missing = [k for k in ("cert", "key", "ca") if not s.get(k)]
        from inverter_agent.config import ConfigError

        if missing:
            raise ConfigError(f"[ieee2030_5] server is set but {', '.join(missing)} is not: "
                              "IEEE 2030.5 is mutual TLS with the device certificate")
        from inverter_agent.config import config_errors, file_errors

        missing = file_errors(cfg, ("ieee2030_5",))
        if missing:
            raise config_errors(missing)

        def where(*keys: str) -> str:
            src = cfg.sources.get(f"ieee2030_5.{keys[0]}", "defaults")
            return f"{src}: [ieee2030_5] " + " / ".join(f"{k} ({s[k]})" for k in keys)

        # Unusable TLS material stops the start here, not later in the client's thread.
        try:
            ctx = ssl.create_default_context(cafile=s["ca"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"{where('ca')}: not a usable CA bundle: {exc}") from None
        try:
            ctx.load_cert_chain(s["cert"], s["key"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"{where('cert', 'key')}: not a certificate and its private "
                              f"key: {exc}") from None
        try:
            lfdi_sfdi(Path(s["cert"]).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where('cert')}: {exc}") from None
        return cls(**s)


class _Ceiling(dict):
    """py20305's poll-rate table with our ceiling on every rate the server gives."""

    def __init__(self, ceiling: float | None) -> None:
        super().__init__()
        self.ceiling = ceiling

    def __setitem__(self, key: str, value: Any) -> None:
        if value is not None and self.ceiling is not None:
            value = min(int(value), int(self.ceiling))
        super().__setitem__(key, value)


class _ContactObserver:
    """py20305's connection-outcome seam: when the server last answered (never raises)."""

    def __init__(self, comms: dict[str, Any]) -> None:
        self.comms = comms

    def begin_request(self) -> None:
        pass

    def record_success(self) -> None:
        now = time.time()
        if self.comms.get("state") != "connected":
            log.info("IEEE 2030.5 server reachable")
        self.comms.update(state="connected", last_contact=now, last_error=None)

    def record_failure(self, exc: BaseException) -> None:
        self.comms["failures"] = self.comms.get("failures", 0) + 1
        self.comms["last_error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        if _is_protocol_error(exc):  # the server answered: reachable, it refused one request
            self.comms["last_contact"] = time.time()
            return
        if self.comms.get("state") == "connected":
            log.warning("IEEE 2030.5 server unreachable: %s", exc)
        self.comms["state"] = "lost"

    def on_connect(self, pair: Any) -> None:
        self.comms["connections"] = self.comms.get("connections", 0) + 1

    def flush(self) -> None:
        pass


def _is_protocol_error(exc: BaseException) -> bool:
    """An HTTP error status: the server answered (it is reachable), it refused."""
    return type(exc).__name__ in ("Sep2ProtocolError", "Sep2NoContentError")


class Ieee2030Client:
    """Runs the CSIP client until :meth:`stop`; the core keeps running without it."""

    def __init__(self, settings: ClientSettings, schedule: UtilitySchedule, site: SiteView,
                 record: Callable[[str, str], None] | None = None,
                 validate: Callable[[Any], str | None] | None = None) -> None:
        self.settings = settings
        self.schedule = schedule
        self.lfdi, self.sfdi = lfdi_sfdi(Path(settings.cert).read_bytes())
        self.comms = schedule.comms
        self.comms.update(state="connecting", server=settings.server, lfdi=self.lfdi,
                          sfdi=self.sfdi, last_contact=None, failures=0)
        self._client: Any = None
        self.connector = GatewayConnector(schedule, site, self._server_offset, record, validate,
                                          self._program_curves)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.registrar: Registrar | None = None
        #: Test and bench hook: a py20305 TrafficRecorder to attach before connecting.
        self.traffic_recorder: Any = None
        #: A site meter is configured: its readings are mirrored as the site's.
        self.site_meter = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ieee2030_5", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("IEEE 2030.5 client did not stop within %.0f s", timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # the adapter dying must not take the gateway with it
            log.exception("IEEE 2030.5 client stopped with an error")
            self.comms["state"] = "stopped"

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        c = dict(self.comms)
        last = c.get("last_contact")
        c["since_contact_s"] = None if last is None else round(time.time() - last, 1)
        c["events"] = [{"mrid": e.ident, "start": e.start, "end": e.end, "primacy": e.primacy,
                        "control": e.control.describe()}
                       for e in sorted(self.schedule.events(), key=lambda e: e.start)]
        d = self.schedule.default()
        c["default_control"] = d.describe() if d is not None else None
        c["refused"] = dict(self.connector.refused)
        if self.registrar is not None:
            c["resources"] = self.registrar.status()
        client = self._client
        if client is not None:
            c["poll_rates"] = {k: v for k, v in client.state.poll_rates.items()
                               if v is not None}
            c["end_devices"] = len(client.state.end_devices)
            c["programs"] = len(client.state.der_programs)
        return c

    def _server_offset(self) -> float:
        """Server clock minus ours, seconds; under one second it is the Time resource's
        own resolution (whole seconds), not a skew: ignored, so that event times do not
        jitter by a second from one poll to the next."""
        client = self._client
        offset = client.timebase.offset() if client is not None else 0.0
        return offset if abs(offset) >= 1.0 else 0.0

    def _program_curves(self, program_href: str) -> list[Any]:
        """The DERCurves py20305 fetched from a program's DERCurveList (empty if none)."""
        client = self._client
        state = client.state.der_programs.get(program_href) if client is not None else None
        return list(state.der_curves) if state is not None else []

    # -- the client --------------------------------------------------------------------------
    def _build(self) -> Any:
        from py20305.client.csip_client import CsipClient
        from py20305.client.tls import TlsConfig
        from py20305.connectors.config import CustomDeviceConfig
        from py20305.connectors.registry import ConnectorConfigRegistry

        s = self.settings
        tls = TlsConfig(client_cert=Path(s.cert), client_key=Path(s.key), ca_cert=Path(s.ca),
                        check_hostname=s.check_hostname)
        device = CustomDeviceConfig(lfdi=self.lfdi, class_path=f"{__name__}.GatewayConnector",
                                    pin=s.pin)
        registry = ConnectorConfigRegistry(
            [device], factory_resolver=lambda _d: (lambda: self.connector))
        holder: dict[str, Any] = {}
        def lfdi_of(device_href: str) -> str | None:
            """The LFDI of the EndDevice a control addresses (ours until discovered).
            Not py20305.cli's resolver: importing its command line costs 1 MB."""
            c = holder.get("c")
            state = c.state.end_devices.get(device_href) if c is not None else None
            if state is None:
                return self.lfdi
            return lfdi_text(state.lfdi)

        dispatcher = refusing_dispatcher(self.connector)(registry, lfdi_resolver=lfdi_of)
        client = CsipClient(
            s.server, tls=tls, dispatcher=dispatcher, dcap_path=s.dcap_path,
            server_2018_compat=s.server_2018_compat,
            registration_pins={self.lfdi: s.pin} if s.pin is not None else None,
            # The core keeps the schedule through a lost link (docs/arbitration.md A18):
            # the engine's own comms-loss fallback stays off.
            comms_loss_seconds=0,
            connection_heartbeat_seconds=int(min(120, s.max_poll_interval or 120)))
        holder["c"] = client
        client.state.poll_rates = _Ceiling(s.max_poll_interval)
        client.http.connection_observer = _ContactObserver(self.comms)
        if self.traffic_recorder is not None:
            client.http.traffic_recorder = self.traffic_recorder
        return client

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        client = self._client = self._build()
        telemetry = None
        run_task: asyncio.Task[None] | None = None
        reg_task: asyncio.Task[None] | None = None
        try:
            if not await self._connect(client):
                return
            await self._register(client)
            ns = await self._choose_profile(client)
            site = self.connector.site
            doe = (lambda: profile.aus_modes(site)) if ns else dict
            self.registrar = Registrar(client, self.lfdi, self.connector.site,
                                       der_type=self.connector.der_type,
                                       post_rate=self.settings.post_rate,
                                       extra_nameplate=doe, extra_settings=doe,
                                       csipaus_ns=ns, connection_point=(
                                           self.settings.connection_point_id if ns else None))
            reg_task = asyncio.create_task(self.registrar.run(self._stop), name="der-resources")
            with contextlib.suppress(Exception):
                await client.poll_now()
            telemetry = self._telemetry(client)
            run_task = asyncio.create_task(client.run(), name="csip-client")
            stop_task = asyncio.create_task(self._stop.wait())
            await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
        finally:
            if reg_task is not None:
                reg_task.cancel()
            if telemetry is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(telemetry.shutdown(), 3.0)
            if run_task is not None:
                run_task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown(timeout=3.0), 4.0)
            self.comms["state"] = "stopped"

    async def _connect(self, client: Any) -> bool:
        """Discovery, retried with bounded back-off until it works or we are stopped."""
        from py20305.client.errors import Sep2Error

        assert self._stop is not None
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                await client.connect()
                log.info("IEEE 2030.5: discovered %s: %d EndDevice(s), %d DERProgram(s); "
                         "LFDI %s, SFDI %d", self.settings.server,
                         len(client.state.end_devices), len(client.state.der_programs),
                         self.lfdi, self.sfdi)
                return True
            except (Sep2Error, OSError) as exc:
                self.comms.update(state="lost", last_error=f"{type(exc).__name__}: {exc}"[:300])
                log.warning("IEEE 2030.5 discovery failed (%s); again in %.0f s", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(RETRY_MAX_S, delay * 2)
        return False

    async def _choose_profile(self, client: Any) -> str | None:
        """CSIP or CSIP-AUS (``[ieee2030_5] profile``; auto: the server's DeviceCapability
        declares the csipaus namespace); the csipaus namespace, or None for CSIP."""
        from py20305.client.errors import Sep2Error
        from py20305.models.sep.sep import DeviceCapability

        body = b""
        if self.settings.profile != "csip":
            try:
                _dcap, body = await client.http.get_with_body(self.settings.dcap_path,
                                                              DeviceCapability)
            except (Sep2Error, OSError) as exc:  # discovery just read it: rare
                log.warning("IEEE 2030.5: DeviceCapability not read again (%s)", exc)
        aus, ns = profile.choose(self.settings.profile, body)
        client.http.csip_aus_mode = aus
        self.connector.csip_aus = aus
        self.comms["profile"] = "csip-aus" if aus else "csip"
        log.info("IEEE 2030.5 profile: %s%s", self.comms["profile"],
                 f" (namespace {ns}; DOE modes applied: export and generation limits)"
                 if aus else "")
        return ns

    async def _register(self, client: Any) -> None:
        """Register our EndDevice unless the server already lists it (no duplicates)."""
        known = {lfdi_text(d.lfdi) for d in client.state.end_devices.values()}
        self.comms["registered"] = self.lfdi in known
        if self.lfdi in known:
            return
        try:
            href = await client.register_end_device(lfdi=self.lfdi, device_category=0)
            log.info("IEEE 2030.5: registered EndDevice %s", href)
            self.comms["registered"] = True
            await client.trigger_rediscovery()
        except Exception as exc:  # provisioned out of band on many servers
            log.warning("IEEE 2030.5 registration refused (%s); the server may provision "
                        "this device out of band", exc)

    def _telemetry(self, client: Any) -> Any:
        """py20305's readings (MirrorUsagePoints) and LogEvents; the DER resources are the
        registrar's (py20305's own scheduler PUTs them on fixed timers from discovery on,
        before the ratings are read, and retries a day later)."""
        from py20305.telemetry import TelemetryCoordinator

        class ReadingsOnly(TelemetryCoordinator):  # type: ignore[misc]
            def _setup_der_resources(self) -> None:
                pass  # the registrar's

            def _telemetry_hrefs(self, lfdi: str) -> tuple[str | None, str | None]:
                return super()._telemetry_hrefs(lfdi)[0], None  # DERAvailability: ours

        lfdis, roles, resolve = [self.lfdi], {}, (lambda _lfdi: self.connector)
        if self.site_meter:
            # The site meter as a device of its own: its MUP (roleFlags 0x03, premises
            # aggregation point) posted under this gateway's EndDevice (site_view.py).
            from py20305.connectors.base import BaseConnector
            from py20305.telemetry.coordinator import DeviceRoleConfig
            from py20305.telemetry.mup import DeviceRole

            from .site_view import meter_lfdi

            site = self.connector.site

            class MeterConnector(BaseConnector):  # type: ignore[misc]
                """The site meter as py20305 sees a device: readings only."""

                connector_name = "inverter-agent-site-meter"
                telemetry_protocol = "generic"

                async def fetch_monitoring(self) -> dict[str, Any]:
                    return site.site_meter()

            meter = MeterConnector()
            m_lfdi = meter_lfdi(self.lfdi)
            lfdis.append(m_lfdi)
            roles = {m_lfdi: DeviceRoleConfig(DeviceRole.SITE_METER)}

            def resolve(lfdi: str) -> Any:
                return meter if lfdi.lower() == m_lfdi else self.connector

        coordinator = ReadingsOnly(
            client, lfdis=lfdis, connector_resolver=resolve,
            post_rate_seconds=int(self.settings.post_rate),
            **({"roles": roles, "site_lfdi": self.lfdi} if roles else {}))
        coordinator.setup()
        coordinator.start_device_telemetry()
        registrar = self.registrar

        async def rediscovered() -> None:
            await coordinator.restart_device_telemetry()
            if registrar is not None:
                registrar.wake(resend=True)

        client.set_on_rediscovered(rediscovered)
        return coordinator


def refusing_dispatcher(connector: GatewayConnector) -> type:
    """py20305's dispatcher, refusing at activation what the core would refuse (a bad
    curve included): py20305 then answers the event with the rejection Response its
    cause says (:mod:`.responses`: 252 not applicable, 253 invalid, 254 expired)
    instead of 'started', and nothing is dispatched."""
    from py20305.connectors.dispatcher import ConnectorDispatcher

    responses.install()

    class Dispatcher(ConnectorDispatcher):  # type: ignore[misc]
        async def apply_control(self, device_href: str, derc: Any, curves: Any,
                                **kw: Any) -> None:
            rejected = connector.check_derc(derc, curves or ())
            if rejected is not None:
                raise responses.refusal(rejected.cause, str(rejected))
            await super().apply_control(device_href, derc, curves, **kw)

    return Dispatcher
