"""The control-cycle engine: runs every grid-support function and combines their outputs.

One pure function, :func:`step`, called once per control cycle with the
settings, the latest measurements, the previous :class:`EngineState` and the
monotonic time ``t``. It returns the setpoints to command, the new state and
the events of this cycle. No I/O, no clock, no randomness: the randomized
enter-service draw is ``EngineState.random_u``, which the caller may replace
(``dataclasses.replace``) with a fresh uniform number at any time.

Within one cycle, most binding first (which source of command wins is decided
before, in ``core/arbitration.py``; docs/arbitration.md says what stays here):

1. Invalid measurements (``safety.on_invalid_measurements``). Default
   ``stand_aside``: the controller releases its controls and does not run the
   engine (docs/functions.md, "First, do no harm"); the engine, if called,
   holds the last setpoints and never ceases. ``hold_last``: keep the last
   setpoints for ``safety.hold_s`` (5 s), then cease to energize and go out
   of service (why not cease at once: the inverter's certified protection
   keeps working without the gateway, a read glitch should not cost a 300 s
   enter-service delay, and 5 s is the shortest default open-loop response
   time, so held setpoints are never staler than one response).
   ``cease_to_energize`` ceases on the first invalid cycle.
2. Trip (backup must-trip of 1547-2018 6.4 / 6.5, anti-islanding reported
   tripped or disabled, ROCOF window) or permit-service off: cease to energize
   and stay out of service until enter service (4.10) permits reconnection.
   Boot (``EngineState.initial``) starts out of service too, unless the caller
   states the DER is already in service (warm restart of the gateway).
3. Momentary cessation (6.4.2.7): cease to energize without going out of
   service; resume when back in a continuous / mandatory-operation region.
4. Active power limit = min(base limit, volt-watt, frequency droop, soft-start
   cap). The normal ramp rate (Rule 21 Hh.2.k) applies to the base limit only:
   1547-2018 ramp rates govern normal changes, while volt-watt and frequency
   droop are responses to abnormal conditions with their own response times,
   and the soft-start cap is itself a ramp.
5. Reactive power: volt-var, constant PF and constant Q are mutually exclusive
   (1547-2018 5.3.1) and ``validate`` rejects settings enabling more than one.
   Should unvalidated settings reach the engine, the first in
   ``registry.FUNCTIONS`` order wins: volt-var, then constant PF, then
   constant Q. Volt-var is commanded as a constant-Q setpoint (% of rated VAr)
   recomputed every cycle.

Not used for arbitration: ``Measurements.connected`` (the inverter's own trips
and reconnection are its certified behaviour; the engine tracks what the
gateway commands) and ``p_avail_pu`` (under-frequency droop needs headroom the
gateway cannot create). Frequency droop takes its pre-disturbance power from
``p_pu``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from . import anti_islanding, enter_service, freq_watt, ramp, ride_through, volt_var, volt_watt
from . import constant_var as constant_var_fn
from . import fixed_pf as fixed_pf_fn
from . import set_active_power as set_active_power_fn
from .anti_islanding import AntiIslandingState, AntiIslandingStatus
from .enter_service import EnterServicePhase, EnterServiceState
from .freq_watt import FreqWattState
from .measurements import CEASE, Measurements, ReactiveMode, Setpoints
from .registry import REACTIVE
from .ride_through import RideThroughState
from .settings import InvalidPolicy, Settings
from .volt_var import VoltVarState


class OperatingState(enum.Enum):
    """What the engine is doing (for display and logs)."""

    OUT_OF_SERVICE = "out_of_service"  # boot / after a trip: enter service governs
    RAMPING = "ramping"  # soft start after entering service
    CONTINUOUS = "continuous"
    MOMENTARY_CESSATION = "momentary_cessation"
    SAFE_HOLD = "safe_hold"  # measurements invalid, last setpoints held
    SAFE_CEASE = "safe_cease"  # measurements invalid, ceased to energize


class EventKind(enum.Enum):
    """Kinds of engine events."""

    TRIP = "trip"
    CEASE_TO_ENERGIZE = "cease_to_energize"
    MOMENTARY_CESSATION = "momentary_cessation"
    RESUME = "resume"
    ENTER_SERVICE_START = "enter_service_start"
    RECONNECT = "reconnect"
    RAMP_DONE = "ramp_done"
    SAFE_STATE = "safe_state"
    MEASUREMENTS_RESTORED = "measurements_restored"
    ANTI_ISLANDING = "anti_islanding"


@dataclass(frozen=True)
class Event:
    """Something the operator log should record."""

    kind: EventKind
    t: float
    detail: str = ""


class OutOfService(enum.Enum):
    """Why the engine keeps the DER out of service: the cause as a kind, so adapters
    map it to their own codes (an MMS OosCause text, a 2030.5 alarm bit, a DNP3
    point) without reading the text. The text beside it says the details."""

    BOOT = "boot"
    INVALID_MEASUREMENTS = "invalid_measurements"
    VOLTAGE_TRIP = "voltage_trip"
    FREQUENCY_TRIP = "frequency_trip"
    ROCOF_TRIP = "rocof_trip"
    ANTI_ISLANDING_TRIP = "anti_islanding_trip"
    ANTI_ISLANDING_DISABLED = "anti_islanding_disabled"
    PERMIT_SERVICE_OFF = "permit_service_off"

    @property
    def is_trip(self) -> bool:
        """A protection trip (clearing time, ROCOF, the inverter's own island trip)."""
        return self in (OutOfService.VOLTAGE_TRIP, OutOfService.FREQUENCY_TRIP,
                        OutOfService.ROCOF_TRIP, OutOfService.ANTI_ISLANDING_TRIP)

    @property
    def is_island(self) -> bool:
        """An island detected (ROCOF or the inverter's anti-islanding)."""
        return self in (OutOfService.ROCOF_TRIP, OutOfService.ANTI_ISLANDING_TRIP)


@dataclass(frozen=True)
class EngineStatus:
    """Per-function status for display (None = function inactive)."""

    state: OperatingState = OperatingState.OUT_OF_SERVICE
    out_of_service_cause: str | None = "boot"
    out_of_service_kind: OutOfService | None = OutOfService.BOOT
    voltage_region: str = "NN"
    frequency_region: str = "NN"
    anti_islanding: AntiIslandingStatus = AntiIslandingStatus.NOT_REPORTED
    enter_service_remaining_s: float = 0.0
    soft_start_cap_pct: float = 0.0
    volt_var_q_pct: float | None = None
    volt_watt_p_pct: float | None = None
    freq_watt_p_pct: float | None = None
    p_limit_cause: str = ""
    #: set_active_power's battery power, W (None: not commanding storage).
    storage_w: float | None = None


@dataclass(frozen=True)
class EngineState:
    """Everything the engine carries from one cycle to the next."""

    t: float
    out_of_service_cause: str | None
    es: EnterServiceState
    vrt: RideThroughState | None = None
    frt: RideThroughState | None = None
    ai: AntiIslandingState = AntiIslandingState()
    vv: VoltVarState | None = None
    vw: float | None = None
    fw: FreqWattState | None = None
    p_base_pct: float | None = None
    momentary_cessation: bool = False
    invalid_since: float | None = None
    last: Setpoints = CEASE
    random_u: float = 0.0
    status: EngineStatus = EngineStatus()
    out_of_service_kind: OutOfService | None = OutOfService.BOOT

    @classmethod
    def initial(cls, t: float, *, in_service: bool = False, random_u: float = 0.0) -> EngineState:
        """State at boot: out of service (enter service governs) unless ``in_service``."""
        if in_service:
            return cls(t, None, EnterServiceState.in_service(), random_u=random_u,
                       status=EngineStatus(OperatingState.CONTINUOUS, None, None),
                       out_of_service_kind=None)
        return cls(t, "boot", EnterServiceState.waiting(), random_u=random_u)


def _invalid(settings: Settings, state: EngineState, t: float) -> tuple[
        Setpoints, EngineState, list[Event]]:
    events: list[Event] = []
    since = t if state.invalid_since is None else state.invalid_since
    safe = settings.safety
    # STAND_ASIDE: the controller releases the inverter's controls and does not
    # run the engine; called anyway, the engine never ceases on unknown input.
    aside = safe.on_invalid_measurements is InvalidPolicy.STAND_ASIDE
    if aside or (safe.on_invalid_measurements is InvalidPolicy.HOLD_LAST
                 and t - since < safe.hold_s):
        if state.invalid_since is None:
            detail = ("measurements invalid: standing aside, no cease" if aside else
                      f"measurements invalid: holding last setpoints up to {safe.hold_s:g} s")
            events.append(Event(EventKind.SAFE_STATE, t, detail))
        status = dataclasses.replace(state.status, state=OperatingState.SAFE_HOLD)
        return state.last, dataclasses.replace(state, t=t, invalid_since=since,
                                               status=status), events
    cause, kind = state.out_of_service_cause, state.out_of_service_kind
    if state.status.state is not OperatingState.SAFE_CEASE:
        events.append(Event(EventKind.SAFE_STATE, t,
                            "measurements invalid: cease to energize, enter service on return"))
        cause, kind = "invalid measurements", OutOfService.INVALID_MEASUREMENTS
    status = dataclasses.replace(state.status, state=OperatingState.SAFE_CEASE,
                                 out_of_service_cause=cause, out_of_service_kind=kind)
    new = dataclasses.replace(
        state, t=t, invalid_since=since, out_of_service_cause=cause,
        out_of_service_kind=kind,
        es=EnterServiceState.waiting(), vv=None, vw=None, fw=None, momentary_cessation=False,
        last=CEASE, status=status,
    )
    return CEASE, new, events


def reactive_mode(settings: Settings) -> str | None:
    """The reactive power function in force: the first enabled one in registry order
    (``validate`` allows one at most), None when none is enabled."""
    return next((name for name in REACTIVE if getattr(settings, name).enabled), None)


def step(
    settings: Settings, meas: Measurements, state: EngineState, t: float
) -> tuple[Setpoints, EngineState, list[Event]]:
    """Run every function for one control cycle at time ``t`` and arbitrate.

    See the module docstring for the arbitration order. ``settings`` must have
    passed :func:`settings.validate`.
    """
    if not meas.valid:
        return _invalid(settings, state, t)
    events: list[Event] = []
    if state.invalid_since is not None:
        events.append(Event(EventKind.MEASUREMENTS_RESTORED, t, "measurements valid again"))
    dt = max(0.0, t - state.t)
    v_avg, f = meas.v_avg, meas.f_hz

    # --- protection-like functions (1547-2018 6.4, 6.5, 8.1)
    vrt_out, vrt = ride_through.step(settings.voltage_ride_through, meas.v_max, meas.v_min,
                                     state.vrt, t)
    frt_out, frt = ride_through.step(settings.frequency_ride_through, f, f, state.frt, t)
    ai_out, ai = anti_islanding.step(settings.anti_islanding, meas.anti_islanding, f, state.ai, t)
    if ai_out.status is not state.status.anti_islanding and settings.anti_islanding.enabled:
        events.append(Event(EventKind.ANTI_ISLANDING, t, f"anti-islanding {ai_out.status.value}"))

    trips: list[tuple[OutOfService, str]] = []
    if vrt_out.trip:
        trips.append((OutOfService.VOLTAGE_TRIP, f"voltage {vrt_out.trip_region} clearing time"))
    if frt_out.trip:
        trips.append((OutOfService.FREQUENCY_TRIP,
                      f"frequency {frt_out.trip_region} clearing time"))
    if ai_out.rocof_trip:
        trips.append((OutOfService.ROCOF_TRIP, f"ROCOF {ai_out.rocof_hz_per_s:.2f} Hz/s"))
    if ai_out.status is AntiIslandingStatus.TRIPPED and settings.anti_islanding.enabled:
        trips.append((OutOfService.ANTI_ISLANDING_TRIP, "inverter anti-islanding trip"))
    ceases: list[tuple[OutOfService, str]] = []
    if ai_out.cease and ai_out.status is AntiIslandingStatus.DISABLED_ALARM:
        ceases.append((OutOfService.ANTI_ISLANDING_DISABLED, "inverter anti-islanding disabled"))
    if not settings.enter_service.enabled:
        ceases.append((OutOfService.PERMIT_SERVICE_OFF, "permit service off"))

    # The function filters keep running while out of service (unlike OpenDER, which
    # resets them on trip), so they are settled when the DER enters service again.
    cause, cause_kind = state.out_of_service_cause, state.out_of_service_kind
    es_state = state.es
    vv_state, vw_state, fw_state = state.vv, state.vw, state.fw
    if trips or ceases:
        if cause is None:
            cause_kind, cause = (trips + ceases)[0]
            kind = EventKind.TRIP if trips else EventKind.CEASE_TO_ENERGIZE
            events.append(Event(kind, t, cause))
        es_state = EnterServiceState.waiting()

    # --- enter service (1547-2018 4.10, Rule 21 Hh.2.l)
    es_out, es_new = enter_service.step(settings.enter_service, meas.v_min, meas.v_max, f,
                                        es_state, t, state.random_u)
    if trips or ceases:
        es_new = EnterServiceState.waiting()
    elif cause is not None:
        if es_state.window_since is None and es_new.window_since is not None:
            events.append(Event(EventKind.ENTER_SERVICE_START, t,
                                f"enter-service window met; delay {es_out.remaining_delay_s:g} s"))
        if es_out.connect:
            events.append(Event(EventKind.RECONNECT, t, f"entering service after: {cause}"))
            cause, cause_kind = None, None
    if state.es.phase is EnterServicePhase.RAMPING and es_new.phase is EnterServicePhase.IN_SERVICE:
        events.append(Event(EventKind.RAMP_DONE, t, "soft-start ramp complete"))

    # --- momentary cessation (6.4.2.7)
    mc = cause is None and (vrt_out.cease or frt_out.cease)
    if mc and not state.momentary_cessation:
        region = vrt_out.region if vrt_out.cease else frt_out.region
        events.append(Event(EventKind.MOMENTARY_CESSATION, t, f"{region}: momentary cessation"))
    if state.momentary_cessation and not mc and cause is None:
        events.append(Event(EventKind.RESUME, t, "back to continuous / mandatory operation"))

    # --- active power (5.4.2 volt-watt, 6.5.2.7 droop, Hh.2.k ramp, 4.10.3 soft start)
    p_vw: float | None = None
    if settings.volt_watt.enabled:
        p_vw, vw_state = volt_watt.step(settings.volt_watt, v_avg, dt, vw_state)
    p_fw: float | None = None
    if settings.freq_watt.enabled:
        p_fw, fw_state = freq_watt.step(settings.freq_watt, f, settings.nameplate.f_nom_hz,
                                        100.0 * meas.p_pu, dt, fw_state)
    lim = settings.active_power_limit
    base_target = lim.p_limit_pct if lim.enabled else 100.0
    prev_base = base_target if state.p_base_pct is None else state.p_base_pct
    p_base = ramp.step(settings.ramp, prev_base, base_target, dt)
    candidates = [(p_base, "base limit"), (es_out.p_cap_pct, "soft start")]
    if p_vw is not None:
        candidates.append((p_vw, "volt-watt"))
    if p_fw is not None:
        candidates.append((p_fw, "frequency droop"))
    p_limit, p_cause = min(candidates, key=lambda c: c[0])
    p_limit = max(0.0, min(100.0, p_limit))

    # --- reactive power (5.3)
    q_vv: float | None = None
    mode, pf, absorbing, q_pct = ReactiveMode.NONE, 1.0, False, 0.0
    reactive = reactive_mode(settings)
    if reactive == "volt_var":
        q_vv, vv_state = volt_var.step(settings.volt_var, v_avg, dt, vv_state)
        mode = ReactiveMode.CONSTANT_Q
        q_pct = volt_var.to_var_pct(settings.volt_var, q_vv, settings.nameplate.var_max_pct)
    elif reactive == "fixed_pf":
        mode = ReactiveMode.CONSTANT_PF
        pf, absorbing = fixed_pf_fn.setpoint(settings.fixed_pf)
    elif reactive == "constant_var":
        mode, q_pct = ReactiveMode.CONSTANT_Q, constant_var_fn.setpoint(settings.constant_var)

    if cause is not None:
        sp = dataclasses.replace(CEASE, cause=cause)
        op = OperatingState.OUT_OF_SERVICE
    elif mc:
        sp = dataclasses.replace(CEASE, cause="momentary cessation")
        op = OperatingState.MOMENTARY_CESSATION
    else:
        sp = Setpoints(True, p_limit, mode, pf, absorbing, q_pct, p_cause)
        op = (OperatingState.RAMPING if es_new.phase is EnterServicePhase.RAMPING
              else OperatingState.CONTINUOUS)
    # --- storage (set active power): the battery's own limits here; with the others
    # (protection first, a limit bounds a discharge) in core/arbitration.storage_setpoint
    storage = set_active_power_fn.step(settings.set_active_power, meas.storage, t)
    if storage is not None:
        sp = dataclasses.replace(sp, storage_w=storage.w, storage_cause=storage.limited_by)
    status = EngineStatus(
        state=op,
        out_of_service_cause=cause,
        out_of_service_kind=cause_kind,
        voltage_region=vrt_out.region,
        frequency_region=frt_out.region,
        anti_islanding=ai_out.status,
        enter_service_remaining_s=es_out.remaining_delay_s,
        soft_start_cap_pct=es_out.p_cap_pct,
        volt_var_q_pct=q_vv,
        volt_watt_p_pct=p_vw,
        freq_watt_p_pct=p_fw,
        p_limit_cause=p_cause,
        storage_w=None if storage is None else storage.w,
    )
    new = EngineState(
        t=t, out_of_service_cause=cause, es=es_new, vrt=vrt, frt=frt, ai=ai, vv=vv_state,
        vw=vw_state, fw=fw_state, p_base_pct=p_base, momentary_cessation=mc,
        invalid_since=None, last=sp, random_u=state.random_u, status=status,
        out_of_service_kind=cause_kind,
    )
    return sp, new, events
