"""Our py20305 connector: DERControl events in, device state out, through the core.

py20305's event engine runs the DERControl life cycle (scheduled, active,
superseded, cancelled, completed; randomized start and duration; Responses)
and relays every change of the schedule to the connector
(``on_schedule_notification``) with the effective start and end. The
connector hands each event, as the core's protocol-neutral
:class:`ScheduledControl`, to the core's :class:`UtilitySchedule`, which the
settings service arbitrates every cycle. So an event received runs to its end
even when the server (or this whole adapter) is gone.

py20305 also calls ``update_*`` when an event becomes active and posts the
Response from what they do: they check the values and raise the refusal
(:mod:`.responses`: 253 for an invalid value, 252 for a valid control this
gateway does not carry out); they write nothing, the core applies the
schedule. DER curves (volt-var, volt-watt) a control
links are resolved in its program's DERCurveList (``curves``) and checked
whole, with the rest of the control, before it is accepted; opModFreqDroop is
translated into the core's freq_watt droop settings (translate.freq_droop).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from inverter_agent.core.arbitration import ScheduledControl, UtilityControl, UtilitySchedule
from inverter_agent.core.commands import RefusalCause

from . import lazy_imports
from .responses import refusal, response_code
from .site_view import SiteView
from .translate import STORAGE_TARGET, ControlRejected, Doe, Storage, control_from_base

lazy_imports.install()  # before the first import of py20305: its schema classes load on use

from py20305.connectors.base import BaseConnector, ScheduleNotification  # noqa: E402

log = logging.getLogger(__name__)

#: Transitions after which an event no longer applies.
GONE = {"superseded", "cancelled", "completed"}
#: How many refused controls are remembered (for status; bounded).
MAX_REFUSED = 50


class GatewayConnector(BaseConnector):
    """The gateway as a py20305 device: the core's schedule in, the core's state out."""

    connector_name = "inverter-agent"
    der_type = 4  # PV
    telemetry_protocol = "generic"

    def __init__(self, schedule: UtilitySchedule, site: SiteView,
                 server_offset: Callable[[], float] = lambda: 0.0,
                 record: Callable[[str, str], None] | None = None,
                 validate: Callable[[UtilityControl], str | None] | None = None,
                 curves: Callable[[str], Iterable[Any]] | None = None) -> None:
        self.schedule = schedule
        #: program href -> the DERCurves py20305 fetched from its DERCurveList (models).
        self._curves = curves or (lambda program_href: ())
        self.site = site
        self.server_offset = server_offset
        self._record = record or (lambda kind, detail: None)
        #: The core's check of a control against the settings' own ranges (e.g. a PF
        #: below the inverter's minimum): the reason it would be refused, or None.
        self._validate = validate or (lambda control: None)
        self._lock = threading.Lock()
        self._defaults: dict[str, tuple[int, UtilityControl]] = {}
        #: The CSIP-AUS profile (the client sets it at discovery): DOE limits are taken.
        self.csip_aus = False
        #: A site meter at the connection point ([meter] enabled): opModExpLimW is held
        #: there by the core, not applied as a generation limit.
        self.site_meter = False
        #: What has been said about DOE limits applied (said once each; bounded).
        self._doe_said: set[str] = set()
        #: mRID -> why it was refused (the last few).
        self.refused: dict[str, str] = {}
        self.notifications = 0

    # -- schedule in -----------------------------------------------------------------------
    async def on_schedule_notification(self, n: ScheduleNotification) -> None:
        self.notifications += 1
        try:
            if n.stream == "control":
                self._control(n)
            elif n.stream == "default_baseline":
                self._default(n)
        except Exception:  # a bad relay must never stop the engine's loop
            log.exception("2030.5 notification %s/%s failed", n.stream, n.transition)

    def _control(self, n: ScheduleNotification) -> None:
        mrid = n.mrid
        if n.transition in GONE or n.status in GONE:
            if self.schedule.remove_event(mrid):
                self._record("utility_event", f"2030.5 event {mrid[:8]} {n.transition}")
            return
        if n.start is None or n.end is None:
            return
        try:
            control = self.translate(n.payload.get("control_base"), self._curves(n.program_href))
        except ControlRejected as exc:
            self._refuse(mrid, str(exc), exc.cause)
            self.schedule.remove_event(mrid)
            return
        offset = self.server_offset()  # server clock - ours
        created = n.payload.get("creation_time") or 0
        event = ScheduledControl(ident=mrid, start=float(n.start) - offset,
                                 end=float(n.end) - offset, control=control,
                                 primacy=int(n.primacy), created=float(created) - offset,
                                 source="ieee2030_5")
        known = {e.ident: e for e in self.schedule.events()}.get(mrid)
        self.schedule.put_event(event)
        if known != event:
            self._record("utility_event", f"2030.5 event {mrid[:8]} {n.transition}: "
                         f"{control.describe()} from {event.start:.0f} to {event.end:.0f}, "
                         f"primacy {event.primacy}")

    def translate(self, base: Any, curves: Iterable[Any] = ()) -> UtilityControl:
        """The core's control for a DERControlBase (its curve links resolved in
        ``curves``, py20305's DERCurve models), checked against IEEE 2030.5's ranges and
        the settings' own (a curve: the validator of a persisted curve); raises
        ControlRejected."""
        conf = self.site.configuration()
        doe = Doe(conf.get("WMax"), site_meter=self.site_meter) if self.csip_aus else None
        control = control_from_base(base, curve_forms(curves), doe, self.storage(conf))
        why = self._validate(control)
        if why is not None:
            # The core's check says why, and with the core's refusal causes, of what
            # kind: (cause, why) or an object with .cause; a bare text is a value the
            # settings' validator refuses (253, as a curve whose x goes down).
            cause = getattr(why, "cause", RefusalCause.INVALID_VALUE)
            if isinstance(why, tuple):
                cause, why = why
            raise ControlRejected(str(why), cause)
        for note in doe.notes if doe is not None else ():
            if note not in self._doe_said and len(self._doe_said) < MAX_REFUSED:
                self._doe_said.add(note)
                log.warning("2030.5 (CSIP-AUS): %s", note)
                self._record("utility_doe", note)
        return control

    def storage(self, conf: dict[str, Any] | None = None) -> Storage:
        """The site's battery as a translation needs it (what opModFixedW commands);
        ``conf`` the site's configuration if the caller has it already."""
        bats = self.site.batteries()
        ok, why = self.site.storage_understood(bats)
        r = self.site.storage_ratings(bats)
        conf = self.site.configuration() if conf is None else conf
        return Storage(None if ok else why, conf.get("WMax"), r["cha_w"], r["dis_w"])

    def check_derc(self, derc: Any, curves: Iterable[Any] = ()) -> ControlRejected | None:
        """Why a DERControl (py20305's model; ``curves`` the DERCurves the engine passes
        with it) is refused (its ``cause`` chooses the Response), or None; at activation.

        A CSIP-AUS opModStorageTargetW, which py20305's JSON form (the schedule's
        relay) does not carry, is read from the model here, and the event in the core's
        schedule is given it: it applies from its activation."""
        from py20305.json_form import serialize_der_control

        form = serialize_der_control(derc)
        mrid = str(form.get("mrid") or "?")
        base = dict(form.get("control_base") or {})
        target = storage_target(getattr(derc, "dercontrol_base", None))
        if target is not None:
            base[STORAGE_TARGET] = target
        try:
            control = self.translate(base, curves)
        except ControlRejected as exc:
            self._refuse(mrid, str(exc), exc.cause)
            self.schedule.remove_event(mrid.lower())
            return exc
        if target is not None:
            known = {e.ident: e for e in self.schedule.events()}.get(mrid.lower())
            if known is not None and known.control != control:
                self.schedule.put_event(dataclasses.replace(known, control=control))
                self._record("utility_event", f"2030.5 event {mrid[:8]}: "
                             f"{control.describe()} (opModStorageTargetW)")
        return None

    def _default(self, n: ScheduleNotification) -> None:
        try:
            control = self.translate(n.payload.get("control_base"), self._curves(n.program_href))
        except ControlRejected as exc:
            # Keep the last valid default: a bad update must not lift a valid limit.
            self._refuse(n.mrid, f"DefaultDERControl: {exc}", exc.cause)
            return
        with self._lock:
            self._defaults[n.program_href] = (int(n.primacy), control)
            best = min(self._defaults.values(), key=lambda pc: pc[0])[1]
        if best != self.schedule.default():
            self.schedule.set_default(best)
            self._record("utility_default", f"2030.5 DefaultDERControl: {best.describe()}")

    def _refuse(self, mrid: str, why: str, cause: Any) -> None:
        why = f"{why} (Response {response_code(cause)})"
        with self._lock:
            first = mrid not in self.refused
            self.refused[mrid] = why
            while len(self.refused) > MAX_REFUSED:
                self.refused.pop(next(iter(self.refused)))
        if first:
            log.warning("2030.5 control %s refused: %s", mrid[:8], why)
            self._record("utility_control_refused", f"2030.5 control {mrid[:8]}: {why}")

    # -- activation: check only (the core applies the schedule) ------------------------------
    async def update_p_lim(self, params: dict[str, Any]) -> None:
        pct = params.get("p_lim_w")
        if params.get("p_lim_mode_enable", 1) and not _within(pct, 0.0, 100.0):
            raise refusal(RefusalCause.INVALID_VALUE, f"opModMaxLimW {pct!r} %: allowed 0..100")
        return None

    async def update_const_pf(self, params: dict[str, Any]) -> None:
        for v in params.values():
            if isinstance(v, float) and not _within(abs(v), 0.0, 1.0):
                raise refusal(RefusalCause.INVALID_VALUE,
                              f"power factor {v!r}: allowed 0 < PF <= 1")
        return None

    async def update_const_q(self, params: dict[str, Any]) -> None:
        return None

    async def update_connect(self, params: dict[str, Any]) -> None:
        return None

    async def update_es_permit_service(self, params: dict[str, Any]) -> None:
        return None

    async def _unsupported(self, what: str) -> None:
        raise refusal(RefusalCause.NOT_SUPPORTED, f"{what} is not applied by this gateway")

    async def update_qv(self, params: dict[str, Any]) -> None:
        return None  # the curve was checked whole in check_derc; the core applies it

    async def update_pv(self, params: dict[str, Any]) -> None:
        return None  # likewise

    async def update_pf(self, params: dict[str, Any]) -> None:
        # py20305 routes opModFreqDroop here (its "pf": primary frequency response); the
        # droop was checked whole in check_derc and the core applies it from the schedule.
        return None

    async def update_gen_lim(self, params: dict[str, Any]) -> None:
        return None  # checked with the control in check_derc; the core applies it

    async def update_exp_lim(self, params: dict[str, Any]) -> None:
        return None  # likewise (as a generation limit: profile.py)

    async def update_imp_lim(self, params: dict[str, Any]) -> None:
        await self._unsupported("opModImpLimW")

    async def update_load_lim(self, params: dict[str, Any]) -> None:
        await self._unsupported("opModLoadLimW")

    async def update_freq_watt(self, params: dict[str, Any]) -> None:
        await self._unsupported("opModFreqWatt")

    async def update_fixed_w(self, params: dict[str, Any]) -> None:
        return None  # checked with the control in check_derc (storage); the core applies it

    async def update_target_w(self, params: dict[str, Any]) -> None:
        await self._unsupported("opModTargetW")

    # -- device state out --------------------------------------------------------------------
    async def fetch_monitoring(self) -> dict[str, Any]:
        return self.site.monitoring()

    async def fetch_nameplate(self) -> dict[str, Any]:
        return self.site.nameplate()

    async def fetch_configuration(self) -> dict[str, Any]:
        return self.site.configuration()

    async def fetch_status(self) -> dict[str, Any]:
        return self.site.status()

    async def fetch_availability(self) -> dict[str, Any]:
        return self.site.availability()


def storage_target(base: Any) -> dict[str, int] | None:
    """CSIP-AUS opModStorageTargetW of a DERControlBase model ({value, multiplier}), or
    None: it rides in the csipaus extension slot, which py20305's JSON form drops."""
    from py20305.models.csipaus.elements import doe_element_name, doe_value_multiplier

    for elem in getattr(base, "other_element", None) or ():
        if doe_element_name(elem) == "opModStorageTargetW":
            pair = doe_value_multiplier(elem)
            if pair is not None:
                return {"value": pair[0], "multiplier": pair[1]}
    return None


def curve_forms(curves: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    """href -> plain form (py20305's JSON form) of each DERCurve model with an href."""
    from py20305.json_form import safe_serialize

    out: dict[str, Mapping[str, Any]] = {}
    for c in curves or ():
        form = c if isinstance(c, Mapping) else safe_serialize(c)
        href = form.get("href") if isinstance(form, Mapping) else None
        if isinstance(href, str):
            out[href] = form
    return out


def _within(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi
