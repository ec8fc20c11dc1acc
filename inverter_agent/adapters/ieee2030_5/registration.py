"""The EndDevice's DER resources, PUT as soon as they are known, again when they change.

(And, for CSIP-AUS, the EndDevice's ConnectionPoint: the NMI the server links for.)

DERCapability (ratings), DERSettings (the settings in force), DERStatus and
DERAvailability are what a utility server registers a DER by; conformance
procedures (CSIP CORE-009 / 014, CSIP-AUS ALL-09) check them right after
discovery. py20305's own resource scheduler PUTs each on a fixed timer from
the moment discovery ends: with an inverter that answers slowly, the first
try finds no ratings (``WMaxRtg is required``) and the next is a day later.
This module replaces it for the gateway:

- nothing is built before every inverter has been read once in full (its
  ratings are known); an inverter still silent after :data:`PARTIAL_AFTER_S`
  does not hold the others back: the site is registered with the ratings it
  has, and again when the last one arrives (a change like any other);
- each resource is PUT when its content changes (DERStatus: its states, not
  its time stamps nor a battery's state of charge), DERStatus and
  DERAvailability also at the post rate, and DERCapability / DERSettings
  every :data:`REFRESH_S` in case the server lost them;
- a failed PUT (refused, or no answer) is tried again after a short bounded
  back-off (:data:`BACKOFF_FIRST_S` doubling to :data:`BACKOFF_MAX_S`), never
  after the next refresh;
- each resource's last PUT, its outcome and what it waits for are kept for
  ``status``.

The hrefs are looked up in the client's discovered state on every pass, so a
rediscovery that moves them is followed at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .identity import lfdi_text

log = logging.getLogger(__name__)

RESOURCES = ("DERCapability", "DERSettings", "DERStatus", "DERAvailability")
CONNECTION_POINT = "ConnectionPoint"
#: Retry after a failed PUT: seconds, doubling, bounded.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 2.0, 60.0
#: DERCapability and DERSettings are PUT again, unchanged, this often (seconds).
REFRESH_S = 3600.0
#: How often the registrar looks for a change (seconds): the reads are sums of a
#: few cached values, no device or server traffic.
TICK_S = 0.5
#: With several inverters, how long one that has never answered holds back the
#: site's registration (seconds after the first inverter's ratings are known).
PARTIAL_AFTER_S = 30.0
#: The shortest time between two PUTs of one resource (a flapping state is not a storm).
MIN_GAP_S = 1.0
#: Time stamps that change on every read: not a change of the resource.
_STAMPS = ("readingTime", "dateTime")
#: DERStatus values that move with every read while a battery works (the SoC, in
#: hundredths of %): sent at the post rate, never a change that PUTs at once.
_MOVING = ("stateOfChargeStatus",)


class NotReady(Exception):
    """A resource cannot be built yet; the message says what it waits for."""


@dataclass
class ResourceState:
    """One resource's registration, as ``status`` shows it."""

    href: str | None = None
    #: Wall-clock time of the last PUT attempt, and its outcome.
    last_put: float | None = None
    result: str = "waiting"
    #: Wall-clock time of the last PUT the server accepted.
    last_ok: float | None = None
    puts: int = 0
    failures: int = 0
    #: Monotonic time before which no retry is made (after a failure).
    retry_at: float = 0.0
    backoff: float = BACKOFF_FIRST_S
    #: What was last accepted (to detect a change), and when (monotonic).
    sent: Any = None
    sent_mono: float = 0.0

    def view(self) -> dict[str, Any]:
        return {"href": self.href, "last_put": self.last_put, "result": self.result,
                "last_ok": self.last_ok, "puts": self.puts, "failures": self.failures}


def _strip_stamps(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_stamps(x) for k, x in v.items() if k not in _STAMPS}
    return v


class Registrar:
    """PUTs the four DER resources of one EndDevice (``lfdi``) through py20305's client.

    ``site`` is the :class:`~.site_view.SiteView`; ``der_type`` the DERType
    reported; ``post_rate`` the seconds between DERStatus / DERAvailability
    PUTs when the server's EndDevice gives no postRate; ``extra_nameplate`` and
    ``extra_settings`` add profile fields (CSIP-AUS doeModes), ``csipaus_ns`` the
    namespace they are sent in (the server's: profile.py); ``connection_point`` the
    CSIP-AUS connection point id (NMI), PUT where the EndDevice links a ConnectionPoint.
    """

    def __init__(self, client: Any, lfdi: str, site: Any, *, der_type: int,
                 post_rate: float,
                 extra_nameplate: Callable[[], dict[str, Any]] = dict,
                 extra_settings: Callable[[], dict[str, Any]] = dict,
                 csipaus_ns: str | None = None,
                 connection_point: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.lfdi = lfdi.lower()
        self.site = site
        self.der_type = der_type
        self.post_rate = post_rate
        self.extra_nameplate = extra_nameplate
        self.extra_settings = extra_settings
        self.csipaus_ns = csipaus_ns
        self.connection_point = connection_point
        self.clock = clock
        names = RESOURCES + ((CONNECTION_POINT,) if connection_point else ())
        self.resources = {name: ResourceState() for name in names}
        self._first_ratings: float | None = None
        self._started = clock()
        self._wake = asyncio.Event()

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        return {name: r.view() for name, r in self.resources.items()}

    def wake(self, resend: bool = False) -> None:
        """Look now; ``resend``: PUT everything again, changed or not (a rediscovery: the
        server restarted and may have lost what it had)."""
        if resend:
            for r in self.resources.values():
                r.sent = None
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.pass_once()
            except Exception:  # a bug here must not end the registration for good
                log.exception("2030.5 registration pass failed")
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _done, pending = await asyncio.wait(waiters, timeout=TICK_S,
                                                return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def pass_once(self) -> None:
        """One look at every resource: PUT those that are due (in order)."""
        hrefs = self._hrefs()
        now = self.clock()
        for name, r in self.resources.items():
            href = hrefs.get(name)
            if href != r.href:
                r.href, r.sent = href, None  # moved: PUT it at the new place
            if href is None:
                r.result = "waiting: the server has not given its href"
                continue
            if r.failures and now < r.retry_at:
                continue
            try:
                key, build = self._content(name)
            except NotReady as exc:
                r.result = f"waiting: {exc}"
                continue
            if not self._due(name, r, key, now):
                continue
            await self._put(name, r, key, build)

    def _due(self, name: str, r: ResourceState, key: Any, now: float) -> bool:
        if r.sent is None:
            return True
        if key != r.sent:
            return now - r.sent_mono >= MIN_GAP_S
        every = self._post_rate() if name in ("DERStatus", "DERAvailability") else REFRESH_S
        return now - r.sent_mono >= every

    async def _put(self, name: str, r: ResourceState, key: Any,
                   build: Callable[[], bytes]) -> None:
        from py20305.client.errors import Sep2Error

        assert r.href is not None
        r.last_put = time.time()
        r.puts += 1
        try:
            code = await self.client.http.put_bytes(r.href, build())
        except (TimeoutError, Sep2Error, OSError, ValueError) as exc:
            status = getattr(exc, "status_code", None)
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            r.failures += 1
            r.result = (f"refused (HTTP {status}): {why}" if status else f"failed: {why}")
            delay = r.backoff
            r.backoff = min(BACKOFF_MAX_S, r.backoff * 2)
            r.retry_at = self.clock() + delay
            level = logging.WARNING if r.failures == 1 else logging.INFO
            log.log(level, "2030.5 %s PUT to %s %s; again in %.0f s", name, r.href, r.result,
                    delay)
            return
        if r.failures or r.sent is None:
            log.info("2030.5 %s PUT to %s: HTTP %s", name, r.href, code)
        r.result = f"ok (HTTP {code})"
        r.last_ok, r.sent, r.sent_mono = r.last_put, key, self.clock()
        r.failures, r.backoff, r.retry_at = 0, BACKOFF_FIRST_S, 0.0

    # -- content ---------------------------------------------------------------------------
    def _ready(self, name: str) -> None:
        """Raise NotReady until every inverter's ratings are known (or the wait is over).

        DERStatus alone goes without any: an inverter silent since the start is
        reported (not connected, not available) after :data:`PARTIAL_AFTER_S`."""
        known, total = self.site.ratings_known()
        if known == total and total:
            return
        now = self.clock()
        if known == 0:
            if name == "DERStatus" and now - self._started >= PARTIAL_AFTER_S:
                return
            raise NotReady("the inverter's first full read (its ratings)")
        if self._first_ratings is None:
            self._first_ratings = now
        if now - self._first_ratings < PARTIAL_AFTER_S:
            raise NotReady(f"ratings of {total - known} of {total} inverters")

    def _content(self, name: str) -> tuple[Any, Callable[[], bytes]]:
        """(what the resource says, for change detection; how to build its XML)."""
        from py20305.xml.serialization import to_xml

        from .profile import in_namespace, with_vpp_modes

        http = self.client.http
        compat, aus = http.server_2018_compat, http.csip_aus_mode
        if name == CONNECTION_POINT:  # configuration, not a reading: at once
            cp = self.connection_point
            return cp, lambda: (
                f'<csipaus:ConnectionPoint xmlns="urn:ieee:std:2030.5:ns" xmlns:csipaus='
                f'"{self.csipaus_ns}"><csipaus:connectionPointId>{cp}'
                "</csipaus:connectionPointId></csipaus:ConnectionPoint>").encode()
        self._ready(name)
        if name == "DERCapability":
            from py20305.telemetry.der_capability import build_der_capability

            plate = {**self.site.nameplate(), **self.extra_nameplate()}
            if plate.get("WMaxRtg") is None:
                raise NotReady("WMaxRtg (no inverter reports WRtg)")
            return plate, lambda: in_namespace(with_vpp_modes(to_xml(build_der_capability(
                plate, der_type=self.der_type, csip_aus_mode=aus),
                server_2018_compat=compat, include_csipaus=aus), plate.get("VppModes"),
                "vppModesSupported"), self.csipaus_ns)
        if name == "DERSettings":
            from py20305.telemetry.der_settings import build_der_settings

            conf = {**self.site.configuration(), **self.extra_settings()}
            if conf.get("WMax") is None:
                raise NotReady("WMax (no inverter reports WMax or WRtg)")
            return conf, lambda: in_namespace(with_vpp_modes(to_xml(build_der_settings(
                conf, updated_time=int(self._server_now()), csip_aus_mode=aus),
                server_2018_compat=compat, include_csipaus=aus), conf.get("VppModes"),
                "vppModesEnabled"), self.csipaus_ns)
        if name == "DERStatus":
            from py20305.telemetry.der_status import build_der_status

            st = self.site.status()
            key = _strip_stamps({k: v for k, v in st.items() if k not in _MOVING})
            return key, lambda: to_xml(build_der_status(
                st, server_2018_compat=compat,
                always_send_alarm_status=http.always_send_alarm_status,
                default_time=int(self._server_now())), server_2018_compat=compat)
        from py20305.telemetry.der_availability import build_der_availability

        av = self.site.availability()
        # W available moves with the sun: PUT at the post rate, not on every change.
        return av.get("statWAvail") is not None, lambda: to_xml(build_der_availability(
            av, default_time=int(self._server_now())), server_2018_compat=compat)

    # -- the client's state ----------------------------------------------------------------
    def _ours(self) -> list[Any]:
        """py20305's state of our EndDevice(s) (by LFDI)."""
        return [state for state in list(self.client.state.end_devices.values())
                if lfdi_text(state.lfdi) == self.lfdi]

    def _hrefs(self) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(self.resources)
        for state in self._ours():
            for name, attr in (("DERCapability", "der_capability_href"),
                               ("DERSettings", "der_settings_href"),
                               ("DERStatus", "der_status_href"),
                               ("DERAvailability", "der_availability_href")):
                out[name] = out[name] or getattr(state, attr, None)
            if CONNECTION_POINT in out:  # a csipaus link py20305 keeps as a wildcard
                for el in getattr(getattr(state, "device", None), "other_element", None) or ():
                    if str(getattr(el, "qname", "")).endswith("}ConnectionPointLink"):
                        out[CONNECTION_POINT] = out[CONNECTION_POINT] or (
                            getattr(el, "attributes", None) or {}).get("href")
        return out

    def _post_rate(self) -> float:
        for state in self._ours():
            rate = getattr(getattr(state, "device", None), "post_rate", None)
            if rate:
                return float(rate)
        return self.post_rate

    def _server_now(self) -> float:
        tb = getattr(self.client, "timebase", None)
        return tb.now() if tb is not None else time.time()
