"""``agent.poll_period = "auto"``: the fastest poll period the inverter link sustains.

The choice is made from the link itself, after a few cycles of the fast and
slow loop (``hal.poll_plan``), and stated in the log and in ``status``:

* each cycle's *busy time* is what it held the link: the measured time of its
  transactions (round trips, the device's turnaround) and, on RTU, at least
  the time its bytes and frames take on the wire at the configured baud rate
  (10 or 11 bits a character, a 3.5-character silence after every frame;
  1.75 ms above 19200 baud, as the Modbus serial line specification fixes it);
* the period leaves :data:`SHARE_FREE` of the line to other masters on average
  (``fast cycle / (1 - share)``), and is never shorter than the longest cycle
  seen (one that also carried a slow model), so cycles do not overrun;
* never below :data:`MIN_PERIOD` (50 ms), never above :data:`MAX_PERIOD`;
* another device read on the same line in the same loop (the site meter on the
  inverter's RS-485 bus, :attr:`PollRate.sharers`) holds the line too: its
  measured read time is added to every cycle's busy time, so the period leaves
  the share free with the meter's read counted.

Until it has chosen, the agent polls at :data:`PROVISIONAL_PERIOD`. The
choice is made again after the device is rediscovered (a new device map may
change the fast set).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIN_PERIOD = 0.05
MAX_PERIOD = 5.0
#: Share of the line's time left to other masters (and to retries, discovery).
SHARE_FREE = 0.25
PROVISIONAL_PERIOD = 0.25
#: Cycles after the first full read before choosing (enough for slow reads to show).
WARMUP_CYCLES = 8
#: Clearing time of the fastest must-trip region (HV2 / OV2 / OF2): 0.16 s.
FASTEST_CLEARING_S = 0.16


def rtu_wire_s(nbytes: float, frames: float, baud: int, char_bits: int = 10) -> float:
    """Seconds ``nbytes`` in ``frames`` RTU frames occupy an RS-485 line."""
    char = char_bits / baud
    gap = 3.5 * char if baud <= 19200 else 0.00175
    return nbytes * char + frames * gap


def _median(values) -> float:
    """The median (statistics.median, without importing statistics: fractions and
    decimal come with it, ~1 MB on a small board)."""
    v = sorted(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def ceil_ms(seconds: float) -> float:
    """Rounded up to a whole millisecond."""
    return math.ceil(seconds * 1000 - 1e-6) / 1000


def auto_timeout(link: Any) -> float:
    """Seconds per transaction when the period is chosen automatically: enough for the
    longest read (125 registers) on the wire at the link's baud rate, with margin."""
    if link["modbus_rtu"]:
        baud = int(link["baud"])
        bits = 10 + (0 if link["parity"] == "N" else 1) + (int(link["stopbits"]) - 1)
        return round(0.05 + 2 * rtu_wire_s(8 + 255, 2, baud, bits), 3)
    return 0.25


@dataclass(frozen=True, slots=True)
class Choice:
    """A chosen period and everything it was chosen from."""

    period_s: float
    fast_busy_s: float
    worst_busy_s: float
    bytes_per_cycle: float
    transactions_per_cycle: float
    rtt_s: float
    link: str
    reason: str
    share_free: float = SHARE_FREE
    #: Worst case from a grid step (as the inverter's registers show it) to the
    #: backup cease-to-energize command leaving: two periods, a cycle, the command.
    trip_latency_s: float = 0.0
    #: Of ``fast_busy_s``: what other devices on the same line took (the site meter).
    shared_busy_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"chosen_s": self.period_s, "fast_cycle_busy_s": round(self.fast_busy_s, 4),
                "worst_cycle_busy_s": round(self.worst_busy_s, 4),
                "bytes_per_cycle": round(self.bytes_per_cycle, 1),
                "transactions_per_cycle": round(self.transactions_per_cycle, 2),
                "rtt_s": round(self.rtt_s, 4), "link": self.link,
                "share_free": self.share_free,
                "worst_trip_latency_s": round(self.trip_latency_s, 3),
                "shared_busy_s": round(self.shared_busy_s, 4), "reason": self.reason}


@dataclass(slots=True)
class _Sample:
    wall_s: float
    nbytes: int
    transactions: int
    slow: bool
    shared_s: float = 0.0


class PollRate:
    """Watches the cycles of one inverter link and chooses the period."""

    def __init__(self, transport: Any, share_free: float = SHARE_FREE,
                 warmup: int = WARMUP_CYCLES) -> None:
        if not 0.0 <= share_free < 1.0:
            raise ValueError(f"share_free {share_free}: 0 <= share < 1")
        self.transport = transport
        self.share_free = share_free
        self.warmup = warmup
        self.choice: Choice | None = None
        self._samples: list[_Sample] = []
        self._mark: tuple[int, int] | None = None
        #: Other devices read on this same line each loop: (name, seconds their last
        #: read held the line, None before the first). Counted as busy time.
        self.sharers: list[tuple[str, Callable[[], float | None]]] = []

    # -- what the link says
    @property
    def serial(self) -> Any:
        return getattr(self.transport, "serial", None)

    def _counts(self) -> tuple[int, int]:
        st = getattr(self.transport, "stats", None)
        if st is None:
            return 0, 0
        return st.bytes_in + st.bytes_out, st.transactions

    def before_poll(self) -> None:
        self._mark = self._counts()

    def after_poll(self, wall_s: float, ok: bool, kind: str) -> Choice | None:
        """Feed one cycle; returns the new :class:`Choice` when one is made."""
        if self._mark is None:
            return None
        nbytes, tx = self._counts()
        b0, t0 = self._mark
        self._mark = None
        if kind == "full":  # discovery or a rediscovery: start over
            self._samples.clear()
            if self.choice is not None:
                log.info("inverter rediscovered: choosing the poll period again")
            self.choice = None
            return None
        if not ok or not kind or self.choice is not None:
            return None
        self._samples.append(_Sample(wall_s, nbytes - b0, tx - t0, kind != "fast",
                                     self._shared_s()))
        if len(self._samples) < self.warmup:
            return None
        self.choice = self._choose()
        return self.choice

    def _shared_s(self) -> float:
        return sum(max(0.0, t) for _, read in self.sharers if (t := read()) is not None)

    def busy_s(self, s: _Sample) -> float:
        """The line's busy time of one cycle: the inverter's poll and the sharers' reads."""
        serial = self.serial
        if serial is None:
            return s.wall_s + s.shared_s
        bits = round(serial.char_time * serial.baud)
        return max(s.wall_s, rtu_wire_s(s.nbytes, 2 * s.transactions, serial.baud, bits)
                   ) + s.shared_s

    def _choose(self) -> Choice:
        fast = [s for s in self._samples if not s.slow] or self._samples
        fast_busy = _median(self.busy_s(s) for s in fast)
        worst = max(self.busy_s(s) for s in self._samples)
        nbytes = _median(s.nbytes for s in fast)
        tx = _median(s.transactions for s in fast)
        rtt = _median(s.wall_s / max(1, s.transactions) for s in fast)
        shared = _median(s.shared_s for s in fast)
        by_share = fast_busy / (1.0 - self.share_free)
        period = ceil_ms(min(MAX_PERIOD, max(MIN_PERIOD, by_share, worst)))
        serial = self.serial
        link = f"RTU {serial.baud} baud" if serial is not None else "TCP"
        if period == MIN_PERIOD:
            bound = "the 50 ms floor"
        elif period == MAX_PERIOD:
            bound = "the 5 s ceiling"
        elif by_share >= worst:
            bound = f"{self.share_free:.0%} of the line left to other masters"
        else:
            bound = "the longest cycle (one carrying a slow model read) fitting in one period"
        wire = ""
        if serial is not None:
            wire = (f", {rtu_wire_s(nbytes, 2 * tx, serial.baud) * 1e3:.1f} ms of it on the "
                    f"wire at {serial.baud} baud")
        # A step is seen up to one period late; the must-trip timer wants a second
        # sample (a single reading never trips); then that poll, and the command (a
        # read of the control model for its scale factors, and the write).
        per_tx = max(rtt, (fast_busy - shared) / max(1.0, tx))
        trip = 2 * period + worst + 2 * per_tx
        reason = (f"{link}: fast cycle {fast_busy * 1e3:.1f} ms ({tx:.0f} transaction"
                  f"{'' if tx == 1 else 's'}, "
                  f"{nbytes:.0f} B, {rtt * 1e3:.1f} ms a round trip{wire}); longest cycle "
                  f"{worst * 1e3:.1f} ms; period set by {bound}")
        if self.sharers:
            names = " and ".join(n for n, _ in self.sharers)
            reason += (f"; both include the {names} on the same line "
                       f"({shared * 1e3:.1f} ms a cycle)")
        return Choice(period, fast_busy, worst, nbytes, tx, rtt, link, reason,
                      self.share_free, trip, shared)


def log_choice(name: str, choice: Choice) -> None:
    """State the choice, and what it means for the fastest clearing times."""
    log.info("%s: poll period auto: %.3f s (%s)", name, choice.period_s, choice.reason)
    if choice.trip_latency_s > FASTEST_CLEARING_S:
        log.warning("%s: with this link a backup cease-to-energize command may leave up to "
                    "%.2f s after a step: clearing times of 0.16 s can only be met by the "
                    "inverter's own protection", name, choice.trip_latency_s)
