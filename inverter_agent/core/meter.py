"""The site meter at the point of common coupling, read every cycle like an inverter.

After each cycle of the inverters (one inverter's agent or the site), the meter
is polled (``hal.meter``), its readings judged (a value older than
``[meter] stale_after``, a W beyond ``max_w``, a frequency outside 40-70 Hz or a
VA below |W| is invalid), and an export limit in force at the connection point
(``UtilityControl.export_limit_w``: CSIP-AUS opModExpLimW with a meter) turned
into a cap on the inverters' generation (``functions.export_limit``): limit plus
the site's load, shared among the inverters by rating, applied by each
controller at its next cycle (``Controller.pcc_cap_pct``). When the meter's data
is not usable the limit is applied as a generation limit (it can only err on the
safe side) and the health turns to alarm with the reason, logged once.

A meter whose link is down costs the loop a transaction timeout per try: after
two failed polls it is tried again only every ``agent.dead_retry`` seconds, its
readings meanwhile the last ones, marked stale.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from hal.meter import Meter
from hal.reading import Detail, Quality, Reading, Validity
from inverter_agent.core import arbitration
from inverter_agent.core.plant import InverterView, allocate
from inverter_agent.core.view import HEALTH_ALARM, HEALTH_OK, SiteMeterView, _frozen
from inverter_agent.functions.export_limit import CLOSED_LOOP, FALLBACK, ExportCap, export_cap

log = logging.getLogger(__name__)

OUT_OF_RANGE = Quality(Validity.INVALID, Detail.OUT_OF_RANGE)
INCONSISTENT = Quality(Validity.INVALID, Detail.INCONSISTENT)
OLD = Quality(Validity.INVALID, Detail.OLD_DATA)
#: Frequencies a meter on a live grid can show (outside: a misread register).
HZ_RANGE = (40.0, 70.0)
#: The generation cap moves in steps of this share of the inverters' ratings (rounded
#: down): 0.5 % (25 W of 5 kW) keeps a wandering load from rewriting the limit every cycle.
CAP_STEP = 0.005
#: VA may read below |W| by this much (rounding, separate sampling) before it is implausible.
VA_TOLERANCE = 0.05


def judge(readings: Mapping[str, Reading], now: float, stale_after: float,
          max_w: float) -> tuple[dict[str, Reading], str | None]:
    """The readings with implausible or stale ones invalid, and why W is not usable."""
    out = dict(readings)
    for name, r in readings.items():
        if r.quality.good and now - r.timestamp > stale_after:
            out[name] = Reading(r.value, OLD, r.timestamp)
    w, hz, va = (out.get(n) for n in ("W", "Hz", "VA"))
    if w is not None and w.quality.good and (not math.isfinite(w.value) or abs(w.value) > max_w):
        out["W"] = Reading(w.value, OUT_OF_RANGE, w.timestamp)
    if hz is not None and hz.quality.good and not HZ_RANGE[0] <= hz.value <= HZ_RANGE[1]:
        out["Hz"] = Reading(hz.value, OUT_OF_RANGE, hz.timestamp)
    w = out.get("W")
    if (w is not None and w.quality.good and va is not None and va.quality.good
            and va.value < abs(w.value) * (1 - VA_TOLERANCE) - 1.0):
        out["W"] = Reading(w.value, INCONSISTENT, w.timestamp)
        out["VA"] = Reading(va.value, INCONSISTENT, va.timestamp)
    w = out.get("W")
    if w is None:
        return out, "the meter gives no W"
    if not w.quality.good or w.value is None:
        return out, f"meter W {w.quality}"
    return out, None


#: Phases of each wiring (hal's ACType readings).
_PHASES = {"single": 1, "split": 2, "three": 3}
#: The meter and an inverter on one grid see the same frequency within this (Hz).
HZ_AGREE = 0.5
#: A frequency disagreement says "another grid" only when it holds at this many
#: consecutive meter reads spanning at least ``HZ_PERSIST_S``: the meter and the
#: inverters are read at different moments (up to a few hundred ms apart on a shared
#: bus), and a grid changing at 3 Hz/s (a rate IEEE 1547 Category III rides through)
#: moves 0.5 Hz in 170 ms. Such a ramp cannot last past 1.2 s (60 -> 56.5 Hz, where
#: the inverters trip themselves), so a real grid event never holds 2 s; judged on one
#: read, it would cut output exactly when frequency support is needed.
HZ_PERSIST_READS = 2
HZ_PERSIST_S = 2.0


def topology_problem(meter: Mapping[str, Reading],
                     inverters: list[Mapping[str, Reading]]) -> str | None:
    """Why the meter cannot be measuring what the inverters feed, or None: a meter with
    fewer phases than an inverter behind it sees only part of its output; a meter whose
    frequency is not the inverters' is not on their grid (in this one read: the
    service asks that of the frequency over several, ``HzCheck``)."""
    return phase_problem(meter, inverters) or hz_problem(meter, inverters)


def phase_problem(meter: Mapping[str, Reading],
                  inverters: list[Mapping[str, Reading]]) -> str | None:
    """Why the meter has too few phases for an inverter behind it, or None."""
    m_type = _good_value(meter, "ACType")
    for snap in inverters:
        i_type = _good_value(snap, "ACType")
        if m_type in _PHASES and i_type in _PHASES and _PHASES[i_type] > _PHASES[m_type]:
            return (f"a {m_type}-phase meter cannot measure a {i_type}-phase inverter's "
                    "output: check the meter's wiring and model")
    return None


def hz_problem(meter: Mapping[str, Reading],
               inverters: list[Mapping[str, Reading]]) -> str | None:
    """Why the meter's frequency, in this one read, is not the inverters', or None."""
    m_hz = _good(meter, "Hz")
    for snap in inverters:
        i_hz = _good(snap, "Hz")
        if m_hz is not None and i_hz is not None and abs(m_hz - i_hz) > HZ_AGREE:
            return (f"the meter reads {m_hz:.2f} Hz, an inverter {i_hz:.2f} Hz: not the "
                    "same grid (check the meter's unit id and link)")
    return None


class HzCheck:
    """A frequency disagreement that persists (``HZ_PERSIST_READS``, ``HZ_PERSIST_S``)."""

    def __init__(self) -> None:
        self.reads = 0
        self.since: float | None = None

    def update(self, meter: Mapping[str, Reading], inverters: list[Mapping[str, Reading]],
               now: float) -> str | None:
        problem = hz_problem(meter, inverters)
        if problem is None:
            self.reads, self.since = 0, None
            return None
        self.reads += 1
        self.since = now if self.since is None else self.since
        held = self.reads >= HZ_PERSIST_READS and now - self.since >= HZ_PERSIST_S
        return problem if held else None


#: Comparisons in a row at which W must disagree in sign with the counters (SignCheck).
SIGN_PERSIST = 2


class SignCheck:
    """Whether the meter's W agrees in sign with its own energy counters.

    A meter configured with the wrong ``w_positive`` reads an export as an import,
    and an export limit closed on it would credit the export as load and raise the
    generation cap with it: the limit would run away. The counters (``TotWhImp`` /
    ``TotWhExp``) say which way the energy went whatever the sign of W, so W
    integrated over a window in which both it and the counters moved at least
    ``min_wh`` must have the sign of imported - exported energy; when it does not at
    ``SIGN_PERSIST`` windows in a row, W is inconsistent until they agree again.

    ``min_wh`` is the margin beyond noise. Counters in whole Wh (``TotWh_SF`` 0, the
    usual) each lose < 1 Wh to truncation at both ends of a window: their net is off
    by < 2 Wh. W, sampled each cycle and integrated between two counter reads, is off
    by what flows while the meter's registers lag each other (about its 1 s update:
    < 1.4 Wh at 5 kW). At a zero-export site W hovers near 0 by design and either
    error alone can flip the sign of a few Wh; 5 Wh on both sides is beyond their sum
    (3.4 Wh). A wrong ``w_positive`` disagrees at every comparison, so asking for two
    in a row costs it one more window and spares a healthy meter one bad window.
    """

    def __init__(self, min_wh: float = 5.0) -> None:
        self.min_wh = min_wh
        self.disagreed = 0
        self.base: tuple[float, float] | None = None
        self.w_wh = 0.0
        self.last_t: float | None = None
        self.problem: str | None = None

    def update(self, readings: Mapping[str, Reading], now: float) -> str | None:
        w = _good(readings, "W")
        imp, exp = _good(readings, "TotWhImp"), _good(readings, "TotWhExp")
        if w is not None and self.last_t is not None:
            self.w_wh += w * max(0.0, now - self.last_t) / 3600.0
        self.last_t = now if w is not None else None
        if imp is None or exp is None:
            return self.problem
        if self.base is None:
            self.base, self.w_wh = (imp, exp), 0.0
        elif imp < self.base[0] or exp < self.base[1]:  # counters reset or replaced
            self.base, self.w_wh = (imp, exp), 0.0
        else:
            net = (imp - self.base[0]) - (exp - self.base[1])
            # W and the counters both moved enough to tell the direction (else: wait).
            if abs(net) >= self.min_wh and abs(self.w_wh) >= self.min_wh:
                if (net > 0) == (self.w_wh > 0):
                    self.problem, self.disagreed = None, 0
                else:
                    self.disagreed += 1
                    if self.disagreed >= SIGN_PERSIST:
                        self.problem = (
                            f"meter W ({self.w_wh:+.1f} Wh integrated) disagrees in sign "
                            f"with its energy counters ({net:+.1f} Wh imported - exported): "
                            "check [meter] w_positive")
                self.base, self.w_wh = (imp, exp), 0.0
        return self.problem


class SiteMeterService:
    """Polls the meter after every cycle and holds an export limit at the PCC."""

    def __init__(self, meter: Meter | None, name: str, agents: list[Any], stale_after: float = 5.0,
                 max_w: float = 1e6, dead_retry: float = 5.0,
                 record: Callable[[str, str], None] | None = None) -> None:
        self.meter = meter
        self.name = name
        self.agents = agents
        self.stale_after = stale_after
        self.max_w = max_w
        self.dead_retry = dead_retry
        self.record = record or (lambda kind, detail: None)
        self.readings: dict[str, Reading] = {}
        self.link_up = False
        self.fail_streak = 0
        self.next_try = 0.0
        self.cap = ExportCap(None, None, "none")
        self.why_invalid: str | None = "not read yet"
        self._alarm: str | None = None
        self._shares: dict[str, float] = {}
        self.sign = SignCheck()
        self.hz = HzCheck()
        #: How long the last poll of the meter took, and the longest (ms): time the
        #: loop's cycle spends on the meter (on a shared bus, beside the inverters').
        self.poll_ms = 0.0
        self.poll_ms_max = 0.0

    def read_s(self) -> float | None:
        """Seconds the last read of the meter held its link (None before the first): on
        the inverter's bus it counts in the automatic poll period (core.pollrate)."""
        return self.poll_ms / 1e3 if self.poll_ms > 0.0 else None

    # -- the cycle
    def cycle(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        mono = time.monotonic()
        if self.meter is None:  # no meter: an export limit can only be a generation limit
            self.why_invalid = "no site meter"
            self._hold_export_limit()
            return
        if self.fail_streak >= 2 and mono < self.next_try:
            raw = self.meter.unreachable(now)
        else:
            t0 = time.monotonic()
            raw = self.meter.poll(now)
            self.poll_ms = (time.monotonic() - t0) * 1e3
            self.poll_ms_max = max(self.poll_ms_max, self.poll_ms)
            up = self.meter.last_error is None
            if up != self.link_up:
                (log.info if up else log.warning)(
                    "site meter %s: link %s%s", self.name, "up" if up else "down",
                    "" if up else f" ({self.meter.last_error})")
            self.link_up = up
            self.fail_streak = 0 if up else self.fail_streak + 1
            if not up and self.fail_streak >= 2:
                self.next_try = mono + self.dead_retry
        self.readings, self.why_invalid = judge(raw, now, self.stale_after, self.max_w)
        snaps = [a.last_snapshot for a in self.agents if a.stats.link_up]
        hz = self.hz.update(self.readings, snaps, now)
        wrong_sign = (self.sign.update(self.readings, now)
                      or phase_problem(self.readings, snaps) or hz)
        if wrong_sign is not None and self.why_invalid is None:
            w = self.readings["W"]
            self.readings["W"] = Reading(w.value, INCONSISTENT, w.timestamp)
            self.why_invalid = wrong_sign
        if not self.link_up:
            self.why_invalid = f"meter link down ({self.meter.last_error})"
        self._hold_export_limit()

    def _limit_w(self) -> float | None:
        limits = []
        for a in self.agents:
            service = a.settings_service
            if service is None:
                continue
            in_force = [service.in_force(s) for s in service.utility_sources()]
            w = arbitration.export_limit_w(in_force)
            if w is not None:
                limits.append(w)
        return min(limits) if limits else None

    def _hold_export_limit(self) -> None:
        views = []
        gen: float | None = 0.0
        for a in self.agents:
            s = a.last_snapshot
            up = bool(a.stats.link_up)
            w = _good(s, "W") if up else None
            rating = _good(s, "WMax") or _good(s, "WRtg")
            views.append(InverterView(a.name, up, w, None, None, rating))
            gen = None if gen is None or w is None else gen + w
        gen_max = math.fsum(v.w_rtg or 0.0 for v in views) or None
        site_w = self.readings.get("W")
        self.cap = export_cap(self._limit_w(),
                              site_w.value if site_w is not None and site_w.quality.good
                              else None, gen, gen_max, why_invalid=self.why_invalid,
                              step_w=CAP_STEP * (gen_max or 0.0))
        alloc = allocate(self.cap.cap_w, views, self._shares)
        self._shares = alloc.shares_w
        for a in self.agents:
            if a.controller is not None:
                a.controller.pcc_cap_pct = alloc.caps_pct.get(a.name)
        alarm = self.cap.reason if self.cap.mode == FALLBACK else None
        if alarm != self._alarm:
            if alarm is not None:
                log.warning("site %s: %s", self.name, alarm)
                self.record("export_limit", alarm)
            elif self._alarm is not None:
                self.record("export_limit", self.cap.reason or "no export limit in force")
            self._alarm = alarm

    # -- views
    @property
    def health(self) -> int:
        return HEALTH_ALARM if (not self.link_up or self._alarm) else HEALTH_OK

    def export_view(self) -> dict[str, Any]:
        c = self.cap
        return {"limit_w": c.limit_w, "mode": c.mode,
                "cap_w": None if c.cap_w is None else round(c.cap_w, 1),
                "load_w": None if c.load_w is None else round(c.load_w, 1),
                "reason": c.reason}

    def view(self) -> SiteMeterView | None:
        if self.meter is None:
            return None
        return SiteMeterView(self.name, _frozen(self.readings), self.link_up,
                             _frozen(self.export_view()), self.health, self._alarm)

    def status_view(self) -> dict[str, Any]:
        if self.meter is None:
            return {"name": self.name, "meter": None, "export_limit": self.export_view(),
                    "alarm": self._alarm}
        info = self.meter.info
        return {"name": self.name, "unit": self.meter.unit, "link_up": self.link_up,
                "model": None if info is None else info.model_id,
                "ac_type": None if info is None else info.ac_type.value,
                "last_error": self.meter.last_error, "why_invalid": self.why_invalid,
                "poll_ms": round(self.poll_ms, 1), "poll_ms_max": round(self.poll_ms_max, 1),
                "last_poll_kind": self.meter.last_poll_kind,
                "readings": {n: {"value": r.value, "quality": str(r.quality)}
                             for n, r in self.readings.items()
                             if n in ("W", "VAr", "VA", "PF", "Hz", "PhV", "PPV", "A",
                                      "TotWhImp", "TotWhExp")},
                "export_limit": self.export_view(), "alarm": self._alarm,
                "closed_loop": self.cap.mode == CLOSED_LOOP}


def _good_value(s: Mapping[str, Reading], name: str) -> Any:
    r = s.get(name)
    return r.value if r is not None and r.quality.good else None


def _good(s: Mapping[str, Reading], name: str) -> float | None:
    r = s.get(name)
    if r is None or not r.quality.good or r.value is None:
        return None
    return float(r.value)


def make_service(cfg: Any, agents: list[Any], transports: Mapping[tuple[str, str], Any],
                 record: Callable[[str, str], None] | None = None) -> SiteMeterService:
    """The site meter ``[meter]`` asks for, on the first inverter's wire or its own; without
    one, a service that holds an export limit in force as a generation limit."""
    m = cfg.values["meter"]
    if not m["enabled"]:
        return SiteMeterService(None, m["name"], agents, record=record)
    links = cfg.inverter_links()
    if m["link"] == "inverter" and links and links[0].link in transports:
        transport = transports[links[0].link]
    else:
        from inverter_agent.core.agent import make_transport

        base = dict(cfg.values["inverter"])
        if m["link"] == "own":
            base.update(modbus_tcp=m["modbus_tcp"], modbus_rtu=m["modbus_rtu"],
                        baud=m["baud"], parity=m["parity"], timeout=None)
        transport = make_transport(cfg, base)
    meter = Meter(transport, m["unit"], bases=tuple(m["bases"]), model=m["model"],
                  w_positive=m["w_positive"])
    return SiteMeterService(meter, m["name"], agents, stale_after=m["stale_after"],
                            max_w=m["max_w"], dead_retry=cfg["agent.dead_retry"],
                            record=record)

