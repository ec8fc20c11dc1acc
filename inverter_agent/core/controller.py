"""The local controller: runs the grid functions every cycle and steers the inverter.

Each cycle it turns the HAL snapshot into engine :class:`Measurements`, runs
:func:`functions.step`, and writes the resulting setpoints through the HAL's
named controls *only when they change* (beyond a small deadband) or when the
inverter's read-back shows it lost them (restart, another master). It then
checks, after a response deadline, that the inverter actually does what it was
told, and marks the function "not followed" when it does not.

It needs no client and no network: it starts at boot from persisted or
default settings. How each function reaches the inverter is chosen per
function by :mod:`.steering`: the device's own function where it has the
IEEE 1547-2018 model and takes the program (volt-var, 705), immediate
controls (SunSpec 123 or 704) otherwise.

What the controller cannot do (see docs/functions.md): detect an island (the
inverter does that in under a cycle), or trip faster than one poll period
(the inverter's own certified protection is the primary; this is backup).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hal.inverter import REVERT_TIMERS
from hal.inverter import OperatingState as InvSt
from hal.reading import Reading
from inverter_agent.core import storage as storage_core
from inverter_agent.core.arbitration import pcc_cap, plant_cap, storage_setpoint
from inverter_agent.core.events import EventLog
from inverter_agent.core.plausibility import Assessment, assess
from inverter_agent.core.status import functions_status
from inverter_agent.core.status import health as status_health
from inverter_agent.core.steering import TRIP_FUNCTIONS, Steering, backup_behind_device
from inverter_agent.functions import (
    EngineState,
    Measurements,
    ReactiveMode,
    Setpoints,
    Settings,
    step,
)
from inverter_agent.functions.settings import InvalidPolicy

log = logging.getLogger(__name__)

#: Deadbands below which a changed setpoint is not rewritten (avoids a write
#: per cycle while a first-order volt-var output creeps towards its target).
DEADBAND = {"WMaxLimPct": 0.2, "VArPct": 0.5, "OutPFSet": 0.002}
#: Measured-vs-commanded tolerances (IEEE 1547-2018 Table 3: P and Q +-5 % of rated).
FOLLOW_TOL_PCT = 5.0
ENERGIZING = {InvSt.STARTING, InvSt.MPPT, InvSt.THROTTLED}
#: What standing aside writes: our enables off, so the device's own settings govern.
RELEASE = {"WMaxLim_Ena": False, "OutPFSet_Ena": False, "VArPct_Ena": False}
#: The inverter's revert timers, set with every immediate control that has one (see
#: :func:`revert_time`): "auto" is REVERT_CYCLES poll periods within these bounds. The
#: floor leaves a restarted gateway (systemd RestartSec 5 s, start, discovery) time to
#: re-assert before the inverter reverts.
REVERT_CYCLES = 10
REVERT_AUTO_MIN_S, REVERT_AUTO_MAX_S = 30.0, 300.0
#: Controls holding a command are rewritten (their timers re-armed) this many times
#: per revert time, so one lost write never lets a timer run out.
REFRESHES_PER_REVERT = 3
#: Each enable (or Conn) and the value that makes its control hold a command.
_COMMANDING = {"Conn": False, "WMaxLim_Ena": True, "OutPFSet_Ena": True, "VArPct_Ena": True}
#: What a control without a revert timer leaves behind when the gateway stops.
_NO_TIMER = {"Conn": "a cease to energize", "WMaxLimPct": "the active power limit",
             "OutPFSet": "the power factor setpoint", "VArPct": "the var setpoint"}


@dataclass(slots=True)
class FollowCheck:
    """One commanded outcome and when it must be visible."""

    what: str
    deadline: float
    followed: bool | None = None  # None: not yet due


#: Command latency allowed on top of the sampling delay (write on the wire,
#: the inverter acting on it), seconds.
COMMAND_LATENCY_S = 0.05


def for_platform(settings: Settings, period_s: float) -> Settings:
    """The settings the engine runs with on a loop sampling every ``period_s``.

    The functions see the grid once a cycle, so a condition is seen up to one
    period late and a timer fires up to one period after it expires. So that a
    backup must-trip command leaves by the clearing time, its margin is at
    least two periods plus the command latency (a clearing time shorter than
    that trips on the first sample that sees the condition). So that the
    volt-var, volt-watt and frequency-droop outputs meet their open-loop
    response times at the inverter, the sampling delay is taken off their
    response times. The inverter's own response adds to what is left: where
    it is slow, set shorter response times. The settings as set (and as shown
    over IEC 61850) are unchanged.
    """
    margin = 2 * period_s + COMMAND_LATENCY_S

    def rt(r):
        return dataclasses.replace(r, trip_margin_s=max(r.trip_margin_s, margin))

    def faster(tr: float) -> float:
        return max(0.5 * tr, tr - period_s)

    return dataclasses.replace(
        settings,
        voltage_ride_through=rt(settings.voltage_ride_through),
        frequency_ride_through=rt(settings.frequency_ride_through),
        volt_var=dataclasses.replace(settings.volt_var,
                                     response_time_s=faster(settings.volt_var.response_time_s)),
        volt_watt=dataclasses.replace(
            settings.volt_watt, response_time_s=faster(settings.volt_watt.response_time_s)),
        freq_watt=dataclasses.replace(
            settings.freq_watt, response_time_s=faster(settings.freq_watt.response_time_s)))


def revert_time(setting: float | str, period_s: float) -> int:
    """Seconds of the inverter's revert timers for ``[functions] revert_timeout``.

    "auto": :data:`REVERT_CYCLES` poll periods, at least :data:`REVERT_AUTO_MIN_S`,
    at most :data:`REVERT_AUTO_MAX_S`. Never less than :data:`REFRESHES_PER_REVERT`
    poll periods (the refreshes must fit in it); whole seconds (SunSpec counts them).
    """
    if setting == "auto":
        s = min(REVERT_AUTO_MAX_S, max(REVERT_AUTO_MIN_S, REVERT_CYCLES * period_s))
    else:
        s = float(setting)
    return int(math.ceil(max(s, REFRESHES_PER_REVERT * period_s)))


@dataclass(slots=True)
class ControllerStatus:
    """What the controller did last cycle (for MMS status, health view, tests)."""

    active: bool = False
    reason: str = "not started"
    setpoints: Setpoints | None = None
    written: dict[str, Any] = field(default_factory=dict)
    writes: int = 0
    write_errors: int = 0
    rewrites_after_readback: int = 0
    not_followed: dict[str, str] = field(default_factory=dict)
    last_event: str | None = None
    #: Why the gateway stands aside (its controls released), or None.
    standing_aside: str | None = None
    #: Caveats the gateway runs with (monitor only, reactive power not steered ...).
    notes: tuple[str, ...] = ()
    #: Per function: native (the device runs it) or gateway (immediate controls), and why.
    steering: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Alarms of the device's own functions (a refused program, a change at the panel).
    alarms: tuple[str, ...] = ()
    #: Why no storage command is made (the battery is not understood), or None.
    storage_problem: str | None = None
    #: The battery power last written through 124 (None: released; absent: never).
    storage_written: dict[str, float | None] = field(default_factory=dict)


class Controller:
    """Runs :func:`functions.step` against one inverter through the HAL."""

    def __init__(self, inverter: Any, settings: Settings, events: EventLog,
                 nominal_voltage: float | None = None, follow_timeout_s: float = 10.0,
                 rng: random.Random | None = None, steering: str = "auto",
                 verify_every_s: float = 60.0, control_period_s: float = 0.1,
                 revert_timeout: float | str = "auto", state_dir: str | None = None) -> None:
        self.inverter = inverter
        self.control_period_s = control_period_s
        #: ``[functions] revert_timeout`` and the seconds it gives at this poll period.
        self.revert_timeout = revert_timeout
        self.revert_s = revert_time(revert_timeout, control_period_s)
        self._refresh_at = -math.inf
        self.settings = settings
        self.engine_settings = for_platform(settings, control_period_s)
        self.events = events
        self.nominal_voltage = nominal_voltage
        self.follow_timeout_s = follow_timeout_s
        self.rng = rng or random.Random()
        self.state: EngineState | None = None
        self.status = ControllerStatus()
        self._checks: dict[str, FollowCheck] = {}
        self._mismatch: dict[str, int] = {}
        self._warned: set[str] = set()
        #: How each function reaches the inverter (immediate writes, native programs).
        #: ``state_dir``: where the device's own functions as first seen are kept.
        self.steer = Steering(inverter, events, self.status, steering, verify_every_s,
                              state_dir=state_dir)
        #: Asked each cycle for the temporary settings window (the settings service's
        #: ``window``: the settings without it and its end, monotonic), or None.
        self.window_source: Callable[[], tuple[Settings, float] | None] | None = None
        #: Share of a plant limit (% of this inverter's rating) set by the site, or None.
        self.plant_cap_pct: float | None = None
        #: Share of the generation an export limit at the connection point allows (% of
        #: this inverter's rating), set by the site meter service (core/meter.py), or None.
        self.pcc_cap_pct: float | None = None
        self._controls_for: object = None
        self._controls: set[str] = set()
        #: The reading of the device's VNom (L-N 1, L-L 2 / sqrt 3), fixed per discovery.
        self._v_ratio: float | None = None
        self._v_ratio_for: object = None
        #: :meth:`_engine_now`'s last result and what it was built from (the engine's
        #: settings object and which functions the device runs natively).
        self._engine_for: tuple[object, tuple[bool, ...]] | None = None
        self._engine_built: Settings | None = None
        self.assessment: Assessment | None = None
        self._storage_refresh_at = -math.inf
        #: The battery as set_active_power needs it this cycle (None: not understood).
        self._storage_state: Any = None
        #: The device's 124 has a revert timer (InOutWRte_RvrtTms implemented).
        self._storage_timer = False
        #: The device's own battery window, read before each hold of this run (once per
        #: hold) and written back at its release (None: not read, or
        #: not readable: a release writes StorCtl_Mod 0); the device it was read from.
        self._storage_own: dict[str, Any] | None = None
        self._storage_own_for: object = None
        self._storage_own_warned: object = None

    # -- settings
    def set_control_period(self, period_s: float) -> None:
        """The loop now samples every ``period_s`` (an automatic poll period was chosen)."""
        self.control_period_s = period_s
        self.engine_settings = for_platform(self.settings, period_s)
        self.revert_s = revert_time(self.revert_timeout, period_s)

    def apply_settings(self, settings: Settings,
                       window: tuple[Settings, float] | None = None) -> None:
        """Swap settings (validated by the caller); timers and filters keep running,
        so the change takes effect at the next cycle. ``window``: ``settings`` are
        temporary, (the persisted settings, the window's end on the cycle clock): a
        temporary curve goes into the device with its own reversion where it can."""
        self.engine_settings = for_platform(settings, self.control_period_s)
        self.settings = settings
        self.steer.window = window

    def status_view(self) -> dict[str, Any]:
        """What the functions are doing, as plain data (rendered by :mod:`.status`)."""
        return functions_status(self).as_dict()

    @property
    def health(self) -> int:
        """HealthKind of the functions: alarm while standing aside, warning with caveats."""
        return status_health(self.status.standing_aside, self.status.notes,
                             self.status.alarms)

    # -- the cycle
    def cycle(self, snapshot: Mapping[str, Reading], t: float) -> Setpoints | None:
        a = self.assess(snapshot)
        meas, why = a.meas, (a.problems[0] if a.problems else None)
        notes = list(a.notes)
        if self.inverter.connected and not self._supported_controls():
            notes.append("monitor only: the device offers no immediate controls (123 or 704)")
        elif self.inverter.connected:
            notes.extend(self._no_revert_notes())
        self.status.notes = tuple(notes)
        self.status.steering = self.steer.steering_map()
        self._assess_storage(snapshot, a)
        self.status.alarms = self._alarms()
        policy = self.settings.safety.on_invalid_measurements
        if a.problems and policy is InvalidPolicy.STAND_ASIDE:
            self._stand_aside(a, snapshot, t)
            return None
        if self.status.standing_aside is not None:
            self.status.standing_aside = None
            self.steer.resume()
            self.events.record("understood", "measurements understood again: the functions "
                               "resume")
            self.state = None  # a warm start: timers from before the gap mean nothing now
        self._use_device_var_base(a)
        if self.state is None:
            # Warm start: a gateway restart must not knock an inverter that is
            # already energizing out of service for the enter-service delay; one
            # that is off (or unseen) enters service by the book (1547 4.10).
            warm = meas.valid and meas.connected
            # A fresh draw for the randomized enter-service delay (Rule 21 Hh.2.l / 1547 4.10.3).
            self.state = EngineState.initial(t, in_service=warm, random_u=self.rng.random())
            self.events.record("controller_start", "inverter energizing: stays in service"
                               if warm else "inverter not energizing: enter service governs")
        meas = dataclasses.replace(meas, storage=self._storage_state)
        setpoints, self.state, events = step(self._engine_now(), meas, self.state, t)
        setpoints = plant_cap(setpoints, self.plant_cap_pct)  # the last arbitration layer
        setpoints = pcc_cap(setpoints, self.pcc_cap_pct)  # and the export limit at the PCC
        setpoints = storage_setpoint(setpoints, a.w_base)  # the battery within all of it
        if meas.valid and not a.reactive_ok and setpoints.reactive_mode is not ReactiveMode.NONE:
            # The device's var maximum is unknown: no var command in an assumed base.
            setpoints = dataclasses.replace(setpoints, reactive_mode=ReactiveMode.NONE)
        for ev in events:
            self.events.record(ev.kind.value, ev.detail, source="engine")
            self.status.last_event = ev.kind.value
            if ev.kind.value in ("trip", "reconnect", "enter_service_start"):
                self.state = dataclasses.replace(self.state, random_u=self.rng.random())
        self.status.setpoints = setpoints
        self.status.active = True
        self.status.reason = why or self.state.status.state.value
        # Nothing can be written over a dead link; the inverter's own protection
        # (and revert timers, where set) govern until it comes back.
        if _good(snapshot, "link") and snapshot["link"].value:
            if self.window_source is not None:
                self.steer.window = self.window_source()
            self.steer.program(self.settings, t, reactive_ok=a.reactive_ok)
            if self.steer.reactive_held and setpoints.reactive_mode is not ReactiveMode.NONE:
                # The device's own volt-var not read yet: no var / PF enable (on a
                # selector-style device it would switch its volt-var off).
                setpoints = dataclasses.replace(setpoints, reactive_mode=ReactiveMode.NONE)
                self.status.setpoints = setpoints
            self.status.steering = self.steer.steering_map()
            self.status.alarms = self._alarms()
            self._write(setpoints, snapshot, t)
            self._write_storage(setpoints.storage_w, snapshot, t)
        if meas.valid:
            self._check_follow(snapshot, meas, t)
        return setpoints

    def _engine_now(self) -> Settings:
        """The engine's settings this cycle: a power function the device runs itself
        (706 volt-watt) is not also run here, so its limit is not written over it.

        Built again only when the settings or a native function change (the trip
        backups are rebuilt region by region), not every cycle."""
        s = self.engine_settings
        native = self.steer.native
        flags = tuple(native(f) for f in ("volt_watt", "freq_watt", *TRIP_FUNCTIONS))
        if self._engine_built is not None and self._engine_for is not None \
                and self._engine_for[0] is s and self._engine_for[1] == flags:
            return self._engine_built
        key = (s, flags)
        if native("volt_watt") and s.volt_watt.enabled:
            s = dataclasses.replace(s, volt_watt=dataclasses.replace(s.volt_watt,
                                                                     enabled=False))
        if native("freq_watt") and s.freq_watt.enabled:  # the device's 711
            s = dataclasses.replace(s, freq_watt=dataclasses.replace(s.freq_watt,
                                                                     enabled=False))
        # Must-trip the device carries (707-710): the gateway's trip only backs it up.
        self._engine_built = backup_behind_device(s, native)
        self._engine_for = key
        return self._engine_built

    # -- measurements
    def assess(self, s: Mapping[str, Reading]) -> Assessment:
        """Judge the snapshot (:mod:`inverter_agent.core.plausibility`); the reading of the
        device's nominal voltage is fixed on the first snapshot that fits, per discovery."""
        device = getattr(self.inverter, "device", None)
        if device is not self._v_ratio_for:
            self._v_ratio_for, self._v_ratio = device, None
        a = assess(s, self.nominal_voltage, self._v_ratio)
        if a.understood and self._v_ratio is None:
            self._v_ratio = a.v_ratio
        self.assessment = a
        return a

    def measurements(self, s: Mapping[str, Reading]) -> tuple[Measurements, str | None]:
        """Engine measurements from a HAL snapshot, or invalid ones with the reason."""
        a = self.assess(s)
        return a.meas, (a.problems[0] if a.problems else None)

    def _use_device_var_base(self, a: Assessment) -> None:
        """Run the engine with the device's own var maximum (% of its VA), not a default."""
        if a.var_inj_pct is None:
            return
        pct = min(100.0, max(1.0, a.var_inj_pct))
        np_ = self.engine_settings.nameplate
        if abs(np_.var_max_pct - pct) > 1e-9:
            self.engine_settings = dataclasses.replace(
                self.engine_settings, nameplate=dataclasses.replace(np_, var_max_pct=pct))

    def _stand_aside(self, a: Assessment, snapshot: Mapping[str, Reading], t: float) -> None:
        """Release the controls this run set and say why; the engine restarts on return.

        Releasing writes only our enables off (and Conn on if we had ceased): never
        a lower limit and never a cease, so the inverter runs on its own settings.
        """
        why = "; ".join(a.problems)
        if self.status.standing_aside != why:
            if not a.link_down or self.status.standing_aside is None:
                self.events.record("stand_aside", f"standing aside (controls released): {why}")
                log.warning("standing aside, controls released: %s", why)
            self.status.standing_aside = why
        self.state = None
        self.status.active = False
        self.status.setpoints = None
        self.status.reason = f"standing aside: {why}"
        self._checks.clear()
        if a.link_down or not self.inverter.connected:
            return
        supported = self._supported_controls()
        release: dict[str, Any] = dict(RELEASE)
        if self.status.written.get("Conn") is False:
            release["Conn"] = True
        changes = {}
        for k, v in release.items():
            if k not in supported or k not in self.status.written:
                continue  # never set by this run: the device's own setting stays
            rb = snapshot.get(k)
            on_device = rb.value if rb is not None and rb.quality.good else None
            if self.status.written[k] != v or (on_device is not None and bool(on_device) != v):
                changes[k] = v
        if changes:
            try:
                self.inverter.write_controls(changes)
            except Exception as exc:  # try again next cycle
                self.status.write_errors += 1
                log.warning("releasing %s failed: %s", sorted(changes), exc)
                return
            self.status.writes += 1
            self.status.written.update(changes)
            log.info("setpoints %s (cause: standing aside)", _fmt(changes))
        # Not merely released: the device's own volt-var is on again where it was.
        self.steer.stand_aside()
        self._write_storage(None, snapshot, t)

    # -- storage
    def _assess_storage(self, snapshot: Mapping[str, Reading], a: Assessment) -> None:
        """Is the battery understood? Not: no storage command, an alarm naming why (the
        grid functions run on: the gateway stands aside for storage only)."""
        state, why = storage_core.assess(snapshot, a.w_base)
        if a.link_down:
            state, why = None, self.status.storage_problem  # nothing new to judge
        if why != self.status.storage_problem:
            if why is not None:
                self.events.record("storage_stand_aside", f"no storage command: {why}")
                log.warning("no storage command: %s", why)
            else:
                self.events.record("storage_understood", "storage understood again")
            self.status.storage_problem = why
        self._storage_state = state

    def _alarms(self) -> tuple[str, ...]:
        alarms = tuple(self.steer.alarms.values())
        return alarms + ((self.status.storage_problem,) if self.status.storage_problem else ())

    def _write_storage(self, w: float | None, snapshot: Mapping[str, Reading],
                       t: float) -> None:
        """Hold the battery at ``w`` W through 124 (None: release what this run set).

        Written when it changes beyond a deadband, when the device's read-back shows it
        lost the window twice in a row, and a few times per revert time (the window
        carries InOutWRte_RvrtTms, so a gateway that stops leaves no command behind)."""
        inv = self.inverter
        if not inv.connected or not storage_core.controllable(snapshot):
            return
        timer = snapshot.get("InOutWRte_RvrtTms")
        self._storage_timer = timer is not None and timer.value is not None
        written = self.status.storage_written
        if w is None:
            if written.get("w", None) is None:
                return  # never set by this run, or already released
        else:
            rb = snapshot.get("StorCtlW")
            held = rb.value if rb is not None and rb.quality.good else None
            cha = snapshot.get("StorWChaMax")
            tol = max(20.0, 0.002 * (cha.value if cha is not None and cha.value else 0.0))
            lost = "w" in written and written["w"] is not None and (
                held is None or abs(held - w) > tol)
            self._mismatch["storage"] = self._mismatch.get("storage", 0) + 1 if lost else 0
            changed = "w" not in written or written["w"] is None or abs(written["w"] - w) > tol
            if not changed and self._mismatch["storage"] < 2 and t < self._storage_refresh_at:
                return
            if written.get("w", None) is None:
                self._read_own_window()
        try:
            inv.write_storage(w, self.revert_s, restore=self._storage_own)
        except Exception as exc:  # try again next cycle
            self.status.write_errors += 1
            log.warning("storage %s failed: %s", "release" if w is None else f"{w:g} W", exc)
            return
        self.status.writes += 1
        self._mismatch.pop("storage", None)
        written["w"] = w
        self._storage_refresh_at = t + self.revert_s / REFRESHES_PER_REVERT
        log.info("storage %s", "released" if w is None else f"{w:g} W")
        if w is not None:
            self._checks["storage"] = FollowCheck("storage", t + self.follow_timeout_s)
        else:
            self._checks.pop("storage", None)
            self.status.not_followed.pop("storage", None)
            # the device holds its own again: the next hold reads it afresh (an owner's
            # change made while the gateway held nothing is what goes back then)
            self._storage_own_for = None

    def _read_own_window(self) -> None:
        """Keep the device's own 124 window (an owner's or a home energy manager's
        charge / discharge limit) before this run holds the battery, once per hold (a
        failed write is not read again: what it left is not the device's own), so the
        release puts it back. Not readable: logged once per device, and a release writes
        StorCtl_Mod 0 as before."""
        device = self.inverter.device
        if device is self._storage_own_for:
            return
        self._storage_own_for, self._storage_own = device, None
        try:
            self._storage_own = self.inverter.storage_window()
            why = None if self._storage_own is not None else "is not readable"
        except Exception as exc:
            why = f"could not be read ({exc})"
        if why is not None and self._storage_own_warned is not device:
            self._storage_own_warned = device
            log.warning("the battery's own window %s: a release writes StorCtl_Mod 0", why)

    # -- writing
    def controls_for(self, sp: Setpoints) -> dict[str, Any]:
        """Named HAL controls for a set of setpoints (EEI sign: absorbing PF negative)."""
        c: dict[str, Any] = {"Conn": bool(sp.connect),
                             "WMaxLimPct": round(sp.p_limit_pct, 2), "WMaxLim_Ena": True}
        if self._no_limit_needed(sp):  # the device runs its own power functions
            c = {"Conn": bool(sp.connect), "WMaxLim_Ena": False}
        if sp.reactive_mode is ReactiveMode.CONSTANT_PF:
            c.update(OutPFSet=round(-sp.pf if sp.pf_absorbing else sp.pf, 4),
                     OutPFSet_Ena=True, VArPct_Ena=False)
        elif sp.reactive_mode is ReactiveMode.CONSTANT_Q and self.steer.native("volt_var"):
            # The inverter runs the programmed curve itself: no var setpoint over it.
            c.update(OutPFSet_Ena=False, VArPct_Ena=False)
        elif sp.reactive_mode is ReactiveMode.CONSTANT_Q:
            c.update(VArPct=round(self._device_var_pct(sp.q_pct), 2), VArPct_Ena=True,
                     OutPFSet_Ena=False)
        else:
            c.update(OutPFSet_Ena=False, VArPct_Ena=False)
        return c

    def _no_limit_needed(self, sp: Setpoints) -> bool:
        """No limit to hold: the device runs frequency droop itself (711) and volt-watt
        is not run here either, and nothing else limits (100 %). The enable is then
        left off instead of holding a 100 % limit that must be refreshed against its
        revert timer; any limit the engine computes later enables it again.

        The same test as on :meth:`_engine_now`'s settings (with 711 native, the engine's
        freq-watt is off; its volt-watt is off when off here or native), without building
        them a second time each cycle."""
        native = self.steer.native
        return (native("freq_watt") and sp.p_limit_pct >= 100.0
                and not (self.engine_settings.volt_watt.enabled and not native("volt_watt")))

    def _device_var_pct(self, q_pct: float) -> float:
        """The engine's Q (% of the injecting var maximum) as % of the device's var
        maximum in that direction (what the HAL's VArPct means)."""
        a = self.assessment
        if q_pct < 0 and a is not None and a.var_inj_pct and a.var_abs_pct:
            q_pct = q_pct * a.var_inj_pct / a.var_abs_pct
        return max(-100.0, min(100.0, q_pct))

    def _write(self, sp: Setpoints, snapshot: Mapping[str, Reading], t: float) -> None:
        if not self.inverter.connected:
            return
        supported = self._supported_controls()
        wanted = self.controls_for(sp)
        for name in list(wanted):
            if name not in supported:
                if name not in self._warned:
                    self._warned.add(name)
                    self.events.record("unsupported_control", f"inverter offers no {name}")
                del wanted[name]
        refused = self.steer.timers_refused
        timers = {tm: self.revert_s for k in wanted
                  if (tm := REVERT_TIMERS.get(k)) in supported and tm not in refused}
        wanted.update(timers)
        changes = {k: v for k, v in wanted.items() if self._differs(k, v, self.status.written)}
        # Read-back: the inverter lost a control we set (restart, another master).
        for k, v in wanted.items():
            if k in changes or k not in self.status.written:
                continue
            rb = snapshot.get(k)
            if rb is not None and rb.quality.good and rb.value is not None and \
                    self._differs(k, v, {k: rb.value}):
                self._mismatch[k] = self._mismatch.get(k, 0) + 1
                if self._mismatch[k] >= 2:  # twice in a row: not a read racing a write
                    changes[k] = v
                    self.status.rewrites_after_readback += 1
            else:
                self._mismatch.pop(k, None)
        # A cease goes out alone (protection first); the refresh waits a cycle.
        due = t >= self._refresh_at and changes.get("Conn") is not False
        refreshed = self._refreshed(wanted, timers) if due else {}
        changes.update(refreshed)
        if not changes:
            return
        if not self.steer.write(changes):
            return
        if refreshed:
            self._refresh_at = t + self.revert_s / REFRESHES_PER_REVERT
        for k in changes:
            self._mismatch.pop(k, None)
        log.log(logging.DEBUG if set(changes) <= set(refreshed) else logging.INFO,
                "setpoints %s (cause: %s)", _fmt(changes), sp.cause or "functions")
        self._arm_checks(sp, changes, t)

    @staticmethod
    def _refreshed(wanted: Mapping[str, Any], timers: Mapping[str, int]) -> dict[str, Any]:
        """The controls holding a command that have a revert timer, with their timers:
        rewritten now and then so that the timers never run out while the gateway runs
        (a control written restarts its timer, SunSpec 123 / 704)."""
        armed = {REVERT_TIMERS[k] for k, on in _COMMANDING.items()
                 if k in wanted and wanted[k] is on and REVERT_TIMERS[k] in timers}
        out = {k: v for k, v in wanted.items() if REVERT_TIMERS.get(k) in armed}
        out.update({tm: timers[tm] for tm in armed})
        return out

    def _no_revert_notes(self) -> list[str]:
        """Controls this device takes without a revert timer: what they leave behind."""
        supported = self._supported_controls()
        missing = [what for k, what in _NO_TIMER.items() if k in supported and (
            REVERT_TIMERS[k] not in supported or REVERT_TIMERS[k] in self.steer.timers_refused)]
        if not missing:
            return []
        return [f"no revert timer on this inverter for {', '.join(missing)}: if the gateway "
                "stops while it holds one, the inverter keeps it until the gateway returns"]

    def on_stop(self) -> None:
        """The gateway stops cleanly: every control with a revert timer stays in force
        until its timer runs out (a restart within it re-asserts without a gap); a cease
        to energize that has no timer is lifted now (permit service), so the inverter
        returns by its own enter-service settings instead of staying ceased for good.
        A device whose own volt-var or volt-watt was on when first seen and is off now
        (a PF or var setting switched 705 off; selector-style) gets it back now: a revert
        timer would end our setpoint but not switch its function on (Steering.stand_aside).
        A battery window this run holds goes back to the device's own when it has no
        revert timer, or when its own window was not StorCtl_Mod 0 (a timer leaves 0)."""
        if self.inverter.connected:
            self.steer.stand_aside()
            own = self._storage_own
            if self.status.storage_written.get("w") is not None and (
                    not self._storage_timer or (own is not None and own["StorCtl_Mod"])):
                # a battery window with no revert timer would outlive the gateway; one
                # whose timer runs out would leave StorCtl_Mod 0, not the device's own
                try:
                    self.inverter.write_storage(None, restore=own)
                    self.status.storage_written["w"] = None
                except Exception as exc:
                    log.warning("stopping: releasing the battery window failed: %s", exc)
        supported = self._supported_controls() if self.inverter.connected else set()
        timer = REVERT_TIMERS["Conn"]
        ceased = False in (self.status.written.get("Conn"), self.steer.conn_sent)
        if not ceased or "Conn" not in supported or (
                timer in supported and timer not in self.steer.timers_refused):
            return
        try:
            self.inverter.write_controls({"Conn": True})
        except Exception as exc:
            log.warning("stopping: lifting the cease to energize failed: %s", exc)
            return
        self.status.written["Conn"] = self.steer.conn_sent = True
        self.events.record("stop_release", "gateway stopping: cease to energize lifted "
                           "(no revert timer for it); the inverter's enter-service settings "
                           "govern its return")

    def _supported_controls(self) -> set[str]:
        """The device's controls, worked out again only when it is (re)discovered."""
        device = self.inverter.device
        if self._controls_for is not device:
            self._controls_for = device
            self._controls = set(self.inverter.capabilities().controls)
        return self._controls

    @staticmethod
    def _differs(name: str, value: Any, written: Mapping[str, Any]) -> bool:
        if name not in written:
            return True
        old = written[name]
        if isinstance(value, bool) or isinstance(old, bool):
            return bool(value) != bool(old)
        return abs(float(value) - float(old)) > DEADBAND.get(name, 1e-9)

    # -- following
    def _arm_checks(self, sp: Setpoints, changes: Mapping[str, Any], t: float) -> None:
        deadline = t + self.follow_timeout_s
        if "Conn" in changes:
            self._checks["connect"] = FollowCheck("connect", deadline)
        if "WMaxLimPct" in changes or "Conn" in changes:
            self._checks["p_limit"] = FollowCheck("p_limit", deadline)
        if {"VArPct", "OutPFSet", "VArPct_Ena", "OutPFSet_Ena"} & set(changes):
            self._checks["reactive"] = FollowCheck("reactive", deadline)

    def _check_follow(self, s: Mapping[str, Reading], meas: Measurements, t: float) -> None:
        sp = self.status.setpoints
        if sp is None:
            return
        w_rtg = self.assessment.w_base if self.assessment is not None else None
        for key, chk in list(self._checks.items()):
            if t < chk.deadline:
                continue
            ok, detail = self._followed(key, sp, meas, s, w_rtg)
            if ok is None:
                continue
            was = self.status.not_followed.get(key)
            if ok:
                if was is not None:
                    self.events.record("followed", f"{key}: inverter now follows")
                self.status.not_followed.pop(key, None)
                del self._checks[key]
            else:
                self.status.not_followed[key] = detail
                if was is None:
                    self.events.record("not_followed", f"{key}: {detail}")
                chk.deadline = t + self.follow_timeout_s  # check again, don't spam

    def _followed(self, key: str, sp: Setpoints, meas: Measurements,
                  s: Mapping[str, Reading], w_rtg: float | None) -> tuple[bool | None, str]:
        p_pct = meas.p_pu * 100.0
        if key == "connect":
            if not sp.connect:
                return (p_pct <= 2.0,
                        f"commanded to cease to energize, still {p_pct:.1f} % of rated W")
            return True, ""
        if key == "p_limit":
            if not sp.connect:
                return True, ""
            return (p_pct <= sp.p_limit_pct + FOLLOW_TOL_PCT,
                    f"limit {sp.p_limit_pct:.1f} %, output {p_pct:.1f} %")
        if key == "reactive":
            if not sp.connect or meas.p_pu <= 0.05:
                return None, ""  # no meaningful reactive check while (nearly) off
            q_pct_va = meas.q_pu * 100.0
            if sp.reactive_mode is ReactiveMode.CONSTANT_Q:
                a = self.assessment
                inj = a.var_inj_pct if a is not None and a.var_inj_pct else \
                    self.engine_settings.nameplate.var_max_pct
                target = sp.q_pct * inj / 100.0
            elif sp.reactive_mode is ReactiveMode.CONSTANT_PF:
                q = meas.p_pu * math.tan(math.acos(max(0.01, min(1.0, sp.pf))))
                target = (-q if sp.pf_absorbing else q) * 100.0
            else:
                return True, ""
            return (abs(q_pct_va - target) <= FOLLOW_TOL_PCT,
                    f"reactive {q_pct_va:.1f} % of rated VA, target {target:.1f} %")
        if key == "storage":
            bat = _val(s, "StorW")
            if sp.storage_w is None or bat is None or not w_rtg:
                return None, ""  # no battery power stated: not checked
            return (abs(bat - sp.storage_w) <= FOLLOW_TOL_PCT / 100.0 * w_rtg,
                    f"battery {bat:.0f} W, setpoint {sp.storage_w:.0f} W")
        return True, ""


def _good(s: Mapping[str, Reading], name: str) -> bool:
    r = s.get(name)
    return r is not None and r.value is not None and r.quality.good


def _val(s: Mapping[str, Reading], name: str) -> Any:
    return s[name].value if _good(s, name) else None


def _fmt(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
