"""An optional metrics endpoint in the Prometheus text format, for watching a fleet.

Off by default (``[metrics] enabled``), on loopback by default. It serves
``GET /metrics`` from its own thread with a single-threaded HTTP server whose
connections time out (``[metrics] timeout``): a slow or stuck scraper delays the
next scrape, never the control loop. What it serves:

* the core's last :class:`~inverter_agent.core.view.CycleView` (``Core.view()``):
  link, readings by quality and the good numeric readings, health, function states,
  setpoints, trips (counted since start), each utility source's link;
* the status sources (``status.json``'s): poll timing and counters, Modbus bytes,
  and what every adapter reports (its clients; per-client bytes on the wire).

The status sources are read on the control loop's thread: a scrape asks for them,
the next cycle's :meth:`MetricsEndpoint.publish` gathers them, and the scrape waits
at most :data:`FRESH_WAIT_S` (else it serves the previous ones, with their age).

The endpoint behaves as an adapter (``start``, ``publish``, ``status``, ``stop``),
so the composition root starts, feeds and stops it with them; it is not a protocol
adapter (no registry line: it takes no command).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from inverter_agent.core.view import CycleView

log = logging.getLogger(__name__)

#: Seconds a scrape waits for the control loop to gather fresh status figures.
FRESH_WAIT_S = 2.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "inverter_agent_"


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class Exposition:
    """Metric families in the text format: each family's HELP and TYPE once, then its
    samples (added in any order, written grouped)."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: Any, /,
            **labels: object) -> None:
        number = _number(value)
        if number is None:
            return
        name = PREFIX + name
        family = self._families.setdefault(name, (kind, help_text, []))
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        sample = name + (f"{{{label_text}}}" if label_text else "")
        text = str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
        family[2].append(f"{sample} {text}")

    def text(self) -> str:
        out = []
        for name, (kind, help_text, samples) in self._families.items():
            out.append(f"# HELP {name} {_escape(help_text)}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


class MetricsEndpoint:
    """``GET /metrics`` on ``host:port`` from the core's view and the status sources."""

    name = "metrics"

    def __init__(self, host: str, port: int, timeout_s: float,
                 view: Callable[[], CycleView | None],
                 status: Callable[[], Mapping[str, Any]],
                 extra: Mapping[str, Callable[[], object]], version: str = "") -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._view, self._status, self._extra = view, status, extra
        self.version = version
        self._want = threading.Event()
        self._fresh = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._snapshot_t: float | None = None
        self._tripped: dict[str, bool] = {}
        self._trips: dict[str, int] = {}
        self.scrapes = 0
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the adapter's four methods
    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            timeout = self.timeout_s  # a silent or slow client is dropped after this

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics")
                    return
                try:
                    body = endpoint.render().encode()
                except Exception:  # a bug here must not end the thread or hang the scraper
                    log.exception("metrics: rendering failed")
                    self.send_error(500, "rendering failed (see the gateway's log)")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("metrics %s: " + fmt, self.address_string(), *args)

        self._server = HTTPServer((self.host, self.port), Handler)
        self._server.timeout = self.timeout_s
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="metrics",
                                        daemon=True)
        self._thread.start()
        from inverter_agent.security.bind import is_loopback

        log.log(logging.INFO if is_loopback(self.host) else logging.WARNING,
                "metrics (Prometheus text format) on http://%s:%d/metrics%s", self.host,
                self.port, "" if is_loopback(self.host) else
                ": not loopback, anyone who reaches it reads the gateway's state")

    def publish(self, view: CycleView) -> None:
        """On the loop's thread: count trips; gather the status sources if a scrape asks."""
        for inv in view.inverters:
            tripped = bool(inv.functions is not None and inv.functions.tripped)
            if tripped and not self._tripped.get(inv.name, False):
                self._trips[inv.name] = self._trips.get(inv.name, 0) + 1
            self._tripped[inv.name] = tripped
        if self._want.is_set():
            self._want.clear()
            snapshot = self._gather()
            with self._lock:
                self._snapshot, self._snapshot_t = snapshot, time.monotonic()
            self._fresh.set()

    def status(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "scrapes": self.scrapes}

    def stop(self, timeout_s: float) -> None:
        if self._server is not None:
            self._server.shutdown()  # serve_forever returns within its poll interval
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def ready_text(self) -> str:
        return f"metrics on http://{self.host}:{self.port}/metrics"

    # -- gathering and rendering
    def _gather(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            out["runner"] = dict(self._status())
        except Exception as exc:  # a status source's bug must not stop the loop
            log.debug("metrics: status failed: %s", exc)
        for name, source in self._extra.items():
            if name == "adapters":
                continue  # our own status among them; each adapter's parts come below
            try:
                out[name] = source()
            except Exception as exc:
                log.debug("metrics: status source %s failed: %s", name, exc)
        return out

    def render(self) -> str:
        """The exposition (on the HTTP thread)."""
        self.scrapes += 1
        self._fresh.clear()
        self._want.set()
        self._fresh.wait(FRESH_WAIT_S)
        with self._lock:
            snapshot, taken = self._snapshot, self._snapshot_t
        ex = Exposition()
        ex.add("info", "gauge", "the gateway; its version as a label", 1, version=self.version)
        ex.add("status_age_seconds", "gauge",
               "age of the status figures served (the control loop gathers them)",
               None if taken is None else time.monotonic() - taken)
        view = self._view()
        if view is not None:
            ex.add("view_age_seconds", "gauge", "age of the core's last cycle view",
                   time.time() - view.t)
            self._render_view(ex, view)
        self._render_status(ex, snapshot)
        return ex.text()

    def _render_view(self, ex: Exposition, view: CycleView) -> None:
        for inv in view.inverters:
            i = inv.name
            ex.add("link_up", "gauge", "1 when the inverter answered the last poll",
                   inv.link_up, inverter=i)
            by_quality: dict[str, int] = {}
            for name, reading in inv.readings.items():
                q = str(reading.quality)
                by_quality[q] = by_quality.get(q, 0) + 1
                if reading.quality.good and _number(reading.value) is not None and \
                        not isinstance(reading.value, bool):
                    ex.add("reading", "gauge", "a good numeric reading of the inverter "
                           "(the HAL's name, its unit)", reading.value, inverter=i, name=name)
            for q, n in sorted(by_quality.items()):
                ex.add("readings", "gauge", "readings of the last cycle by quality", n,
                       inverter=i, quality=q)
            fn = inv.functions
            ex.add("trips_total", "counter", "protection trips seen since the gateway started",
                   self._trips.get(i, 0), inverter=i)
            if fn is None:
                continue
            ex.add("health", "gauge", "IEC 61850 health: 1 ok, 2 warning, 3 alarm",
                   fn.health, inverter=i)
            ex.add("functions_running", "gauge", "1 while the grid functions run",
                   fn.running, inverter=i)
            ex.add("functions_state", "gauge", "the grid functions' state (1 for the current)",
                   1, inverter=i, state=fn.state)
            ex.add("tripped", "gauge", "1 while out of service on a protection trip",
                   fn.tripped, inverter=i)
            ex.add("standing_aside", "gauge", "1 while controls are released to the inverter",
                   fn.standing_aside is not None, inverter=i)
            ex.add("not_followed", "gauge", "functions the inverter does not follow",
                   len(fn.not_followed), inverter=i)
            for name, f in fn.functions.items():
                ex.add("function_enabled", "gauge", "1 when the function is enabled",
                       f.enabled, inverter=i, function=name)
                ex.add("function_active", "gauge", "1 when the function acts now",
                       f.active, inverter=i, function=name)
                if f.followed is not None:
                    ex.add("function_followed", "gauge", "1 when the inverter follows it",
                           f.followed, inverter=i, function=name)
            sp = fn.setpoints
            if sp is not None:
                ex.add("setpoint_connect", "gauge", "1 when the inverter is told to connect",
                       sp.connect, inverter=i)
                ex.add("setpoint_p_limit_percent", "gauge", "active-power limit commanded, %",
                       sp.p_limit_pct, inverter=i)
                ex.add("setpoint_pf", "gauge", "power factor commanded", sp.pf, inverter=i)
                ex.add("setpoint_q_percent", "gauge", "reactive power commanded, %",
                       sp.q_pct, inverter=i)
            ex.add("plant_cap_percent", "gauge", "the plant limit's share for this inverter, %",
                   fn.plant_cap_pct, inverter=i)
            for source, link in ((fn.utility or {}).get("sources") or {}).items():
                ex.add("utility_link_up", "gauge", "1 while the utility source's server answers",
                       link.get("state") == "connected", inverter=i, source=source)
                ex.add("utility_since_contact_seconds", "gauge",
                       "seconds since the utility source's server last answered",
                       link.get("since_contact_s"), inverter=i, source=source)

    def _render_status(self, ex: Exposition, snapshot: Mapping[str, Any]) -> None:
        runner = snapshot.get("runner") or {}
        inverters: Iterable[Mapping[str, Any]] = (
            runner["inverters"].values() if "inverters" in runner else [runner] if runner else [])
        for st in inverters:
            i = st.get("ld")
            for key, name, kind, text in (
                    ("poll_period_s", "poll_period_seconds", "gauge", "seconds between polls"),
                    ("last_poll_s", "poll_last_seconds", "gauge", "the last poll's duration"),
                    ("max_poll_s", "poll_max_seconds", "gauge", "the longest poll since start"),
                    ("mean_poll_s", "poll_mean_seconds", "gauge", "the mean poll since start"),
                    ("recent_p95_poll_s", "poll_recent_p95_seconds", "gauge",
                     "95th percentile of the polls in the current status window"),
                    ("cycles", "cycles_total", "counter", "poll cycles since start"),
                    ("failed_polls", "failed_polls_total", "counter", "failed polls since start"),
                    ("overruns", "overruns_total", "counter",
                     "cycles that took longer than the poll period")):
                ex.add(name, kind, text, st.get(key), inverter=i)
            mb = st.get("modbus_bytes") or {}
            for direction in ("in", "out"):
                ex.add("modbus_bytes_total", "counter", "Modbus bytes on the inverter's link "
                       "(shared by the inverters on one wire)", mb.get(f"bytes_{direction}"),
                       inverter=i, direction=direction)
            ex.add("modbus_transactions_total", "counter", "Modbus transactions on the link",
                   mb.get("transactions"), inverter=i)
        security = snapshot.get("security") or {}
        if security:
            ex.add("protocol_clients", "gauge", "clients connected to a protocol server",
                   security.get("connected"), protocol="mms")
            cert = security.get("certificate") or {}
            ex.add("certificate_days_left", "gauge", "days until the server certificate "
                   "expires", cert.get("days_left"), protocol="mms")
        for c in (snapshot.get("wire") or {}).get("clients") or []:
            for direction in ("in", "out"):
                ex.add("client_wire_bytes_total", "counter", "bytes on the wire per connected "
                       "client (TCP, headers included)", c.get(f"wire_{direction}"),
                       protocol="mms", peer=c.get("peer"), level=c.get("level"),
                       direction=direction)
        utility = snapshot.get("ieee2030_5") or {}
        if utility:
            ex.add("protocol_link_up", "gauge", "1 while the utility server answers",
                   utility.get("state") == "connected", protocol="ieee2030_5")
            ex.add("protocol_since_contact_seconds", "gauge",
                   "seconds since the utility server last answered",
                   utility.get("since_contact_s"), protocol="ieee2030_5")


def load(cfg: Any, core: Any, runner: Any) -> list[MetricsEndpoint]:
    """The endpoint if ``[metrics] enabled`` (a list: the composition root extends its
    adapters with it), else none."""
    if not cfg["metrics.enabled"]:
        return []
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("inverter-agent")
    except PackageNotFoundError:
        release = "unknown"
    return [MetricsEndpoint(cfg["metrics.host"], cfg["metrics.port"], cfg["metrics.timeout"],
                            core.view, runner.status_view, runner.status_extra, release)]
