"""The inverter as the upper layers see it: named readings and named controls.

Whatever SunSpec models a device offers (integer 101-103, float 111-113, the
IEEE 1547-2018 models 701-704), the names here stay the same. They are the
classic SunSpec point names (W, VAr, PhVphA, WMaxLimPct, ...), so the agent
speaks SunSpec vocabulary but never sees a register, scale factor or model id.

Conventions of this interface (whatever the device's own):
- PF is a fraction -1..1; power factor setpoints are signed the EEI way:
  positive = injecting vars (over-excited), negative = absorbing.
- Percentages are percent (0..100), not fractions.
- VAr and VArPct are positive when injecting (over-excited).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal import curves, ratings, settings_native, storage, trip
from hal.poll_plan import (
    FAST_NAMES,
    RTU_MAX_GAP,
    TCP_MAX_GAP,
    SlowSchedule,
    fast_paths,
    overlay,
    point_spans,
)
from hal.reading import GOOD, LINK_FAILURE, NOT_IMPLEMENTED, STALE, Reading
from hal.sunspec.device import ReadSpan, SunSpecDevice
from hal.sunspec.models import DecodedModel
from hal.sunspec.scan import DEFAULT_BASES, DeviceMap, discover
from hal.topology import PHASES, topology
from hal.transport import DeviceException, Transport, TransportError

log = logging.getLogger(__name__)


class OperatingState(enum.IntEnum):
    """Inverter operating state, numbered as SunSpec model 101-103 'St'."""

    OFF = 1
    SLEEPING = 2
    STARTING = 3
    MPPT = 4
    THROTTLED = 5
    SHUTTING_DOWN = 6
    FAULT = 7
    STANDBY = 8


# Model 701 InvSt counts from 0 and says RUNNING where 10x says MPPT.
_INVST_701 = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7, 7: 8}

MEASUREMENT_MODELS = (101, 102, 103, 111, 112, 113, 701)
NAMEPLATE_MODELS = (1, 120, 121, 702)
STATUS_MODELS = (122, 123, 703, 704)

Transform = Callable[[Any], Any]


def _ident(v: Any) -> Any:
    return v


def _pct_to_fraction(v: Any) -> Any:
    return None if v is None else v / 100.0


def _neg(v: Any) -> Any:
    return None if v is None else -v


def _bool(v: Any) -> Any:
    return None if v is None else bool(v)


# name -> list of (model ids, path, transform); first model present wins.
_INV = (101, 102, 103, 111, 112, 113)
READ_POINTS: dict[str, list[tuple[tuple[int, ...], str, Transform]]] = {
    "W": [(_INV, "W", _ident), ((701,), "W", _ident)],
    "VAr": [(_INV, "VAr", _ident), ((701,), "Var", _ident)],
    "VA": [(_INV, "VA", _ident), ((701,), "VA", _ident)],
    "PF": [(_INV, "PF", _pct_to_fraction), ((701,), "PF", _ident)],
    "Hz": [(_INV, "Hz", _ident), ((701,), "Hz", _ident)],
    "A": [(_INV, "A", _ident), ((701,), "A", _ident)],
    "AphA": [(_INV, "AphA", _ident), ((701,), "AL1", _ident)],
    "AphB": [(_INV, "AphB", _ident), ((701,), "AL2", _ident)],
    "AphC": [(_INV, "AphC", _ident), ((701,), "AL3", _ident)],
    "PhVphA": [(_INV, "PhVphA", _ident), ((701,), "VL1", _ident)],
    "PhVphB": [(_INV, "PhVphB", _ident), ((701,), "VL2", _ident)],
    "PhVphC": [(_INV, "PhVphC", _ident), ((701,), "VL3", _ident)],
    "WH": [(_INV, "WH", _ident), ((701,), "TotWhInj", _ident)],
    "DCW": [(_INV, "DCW", _ident)],
    "St": [(_INV, "St", _ident), ((701,), "InvSt", lambda v: _INVST_701.get(v))],
    "Mn": [((1,), "Mn", _ident)],
    "Md": [((1,), "Md", _ident)],
    "SN": [((1,), "SN", _ident)],
    "Vr": [((1,), "Vr", _ident)],
    "WRtg": [((120,), "WRtg", _ident), ((702,), "WMaxRtg", _ident)],
    "VARtg": [((120,), "VARtg", _ident), ((702,), "VAMaxRtg", _ident)],
    "VArRtgQ1": [((120,), "VArRtgQ1", _ident), ((702,), "VarMaxInjRtg", _ident)],
    "VArRtgQ4": [((120,), "VArRtgQ4", _ident), ((702,), "VarMaxAbsRtg", _neg)],
    "ECPNomHz": [((121,), "ECPNomHz", _ident)],
    "WAval": [((122,), "WAval", _ident)],
    "PVConn": [((122,), "PVConn", _ident)],
    "Conn": [((123,), "Conn", _bool), ((701,), "ConnSt", _bool)],
    "WMaxLimPct": [((123,), "WMaxLimPct", _ident), ((704,), "WMaxLimPct", _ident)],
    "WMaxLim_Ena": [((123,), "WMaxLim_Ena", _bool), ((704,), "WMaxLimPctEna", _bool)],
    "OutPFSet": [((123,), "OutPFSet", _ident)],
    "OutPFSet_Ena": [((123,), "OutPFSet_Ena", _bool), ((704,), "PFWInjEna", _bool)],
    "VArPct": [((123,), "VArMaxPct", _ident), ((704,), "VarSetPct", _ident)],
    "VArPct_Ena": [((123,), "VArPct_Ena", _bool), ((704,), "VarSetEna", _bool)],
    "VArPct_Mod": [((123,), "VArPct_Mod", _ident)],
    "VarSetMod": [((704,), "VarSetMod", _ident)],
    "VarSetPri": [((704,), "VarSetPri", _ident)],
    "VArAval": [((122,), "VArAval", _ident)],
    "AntiIslEna": [((704,), "AntiIslEna", _bool)],
    # Revert timers (seconds): a control not rewritten within its timer reverts
    # to the device's own setting (123: disabled / connected; 704: its *Rvrt points).
    "Conn_RvrtTms": [((123,), "Conn_RvrtTms", _ident)],
    "WMaxLimPct_RvrtTms": [((123,), "WMaxLimPct_RvrtTms", _ident),
                           ((704,), "WMaxLimPctRvrtTms", _ident)],
    "OutPFSet_RvrtTms": [((123,), "OutPFSet_RvrtTms", _ident), ((704,), "PFWInjRvrtTms", _ident)],
    "VArPct_RvrtTms": [((123,), "VArPct_RvrtTms", _ident), ((704,), "VarSetRvrtTms", _ident)],
}
READ_POINTS.update(storage.READ_POINTS)  # model 124's controls read back (hal/storage.py)

#: Readings the HAL derives from several models (see :meth:`Inverter._derive`).
DERIVED_POINTS = (*ratings.PRECEDENCE, "RatingSources", "ACType", "HalNotes",
                  *storage.DERIVED)
#: Per-phase points: reported unimplemented for a phase the device does not have.
PHASE_POINTS = {ph: (f"PhVph{ph}", f"Aph{ph}") for ph in "ABC"}

#: Each immediate control and the name of the revert timer that bounds it on
#: devices that have one (a cease through 703 ES has none).
REVERT_TIMERS = {"Conn": "Conn_RvrtTms", "WMaxLimPct": "WMaxLimPct_RvrtTms",
                 "WMaxLim_Ena": "WMaxLimPct_RvrtTms", "OutPFSet": "OutPFSet_RvrtTms",
                 "OutPFSet_Ena": "OutPFSet_RvrtTms", "VArPct": "VArPct_RvrtTms",
                 "VArPct_Ena": "VArPct_RvrtTms"}
#: Controls the agent may write; see :meth:`Inverter.write_controls`.
CONTROL_NAMES = ("Conn", "WMaxLimPct", "WMaxLim_Ena", "OutPFSet", "OutPFSet_Ena",
                 "VArPct", "VArPct_Ena", "RvrtTms", *sorted(set(REVERT_TIMERS.values())))


class UnsupportedControl(LookupError):
    """The device offers no model that carries this control."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the device offers, in this interface's terms."""

    measurements: bool
    nameplate: bool
    immediate_controls: bool  # 123 or 704
    controls: tuple[str, ...]
    model_ids: tuple[int, ...]
    #: Storage (model 124 basic storage controls): a battery power can be commanded.
    storage: bool = False


class Inverter:
    """One SunSpec inverter: discovered once, then polled and steered by name.

    ``poll()`` never raises for a dead link: every reading turns invalid
    (keeping the last value, flagged old-data) and the error is returned in
    ``last_error``. Per-point problems (unimplemented points) never raise.
    """

    def __init__(self, transport: Transport, unit: int = 1,
                 bases: tuple[int, ...] | None = None,
                 nameplate_every: int | None = None,
                 slow_periods: Mapping[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transport = transport
        self.unit = unit
        self.bases = bases
        # nameplate_every (polls between nameplate reads) is kept for callers of the
        # old interface: 10**9 means "never again", anything else the slow schedule.
        periods = dict(slow_periods or {})
        if nameplate_every is not None and nameplate_every >= 10**6:
            periods.setdefault("nameplate", 1e9)
            periods.setdefault("common", 1e9)
        self.slow_periods = periods
        self._clock = clock
        self.device: SunSpecDevice | None = None
        self.last_error: str | None = None
        self._last: dict[str, Reading] = {}
        #: The last decoded state of every polled model (fast points overlaid each cycle).
        self._models: dict[int, DecodedModel] = {}
        self._fast: dict[int, tuple[tuple[str, ...], tuple[ReadSpan, ...]]] = {}
        self._schedule: SlowSchedule | None = None
        #: What the last poll read: "full" (everything), "fast", or "fast+<model id>".
        self.last_poll_kind = ""
        self._polls = 0
        self.max_gap = RTU_MAX_GAP if getattr(transport, "serial", None) is not None \
            else TCP_MAX_GAP

    # -- discovery
    @property
    def connected(self) -> bool:
        return self.device is not None

    def connect(self) -> DeviceMap:
        """Discover the device's models (raises TransportError / NotSunSpec)."""
        kwargs = {"bases": self.bases} if self.bases else {}
        dmap = discover(self.transport, self.unit, **kwargs)
        if not any(m in dmap.model_ids for m in MEASUREMENT_MODELS):
            # A chain cut short (a garbled answer while walking) or no inverter at all:
            # not a device to steer; discovery is tried again at the next poll.
            raise TransportError(f"unit {self.unit}: no inverter model in the chain "
                                 f"{dmap.model_ids}")
        self.device = SunSpecDevice(self.transport, dmap)
        self._models = {}
        self._fast = {}
        self._schedule = None
        self._polls = 0
        log.info("unit %d: SunSpec at base %d, models %s", self.unit, dmap.base,
                 ",".join(map(str, dmap.model_ids)))
        return dmap

    def capabilities(self) -> Capabilities:
        dev = self._require()
        ids = tuple(dev.map.model_ids)
        controls = tuple(n for n in CONTROL_NAMES if self._control_target(n) is not None
                         and (not n.endswith("_RvrtTms") or self._implemented(n)))
        return Capabilities(
            measurements=any(m in ids for m in MEASUREMENT_MODELS),
            nameplate=any(m in ids for m in NAMEPLATE_MODELS),
            immediate_controls=123 in ids or 704 in ids,
            controls=controls, model_ids=ids,
            storage=124 in ids and 124 not in dev.decode_errors)

    def _require(self) -> SunSpecDevice:
        if self.device is None:
            raise TransportError(f"unit {self.unit}: not discovered")
        return self.device

    # -- reading
    def poll(self, now: float | None = None) -> dict[str, Reading]:
        """Read what this cycle needs and return every reading this interface names.

        The first poll after discovery reads every model in full. After that a
        cycle reads the fast set (voltages, frequency, W, var, VA, PF, currents,
        operating state and their scale factors: a few coalesced registers of the
        measurement model) plus at most one slow model that is due: status and
        controls every 5 s, the whole measurement model every 10 s, nameplate and
        basic settings every 60 s (:data:`hal.poll_plan.SLOW_PERIODS`), and any
        model right after a write to it. Values of the slow models are those of
        their last read, marked good and stamped ``now`` while the link is up.
        """
        now = time.time() if now is None else now
        mono = self._clock()
        try:
            dev = self.device
            if dev is None:
                self.connect()
                dev = self._require()
            if self._schedule is None or not self._models:
                self._full_read(dev, mono)
            else:
                self._fast_read(dev, mono)
        except Exception as exc:  # one error family upward: the link failed
            if not isinstance(exc, (TransportError, OSError)):
                # Once per cause: a wrong unit id fails every poll with the same text.
                (log.debug if str(exc) == self.last_error else log.warning)(
                    "unit %d: poll failed: %s", self.unit, exc)
            self.last_error = str(exc)
            return self._invalidate(now)
        self._polls += 1
        self.last_error = None
        out = self._readings(self._models, now)
        self._last = out
        return out

    def _polled_models(self, dev: SunSpecDevice) -> dict[int, str]:
        kinds = {}
        for m in dev.map.model_ids:
            if m in MEASUREMENT_MODELS:
                kinds[m] = "measurement"
            elif m in STATUS_MODELS:
                kinds[m] = "status"
            elif m == 1:
                kinds[m] = "common"
            elif m in NAMEPLATE_MODELS:
                kinds[m] = "nameplate"
            elif m in storage.STORAGE_MODELS:
                kinds[m] = "storage"
        return kinds

    def _full_read(self, dev: SunSpecDevice, mono: float) -> None:
        kinds = self._polled_models(dev)
        self._models = dev.read_models(kinds)
        self._fast = {}
        for mid, model in self._models.items():
            if kinds.get(mid) == "measurement":
                self._plan_fast(dev, mid, model)
        self._schedule = SlowSchedule.for_models(
            kinds, mono, self.slow_periods)  # a model that did not decode is tried again
        self.last_poll_kind = "full"

    def _plan_fast(self, dev: SunSpecDevice, mid: int, model: DecodedModel) -> None:
        """The fast set of one measurement model, around the registers the device refuses
        and within the read size it accepts (both learned by ``read_models``)."""
        paths = tuple(p for p in fast_paths(model, FAST_NAMES, READ_POINTS)
                      if not any(a in dev.holes for a in _slot_addresses(model, p)))
        if paths:
            self._fast[mid] = (paths, point_spans(model, paths, self.max_gap, dev.max_read,
                                                  dev.holes))
        else:
            self._fast.pop(mid, None)

    def _fast_read(self, dev: SunSpecDevice, mono: float) -> None:
        assert self._schedule is not None
        for mid, (paths, spans) in list(self._fast.items()):
            if mid not in self._models:
                continue
            holes, max_read = len(dev.holes), dev.max_read
            # The device's own span reader: a refused span is split, its holes
            # and its read size learned, as for a full read.
            image = dev.read_spans(mid, spans)
            got = tuple(p for p in paths
                        if all(a in image for a in _slot_addresses(self._models[mid], p)))
            self._models[mid] = overlay(self._models[mid], got, image)
            if len(dev.holes) != holes or dev.max_read != max_read:
                self._plan_fast(dev, mid, self._models[mid])
        slow = self._schedule.next_due(mono)
        kind = "fast"
        if slow is not None:
            fresh = dev.read_models([slow])
            if slow in fresh:
                self._models[slow] = fresh[slow]
                if slow in self._fast:
                    self._plan_fast(dev, slow, fresh[slow])
            else:  # no longer decodes (dev.decode_errors says why): not served as good
                self._models.pop(slow, None)
            self._schedule.done(slow, mono)
            kind = f"fast+{slow}"
        self.last_poll_kind = kind

    def refresh(self, model_ids: Any = None) -> None:
        """Read these models (default: every slow model) at the next cycles, one a cycle."""
        if self._schedule is not None:
            self._schedule.now_due(self._schedule.due if model_ids is None else model_ids,
                                   self._clock())

    def _readings(self, models: Mapping[int, DecodedModel], now: float) -> dict[str, Reading]:
        """Every named reading from decoded models (first candidate model present wins)."""
        out: dict[str, Reading] = {}
        for name, candidates in READ_POINTS.items():
            for model_ids, path, transform in candidates:
                model = next((models[m] for m in model_ids if m in models), None)
                if model is None or path not in model.values:
                    continue
                v = model.values[path]
                out[name] = (Reading(transform(v), GOOD, now) if v is not None
                             else Reading(None, NOT_IMPLEMENTED, now))
                break
        pf = self._pf_704(models, now)
        if pf is not None:
            out["OutPFSet"] = pf
        self._derive(models, out, now)
        if "VArPct" in out:
            out["VArPct"] = _var_pct_read(models, out["VArPct"], now)
        return out

    def _derive(self, models: Mapping[int, DecodedModel], out: dict[str, Reading],
                now: float) -> None:
        """Ratings by one precedence, the wiring, and no phase the device does not have.

        ``ACType`` is "single", "split" or "three" (good), or unknown
        (invalid) with the reason in ``HalNotes``: a tuple of what this layer
        could not make sense of, empty when it understands the device.
        """
        notes: list[str] = []
        rated = ratings.resolve(models)
        for name, r in rated.items():
            out[name] = Reading(r.value, GOOD if r.value is not None else NOT_IMPLEMENTED, now)
        out["RatingSources"] = Reading({k: r.source for k, r in rated.items()}, GOOD, now)
        dev = self.device
        topo = topology(dev.map.model_ids if dev is not None else list(models), models)
        if topo.ac_type is None:
            notes.append(f"phases unknown: {topo.reason}")
            out["ACType"] = Reading(None, NOT_IMPLEMENTED, now)
        else:
            out["ACType"] = Reading(topo.ac_type.value, GOOD, now)
            for ph, names in PHASE_POINTS.items():
                if ph not in PHASES[topo.ac_type]:
                    for n in names:
                        if n in out:
                            out[n] = Reading(None, NOT_IMPLEMENTED, now)
        if dev is not None:
            for mid, err in sorted(dev.decode_errors.items()):
                if mid in MEASUREMENT_MODELS or mid in NAMEPLATE_MODELS:
                    notes.append(f"model {mid} not understood: {err}")
        out["HalNotes"] = Reading(tuple(notes), GOOD, now)
        out.update(storage.derive(models, now))

    def _pf_704(self, models: Mapping[int, DecodedModel], now: float) -> Reading | None:
        m = models.get(704)
        if m is None or 123 in models:
            return None
        pf, ext = m.values.get("PFWInj.PF"), m.raw.get("PFWInj.Ext")
        if pf is None:
            return Reading(None, NOT_IMPLEMENTED, now)
        return Reading(-pf if ext == 1 else pf, GOOD, now)

    def answers(self) -> bool:
        """Whether anything answers at this unit id: one read at the first base, no retry.

        A cheap check before a full discovery or poll of an inverter that has not
        been answering (costs one transaction timeout, not bases x attempts).
        An exception response is an answer, except a Modbus TCP gateway's
        "target device failed to respond" / "path unavailable" (0x0B / 0x0A).
        """
        base = (self.bases or DEFAULT_BASES)[0]
        policy = getattr(self.transport, "policy", None)
        if policy is not None:
            self.transport.policy = dataclasses.replace(policy, retries=0)
        try:
            self.transport.read_holding(base, 2, self.unit)
        except DeviceException as exc:
            return exc.code not in (0x0A, 0x0B)
        except (TransportError, OSError):
            return False
        finally:
            if policy is not None:
                self.transport.policy = policy
        return True

    def unreachable(self, now: float) -> dict[str, Reading]:
        """The snapshot of an inverter not asked this cycle (its link is down and the
        caller waits before trying again): last values, marked stale / link failure."""
        return self._invalidate(now)

    def _invalidate(self, now: float) -> dict[str, Reading]:
        if not self._last:
            return {name: Reading(None, LINK_FAILURE, now)
                    for name in (*READ_POINTS, *DERIVED_POINTS)}
        return {name: Reading(r.value, STALE if r.value is not None else LINK_FAILURE, now)
                for name, r in self._last.items()}

    # -- controls
    def _control_target(self, name: str) -> int | None:
        dev = self.device
        if dev is None:
            return None

        def has(mid: int) -> bool:  # present, and decoded: never write a model not understood
            return dev.has(mid) and mid not in dev.decode_errors

        if name == "Conn":
            return 123 if has(123) else (703 if has(703) else None)
        if name == "Conn_RvrtTms":
            return 123 if has(123) else None
        return 123 if has(123) else (704 if has(704) else None)

    def _implemented(self, name: str) -> bool:
        """Whether the device implements the point behind a control (a revert timer a
        device leaves unimplemented reads as the SunSpec sentinel: it has none).
        Unknown until the model has been read: then False."""
        mid = self._control_target(name)
        model = self._models.get(mid) if mid is not None else None
        if model is None:
            return False
        return all(model.values.get(p) is not None
                   for p in _control_points(mid, name, 0, self._models))

    def write_controls(self, changes: Mapping[str, Any]) -> None:
        """Write named controls; each model's share goes out in as few writes as possible.

        A revert timer (``Conn_RvrtTms``, ``WMaxLimPct_RvrtTms``,
        ``OutPFSet_RvrtTms``, ``VArPct_RvrtTms``: seconds; :data:`REVERT_TIMERS`)
        bounds its control: written with it, a device that stops hearing from us
        returns to its own setting when the timer runs out (SunSpec 123 *_RvrtTms,
        704 *RvrtTms). ``RvrtTms`` sets the three of the limit, PF and var at once.
        Timers go out before the controls they bound, so a device that starts the
        timer when the control is written starts it with the new value.
        """
        dev = self._require()
        by_model: dict[tuple[bool, int], dict[str, Any]] = {}
        for name, value in changes.items():
            target = self._control_target(name)
            if target is None:
                raise UnsupportedControl(f"unit {self.unit}: no model carries {name}")
            timer = name.endswith("RvrtTms")
            by_model.setdefault((not timer, target), {}).update(
                _control_points(target, name, value, self._models))
        try:
            for (_, mid), points in sorted(by_model.items()):
                dev.write_points(mid, points)
        finally:
            self.refresh({mid for _, mid in by_model})  # read back at the next cycle

    def storage_window(self) -> dict[str, Any] | None:
        """The device's own model 124 window, read now (:func:`hal.storage.own_window`;
        None without 124 or when it is not readable). Raises the link's errors."""
        dev = self._require()
        if not dev.has(124) or 124 in dev.decode_errors:
            return None
        return storage.own_window(dev.read_models([124]))

    def write_storage(self, w: float | None, revert_s: int | None = None,
                      restore: Mapping[str, Any] | None = None) -> None:
        """Hold the battery at ``w`` W (+ discharge, - charge, 0 hold) through model
        124, or release it to the device's own management (``w`` None; ``restore``: the
        device's own window to write back); see :func:`hal.storage.storage_points`.
        Raises UnsupportedControl without 124."""
        dev = self._require()
        if not dev.has(124) or 124 in dev.decode_errors:
            raise UnsupportedControl(f"unit {self.unit}: no model 124 (basic storage controls)")
        models = dict(self._models)
        if 124 not in models:
            models.update(dev.read_models([124]))
        try:
            dev.write_points(124, storage.storage_points(w, models, revert_s, restore))
        finally:
            self.refresh({124})

    # -- native curves
    def native_functions(self) -> tuple[str, ...]:
        """Grid functions the device can run itself from a programmed curve."""
        dev = self.device
        if dev is None:
            return ()
        return tuple(f for f, has in (("volt_var", curves.supports_volt_var(dev)),
                                      ("volt_watt", curves.supports_volt_watt(dev))) if has)

    def write_volt_var_curve(self, curve: curves.VoltVarCurve) -> None:
        self._program(curves.write_volt_var, curve)

    def enable_volt_var(self, on: bool) -> None:
        """The device's volt-var on or off, its curve as it is."""
        self._program(curves.enable_volt_var, on)

    def read_volt_var_curve(self) -> curves.VoltVarCurve:
        return curves.read_volt_var(self._require())

    def write_volt_watt_curve(self, curve: curves.VoltWattCurve) -> None:
        self._program(curves.write_volt_watt, curve)

    def read_volt_watt_curve(self) -> curves.VoltWattCurve:
        return curves.read_volt_watt(self._require())

    def enable_volt_watt(self, on: bool) -> None:
        """The device's volt-watt on or off, its curve as it is."""
        self._program(curves.enable_volt_watt, on)

    def write_curve_with_revert(self, function: str, temporary: curves.Curve,
                                persisted: curves.Curve, revert_s: float) -> bool:
        """A temporary ``function`` curve ("volt_var", "volt_watt") the device itself
        reverts from to ``persisted`` after ``revert_s`` unless re-armed
        (:func:`hal.curves.write_with_revert`). False: the device cannot (nothing written)."""
        model, y, refs = curves.CURVE_MODELS[function]
        try:
            return curves.write_with_revert(self._require(), model, y, temporary, persisted,
                                            refs, revert_s)
        finally:
            self.refresh()

    def rearm_curve_revert(self, function: str, revert_s: float) -> None:
        """Re-arm the device's reversion timer of a temporary ``function`` curve."""
        curves.rearm_revert(self._require(), curves.CURVE_MODELS[function][0], revert_s)

    def identity(self) -> dict[str, Any]:
        """Who the device says it is: its unit and the common model's manufacturer,
        model and serial number (None where it states none), read afresh."""
        common = self._require().read_models([1]).get(1)
        values = common.values if common is not None else {}

        def stated(name: str) -> str | None:
            v = values.get(name)
            return str(v).strip() or None if v is not None else None

        return {"unit": self.unit, "manufacturer": stated("Mn"), "model": stated("Md"),
                "serial": stated("SN")}

    def trip_models(self) -> tuple[int, ...]:
        """The must-trip / momentary-cessation models (707-710) the device has."""
        return tuple(m for m in trip.TRIP_MODELS if self.has_model(m))

    def has_model(self, model_id: int) -> bool:
        """The device has this model and it decodes (never write one not understood)."""
        dev = self.device
        return dev is not None and dev.has(model_id) and model_id not in dev.decode_errors

    def _program(self, write: Callable[..., None], *args: Any) -> None:
        """One native program written, the models re-read at the next poll (a write
        may change modes and settings elsewhere)."""
        try:
            write(self._require(), *args)
        finally:
            self.refresh()

    def read_trip_curve(self, model: int) -> trip.TripCurve:
        return trip.read_trip(self._require(), model)

    def write_trip_curve(self, model: int, curve: trip.TripCurve) -> None:
        self._program(trip.write_trip, model, curve)

    def read_enter_service(self) -> settings_native.EnterService:
        return settings_native.read_enter_service(self._require())

    def write_enter_service(self, es: settings_native.EnterService) -> None:
        self._program(settings_native.write_enter_service, es)

    def read_freq_droop(self) -> settings_native.FreqDroop:
        return settings_native.read_freq_droop(self._require())

    def write_freq_droop(self, fd: settings_native.FreqDroop) -> None:
        self._program(settings_native.write_freq_droop, fd)

    def close(self) -> None:
        self.transport.close()


def _slot_addresses(model: DecodedModel, path: str) -> range:
    slot = model.layout.slots[path]
    start = model.address + slot.offset
    return range(start, start + slot.point.size)


def _control_points(model_id: int, name: str, value: Any,
                    models: Mapping[int, DecodedModel] | None = None) -> dict[str, Any]:
    """Translate one named control into the points of one model.

    ``VArPct`` (percent of the device's var maximum in the commanded direction,
    :mod:`hal.ratings`) goes out in the base the device's control is set to:
    123 ``VArPct_Mod`` (1 % of WMax, 2 % of VArMax, 3 % of VArAval) or 704
    ``VarSetMod`` (0 % of WMax, 1 % of var max, 3 % of VA max, 4 vars). A
    device whose mode is unset (0 / unimplemented in 123, unimplemented in 704)
    is set to percent of var max.
    """
    models = models or {}
    if name == "VArPct" and model_id in (123, 704):
        return _var_points(model_id, float(value), models)
    if model_id == 123:
        table: dict[str, Callable[[Any], dict[str, Any]]] = {
            "Conn": lambda v: {"Conn": int(bool(v))},
            "WMaxLimPct": lambda v: {"WMaxLimPct": float(v)},
            "WMaxLim_Ena": lambda v: {"WMaxLim_Ena": int(bool(v))},
            "OutPFSet": lambda v: {"OutPFSet": float(v)},
            "OutPFSet_Ena": lambda v: {"OutPFSet_Ena": int(bool(v))},
            "VArPct_Ena": lambda v: {"VArPct_Ena": int(bool(v))},
            "RvrtTms": lambda v: {"WMaxLimPct_RvrtTms": int(v), "OutPFSet_RvrtTms": int(v),
                                  "VArPct_RvrtTms": int(v)},
            "Conn_RvrtTms": lambda v: {"Conn_RvrtTms": int(v)},
            "WMaxLimPct_RvrtTms": lambda v: {"WMaxLimPct_RvrtTms": int(v)},
            "OutPFSet_RvrtTms": lambda v: {"OutPFSet_RvrtTms": int(v)},
            "VArPct_RvrtTms": lambda v: {"VArPct_RvrtTms": int(v)},
        }
    elif model_id == 704:
        table = {
            "WMaxLimPct": lambda v: {"WMaxLimPct": float(v)},
            "WMaxLim_Ena": lambda v: {"WMaxLimPctEna": int(bool(v))},
            # 704 carries PF magnitude and excitation separately (Ext 1 = under-excited).
            "OutPFSet": lambda v: {"PFWInj.PF": abs(float(v)), "PFWInj.Ext": int(float(v) < 0)},
            "OutPFSet_Ena": lambda v: {"PFWInjEna": int(bool(v))},
            "VArPct_Ena": lambda v: {"VarSetEna": int(bool(v))},
            "RvrtTms": lambda v: {"WMaxLimPctRvrtTms": int(v), "PFWInjRvrtTms": int(v),
                                  "VarSetRvrtTms": int(v)},
            "WMaxLimPct_RvrtTms": lambda v: {"WMaxLimPctRvrtTms": int(v)},
            "OutPFSet_RvrtTms": lambda v: {"PFWInjRvrtTms": int(v)},
            "VArPct_RvrtTms": lambda v: {"VarSetRvrtTms": int(v)},
        }
    elif model_id == 703:
        # 1547 devices without model 123: ES (permit service) is the way to cease energizing.
        table = {"Conn": lambda v: {"ES": int(bool(v))}}
    else:
        table = {}
    if name not in table:
        raise UnsupportedControl(f"model {model_id} does not carry {name}")
    return table[name](value)



def _var_pct_read(models: Mapping[int, DecodedModel], plain: Reading, now: float) -> Reading:
    """The var setpoint read back as percent of the var maximum in its direction (what
    ``VArPct`` means when written), whatever base the device's mode puts it in."""
    mid = 123 if 123 in models else 704
    m = models.get(mid)
    if m is None:
        return plain
    mode = m.raw.get("VArPct_Mod" if mid == 123 else "VarSetMod")
    if mode is None or mode == (2 if mid == 123 else 1) or (mid == 123 and mode == 0):
        return plain
    rated = ratings.resolve(models)
    if mid == 123:
        aval = models[122].values.get("VArAval") if 122 in models else None
        var = {1: (m.values.get("VArWMaxPct"), rated["WMax"].value),
               3: (m.values.get("VArAvalPct"), aval)}.get(mode, (None, None))
    else:
        var = {0: (m.values.get("VarSetPct"), rated["WMax"].value),
               3: (m.values.get("VarSetPct"), rated["VAMax"].value),
               4: (m.values.get("VarSet"), 100.0)}.get(mode, (None, None))
    pct, base = var
    if pct is None or base is None:
        return Reading(None, NOT_IMPLEMENTED, now)
    v = pct / 100.0 * base
    cap = rated["VArMaxInj" if v >= 0 else "VArMaxAbs"].value
    if not cap:
        return Reading(None, NOT_IMPLEMENTED, now)
    return Reading(100.0 * v / cap, GOOD, now)


def _var_points(model_id: int, pct: float, models: Mapping[int, DecodedModel]) -> dict[str, Any]:
    m = models.get(model_id)
    mode = m.raw.get("VArPct_Mod" if model_id == 123 else "VarSetMod") if m is not None else None
    native = 2 if model_id == 123 else 1  # percent of var max
    if mode is None or (model_id == 123 and mode == 0) or mode == native:
        pts: dict[str, Any] = {"VArMaxPct" if model_id == 123 else "VarSetPct": pct}
        if mode != native:
            pts["VArPct_Mod" if model_id == 123 else "VarSetMod"] = native
        return pts
    rated = ratings.resolve(models)
    cap = rated["VArMaxInj" if pct >= 0 else "VArMaxAbs"].value
    if cap is None:
        raise UnsupportedControl("var maximum unknown: cannot convert a var percentage "
                                 f"to the device's base (mode {mode})")
    var = pct / 100.0 * cap

    def pct_of(base: float | None, what: str) -> float:
        if base is None or base <= 0:
            raise UnsupportedControl(f"{what} unknown: cannot convert to the device's base")
        return max(-100.0, min(100.0, 100.0 * var / base))

    if model_id == 123:
        if mode == 1:
            return {"VArWMaxPct": pct_of(rated["WMax"].value, "WMax")}
        if mode == 3:
            aval = models.get(122).values.get("VArAval") if 122 in models else None
            return {"VArAvalPct": pct_of(aval, "122 VArAval")}
    else:
        if mode == 0:
            return {"VarSetPct": pct_of(rated["WMax"].value, "WMax")}
        if mode == 3:
            return {"VarSetPct": pct_of(rated["VAMax"].value, "VAMax")}
        if mode == 4:
            return {"VarSet": var}
    raise UnsupportedControl(f"model {model_id} var mode {mode} has no base this gateway "
                             "can convert to")

