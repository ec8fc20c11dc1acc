"""The agent's main loop: poll the inverter, publish what it says, keep time.

One loop, one thread: each cycle polls the inverter through the HAL and hands
the snapshot to the publishers (the MMS server) in one call. Quality is kept
true: the first poll that fails turns every value invalid (old-data), and the
first poll that succeeds turns them good again. A dead or absent inverter is
rediscovered every cycle; nothing here raises for a link failure.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hal.inverter import Inverter
from hal.reading import GOOD, LINK_FAILURE, Reading
from hal.transport import RetryPolicy, RtuTransport, SerialSettings, TcpTransport, Transport
from inverter_agent.config import Config
from inverter_agent.files import write_atomic

if TYPE_CHECKING:
    from inverter_agent.controller import Controller
    from inverter_agent.settings_service import SettingsService

log = logging.getLogger(__name__)

Publisher = Callable[[Mapping[str, Reading]], None]

#: Internal name of the link-health flag published with every snapshot.
LINK = "link"


def make_transport(cfg: Config) -> Transport:
    policy = RetryPolicy(timeout=cfg.transaction_timeout, retries=cfg["inverter.retries"],
                         backoff=min(0.05, cfg.transaction_timeout / 4), backoff_max=0.5)
    if cfg["inverter.modbus_tcp"]:
        host, _, port = cfg["inverter.modbus_tcp"].rpartition(":")
        return TcpTransport(host, int(port), policy)
    if cfg["inverter.modbus_rtu"]:
        return RtuTransport(SerialSettings(
            device=cfg["inverter.modbus_rtu"], baud=cfg["inverter.baud"],
            parity=cfg["inverter.parity"], stopbits=cfg["inverter.stopbits"],
            inter_frame_delay=cfg["inverter.inter_frame_delay"], rs485=cfg["inverter.rs485"],
            rts_level_for_tx=cfg["inverter.rts_level_for_tx"],
            delay_before_tx=cfg["inverter.delay_before_tx"],
            delay_before_rx=cfg["inverter.delay_before_rx"]), policy)
    raise ValueError("no inverter link configured: give [inverter] modbus_tcp or modbus_rtu "
                     "(or --modbus-tcp / --modbus-rtu)")


@dataclass(slots=True)
class CycleStats:
    """Timing of the loop, for the status file and the benchmarks."""

    cycles: int = 0
    failed_polls: int = 0
    overruns: int = 0
    last_poll_s: float = 0.0
    max_poll_s: float = 0.0
    link_up: bool = False
    link_changes: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.time)


class Agent:
    """Polls one inverter and publishes snapshots until stopped."""

    def __init__(self, cfg: Config, inverter: Inverter | None = None,
                 publishers: list[Publisher] | None = None,
                 controller: Controller | None = None) -> None:
        self.cfg = cfg
        self.period = cfg["agent.poll_period"]
        self.inverter = inverter or Inverter(
            make_transport(cfg), unit=cfg["inverter.unit"],
            bases=tuple(cfg["inverter.bases"]))
        self.publishers = list(publishers or [])
        self.controller = controller
        self.settings_service: SettingsService | None = None
        self.stats = CycleStats()
        #: More for status.json: name -> callable returning plain data.
        self.status_extra: dict[str, Callable[[], object]] = {}
        #: Called at the end of every completed cycle (the systemd watchdog ping).
        self.on_cycle: Callable[[], object] | None = None
        self.stop_event = threading.Event()
        self.state_dir = cfg["agent.state_dir"]
        self._status_every = max(1, round(5.0 / self.period))  # about every 5 s

    def cycle(self, now: float | None = None) -> dict[str, Reading]:
        """One poll and publish; returns the snapshot published."""
        now = time.time() if now is None else now
        t0 = time.monotonic()
        readings = self.inverter.poll(now)
        poll_s = time.monotonic() - t0
        up = self.inverter.last_error is None
        if up != self.stats.link_up:
            self.stats.link_changes += 1
            if up:
                log.info("inverter link up (unit %d)", self.inverter.unit)
            else:
                log.warning("inverter link down: %s", self.inverter.last_error)
        self.stats.link_up = up
        self.stats.last_error = self.inverter.last_error
        self.stats.cycles += 1
        self.stats.failed_polls += 0 if up else 1
        self.stats.last_poll_s = poll_s
        self.stats.max_poll_s = max(self.stats.max_poll_s, poll_s)
        snapshot = dict(readings)
        snapshot[LINK] = Reading(up, GOOD if up else LINK_FAILURE, now)
        if self.controller is not None:
            try:
                if self.settings_service is not None:
                    self.settings_service.tick()  # communication-loss revert
                self.controller.cycle(snapshot, time.monotonic())
            except Exception:  # never let a controller bug stop polling and publishing
                log.exception("controller cycle failed")
        for publish in self.publishers:
            try:
                publish(snapshot)
            except Exception:  # a publisher bug must not stop the inverter's supervision
                log.exception("publisher %r failed", publish)
        return snapshot

    def run(self) -> None:
        """Cycle on a fixed schedule until :meth:`stop`; overruns skip, never pile up."""
        log.info("agent running: poll period %.3f s, transaction timeout %.3f s",
                 self.period, self.cfg.transaction_timeout)
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            self.cycle()
            if self.on_cycle is not None:
                self.on_cycle()
            if self.stats.cycles % self._status_every == 1:
                self.write_status()
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay < 0:
                self.stats.overruns += 1
                next_t = time.monotonic()
                delay = 0
            self.stop_event.wait(delay)
        self.write_status()

    def stop(self) -> None:
        """Ask the loop to end; a poll stuck on a dead link ends at its next attempt."""
        self.stop_event.set()
        cancel = getattr(self.inverter.transport, "cancel", None)
        if cancel is not None:
            cancel()

    def close(self) -> None:
        self.inverter.close()

    def write_status(self) -> None:
        """Atomically write ``status.json`` in the state directory (for health views)."""
        if not self.state_dir:
            return
        s = self.stats
        dev = self.inverter.device
        status = {
            "time": time.time(), "link_up": s.link_up, "last_error": s.last_error,
            "cycles": s.cycles, "failed_polls": s.failed_polls, "overruns": s.overruns,
            "poll_period_s": self.period, "last_poll_s": round(s.last_poll_s, 4),
            "max_poll_s": round(s.max_poll_s, 4), "unit": self.inverter.unit,
            "models": dev.map.model_ids if dev else [],
            "base": dev.map.base if dev else None,
            "functions": self.controller.status_view() if self.controller else None,
        }
        for name, source in self.status_extra.items():
            try:
                status[name] = source()
            except Exception as exc:  # a status source must not stop the status file
                status[name] = {"error": str(exc)}
        try:
            write_atomic(os.path.join(self.state_dir, "status.json"),
                         json.dumps(status, indent=1, default=str).encode())
        except OSError as exc:
            log.warning("cannot write status to %s: %s", self.state_dir, exc)

