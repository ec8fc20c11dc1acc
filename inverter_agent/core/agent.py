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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hal.inverter import Inverter
from hal.reading import GOOD, LINK_FAILURE, Reading
from hal.transport import RetryPolicy, RtuTransport, SerialSettings, TcpTransport, Transport
from inverter_agent.config import Config, link_timeout
from inverter_agent.core.files import write_atomic
from inverter_agent.core.pollrate import PROVISIONAL_PERIOD, PollRate, log_choice

if TYPE_CHECKING:
    from inverter_agent.core.controller import Controller
    from inverter_agent.core.settings_service import SettingsService

log = logging.getLogger(__name__)

Publisher = Callable[[Mapping[str, Reading]], None]

#: Internal name of the link-health flag published with every snapshot.
LINK = "link"
#: Seconds between status files.
STATUS_EVERY_S = 5.0
#: Internal name of the health published with every snapshot (HealthKind: 1 Ok,
#: 2 Warning, 3 Alarm): alarm when the link is down or the functions stand aside.
HEALTH = "health"
#: At most this many poll times per status window (about 5 s of cycles).
RECENT_POLLS = 2000
#: While a link stays down for the same cause, the cause is logged again at most this often.
LINK_DOWN_REPEAT_S = 300.0
#: A different cause while down is logged at once, unless one was logged this recently.
LINK_CAUSE_CHANGE_S = 10.0


def make_transport(cfg: Config, link: Mapping[str, Any] | None = None) -> Transport:
    """The transport for ``link`` (``[inverter]``-style settings; default ``[inverter]``)."""
    link = cfg.values["inverter"] if link is None else link
    timeout = link_timeout(link, cfg["agent.poll_period"])
    policy = RetryPolicy(timeout=timeout, retries=link["retries"],
                         backoff=min(0.05, timeout / 4), backoff_max=0.5)
    if link["modbus_tcp"]:
        host, _, port = link["modbus_tcp"].rpartition(":")
        return TcpTransport(host, int(port), policy)
    if link["modbus_rtu"]:
        return RtuTransport(SerialSettings(
            device=link["modbus_rtu"], baud=link["baud"], parity=link["parity"],
            stopbits=link["stopbits"], inter_frame_delay=link["inter_frame_delay"],
            rs485=link["rs485"], rts_level_for_tx=link["rts_level_for_tx"],
            delay_before_tx=link["delay_before_tx"],
            delay_before_rx=link["delay_before_rx"]), policy)
    raise ValueError("no inverter link configured: give [inverter] modbus_tcp or modbus_rtu "
                     "(or --modbus-tcp / --modbus-rtu)")


def supervise(runner: Any) -> None:
    """The main loop of an :class:`Agent` or a :class:`~inverter_agent.core.site.Site`: a
    cycle, the watchdog ping (``on_cycle``) and a status file every ~5 s, on the
    runner's period until its ``stop_event``; a last status file at the end."""
    last_status = [-1e18]

    def step() -> None:
        runner.cycle()
        for hook in runner.after_cycle:  # the composition root publishes the cycle's view
            try:
                hook()
            except Exception:  # a hook's bug must not stop the inverters' supervision
                log.exception("after-cycle hook %r failed", hook)
        if runner.on_cycle is not None:
            runner.on_cycle()
        # By time, not by cycle count: an automatic period changes while running.
        now = time.monotonic()
        if now - last_status[0] >= STATUS_EVERY_S:
            last_status[0] = now
            runner.write_status()

    run_every(lambda: runner.period, runner.stop_event, step, runner.stats)
    runner.write_status()


def run_every(period: float | Callable[[], float], stop_event: threading.Event,
              step: Callable[[], None], stats: CycleStats) -> None:
    """Call ``step()`` every ``period`` seconds until ``stop_event``; an overrun skips
    ahead (counted in ``stats.overruns``), it never piles cycles up. ``period`` may be
    a callable, asked after every cycle (a period chosen while running)."""
    get_period = period if callable(period) else (lambda: period)
    next_t = time.monotonic()
    while not stop_event.is_set():
        step()
        next_t += get_period()
        delay = next_t - time.monotonic()
        if delay < 0:
            stats.overruns += 1
            next_t = time.monotonic()
            delay = 0
        stop_event.wait(delay)


class LinkDiagnosis:
    """Says in the log why an inverter link is down, without flooding it.

    The first failed poll logs its cause at WARNING, also when the link has never
    come up (a missing serial device, a wrong unit id). While it stays down the same
    cause is logged again at most every ``repeat_s`` with how long and how many polls;
    a different cause at once, unless one was logged in the last ``change_s``.
    The link coming up is logged at INFO.
    """

    def __init__(self, name: str, unit: int, repeat_s: float = LINK_DOWN_REPEAT_S,
                 change_s: float = LINK_CAUSE_CHANGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.unit = name, unit
        self.repeat_s, self.change_s, self.clock = repeat_s, change_s, clock
        self.cause: str | None = None
        self.down_since = 0.0
        self.last_logged = 0.0
        self.failures = 0
        self.logged = 0

    def failed(self, cause: str | None) -> None:
        now = self.clock()
        cause = cause or "no answer"
        self.failures += 1
        if self.cause is None:
            self.down_since = now
            self._log(now, cause, f"{self.name}: inverter link down (unit {self.unit}): "
                                  f"{cause}{_hint(cause)}")
        elif cause != self.cause and now - self.last_logged >= self.change_s or \
                now - self.last_logged >= self.repeat_s:
            self._log(now, cause, f"{self.name}: inverter link still down after "
                                  f"{now - self.down_since:.0f} s ({self.failures} failed "
                                  f"polls, unit {self.unit}): {cause}{_hint(cause)}")

    def _log(self, now: float, cause: str, text: str) -> None:
        self.cause, self.last_logged = cause, now
        self.logged += 1
        log.warning("%s", text)

    def up(self) -> None:
        if self.cause is not None or self.failures == 0:
            log.info("%s: inverter link up (unit %d)", self.name, self.unit)
        self.cause, self.failures = None, 0


def _hint(cause: str) -> str:
    """What an installer checks first for a cause the log names."""
    low = cause.lower()
    if "does not exist" in low or "no such file" in low or "could not open port" in low:
        return " (is the RS-485 adapter plugged in, and the device path right? " \
               "see docs/install.md)"
    if any(w in low for w in ("no answer", "timed out", "timeout", "no sunspec", "not sunspec")):
        return " (check the unit id, wiring and baud rate: inverter-agent scan lists what " \
               "answers)"
    return ""


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
    sum_poll_s: float = 0.0
    started: float = field(default_factory=time.time)
    #: Poll times since the status file was last written (percentiles per status window).
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_POLLS))

    def polled(self, poll_s: float) -> None:
        self.cycles += 1
        self.last_poll_s = poll_s
        self.max_poll_s = max(self.max_poll_s, poll_s)
        self.sum_poll_s += poll_s
        self.recent.append(poll_s)

    def timing(self) -> dict[str, Any]:
        recent = sorted(self.recent)

        def q(f: float) -> float:
            return round(recent[min(len(recent) - 1, int(f * len(recent)))], 4) if recent \
                else 0.0

        return {"cycles": self.cycles, "failed_polls": self.failed_polls,
                "overruns": self.overruns, "last_poll_s": round(self.last_poll_s, 4),
                "max_poll_s": round(self.max_poll_s, 4),
                "mean_poll_s": round(self.sum_poll_s / self.cycles, 4) if self.cycles else 0.0,
                "recent_polls": len(recent), "recent_p50_poll_s": q(0.5),
                "recent_p95_poll_s": q(0.95), "recent_max_poll_s": q(1.0)}

    def new_window(self) -> None:
        """Start the next status window of the ``recent_*`` figures."""
        self.recent.clear()


class Agent:
    """Polls one inverter and publishes snapshots until stopped.

    Alone it runs its own loop (:meth:`run`); with several inverters a
    :class:`~inverter_agent.core.site.Site` calls :meth:`cycle` of each in one loop.
    """

    def __init__(self, cfg: Config, inverter: Inverter | None = None,
                 publishers: list[Publisher] | None = None,
                 controller: Controller | None = None, name: str | None = None) -> None:
        self.cfg = cfg
        self.name = name or (cfg.links[0].name if cfg.links else "INV1")
        self.inverter = inverter or Inverter(
            make_transport(cfg), unit=cfg["inverter.unit"],
            bases=tuple(cfg["inverter.bases"]))
        #: With ``poll_period = "auto"`` the link's own figures choose the period.
        self.poll_rate: PollRate | None = None
        if cfg["agent.poll_period"] == "auto":
            self.poll_rate = PollRate(self.inverter.transport)
            self.period = PROVISIONAL_PERIOD
        else:
            self.period = float(cfg["agent.poll_period"])
        #: Consecutive failed polls, and (monotonic) when a down link is tried next.
        self.fail_streak = 0
        self.next_try = 0.0
        self.last_snapshot: dict[str, Reading] = {}
        self.publishers = list(publishers or [])
        self.controller = controller
        self.settings_service: SettingsService | None = None
        self.stats = CycleStats()
        #: More for status.json: name -> callable returning plain data.
        self.status_extra: dict[str, Callable[[], object]] = {}
        #: Called at the end of every completed cycle (the systemd watchdog ping).
        self.on_cycle: Callable[[], object] | None = None
        #: Called after every cycle of this runner's own loop (the adapters' view).
        self.after_cycle: list[Callable[[], None]] = []
        self.stop_event = threading.Event()
        self.state_dir = cfg["agent.state_dir"]
        self.diagnosis = LinkDiagnosis(self.name, self.inverter.unit)

    def cycle(self, now: float | None = None, poll: bool = True) -> dict[str, Reading]:
        """One poll and publish; returns the snapshot published.

        ``poll=False`` does not ask the inverter (its link is down and it is not
        yet due again): the functions and publishers get the stale snapshot.
        """
        now = time.time() if now is None else now
        t0 = time.monotonic()
        if not poll:
            readings = self.inverter.unreachable(now)
            up = False
        else:
            if self.poll_rate is not None:
                self.poll_rate.before_poll()
            readings = self.inverter.poll(now)
            poll_s = time.monotonic() - t0
            up = self.inverter.last_error is None
            if self.poll_rate is not None:
                choice = self.poll_rate.after_poll(poll_s, up,
                                                   getattr(self.inverter, "last_poll_kind", ""))
                if choice is not None:
                    self.set_period(choice.period_s)
                    log_choice(self.name, choice)
            if up != self.stats.link_up:
                self.stats.link_changes += 1
            if up and not self.stats.link_up:
                self.diagnosis.up()
            elif not up:  # logged once, then rate-limited: never once a cycle
                self.diagnosis.failed(self.inverter.last_error)
            self.stats.link_up = up
            self.stats.last_error = self.inverter.last_error
            self.stats.failed_polls += 0 if up else 1
            self.stats.polled(poll_s)
            self.fail_streak = 0 if up else self.fail_streak + 1
        snapshot = dict(readings)
        snapshot[LINK] = Reading(up, GOOD if up else LINK_FAILURE, now)
        if self.controller is not None:
            try:
                if self.settings_service is not None:
                    self.settings_service.tick()  # communication-loss revert
                self.controller.cycle(snapshot, time.monotonic())
            except Exception:  # never let a controller bug stop polling and publishing
                log.exception("controller cycle failed")
        health = 3 if not up else (self.controller.health if self.controller else 1)
        snapshot[HEALTH] = Reading(health, GOOD, now)
        for publish in self.publishers:
            try:
                publish(snapshot)
            except Exception:  # a publisher bug must not stop the inverter's supervision
                log.exception("publisher %r failed", publish)
        self.last_snapshot = snapshot
        return snapshot

    def set_period(self, period: float) -> None:
        """Poll every ``period`` seconds from the next cycle (the controller's timing too)."""
        self.period = period
        if self.controller is not None and hasattr(self.controller, "set_control_period"):
            self.controller.set_control_period(period)

    def run(self) -> None:
        """Cycle on a fixed schedule until :meth:`stop`; overruns skip, never pile up."""
        if self.poll_rate is not None:
            log.info("agent running: poll period auto (%.3f s until the link is measured), "
                     "transaction timeout %.3f s", self.period, self.cfg.transaction_timeout)
        else:
            log.info("agent running: poll period %.3f s, transaction timeout %.3f s",
                     self.period, self.cfg.transaction_timeout)
        supervise(self)

    def stop(self) -> None:
        """Ask the loop to end; a poll stuck on a dead link ends at its next attempt."""
        self.stop_event.set()
        cancel = getattr(self.inverter.transport, "cancel", None)
        if cancel is not None:
            cancel()

    def close(self) -> None:
        self.release_on_stop()
        self.inverter.close()

    def release_on_stop(self) -> None:
        """What the controller leaves the inverter with when the gateway stops cleanly."""
        if self.controller is not None and hasattr(self.controller, "on_stop"):
            resume = getattr(self.inverter.transport, "resume", None)
            if resume is not None:  # stop() cancelled the link to end a stuck poll
                resume()
            try:
                self.controller.on_stop()
            except Exception:  # stopping goes on whatever the last write does
                log.exception("controller stop failed")

    def status_view(self) -> dict[str, Any]:
        """This inverter's link, poll timing, models and functions, as plain data."""
        s = self.stats
        dev = self.inverter.device
        return {
            "ld": self.name, "link_up": s.link_up, "last_error": s.last_error,
            "poll_period_s": self.period, "poll_period_auto": self.poll_period_view(),
            **s.timing(), "unit": self.inverter.unit,
            "models": dev.map.model_ids if dev else [],
            "base": dev.map.base if dev else None,
            "functions": self.controller.status_view() if self.controller else None,
            # Counted by the transport: shared by every inverter on the same wire.
            "modbus_bytes": _modbus_bytes(self.inverter.transport),
        }

    def poll_period_view(self) -> dict[str, Any] | None:
        """How an automatic poll period was chosen (None: the period is configured)."""
        if self.poll_rate is None:
            return None
        if self.poll_rate.choice is None:
            return {"chosen_s": None, "reason": f"measuring the link (polling at "
                                                f"{self.period:.3f} s meanwhile)"}
        return self.poll_rate.choice.as_dict()

    def write_status(self) -> None:
        """Atomically write ``status.json`` in the state directory (for health views)."""
        write_status_file(self.state_dir, {"time": time.time(), **self.status_view()},
                          self.status_extra)
        self.stats.new_window()


def _modbus_bytes(transport: Any) -> dict[str, int] | None:
    stats = getattr(transport, "stats", None)
    if stats is None:
        return None
    return {"bytes_out": stats.bytes_out, "bytes_in": stats.bytes_in,
            "transactions": stats.transactions}


def write_status_file(state_dir: str, status: dict[str, Any],
                      extra: Mapping[str, Callable[[], object]]) -> None:
    """``status`` plus every ``extra`` source, written atomically to ``status.json``."""
    if not state_dir:
        return
    for name, source in extra.items():
        try:
            status[name] = source()
        except Exception as exc:  # a status source must not stop the status file
            status[name] = {"error": str(exc)}
    try:
        # Rewritten every 5 s and rebuilt after a restart: never fsynced onto the SD card.
        write_atomic(os.path.join(state_dir, "status.json"),
                     json.dumps(status, indent=1, default=str).encode(), durable=False)
    except OSError as exc:
        log.warning("cannot write status to %s: %s", state_dir, exc)
