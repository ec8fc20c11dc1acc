"""The one composition root: config -> inverters -> core -> adapters -> loop.

``inverter-agent run``, the conformance bench and the test harness build the
gateway here and nowhere else. The adapters come from
:data:`inverter_agent.adapters.REGISTRY`: each is loaded when its config section
enables it, handed an :class:`~inverter_agent.adapters.base.AdapterContext`, and
from then on sees the core only as the :class:`~inverter_agent.core.view.CycleView`
published once a cycle and the :class:`~inverter_agent.core.api.Core` command API.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from inverter_agent import config as config_mod
from inverter_agent.adapters import REGISTRY
from inverter_agent.adapters.base import STOP_BOUND_S, Adapter, AdapterContext
from inverter_agent.core.api import Commands, Core
from inverter_agent.core.status import functions_status
from inverter_agent.core.storage import storage_view
from inverter_agent.core.view import CycleView, PlantView, StorageView, inverter_view

log = logging.getLogger(__name__)


def make_agents(cfg: config_mod.Config, links: list[config_mod.InverterLink]) -> list[Any]:
    """One agent per inverter; inverters on one wire share its transport. With several,
    each keeps its settings and events in ``<state_dir>/<logical device>``."""
    from hal.inverter import Inverter
    from inverter_agent.core.agent import Agent, make_transport

    transports: dict[tuple[str, str], Any] = {}
    agents = []
    for link in links:
        if link.link not in transports:
            transports[link.link] = make_transport(cfg, link.settings)
        inverter = Inverter(transports[link.link], unit=link.unit,
                            bases=tuple(link.settings["bases"]))
        agent = Agent(cfg, inverter=inverter, name=link.ld_inst)
        if cfg["functions.enabled"]:
            state_dir = cfg["agent.state_dir"]
            if len(links) > 1:
                state_dir = os.path.join(state_dir, link.ld_inst)
                os.makedirs(state_dir, exist_ok=True)
            agent.controller, agent.settings_service = make_controller(cfg, inverter, state_dir)
        agents.append(agent)
    return agents


def make_controller(cfg: config_mod.Config, inverter: Any,
                    state_dir: str | None = None) -> tuple[Any, Any]:
    """The local controller and its settings service (persisted or profile defaults)."""
    from inverter_agent.core.controller import Controller
    from inverter_agent.core.events import EventLog
    from inverter_agent.core.settings_service import SettingsService
    from inverter_agent.core.settings_store import SettingsStore

    state_dir = state_dir or cfg["agent.state_dir"]
    events = EventLog(state_dir, max_bytes=cfg["functions.event_log_bytes"])
    store = SettingsStore(state_dir, cfg["functions.profile"])
    service = SettingsService(store, events, revert_after_s=cfg["functions.revert_after"] or None)
    settings = service.effective()
    log.info("grid functions running from %s", service.origin)
    period = cfg["agent.poll_period"]
    if period == "auto":  # the agent states its choice, and what it means, once made
        from inverter_agent.core.pollrate import PROVISIONAL_PERIOD
        period = PROVISIONAL_PERIOD
    elif 2 * period > 0.16:
        log.warning("poll period %.2f s: clearing times shorter than two poll periods (e.g. "
                    "0.16 s) can only be met by the inverter's own protection; the gateway's "
                    "backup trip fires on the first poll that sees the condition", period)
    controller = Controller(inverter, settings, events,
                            nominal_voltage=cfg["functions.nominal_voltage"],
                            follow_timeout_s=cfg["functions.follow_timeout"],
                            steering=cfg["functions.steering"],
                            verify_every_s=cfg["functions.verify_every"],
                            control_period_s=period,
                            revert_timeout=cfg["functions.revert_timeout"],
                            state_dir=state_dir)
    service.bind(controller.apply_settings)
    controller.window_source = service.window
    return controller, service


def cycle_view(agents: list[Any], plant: Any = None, now: float | None = None,
               settings_cache: dict[str, tuple[int, dict[str, Any]]] | None = None,
               site: Any = None) -> CycleView:
    """The immutable view of the cycle that just ended (built on the loop's thread).

    The effective settings are rebuilt only when their version changes (``settings_cache``
    keeps the last per inverter): a cycle runs many times a second, settings change rarely.
    """
    cache = settings_cache if settings_cache is not None else {}
    inverters = []
    for a in agents:
        functions = None
        settings = None
        if a.controller is not None:
            service = a.settings_service
            utility = service.utility_comms() if service else None
            functions = functions_status(a.controller, utility)
            if service is not None:
                hit = cache.get(a.name)
                if hit is None or hit[0] != service.version:
                    hit = cache[a.name] = (service.version, service.effective_dict())
                settings = hit[1]
        inverters.append(inverter_view(a.name, a.last_snapshot, bool(a.stats.link_up),
                                       functions, settings, _storage(a)))
    plant_view = None
    if plant is not None:
        st = plant.status_view()
        plant_view = PlantView(plant.ld, st.get("limit") or {}, st.get("totals") or {})
    return CycleView(time.time() if now is None else now, tuple(inverters), plant_view,
                     site=site)


def _storage(agent: Any) -> StorageView | None:
    """The inverter's battery for the view: the snapshot's, with what the controller
    commands (None without a storage model)."""
    c = agent.controller
    if c is None:
        return storage_view(agent.last_snapshot)
    sp = c.status.setpoints
    a = c.assessment
    return storage_view(agent.last_snapshot, a.w_base if a is not None else None,
                        sp.storage_w if sp is not None else None,
                        sp.storage_cause if sp is not None else "", c.status.storage_problem,
                        c.settings.set_active_power.reserve_pct)


class App:
    """The gateway built from one config: its runner (one inverter or a site), the
    core, and every enabled adapter."""

    def __init__(self, cfg: config_mod.Config,
                 only: tuple[str, ...] | None = None) -> None:
        from inverter_agent.core.agent import Agent
        from inverter_agent.core.site import PlantService, Site
        from inverter_agent.security.config import security_from_config

        self.cfg = cfg
        os.makedirs(cfg["agent.state_dir"], exist_ok=True)
        links = cfg.inverter_links()
        multi = len(links) > 1
        self.agents = make_agents(cfg, links)
        self.plant = None
        self.runner: Agent | Site
        if multi:
            self.plant = PlantService(cfg["agent.state_dir"], cfg["plant.ld_inst"],
                                      cfg["plant.w_max"])
            self.runner = Site(cfg, self.agents, self.plant)
        else:
            self.runner = self.agents[0]
        # One security set for every adapter (TLS, roles, the one hash-chained audit log).
        tls, access, audit = security_from_config(cfg)
        commands = {a.name: Commands(a.name, a.settings_service, audit)
                    for a in self.agents if a.settings_service is not None}
        first_events = next((a.settings_service.events for a in self.agents
                             if a.settings_service is not None), None)

        def record(kind: str, detail: str, who: str) -> None:
            if first_events is not None:
                first_events.record(kind, detail, who=who)

        # The site meter at the connection point ([meter]): read after each cycle of the
        # inverters, before the view is published; on the first inverter's wire or its own.
        from inverter_agent.core.meter import make_service

        self.site_meter = make_service(
            cfg, self.agents, {link.link: a.inverter.transport
                               for link, a in zip(links, self.agents, strict=True)},
            lambda kind, detail: record(kind, detail, "site meter"))
        self.runner.after_cycle.insert(0, self.site_meter.cycle)
        # On an inverter's bus its read counts in the auto period, once (a site sums them).
        meter = self.site_meter.meter
        on_bus = [a for a in self.agents
                  if meter is not None and meter.transport is a.inverter.transport]
        if on_bus and on_bus[0].poll_rate is not None:
            on_bus[0].poll_rate.sharers.append(("site meter", self.site_meter.read_s))
        if self.site_meter.meter is not None:
            self.runner.status_extra["site_meter"] = self.site_meter.status_view
        self.core = Core(commands, audit=audit, plant=self.plant, record=record,
                         state_dir=cfg["agent.state_dir"])
        self.context = AdapterContext(cfg, self.core, tuple(a.name for a in self.agents),
                                      functions=bool(commands), plant=self.plant,
                                      status_extra=self.runner.status_extra,
                                      tls=tls, access=access, audit=audit)
        self.adapters: list[Adapter] = []
        for spec in REGISTRY:
            if only is not None and spec.name not in only:
                continue
            if not spec.module("keys").enabled(cfg):
                continue  # not imported at all: its engine stays out of memory
            adapter = spec.function("load")(self.context)
            if adapter is not None:
                self.adapters.append(adapter)
        from inverter_agent import metrics  # [metrics]: off unless enabled; started with them
        self.adapters.extend(metrics.load(cfg, self.core, self.runner))
        self.runner.status_extra["adapters"] = self.adapter_status
        self.runner.status_extra["storage"] = self.storage_status
        self._settings_cache: dict[str, tuple[int, dict[str, Any]]] = {}
        self.runner.after_cycle.append(self.publish)

    def publish(self) -> None:
        """After each cycle: one view for the core and every adapter."""
        view = cycle_view(self.agents, self.plant, settings_cache=self._settings_cache,
                          site=self.site_meter.view())
        self.core.publish(view)
        for adapter in self.adapters:
            try:
                adapter.publish(view)
            except Exception:  # one adapter's bug must not stop the loop or the others
                log.exception("adapter %s: publish failed", adapter.name)

    def storage_status(self) -> dict[str, Any]:
        """Each inverter's battery for status.json (SoC, rates, setpoint, why not)."""
        return {a.name: v.as_dict() for a in self.agents if (v := _storage(a)) is not None}

    def adapter_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for adapter in self.adapters:
            try:
                out[adapter.name] = adapter.status()
            except Exception as exc:
                out[adapter.name] = {"error": str(exc)}
        return out

    def start(self) -> None:
        for adapter in self.adapters:
            adapter.start()

    def stop(self, timeout_s: float = STOP_BOUND_S) -> None:
        """Stop the adapters (newest first), each within ``timeout_s``, then the links."""
        for adapter in reversed(self.adapters):
            try:
                adapter.stop(timeout_s)
            except Exception:
                log.exception("adapter %s: stop failed", adapter.name)
        self.runner.close()
        meter = self.site_meter.meter
        if meter is not None and all(meter.transport is not a.inverter.transport
                                     for a in self.agents):
            meter.close()  # its own link (a shared wire closed above)

    def run(self, on_ready: Callable[[str], object] | None = None,
            on_cycle: Callable[[], object] | None = None,
            on_stopping: Callable[[], object] | None = None) -> int:
        """Serve until SIGTERM / SIGINT: start the adapters, run the loop, stop within 5 s."""
        runner = self.runner

        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            runner.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.start()
        runner.on_cycle = on_cycle  # pinged by the loop itself: a stuck loop stops it
        loop = threading.Thread(target=runner.run, name="agent-loop", daemon=True)
        loop.start()
        if on_ready is not None:
            on_ready("; ".join(getattr(a, "ready_text", a.name) for a in self.adapters)
                     or "polling (no protocol adapter enabled)")
        while loop.is_alive() and not runner.stop_event.is_set():
            loop.join(0.5)
        # Stop within 5 s even if a transaction is stuck on the wire: its timeout is
        # bounded, but never wait on it past this.
        if on_stopping is not None:
            on_stopping()
        loop.join(3.0)
        if loop.is_alive():
            log.warning("control loop still inside a transaction; stopping without it")
        self.stop()
        log.info("stopped")
        return 0
