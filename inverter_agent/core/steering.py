"""Steering through the HAL: immediate control writes and the device's own functions.

The controller decides *what* the inverter should do each cycle; this module
decides *how* it gets there, per grid function and per device:

- **native**: the device has the function's IEEE 1547-2018 model (705 for
  volt-var, 706 for volt-watt) and accepted the program (points written,
  curve adopted with ``AdptCrvReq`` and ``AdptCrvRslt`` completed). The
  device runs the function
  itself; the gateway reads the program back every ``verify_every`` seconds
  and programs it again, with an alarm, when it changed (a change at the panel,
  a factory reset). It does not also steer that function with immediate
  controls.
- **gateway**: the device lacks the model, refused the program, or the
  function needs what only the gateway has (autonomous VRef); the gateway
  steers it with immediate controls (123 / 704), as it always has.

``[functions] steering``: "auto" (the default) makes that choice per function;
"native" is the older name for the same; "immediate" steers every function
with immediate controls (an explicit opt-out).

- **device**: neither programmed nor steered, the device's own settings govern:
  a function the effective settings have off (volt-watt 706, frequency droop 711,
  must-trip 707-710 without a clearing time on a side), volt-var 705 when no
  reactive mode is on at all, or volt-var when the device's var maximum is
  unknown.

First, do no harm: a function the settings have off is left to the device, never
switched off by the gateway (nothing written). The one exception is volt-var when
another reactive mode (constant PF, constant var) is on: reactive modes exclude
each other (IEEE 1547-2018 5.3.1), so 705 ``Ena`` is written 0 while the gateway
carries that mode. The device's own 705 / 706 are read at the first discovery
of a device, before anything is written, and kept in the state directory with a
flag per function "the gateway has written it since" (:mod:`.own_record`): later
discoveries and restarts use that record, never what a killed gateway left in the
device. When the settings turn a function off after the gateway had programmed it
(a utility switching volt-watt off, or the settings a restarted gateway finds), the
device's own is put back as first seen (its curve and ``Ena``; a device whose own
was off gets ``Ena`` 0 back, its own state, but only while it holds the gateway's
last program on: anything else on was its owner's doing and is left on), also with
``steering = "immediate"`` and while the var maximum is unknown. A device that ran
its own volt-var or volt-watt when the gateway first saw it gets it back when the
gateway stands aside or stops (the gateway's enables released *and* 705 / 706
``Ena`` on again), not merely the enables released; standing aside observes first
(the record, or the device found now). Each function's own is kept once read; until
volt-var's own is known on a device with 705, no var or PF enable is written
(:attr:`Steering.reactive_held`). A refused program falls back for that function
only, with an event and an alarm naming it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from hal.curves import Curve, CurveError, VoltVarCurve, VoltWattCurve
from hal.inverter import REVERT_TIMERS
from hal.settings_native import EnterService, FreqDroop
from hal.transport import DeviceException
from hal.trip import TripCurve
from inverter_agent.core.events import EventLog
from inverter_agent.core.own_record import OwnRecord, OwnRecords, identity_key
from inverter_agent.functions import Settings
from inverter_agent.functions.registry import REACTIVE
from inverter_agent.functions.ride_through import RegionMode, RideThroughSettings

log = logging.getLogger(__name__)

MODES = ("auto", "native", "immediate")
#: Functions the HAL can program into the device, and the SunSpec model that carries each.
NATIVE_MODELS = {"volt_var": 705, "volt_watt": 706}
#: The must-trip / momentary-cessation functions: SunSpec model, settings table, side.
TRIP_FUNCTIONS = {"lv_trip": (707, "voltage_ride_through", "under"),
                  "hv_trip": (708, "voltage_ride_through", "over"),
                  "lf_trip": (709, "frequency_ride_through", "under"),
                  "hf_trip": (710, "frequency_ride_through", "over")}
#: The immediate reactive enables (var, PF): on a device whose reactive modes exclude
#: each other (selector style) either switches its own volt-var off.
REACTIVE_ENABLES = ("VArPct_Ena", "OutPFSet_Ena")
#: Seconds before a refused program is tried again (at most ``verify_every``).
RETRY_S = 10.0
#: Seconds past a temporary curve's window the device's own reversion (RvrtTms) waits,
#: so that a living gateway restores the persisted curve first.
REVERT_MARGIN_S = 10.0
#: Seconds between re-arms of that timer (and read-backs of the temporary curve).
REARM_EVERY_S = 15.0


@dataclass(frozen=True, slots=True)
class Choice:
    """How one function reaches the inverter: "native", "gateway" or "device" (left
    as the device has it), and why."""

    by: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"by": self.by, "why": self.why}


@dataclass(slots=True)
class _Native:
    """One natively programmed function: what was asked, whether the device holds it."""

    curve: Curve | TripCurve | EnterService | FreqDroop
    programmed: bool
    verify_at: float
    #: A temporary curve the device reverts from by itself (705 / 706 RvrtTms, RvrtCrv).
    reverts: bool = False


class Steering:
    """The HAL side of one inverter's controller (see the module doc)."""

    def __init__(self, inverter: Any, events: EventLog, status: Any, mode: str = "auto",
                 verify_every_s: float = 60.0, state_dir: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"steering {mode!r}: one of {', '.join(MODES)}")
        self.inverter = inverter
        self.events = events
        #: The controller's :class:`~inverter_agent.core.controller.ControllerStatus`.
        self.status = status
        self.mode = mode
        self.verify_every_s = verify_every_s
        #: Revert timers the device refused to take (the controls go out without them).
        self.timers_refused: set[str] = set()
        #: The last Conn this run tried to write (written or not).
        self.conn_sent: bool | None = None
        self.choices: dict[str, Choice] = {}
        #: Alarms of the native functions (function -> what is wrong), shown in status.
        self.alarms: dict[str, str] = {}
        self._native: dict[str, _Native] = {}
        #: Functions whose program the device did not take (an alarm stands for each).
        self._refused: set[str] = set()
        #: The device's own 705 / 706 as first seen (before any write of ours), from the
        #: record in the state directory where there is one (kept across restarts).
        self._own: dict[str, Curve] = {}
        self._own_for: object = None
        #: The device whose record was loaded (its identity read).
        self._record_for: object = None
        #: Functions whose own could not be read yet: function -> the error (logged once).
        self._unread: dict[str, str] = {}
        self._records = OwnRecords(state_dir) if state_dir else None
        #: This device's record (None: not kept, no state directory or no identity).
        self.record: OwnRecord | None = None
        self._record_key = ""
        self._identity: dict[str, Any] = {}
        #: Functions whose own settings were put back (settings off after a program).
        self._put_back: set[str] = set()
        #: A failed put-back: function -> when it is tried again.
        self._put_back_at: dict[str, float] = {}
        self._restored = False
        #: A temporary settings window: (the persisted settings, its end on the cycle
        #: clock), set by the controller; None: the settings in force are the persisted.
        self.window: tuple[Settings, float] | None = None
        self.revert_margin_s = REVERT_MARGIN_S

    # -- immediate controls
    def write(self, changes: dict[str, Any]) -> bool:
        """Write immediate controls; a device that refuses a revert timer still gets the
        controls (without that timer from then on, and status says so). False: nothing
        written."""
        if "Conn" in changes:  # a cease half written (one model of two) counts at stop
            self.conn_sent = changes["Conn"]
        own = self._own.get("volt_var")
        if own is not None and own.enabled and any(changes.get(k) for k in REACTIVE_ENABLES):
            # On a device whose reactive modes exclude each other, this switches its own
            # volt-var off: written by the gateway as much as a 705 write (a restart
            # that leaves volt-var to the device puts it back).
            self._mark_written("volt_var")
        try:
            self.inverter.write_controls(changes)
        except Exception as exc:  # the link or the device refused: try again next cycle
            timers = {k for k in changes if k in REVERT_TIMERS.values()}
            self.status.write_errors += 1
            log.warning("writing %s failed: %s", sorted(changes), exc)
            if not timers or not isinstance(exc, DeviceException):
                return False  # not the device saying no (a link failure): next cycle
            rest = {k: v for k, v in changes.items() if k not in timers}
            try:
                if rest:
                    self.inverter.write_controls(rest)
            except Exception:
                return False
            refused = set()
            for tm in sorted(timers):  # which timer the device said no to
                try:
                    self.inverter.write_controls({tm: changes[tm]})
                except DeviceException:
                    refused.add(tm)
                except Exception:  # the link: try the timers again later
                    refused = set()
                    break
                else:
                    rest[tm] = changes[tm]
            if refused:
                self.timers_refused |= refused
                self.events.record("revert_timer_refused", f"the inverter refused "
                                   f"{', '.join(sorted(refused))}: {exc}")
            changes = rest
        self.status.writes += 1
        self.status.written.update(changes)
        return True

    # -- the per-function choice
    def native(self, function: str) -> bool:
        """Whether the device runs ``function`` itself from what the gateway programmed."""
        n = self._native.get(function)
        return n is not None and n.programmed and n.curve.enabled

    def steering_map(self) -> dict[str, dict[str, str]]:
        """Per function: {"by": "native" | "gateway" | "device", "why": ...} (plain data for
        status; "device": neither programmed nor steered, the device's own settings)."""
        return {f: c.as_dict() for f, c in sorted(self.choices.items())}

    def _choose(self, function: str, by: str, why: str) -> None:
        new = Choice(by, why)
        if self.choices.get(function) != new:
            self.choices[function] = new
            self.events.record("steering", f"{function}: {by} ({why})")

    def program(self, settings: Settings, t: float, reactive_ok: bool = True) -> None:
        """Choose, per function, native or gateway; program and read back the native ones.

        Called every cycle with the link up, before any immediate control is written.
        ``reactive_ok`` False (the device's var maximum is unknown): its volt-var is left
        as it is, neither programmed nor steered (no value in an assumed base).
        """
        if not self.inverter.connected:
            return
        self._observe()
        natives = self.inverter.native_functions()
        if self.mode == "immediate":
            for f, model in NATIVE_MODELS.items():
                if f in natives and f not in self._own:
                    self._unknown_own(f)
                    continue
                if f in natives and self._leaves_to_device(settings, f) and (
                        self._written(f) or f in self._put_back or f in self._put_back_at):
                    self._leave_to_device(f, model, t)  # the gateway had written it
                    continue
                self._put_back.discard(f)
                self._choose(f, "gateway", "steering = \"immediate\" (configured)")
            self._program_trips(settings, t)
            self._program_settings(settings, t)
            return
        for f, model in NATIVE_MODELS.items():
            if f not in natives:
                self._native.pop(f, None)
                self._choose(f, "gateway", f"the inverter has no model {model}")
                continue
            if f not in self._own:  # nothing written to 705 / 706 before its own is known
                self._unknown_own(f)
                continue
            if f == "volt_var" and not reactive_ok:
                why = "var maximum unknown: the inverter's own volt-var settings are left " \
                      "as they are"
                if self._leaves_to_device(settings, f) or other_reactive_mode(settings):
                    # No reactive mode is carried by the gateway now: the device's own is
                    # put back where the gateway wrote it (that needs no var maximum).
                    self._leave_to_device(f, model, t, why)
                    continue
                self._native.pop(f, None)
                self._choose(f, "device", why)
                continue
            if f == "volt_var" and settings.volt_var.vref_auto:
                self._native.pop(f, None)
                self._choose(f, "gateway", "autonomous VRef is run by the gateway")
                continue
            desired = desired_volt_var_curve if f == "volt_var" else desired_volt_watt_curve
            want: Curve = desired(settings)
            other = other_reactive_mode(settings) if f == "volt_var" else ""
            if self._leaves_to_device(settings, f):
                self._leave_to_device(f, model, t)
                continue
            back = desired(self.window[0]) if self.window and t < self.window[1] else want
            if back != want and self._program_temporary(f, model, want, back, t):
                continue
            self._program(f, model, want, t, note="" if want.enabled else
                          f" (switched off: {other} is on in the settings and reactive modes "
                          "exclude each other; on again when the gateway stands aside or "
                          "stops)")
            if back != want and self.choices.get(f, Choice("", "")).by == "native":
                self._choose(f, "native", f"temporary curve programmed into the inverter's "
                             f"{model} without its own reversion (no free curve, no RvrtTms, "
                             "the function off in or after the window, or refused): if the "
                             "gateway stops in the window, it keeps it")
        self._program_trips(settings, t)
        self._program_settings(settings, t)

    @staticmethod
    def _leaves_to_device(settings: Settings, f: str) -> bool:
        """The settings have ``f`` off (volt-var: and no other reactive mode on)."""
        desired = desired_volt_var_curve if f == "volt_var" else desired_volt_watt_curve
        return not desired(settings).enabled and not (
            f == "volt_var" and other_reactive_mode(settings))

    def _unknown_own(self, f: str) -> None:
        """``f``'s own could not be read: not programmed (nor switched off) until it is."""
        self._native.pop(f, None)
        err = self._unread.get(f, "not read yet")
        if f == "volt_var":
            self._choose(f, "device", f"the inverter's own 705 could not be read ({err}): "
                         "neither programmed nor steered until it is (no var or PF enable, "
                         "which would switch it off)")
        else:
            self._choose(f, "gateway", f"the inverter's own 706 could not be read ({err}): "
                         "not programmed until it is; steered by the gateway")

    def _program_settings(self, settings: Settings, t: float) -> None:
        """Enter service (703) and frequency droop (711) into the device; watt-var (712)
        is reported, never written: the gateway has no watt-var setting to give it."""
        has = getattr(self.inverter, "has_model", lambda m: False)
        es, fw = settings.enter_service, settings.freq_watt
        for f, model, on, why_off in (
                ("enter_service", 703, es.enabled, "permit service off: the gateway holds "
                 "the cease itself"),
                ("freq_watt", 711, fw.enabled, "frequency droop off in the settings: the "
                 "inverter's own 711 is left as it is (never switched off)")):
            if self.mode == "immediate":
                self._choose(f, "gateway", "steering = \"immediate\" (configured)")
                continue
            if not has(model):
                self._native.pop(f, None)
                self._choose(f, "gateway", f"the inverter has no model {model}")
                continue
            if not on:
                self._native.pop(f, None)
                self._choose(f, "gateway" if f == "enter_service" else "device", why_off)
                continue
            want: EnterService | FreqDroop = desired_enter_service(settings) \
                if f == "enter_service" else desired_freq_droop(settings)
            hal_name = "enter_service" if f == "enter_service" else "freq_droop"
            self._program(f, model, want, t, read=getattr(self.inverter, f"read_{hal_name}"),
                          write=getattr(self.inverter, f"write_{hal_name}"))
        if has(712):
            self._choose("watt_var", "device", "the gateway has no watt-var setting: the "
                         "inverter's own 712 is left as it is")

    def _program_trips(self, settings: Settings, t: float) -> None:
        """The must-trip and momentary-cessation settings into 707-710, the device's
        own (certified) protection: native wherever the device takes them."""
        have = self.inverter.trip_models() if hasattr(self.inverter, "trip_models") else ()
        for f, (model, _, side) in TRIP_FUNCTIONS.items():
            if self.mode == "immediate":
                self._choose(f, "gateway", "steering = \"immediate\" (configured)")
                continue
            if model not in have:
                self._native.pop(f, None)
                self._choose(f, "gateway", f"the inverter has no model {model}: the "
                             "gateway's backup trip only")
                continue
            want = desired_trip_curve(settings, f)
            if want is None:
                self._native.pop(f, None)
                self._choose(f, "device", f"no {side} must-trip setting enabled: the "
                             f"inverter's own {model} settings are left as they are")
                continue
            self._program(f, model, want, t,
                          read=lambda m=model: self.inverter.read_trip_curve(m),
                          write=lambda c, m=model: self.inverter.write_trip_curve(m, c))

    def _program_temporary(self, f: str, model: int, want: Curve, back: Curve,
                           t: float) -> bool:
        """A temporary curve (a window of the operator or the utility) adopted with the
        persisted one as the device's revert curve (RvrtCrv) and RvrtTms the time left
        plus :data:`REVERT_MARGIN_S`, re-armed while the gateway lives: a gateway gone in
        the window leaves the device reverting by itself. False: the device cannot (no
        free curve, no RvrtTms, a refusal or a failure): the caller programs it as before."""
        assert self.window is not None
        if not (want.enabled and back.enabled):
            return False  # a reversion changes the curve in use, never the device's Ena
        n = self._native.get(f)
        left = self.window[1] - t + self.revert_margin_s
        if n is not None and n.curve == want and not n.reverts and t < n.verify_at:
            return False  # known not to revert by itself: programmed the plain way
        try:
            if n is not None and n.programmed and n.curve == want and n.reverts:
                if t < n.verify_at:
                    return True
                if getattr(self.inverter, f"read_{f}_curve")().close_to(want):
                    self.inverter.rearm_curve_revert(f, left)
                    n.verify_at = t + min(self.verify_every_s, REARM_EVERY_S)
                    return True
                self.events.record("native_curve_mismatch", f"{f}: the inverter's temporary "
                                   "curve changed; programming it again")
            self._mark_written(f, program=(want, back))
            if not self.inverter.write_curve_with_revert(f, want, back, left):
                return False
        except Exception as exc:
            log.warning("programming the temporary %s curve with reversion failed: %s", f, exc)
            return False
        self.events.record("native_curve_programmed", f"{f}: temporary {want.points}, the "
                           f"inverter reverts to {back.points} in {left:.0f} s by itself")
        self._native[f] = _Native(want, True, t + min(self.verify_every_s, REARM_EVERY_S),
                                  reverts=True)
        self._choose(f, "native", f"temporary curve adopted into the inverter's {model} "
                     "with its own reversion (RvrtTms) to the persisted curve (RvrtCrv)")
        return True

    def _program(self, f: str, model: int, want: Any, t: float,
                 read: Any = None, write: Any = None, note: str = "") -> None:
        n = self._native.get(f)
        self._put_back.discard(f)
        if n is not None and n.curve == want and t < n.verify_at:
            return
        mismatch = "native_mismatch" if f == "volt_var" else f"native_mismatch_{f}"
        read = read or getattr(self.inverter, f"read_{f}_curve")
        write = write or getattr(self.inverter, f"write_{f}_curve")
        try:
            have = read()
            # A function switched off is off whatever curve the device keeps for it.
            if have.close_to(want) or not (want.enabled or have.enabled):
                if n is not None and n.programmed and n.curve == want:
                    self.status.not_followed.pop(mismatch, None)
                    self.alarms.pop(f, None)
                self._native[f] = _Native(want, True, t + self.verify_every_s)
                self._choose(f, "native", f"the inverter's own curve ({model}) holds the "
                             f"settings{note}{_not_carried_note(have)}")
                return
            if n is not None and n.programmed and n.curve == want:
                self.status.not_followed[mismatch] = f"device curve {have.points}"
                self.alarms[f] = (f"{f}: changed at the device to {have.points}; "
                                  "programmed again")
                self.events.record("native_curve_mismatch", f"{f}: the inverter's curve "
                                   f"changed to {have.points} (enabled {have.enabled}); "
                                   "programming it again")
            self._mark_written(f, program=(want,) if isinstance(want, Curve) else None)
            write(want)
            self.events.record("native_curve_programmed", f"{f}: {want.points} "
                               f"{'enabled' if want.enabled else 'disabled'}")
            self._native[f] = _Native(want, True, t + self.verify_every_s)
            if f in self._refused:
                self._refused.discard(f)
                self.alarms.pop(f, None)
            if isinstance(want, EnterService | FreqDroop):  # what it carries of it
                try:
                    note += _not_carried_note(read())
                except Exception as exc:  # programmed all the same: the next read-back
                    log.info("reading %s back after its program failed: %s", f, exc)
            self._choose(f, "native", f"programmed and adopted into the inverter's {model}"
                         f"{note}")
        except Exception as exc:  # the function falls back to the gateway, alone
            self.status.write_errors += 1
            # The device said no: ask again at the next read-back; a link failure sooner.
            refused = isinstance(exc, DeviceException | CurveError | PermissionError)
            retry = self.verify_every_s if refused else min(RETRY_S, self.verify_every_s)
            self._native[f] = _Native(want, False, t + retry)
            log.warning("programming the native %s curve failed: %s", f, exc)
            why = f"the inverter refused the program: {exc}" if refused else \
                f"programming failed: {exc}"
            if f not in self._refused:
                self._refused.add(f)
                self.events.record("native_fallback", f"{f}: {why}; steered by the "
                                   "gateway with immediate controls")
            self.alarms[f] = f"{f}: native program not taken ({exc}); gateway-steered"
            self._choose(f, "gateway", why)

    # -- the device's own functions
    def _observe(self) -> None:
        """The device's own 705 / 706 once per discovery, before anything is written to
        them: from its record in the state directory, else read (and recorded). Each
        function's own is kept once known; one that cannot be read is tried again next
        cycle (logged once, and again when it reads), without discarding the others."""
        device = getattr(self.inverter, "device", None)
        if device is not self._own_for:
            self._own_for, self._own, self._native = device, {}, {}
            self._put_back, self._put_back_at = set(), {}
            self._restored, self._record_for = False, None
        natives = self.inverter.native_functions()
        if all(f in self._own for f in natives):
            return
        if self._record_for is not device:
            try:
                self._load_record()
            except Exception as exc:  # its identity unknown: no function read before it
                self._unread_now(natives, exc)
                return
            self._record_for = device
        record, new = self.record, False
        for f in natives:
            if f in self._own:
                continue
            if record is not None and f in record.own:
                self._own[f] = record.own[f]
                continue
            try:
                self._own[f] = getattr(self.inverter, f"read_{f}_curve")()
            except Exception as exc:  # this function only: tried again next cycle
                self._unread_now((f,), exc)
                continue
            new = True
            if self._unread.pop(f, None) is not None:
                log.info("the inverter's own %s read now", f)
        if not new or self._records is None or not self._record_key:
            return
        # First seen now: the device, or a function new to its record (a firmware update,
        # or one whose read failed before).
        self.record = record or OwnRecord(identity=self._identity)
        self.record.own.update(self._own)
        self._save_record()

    def _unread_now(self, functions: Any, exc: Exception) -> None:
        """``functions``' own could not be read: logged once until it reads again."""
        for f in functions:
            if f not in self._unread:
                log.warning("reading the inverter's own %s failed (tried again every "
                            "cycle, logged again when it reads): %s", f, exc)
            self._unread[f] = str(exc)

    @property
    def reactive_held(self) -> bool:
        """The device has volt-var (705) and its own is not known yet: no var or PF
        enable is written (on a selector-style device either switches it off, and the
        gateway would then read its own off). The controller holds reactive power back."""
        if "volt_var" in self._own and \
                self._own_for is getattr(self.inverter, "device", None):
            return False
        natives = getattr(self.inverter, "native_functions", None)
        return bool(self.inverter.connected and natives is not None
                    and "volt_var" in natives())

    def _load_record(self) -> OwnRecord | None:
        """This device's record (its identity read); None: none yet, or not kept."""
        self.record, self._record_key = None, ""
        identity = getattr(self.inverter, "identity", None)
        if self._records is None or identity is None:
            return None
        self._identity = identity()
        self._record_key = identity_key(self._identity)
        self.record = self._records.load(self._record_key)
        return self.record

    def recorded_at(self) -> str | None:
        """When this device's own settings were first seen and recorded (UTC, ISO 8601);
        None: no record; "not saved: <why>" where the last save wrote nothing."""
        if self.record is None:
            return None
        if self._records is not None and self._records.error:
            return f"not saved: {self._records.error}"
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.record.first_seen))

    def _written(self, f: str) -> bool:
        """The record says the gateway has written ``f`` since its own was first seen."""
        return self.record is not None and self.record.written.get(f, False)

    def _mark_written(self, f: str, written: bool = True,
                      program: tuple[Curve, ...] | None = None) -> None:
        """Before the gateway writes ``f`` (705 / 706; ``program``: the curves it writes);
        ``written`` False: the device holds its own again. Kept in the record, so that a
        restart knows."""
        if self.record is None or f not in NATIVE_MODELS:
            return
        changed = self._written(f) != written
        self.record.written[f] = written
        if program is not None and self.record.programmed.get(f) != list(program):
            self.record.programmed[f] = list(program)
            changed = True
        if changed:
            self._save_record()

    def _gateway_programs(self, f: str) -> list[Curve]:
        """The curves the gateway last programmed for ``f`` (recorded, or this run's)."""
        mine = list(self.record.programmed.get(f, ())) if self.record is not None else []
        n = self._native.get(f)
        if n is not None and isinstance(n.curve, Curve):
            mine.append(n.curve)
        return mine

    def _save_record(self) -> None:
        assert self._records is not None and self.record is not None
        self._records.save(self._record_key, self.record)

    def _leave_to_device(self, f: str, model: int, t: float, why: str = "") -> None:
        """``f`` is off in the settings: the device's own settings govern, never switched
        off. Where the gateway had programmed it (this discovery, or before a restart or
        rediscovery: the record says so), its own (as first seen) is put back: ``Ena`` 0
        where its own was off then (:meth:`_put_back_own`)."""
        why = why or (f"{f.replace('_', '-')} off in the settings"
                      + (" and no other reactive mode on" if f == "volt_var" else "")
                      + f": the inverter's own {model} is left as it is (never switched off)")
        n = self._native.get(f)
        earlier = self._written(f) and (n is None or not n.programmed)
        if (n is not None and n.programmed) or earlier:
            if t < self._put_back_at.get(f, t):
                return
            try:
                if self._put_back_own(f, earlier):
                    self._put_back.add(f)
            except Exception as exc:  # tried again shortly; the choice says so
                self.status.write_errors += 1
                self._put_back_at[f] = t + min(RETRY_S, self.verify_every_s)
                log.warning("putting the inverter's own %s back failed: %s", f, exc)
                self._choose(f, "device", f"{why}; putting its own settings back failed "
                             f"({exc}), tried again")
                return
            self._put_back_at.pop(f, None)
        self._native.pop(f, None)
        self._refused.discard(f)  # nothing to program: no fallback, no alarm
        self.alarms.pop(f, None)
        self.status.not_followed.pop("native_mismatch" if f == "volt_var"
                                     else f"native_mismatch_{f}", None)
        if f in self._put_back:
            why += "; its own settings as first seen were put back"
        self._choose(f, "device", why)

    def _put_back_own(self, f: str, earlier: bool = False) -> bool:
        """The device's own ``f`` as first seen, in place of the gateway's program
        (``earlier``: one the gateway wrote before a restart or rediscovery). False: the
        device holds it already (nothing written)."""
        own = self._own.get(f)
        if own is None:
            return False
        have = getattr(self.inverter, f"read_{f}_curve")()
        if (have.close_to(own) if own.enabled else not have.enabled):  # its own already
            self._mark_written(f, False)
            return False
        if own.enabled:
            self._switch_on(f, have, own)
        elif not any(c.enabled and have.close_to(c) for c in self._gateway_programs(f)):
            # On, but not with the gateway's program: its owner switched it on since (or
            # another device is on the unit). Left on: never switched off by the gateway.
            self._mark_written(f, False)
            self.events.record("native_owner_changed", f"{f}: the inverter holds it on "
                               f"{have.points}, not the gateway's program: changed at the "
                               "device since; left on (its own off state as first seen is "
                               "not written back)")
            return False
        else:  # its own was off: off is its own state, not less than it had
            getattr(self.inverter, f"enable_{f}")(False)
        self._mark_written(f, False)  # after the write: a failed one leaves it marked
        self.events.record("native_restored", f"{f}: the inverter's own settings put back "
                           f"{own.points} ({'enabled' if own.enabled else 'disabled'}, as "
                           "first seen; off in the settings"
                           + ("; the gateway had written it before it restarted or "
                              "rediscovered the inverter)" if earlier else ")"))
        return True

    def _switch_on(self, f: str, have: Curve, curve: Curve) -> None:
        """``curve`` on in the device: switched on where the device holds it, else
        programmed; a program not taken again switches on the curve it holds."""
        enable = getattr(self.inverter, f"enable_{f}")
        if replace(have, enabled=True).close_to(curve):
            enable(True)  # the curve is there: switch it on
            return
        try:
            getattr(self.inverter, f"write_{f}_curve")(curve)
        except CurveError:  # not taken again: its curve as it holds it, on
            enable(True)

    def stand_aside(self) -> None:
        """Leave the device its own functions: a volt-var or volt-watt that was on when
        first seen is on again (a selector-style device switched its volt-var off when
        our var enable went on)."""
        if not self.inverter.connected:
            return
        # The device's own as recorded (a restart that stands aside first) or read, and
        # the device discovered now, never a previous one's.
        self._observe()
        if self._restored:
            return
        done = True
        for f in NATIVE_MODELS:
            done = self._switch_own_on_again(f) and done
        self._restored = done

    def _switch_own_on_again(self, f: str) -> bool:
        """``f`` on again where the device ran it when first seen (or runs ours now) and
        it is off. False: failed (the next cycle tries again)."""
        own = self._own.get(f)
        if not (self.native(f) or (own is not None and own.enabled)):
            return True
        try:
            have = getattr(self.inverter, f"read_{f}_curve")()
            if not have.enabled:
                n = self._native.get(f)
                # The gateway's program where it had the function on; the device's own
                # curve where the settings had it off (volt-var under a PF or var profile).
                mine = n.curve if n is not None and n.programmed and \
                    isinstance(n.curve, Curve) and n.curve.enabled else own
                assert mine is not None
                self._switch_on(f, have, mine)
                if mine is own:
                    self._mark_written(f, False)
                # Back from standing aside, the device is read afresh: a program that
                # had it off (a PF or var mode) is written again at once, with no alarm.
                self._native.pop(f, None)
                self.events.record("native_restored", f"{f}: the inverter's own curve "
                                   f"switched on again {mine.points} (standing aside or "
                                   "stopping)")
            return True
        except Exception as exc:  # the next cycle tries again
            self.status.write_errors += 1
            log.warning("restoring the inverter's own %s failed: %s", f, exc)
            return False

    def resume(self) -> None:
        """The gateway steers again after standing aside."""
        self._restored = False


def _not_carried_note(held: Any) -> str:
    """The optional points the device does not carry, for the steering "why"."""
    absent = getattr(held, "not_carried", ())
    return f" (this inverter does not carry the optional {', '.join(absent)}: not " \
           "compared)" if absent else ""


def other_reactive_mode(settings: Settings) -> str:
    """The reactive mode other than volt-var the settings have on ("" none): the modes
    exclude each other (IEEE 1547-2018 5.3.1)."""
    return next((n for n in REACTIVE if n != "volt_var" and getattr(settings, n).enabled), "")


def desired_volt_var_curve(settings: Settings) -> VoltVarCurve:
    """The volt-var settings as a device curve (V in % of nominal, Q in % of the base)."""
    vv = settings.volt_var
    return VoltVarCurve(
        points=tuple((round(p.v_pu * 100.0, 2), round(p.q_pct, 2)) for p in vv.curve),
        ref="va_max" if vv.q_base.value == "rated_va" else "var_max",
        response_time_s=vv.response_time_s, enabled=vv.enabled)


def desired_volt_watt_curve(settings: Settings) -> VoltWattCurve:
    """The volt-watt settings as a device curve (V in % of nominal, W in % of WMax)."""
    vw = settings.volt_watt
    return VoltWattCurve(points=tuple((round(p.v_pu * 100.0, 2), round(p.p_pct, 2))
                                      for p in vw.curve),
                         ref="w_max", response_time_s=vw.response_time_s, enabled=vw.enabled)


#: The gateway's backup trip behind a device that carries its own must-trip (707-710),
#: so that it never trips ahead of the device inside a ride-through region. The device
#: meets each clearing time within the time accuracy IEEE 1547-2018 Table 3 allows (1 %),
#: and its trip reaches the gateway only in a poll after its output stopped; the backup
#: waits the clearing time, that 1 %, and BACKUP_EXTRA_S more (on top of the platform's
#: trip margin, which only ever fires earlier, so it is added back). A value counts as
#: beyond a threshold for the backup only by more than the measurement accuracy of Table 3
#: (V 1 % of nominal, f 10 mHz): a device measuring at the edge of its accuracy and
#: staying in service is not tripped by the gateway reading the other edge.
TIME_ACCURACY = 0.01
BACKUP_EXTRA_S = 0.2
ACCURACY = {"voltage_ride_through": 0.01, "frequency_ride_through": 0.01}


def desired_trip_curve(settings: Settings, function: str) -> TripCurve | None:
    """One side of a ride-through table as the device's 707-710 curves (V in % of
    nominal or Hz, seconds): a must-trip point per region with a clearing time, a
    momentary-cessation point per region in momentary cessation (its ride-through
    time, else its clearing time). None: the table is off or has no clearing time on
    this side (the device's own settings are then left alone, never switched off)."""
    _, table, side = TRIP_FUNCTIONS[function]
    rt: RideThroughSettings = getattr(settings, table)
    if not rt.enabled:
        return None
    scale = 100.0 if table == "voltage_ride_through" else 1.0
    regions = getattr(rt, side)
    must = sorted(((round(r.threshold * scale, 2), round(r.clearing_time_s, 2))
                   for r in regions if r.clearing_time_s is not None), key=lambda p: p[1])
    if not must:
        return None
    cease = tuple((round(r.threshold * scale, 2),
                   round(r.ride_through_s if r.ride_through_s is not None
                         else r.clearing_time_s or 0.0, 2))
                  for r in regions if r.mode is RegionMode.MOMENTARY_CESSATION)
    return TripCurve(tuple(must), cease)


def backup_behind_device(settings: Settings, native: Any) -> Settings:
    """The engine's ride-through tables with each side the device carries natively
    (``native(function)`` True) turned into a backup behind it: thresholds moved out by
    the measurement accuracy, clearing times later by the device's time accuracy and
    :data:`BACKUP_EXTRA_S`, and no momentary cessation of the gateway's own (the device
    ceases itself). Sides the device does not carry are unchanged."""
    for f, (_, table, side) in TRIP_FUNCTIONS.items():
        if not native(f):
            continue
        rt: RideThroughSettings = getattr(settings, table)
        sign = 1.0 if side == "over" else -1.0
        regions = tuple(replace(
            r, threshold=r.threshold + sign * ACCURACY[table],
            mode=RegionMode.PERMISSIVE_OPERATION
            if r.mode is RegionMode.MOMENTARY_CESSATION else r.mode,
            clearing_time_s=None if r.clearing_time_s is None else
            r.clearing_time_s * (1.0 + TIME_ACCURACY) + BACKUP_EXTRA_S + rt.trip_margin_s)
            for r in getattr(rt, side))
        rt = replace(rt, over=regions) if side == "over" else replace(rt, under=regions)
        settings = replace(settings, voltage_ride_through=rt) \
            if table == "voltage_ride_through" else replace(settings, frequency_ride_through=rt)
    return settings


def desired_enter_service(settings: Settings) -> EnterService:
    """The enter-service settings as the device's 703 (V in % of nominal, Hz, s)."""
    es = settings.enter_service
    return EnterService(v_hi_pct=round(es.v_high_pu * 100.0, 2),
                        v_lo_pct=round(es.v_low_pu * 100.0, 2), hz_hi=es.f_high_hz,
                        hz_lo=es.f_low_hz, delay_s=es.delay_s, random_s=es.random_delay_s,
                        ramp_s=es.ramp_time_s)


def desired_freq_droop(settings: Settings) -> FreqDroop:
    """The frequency droop settings as the device's 711 control set."""
    fw = settings.freq_watt
    return FreqDroop(db_of_hz=fw.db_of_hz, db_uf_hz=fw.db_uf_hz, k_of=fw.k_of, k_uf=fw.k_uf,
                     response_time_s=fw.response_time_s, p_min_pct=fw.p_min_pct)
