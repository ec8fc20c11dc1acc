"""The device under test: the gateway's own Agent + Controller, run in-process.

A conformance run tests the *system* the gateway makes with its inverter: the
Agent polls the inverter through the HAL and the Controller runs the grid
functions and steers it, exactly as ``inverter-agent run`` does, in a thread.
The measurements a procedure judges are the Agent's own snapshots (one a poll
period, 10 Hz by default), recorded by a publisher with monotonic timestamps.
Reusing the Agent's poll keeps a single Modbus master on the link (an RS-485
bus allows only one) and keeps this package on the HAL's named interface.

Time stamps: a sample is stamped when its poll is complete (after the poll's
transactions and the controller's writes of that cycle), so a response looks
late by up to one transaction, never early.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.inverter import OperatingState as InvSt
from hal.reading import Reading
from inverter_agent import config as config_mod
from inverter_agent.app import App
from inverter_agent.core.agent import LINK
from inverter_agent.functions import OperatingState, Settings, settings_to_dict

log = logging.getLogger(__name__)

#: Inverter operating states that energize the grid (SunSpec St).
ENERGIZING = {int(InvSt.STARTING), int(InvSt.MPPT), int(InvSt.THROTTLED)}
#: Below this output (% of rated VA) the DER counts as not exporting / ceased
#: (1547-2018 Table 3 accuracy is 5 %; 2 % keeps clear of meter noise at zero).
CEASED_PCT = 2.0
#: Seconds to wait for the first valid reading before giving up on the link.
LINK_TIMEOUT_S = 10.0
#: Reads of the wall/monotonic clock pair; the tightest bracket gives the offset.
CLOCK_PAIR_TRIES = 8


def wall_minus_clock(clock: Callable[[], float] = time.monotonic,
                     wall: Callable[[], float] = time.time,
                     tries: int = CLOCK_PAIR_TRIES) -> float:
    """``wall() - clock()`` at one instant, from the most tightly bracketed of ``tries`` reads.

    The event log and the link's poll start times are wall-clock times; the
    bench clock is monotonic. One read of each, one after the other, is off by
    whatever ran between them: on a loaded machine the process can be
    preempted there for tens of milliseconds, and every wall time would then
    look that much early on the bench clock (a trip logged 0.1 s after a grid
    step looked like 5 ms). So the wall clock is read between two monotonic
    reads and the pair with the smallest gap is used.
    """
    best_gap, best = float("inf"), 0.0
    for _ in range(max(1, tries)):
        a = clock()
        w = wall()
        b = clock()
        if b - a < best_gap:
            best_gap, best = b - a, w - (a + b) / 2.0
    return best


class InverterUnreachable(ConnectionError):
    """No valid reading from the inverter: the link or the device is not there."""


@dataclass(frozen=True, slots=True)
class Link:
    """How to reach the inverter (the same choices as ``inverter-agent run``)."""

    modbus_tcp: str | None = None
    modbus_rtu: str | None = None
    baud: int | None = None
    unit: int = 1

    def describe(self) -> str:
        if self.modbus_tcp:
            return f"modbus-tcp {self.modbus_tcp} unit {self.unit}"
        return f"modbus-rtu {self.modbus_rtu} {self.baud or 9600} baud unit {self.unit}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll of the inverter, in engineering units of its ratings.

    ``t`` is seconds on the bench clock (monotonic, zero at bench start) when the
    sample was complete, ``t_read`` when its poll began (the readings were taken
    in between);
    ``p_pct`` is % of rated W, ``q_pct`` % of rated VA (+ = injecting);
    ``energizing`` is what the inverter's operating state says (None: not
    reported); ``state`` is the gateway engine's operating state.
    """

    t: float
    valid: bool
    v_pu: float
    v_min_pu: float
    v_max_pu: float
    f_hz: float
    p_pct: float
    q_pct: float
    energizing: bool | None
    conn_cmd: bool | None
    state: str
    t_read: float | None = None

    @property
    def ceased(self) -> bool:
        """Not energizing: the inverter says so, or its output is below CEASED_PCT."""
        if self.energizing is False:
            return True
        return abs(self.p_pct) < CEASED_PCT and abs(self.q_pct) < CEASED_PCT

    def as_row(self) -> list[Any]:
        return [round(self.t, 4), None if self.t_read is None else round(self.t_read, 4),
                self.valid, round(self.v_pu, 5), round(self.f_hz, 4),
                round(self.p_pct, 3), round(self.q_pct, 3), self.energizing, self.conn_cmd,
                self.state]


SAMPLE_COLUMNS = ["t_s", "t_read_s", "valid", "v_pu", "f_hz", "p_pct_rated_w", "q_pct_rated_va",
                  "energizing", "conn_command", "gateway_state"]


def _val(s: Mapping[str, Reading], name: str) -> Any:
    r = s.get(name)
    return r.value if r is not None and r.value is not None and r.quality.good else None


@dataclass(frozen=True, slots=True)
class Ratings:
    """What the inverter says it is (nameplate), for per-unit conversions."""

    w_rtg: float
    va_rtg: float
    v_nom: float
    var_rtg: float | None


class Bench:
    """Runs the gateway against the inverter and records what it sees.

    Use as a context manager. ``settings`` is what the controller starts with;
    procedures change it with :meth:`apply_settings` (as a utility write would).
    """

    def __init__(self, link: Link, settings: Settings, state_dir: str,
                 poll_period: float | str = 0.1, nominal_voltage: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.link = link
        self.settings = settings
        self.state_dir = state_dir
        self.poll_period = poll_period
        self.nominal_voltage = nominal_voltage
        self.clock = clock
        self.t0 = clock()
        # Wall clock at t0 (event log and poll start times come as wall time).
        self.wall0 = self.t0 + wall_minus_clock(clock)
        self.samples: list[Sample] = []
        self.ratings: Ratings | None = None
        #: The device under test as its model 1 names it (Mn, Md, SN, Vr).
        self.identity: dict[str, str] = {}
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        os.makedirs(state_dir, exist_ok=True)
        cfg = config_mod.load(None, {
            "inverter.modbus_tcp": link.modbus_tcp, "inverter.modbus_rtu": link.modbus_rtu,
            "inverter.baud": link.baud, "inverter.unit": link.unit,
            "agent.poll_period": poll_period, "agent.state_dir": state_dir,
            "functions.nominal_voltage": nominal_voltage,
            "mms.enabled": False})  # the device under test is the gateway, not its protocols
        # Built by the composition root, as `run` builds it; no protocol adapter.
        self.app = App(cfg, only=())
        self.agent = self.app.agents[0]
        self.agent.publishers.append(self._record)
        self.controller = self.agent.controller
        self.commands = self.app.core.commands(self.agent.name)
        self.events = self.agent.settings_service.events
        self.apply_settings(settings)

    # -- lifecycle
    def __enter__(self) -> Bench:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.agent.run, name="conformance-agent",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.agent.stop()
        if self._thread is not None:
            self._thread.join(5.0)
            if self._thread.is_alive():
                log.warning("agent loop still inside a transaction; leaving it")
        self.app.stop()

    @property
    def period(self) -> float:
        """The poll period in use: the configured one, or the one the gateway chose for
        this link (``auto``, as ``run`` chooses it)."""
        return float(self.agent.period)

    # -- time and samples
    def now(self) -> float:
        """Seconds on the bench clock."""
        return self.clock() - self.t0

    def at(self, t_monotonic: float) -> float:
        """A monotonic time (e.g. :attr:`GridStep.t_sent`) on the bench clock."""
        return t_monotonic - self.t0

    def from_wall(self, wall: float) -> float:
        """A wall-clock time (event log, poll start) on the bench clock."""
        return wall - self.wall0

    def _record(self, snap: Mapping[str, Reading]) -> None:
        t = self.now()
        sample = self._sample(snap, t)
        link = snap.get(LINK)
        if link is not None and link.timestamp is not None:
            sample = dataclasses.replace(sample, t_read=min(t, self.from_wall(link.timestamp)))
        with self._new:
            self.samples.append(sample)
            self._new.notify_all()

    def _sample(self, s: Mapping[str, Reading], t: float) -> Sample:
        eng = self.controller.state
        state = eng.status.state.value if eng is not None else "starting"
        link = s.get(LINK)
        w_rtg = _val(s, "WRtg") or _val(s, "WMax")
        va_rtg = _val(s, "VARtg") or w_rtg
        v_nom = self.nominal_voltage or _val(s, "VNom")
        if not self.identity:
            ident = {k: str(v) for k in ("Mn", "Md", "SN", "Vr") if (v := _val(s, k))}
            if ident:
                self.identity = ident
        if w_rtg and va_rtg and v_nom:
            self.ratings = Ratings(float(w_rtg), float(va_rtg), float(v_nom),
                                   _val(s, "VArRtgQ1"))
        r = self.ratings
        phases = [_val(s, n) for n in ("PhVphA", "PhVphB", "PhVphC")]
        phases_v = [float(v) for v in phases if v is not None]
        w, var, hz = _val(s, "W"), _val(s, "VAr"), _val(s, "Hz")
        valid = bool(link is not None and link.value and r is not None and phases_v
                     and w is not None and hz is not None)
        if not valid or r is None:
            return Sample(t, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, state)
        v_pu = [v / r.v_nom for v in phases_v]
        st = _val(s, "St")
        conn = _val(s, "Conn")
        return Sample(
            t=t, valid=True, v_pu=sum(v_pu) / len(v_pu), v_min_pu=min(v_pu), v_max_pu=max(v_pu),
            f_hz=float(hz), p_pct=100.0 * float(w) / r.w_rtg,
            q_pct=100.0 * float(var or 0.0) / r.va_rtg,
            energizing=None if st is None else int(st) in ENERGIZING,
            conn_cmd=None if conn is None else bool(conn), state=state)

    def since(self, t: float) -> list[Sample]:
        """Valid samples at or after bench time ``t``."""
        with self._lock:
            return [s for s in self.samples if s.t >= t and s.valid]

    def between(self, t_a: float, t_b: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if t_a <= s.t <= t_b and s.valid]

    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def wait_sample(self, after: float, timeout: float) -> Sample | None:
        """The first sample stamped after bench time ``after`` (None on timeout)."""
        deadline = self.clock() + timeout
        with self._new:
            while True:
                if self.samples and self.samples[-1].t > after:
                    return self.samples[-1]
                left = deadline - self.clock()
                if left <= 0:
                    return None
                self._new.wait(left)

    def hold(self, seconds: float) -> None:
        """Let the DER run for ``seconds`` (sampling goes on)."""
        time.sleep(max(0.0, seconds))

    def wait_until(self, pred: Callable[[Sample], bool], timeout: float) -> Sample | None:
        """The first new sample for which ``pred`` holds, or None after ``timeout`` s."""
        t = self.now()
        end = t + timeout
        while True:
            s = self.wait_sample(t, max(0.0, end - self.now()))
            if s is None:
                return None
            t = s.t
            if s.valid and pred(s):
                return s
            if t >= end:
                return None

    # -- the gateway
    def apply_settings(self, settings: Settings) -> None:
        """Give the controller new settings (takes effect at its next cycle)."""
        self.settings = settings
        # Through the core's command API, validated and persisted, as a utility write is.
        self.commands.write(settings_to_dict(settings), who="conformance")

    def in_service(self, s: Sample) -> bool:
        return s.state == OperatingState.CONTINUOUS.value and not s.ceased

    def wait_in_service(self, timeout: float, settle_s: float = 1.0) -> Sample:
        """Wait until the gateway runs in continuous operation and the output is steady.

        Raises :class:`InverterUnreachable` when no valid reading arrives within
        :data:`LINK_TIMEOUT_S` (the inverter is not there, or says nothing usable),
        TimeoutError with what the gateway was doing otherwise.
        """
        link_wait = min(timeout, LINK_TIMEOUT_S)
        if self.wait_until(lambda s: s.valid, link_wait) is None:
            why = self.agent.stats.last_error or "ratings, voltage, frequency or power missing"
            raise InverterUnreachable(f"no valid reading from the inverter "
                                      f"({self.link.describe()}) within {link_wait:g} s: {why}")
        s = self.wait_until(self.in_service, timeout)
        if s is None:
            last = self.latest()
            why = "no sample" if last is None else (
                f"gateway state {last.state}, P {last.p_pct:.1f} %, valid {last.valid}, "
                f"link error {self.agent.stats.last_error}")
            raise TimeoutError(f"DER not in service within {timeout:g} s: {why}")
        self.hold(settle_s)
        return self.latest() or s

    def event_log(self) -> list[dict[str, Any]]:
        """The gateway's operator events during this bench (trips, reconnects ...)."""
        return list(self.events.recent)
