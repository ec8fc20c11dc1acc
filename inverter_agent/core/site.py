"""Several inverters behind one gateway: one loop, one agent per inverter, the plant.

The loop polls every inverter in turn (on one RS-485 bus they take turns on
the wire anyway), runs each one's functions on its own snapshot, then the
plant: totals and the share of the plant limit for each inverter. Each
inverter has its own controller, settings and event log (in the state
directory under its logical device name), so its functions keep running
whatever another one does.

An inverter whose link is down costs the others time: each attempt waits a
full transaction timeout (times retries). After two failed polls in a row it
is tried again only every ``agent.dead_retry`` seconds; in between its values
stay invalid (old data) and its controller sees "link down", exactly as on
a failed poll, without a wait on the wire.

The plant limit is persisted in ``plant.json`` (write, fsync, rename) before
the MMS write is answered, like every other setting.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hal.reading import Reading
from inverter_agent.config import Config
from inverter_agent.core.agent import Agent, CycleStats, supervise, write_status_file
from inverter_agent.core.files import write_atomic
from inverter_agent.core.plant import Allocation, InverterView, PlantTotals, allocate, totals
from inverter_agent.core.pollrate import MAX_PERIOD, MIN_PERIOD, PROVISIONAL_PERIOD, ceil_ms

log = logging.getLogger(__name__)

PLANT_FILE = "plant.json"
PLANT_SCHEMA = 1
#: Largest plant limit a client may set, W (the config key's own bound).
W_MAX_LIMIT = 1e9


class PlantSettingError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PlantLimit:
    enabled: bool = False
    w_max: float = 0.0

    def effective(self) -> float | None:
        return self.w_max if self.enabled else None


class PlantService:
    """The plant limit (validated, persisted) and the plant view published over MMS."""

    def __init__(self, state_dir: str, ld_inst: str, default_w_max: float | None) -> None:
        self.path = os.path.join(state_dir, PLANT_FILE)
        self.ld = ld_inst
        self._lock = threading.Lock()
        self.limit = self._load(default_w_max)
        self.origin = "persisted" if os.path.exists(self.path) else "config"
        self._ratings: dict[str, float] = {}
        self.allocation = Allocation({})
        self.totals: PlantTotals | None = None
        #: Called with the time after every cycle (the MMS plant view: mms/plant_binding.py).
        self.publishers: list[Callable[[float], None]] = []

    # --- settings ----------------------------------------------------------------------
    def _load(self, default_w_max: float | None) -> PlantLimit:
        default = PlantLimit(default_w_max is not None, default_w_max or 0.0)
        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = json.load(fh)
            if raw.get("schema") != PLANT_SCHEMA:
                raise ValueError(f"schema {raw.get('schema')!r}, expected {PLANT_SCHEMA}")
            return _checked(PlantLimit(bool(raw["enabled"]), float(raw["w_max"])))
        except FileNotFoundError:
            return default
        except (OSError, ValueError, KeyError, TypeError, PlantSettingError) as exc:
            log.error("%s unusable (%s): running from the config's plant limit", self.path, exc)
            return default

    def write(self, field_name: str, value: Any, who: str) -> PlantLimit:
        """Validate, persist, then apply; raises PlantSettingError and changes nothing."""
        with self._lock:
            if field_name == "enabled":
                if not isinstance(value, bool):
                    raise PlantSettingError(f"enabled: a boolean, got {value!r}")
                new = PlantLimit(value, self.limit.w_max)
            elif field_name == "w_max":
                new = _checked(PlantLimit(self.limit.enabled, value))
            else:
                raise PlantSettingError(f"no plant setting {field_name!r}")
            body = {"schema": PLANT_SCHEMA, **asdict(new), "who": who, "time": time.time()}
            write_atomic(self.path, json.dumps(body).encode())
            old, self.limit = self.limit, new
            self.origin = "persisted"
        log.info("plant limit %s -> %s (%s)", old, new, who)
        return new

    # --- the cycle ---------------------------------------------------------------------
    def views(self, agents: list[Agent]) -> list[InverterView]:
        out = []
        for a in agents:
            s = a.last_snapshot
            up = a.stats.link_up
            rating = _good(s, "WRtg") or _good(s, "WMax")
            if up and rating:
                self._ratings[a.name] = rating
            out.append(InverterView(a.name, up, _good(s, "W") if up else None,
                                    _good(s, "VAr") if up else None,
                                    _good(s, "VA") if up else None,
                                    self._ratings.get(a.name)))
        return out

    def cycle(self, agents: list[Agent], now: float) -> None:
        """Totals and limit shares from this cycle's snapshots; caps go to the controllers
        (applied at their next cycle) and the plant view to the MMS server."""
        views = self.views(agents)
        self.totals = totals(views)
        self.allocation = allocate(self.limit.effective(), views, self.allocation.shares_w)
        for a in agents:
            if a.controller is not None:
                a.controller.plant_cap_pct = self.allocation.caps_pct.get(a.name)
        for publish in self.publishers:
            publish(now)

    def status_view(self) -> dict[str, Any]:
        t, alloc = self.totals, self.allocation
        return {
            "ld": self.ld, "limit": asdict(self.limit), "limit_origin": self.origin,
            "totals": None if t is None else {
                "w": round(t.w, 1), "var": round(t.var, 1), "va": round(t.va, 1),
                "reporting": t.reporting, "configured": t.configured,
                "w_rtg": round(t.w_rtg, 1), "quality": str(t.quality)},
            "caps_pct": {k: None if v is None else round(v, 2)
                         for k, v in alloc.caps_pct.items()},
            "reserved_w": round(alloc.reserved_w, 1), "limiting": alloc.limiting,
        }


def _checked(limit: PlantLimit) -> PlantLimit:
    w = limit.w_max
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) \
            or not 0.0 <= w <= W_MAX_LIMIT:
        raise PlantSettingError(f"w_max: {w!r} out of range; allowed: 0 <= W <= {W_MAX_LIMIT:g}")
    return PlantLimit(limit.enabled, float(w))


def _good(snapshot: dict[str, Reading], name: str) -> float | None:
    r = snapshot.get(name)
    if r is None or not r.quality.good or r.value is None:
        return None
    return float(r.value)


class Site:
    """Runs several :class:`Agent` s (one per inverter) and the plant in one loop."""

    def __init__(self, cfg: Config, agents: list[Agent], plant: PlantService | None) -> None:
        self.cfg = cfg
        self.agents = agents
        self.plant = plant
        self.auto = cfg["agent.poll_period"] == "auto"
        self.period = PROVISIONAL_PERIOD if self.auto else float(cfg["agent.poll_period"])
        self._choices: tuple[object, ...] = ()
        self.auto_reason: str | None = None
        self.dead_retry = cfg["agent.dead_retry"]
        self.stats = CycleStats()
        self.stop_event = threading.Event()
        self.state_dir = cfg["agent.state_dir"]
        self.status_extra: dict[str, Callable[[], object]] = {}
        self.on_cycle: Callable[[], object] | None = None
        self.after_cycle: list[Callable[[], None]] = []

    def cycle(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        t0 = time.monotonic()
        for agent in self.agents:
            mono = time.monotonic()
            down = not agent.stats.link_up
            due = not down or agent.fail_streak < 2 or mono >= agent.next_try
            if due and down and (agent.fail_streak >= 2 or agent.inverter.device is None) \
                    and not agent.inverter.answers():
                # Nobody there: one transaction timeout spent, not a full poll's or a
                # discovery's (bases x attempts); try again after dead_retry.
                agent.stats.failed_polls += 1
                agent.fail_streak += 1
                due = False
            agent.cycle(now, poll=due)
            if down and agent.fail_streak >= 2 and time.monotonic() >= agent.next_try:
                agent.next_try = time.monotonic() + self.dead_retry
        if self.plant is not None:
            try:
                self.plant.cycle(self.agents, now)
            except Exception:  # the plant view must not stop the inverters' supervision
                log.exception("plant cycle failed")
        self.stats.link_up = all(a.stats.link_up for a in self.agents)
        self.stats.polled(time.monotonic() - t0)
        if self.auto:
            self._choose_period()

    def _choose_period(self) -> None:
        """With ``poll_period = "auto"``: one cycle polls every inverter in turn, so the
        site's period is the sum of theirs (their fast cycles leaving the stated share
        of the line free; the longest slow read fitting in one period)."""
        # Inverters whose link is down do not hold the choice back (they are tried
        # every dead_retry, not every cycle); each that comes back is counted in.
        up = [a for a in self.agents if a.stats.link_up]
        choices = tuple(a.poll_rate.choice if a.poll_rate else None for a in up)
        if not choices or choices == self._choices or any(c is None for c in choices):
            return
        self._choices = choices
        fast = sum(c.fast_busy_s for c in choices)
        share = choices[0].share_free
        extra = max(c.worst_busy_s - c.fast_busy_s for c in choices)
        period = ceil_ms(min(MAX_PERIOD, max(MIN_PERIOD, fast / (1 - share), fast + extra)))
        self.auto_reason = (f"{len(choices)} inverters polled in turn: fast cycles "
                            f"{fast * 1e3:.1f} ms together, {share:.0%} of the line left to "
                            f"other masters, at least {MIN_PERIOD * 1e3:.0f} ms")
        self.period = period
        for agent in self.agents:
            agent.set_period(period)
        log.info("site: poll period auto: %.3f s (%s)", period, self.auto_reason)

    def run(self) -> None:
        log.info("site running: %d inverters, poll period %.3f s, dead-link retry %.1f s",
                 len(self.agents), self.period, self.dead_retry)
        supervise(self)

    def stop(self) -> None:
        self.stop_event.set()
        for agent in self.agents:
            agent.stop()

    def close(self) -> None:
        for agent in self.agents:  # every inverter, before a shared wire closes
            agent.release_on_stop()
        closed: set[int] = set()
        for agent in self.agents:
            if id(agent.inverter.transport) not in closed:
                closed.add(id(agent.inverter.transport))
                agent.inverter.close()

    def status_view(self) -> dict[str, Any]:
        return {
            "time": time.time(), "link_up": self.stats.link_up,
            "poll_period_s": self.period, "dead_retry_s": self.dead_retry,
            "poll_period_auto": ({"chosen_s": self.period if self.auto_reason else None,
                                  "reason": self.auto_reason or "measuring the links"}
                                 if self.auto else None),
            **self.stats.timing(),
            "inverters": {a.name: a.status_view() for a in self.agents},
            "plant": self.plant.status_view() if self.plant is not None else None,
        }

    def write_status(self) -> None:
        write_status_file(self.state_dir, self.status_view(), self.status_extra)
        for stats in (self.stats, *(a.stats for a in self.agents)):
            stats.new_window()
