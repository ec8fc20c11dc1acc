"""The inverter's own enter service (SunSpec 703) and frequency droop (711) settings.

IEEE 1547-2018 devices enter service by their own criteria (703: voltage and
frequency window in percent of nominal and Hz, delay, randomized delay, soft-start
ramp) and run frequency droop themselves (711: deadbands in Hz, droop gains as
per-unit frequency change for a per-unit power change, open-loop response time,
minimum power). The HAL reads them, programs them and reads them back:

- 703 holds one set of settings, written in place. ``ES`` (permit service) is not
  a setting here: it stays the gateway's cease-to-energize control.
- 711 holds ``NCtl`` control sets; set 1 is the one in use and may be read-only:
  a new set goes into a writable set k and is adopted with ``AdptCtlReq = k``
  (``AdptCtlRslt`` completed / failed), as curves are in 705.

``Ena`` of 711 is only ever written 1: frequency droop is always required (1547
6.5.2.7), so a gateway never switches the device's own off.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hal.curves import CurveError, write_and_adopt
from hal.sunspec.device import SunSpecDevice
from hal.sunspec.models import GroupDef, ModelDefinitionError, model_definition

log = logging.getLogger(__name__)

ENTER_SERVICE_MODEL = 703
FREQ_DROOP_MODEL = 711


#: Per device (one discovery), per model: the optional points it does not carry (still
#: unimplemented after a write of them), by setting name.
_NOT_CARRIED: weakref.WeakKeyDictionary[SunSpecDevice, dict[int, tuple[str, ...]]] = \
    weakref.WeakKeyDictionary()


def _close(a: Any, b: Any, tol: dict[str, float]) -> bool:
    """Equal within ``tol``; a value the device does not state (None) matches nothing,
    except a point the device does not carry (``not_carried``), which is not compared."""
    skip = {"enabled", "not_carried", *getattr(a, "not_carried", ()),
            *getattr(b, "not_carried", ())}
    return type(a) is type(b) and all(
        getattr(a, k) is not None and getattr(b, k) is not None
        and abs(getattr(a, k) - getattr(b, k)) <= tol.get(k, 0.011)
        for k in asdict(a) if k not in skip) and \
        getattr(a, "enabled", True) == getattr(b, "enabled", True)


def _mandatory(model: int, point: str) -> bool:
    """Whether SunSpec marks ``point`` of ``model`` mandatory (a point not found in the
    definition counts as mandatory)."""
    def find(g: GroupDef) -> bool | None:
        for p in g.points:
            if p.name == point:
                return p.mandatory
        for sub in g.groups:
            if (found := find(sub)) is not None:
                return found
        return None
    try:
        found = find(model_definition(model).group)
    except ModelDefinitionError:
        return True
    return True if found is None else found


def _carried(device: SunSpecDevice, model: int, wanted: Any, held: Any,
             names: dict[str, str]) -> Any:
    """``held`` (read back after writing ``wanted``) with the optional points the
    device still leaves unimplemented marked not carried (noted once, logged); a
    mandatory one stays unstated (so the program is refused)."""
    absent = tuple(k for k, p in names.items() if getattr(held, k) is None
                   and getattr(wanted, k) is not None
                   and not _mandatory(model, p.rsplit(".", 1)[-1]))
    known = _NOT_CARRIED.setdefault(device, {})
    if absent and set(absent) - set(known.get(model, ())):
        log.info("unit %d: %d does not carry %s (optional, unimplemented after a write): "
                 "not compared", device.unit, model, ", ".join(names[k] for k in absent))
    if absent:
        known[model] = tuple(sorted({*known.get(model, ()), *absent}))
    return replace(held, not_carried=known.get(model, ()))


def _not_carried(device: SunSpecDevice, model: int) -> tuple[str, ...]:
    return _NOT_CARRIED.get(device, {}).get(model, ())


def _stated(value: Any) -> float | None:
    """A point's value; None where the device does not state it (not implemented):
    unknown, never read as 0."""
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class EnterService:
    """703 settings: V in percent of nominal, Hz, seconds (None, as read: a point the
    device does not state; it matches no setting, so the setting is programmed)."""

    v_hi_pct: float | None
    v_lo_pct: float | None
    hz_hi: float | None
    hz_lo: float | None
    delay_s: float | None
    random_s: float | None
    ramp_s: float | None
    enabled: bool = True  # the settings are held (the function has no Ena of its own)
    #: Optional points this device does not carry (unimplemented after a write): not
    #: compared, named in the steering "why".
    not_carried: tuple[str, ...] = field(default=(), compare=False)

    def close_to(self, other: object) -> bool:
        """Equal within register resolution (V 0.1 %, 0.01 Hz, whole seconds)."""
        return _close(self, other, {"v_hi_pct": 0.11, "v_lo_pct": 0.11, "delay_s": 0.6,
                                    "random_s": 0.6, "ramp_s": 0.6})

    @property
    def points(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "not_carried"}


_ES_POINTS = {"v_hi_pct": "ESVHi", "v_lo_pct": "ESVLo", "hz_hi": "ESHzHi",
              "hz_lo": "ESHzLo", "delay_s": "ESDlyTms", "random_s": "ESRndTms",
              "ramp_s": "ESRmpTms"}


def read_enter_service(device: SunSpecDevice) -> EnterService:
    v = device.read_models([ENTER_SERVICE_MODEL])[ENTER_SERVICE_MODEL].values
    vals: dict[str, Any] = {k: _stated(v.get(p)) for k, p in _ES_POINTS.items()}
    return EnterService(**vals, not_carried=_not_carried(device, ENTER_SERVICE_MODEL))


def write_enter_service(device: SunSpecDevice, es: EnterService) -> None:
    """Write the 703 settings in place and read them back (CurveError: not held)."""
    skip = _not_carried(device, ENTER_SERVICE_MODEL)
    points = {p: getattr(es, k) for k, p in _ES_POINTS.items() if k not in skip}
    try:
        device.write_points(ENTER_SERVICE_MODEL, points)
    except ValueError as exc:
        raise CurveError(f"enter service: {exc}") from None
    held = _carried(device, ENTER_SERVICE_MODEL, es, read_enter_service(device), _ES_POINTS)
    if not held.close_to(es):
        raise CurveError(f"enter service: the device holds {held.points} after {es.points}")
    log.info("unit %d: enter service programmed: %s", device.unit, es.points)


@dataclass(frozen=True, slots=True)
class FreqDroop:
    """711 settings: deadbands in Hz, gains per unit, response time s, PMin % of WMax
    (None, as read: not stated by the device, as for :class:`EnterService`)."""

    db_of_hz: float | None
    db_uf_hz: float | None
    k_of: float | None
    k_uf: float | None
    response_time_s: float | None
    p_min_pct: float | None = 0.0
    enabled: bool = True
    #: Optional points this device does not carry, as for :class:`EnterService`.
    not_carried: tuple[str, ...] = field(default=(), compare=False)

    def close_to(self, other: object) -> bool:
        return _close(self, other, {"db_of_hz": 0.0011, "db_uf_hz": 0.0011, "k_of": 0.0011,
                                    "k_uf": 0.0011, "response_time_s": 0.11,
                                    "p_min_pct": 0.6})

    @property
    def points(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k not in ("enabled", "not_carried")}


_FD_POINTS = {"db_of_hz": "DbOf", "db_uf_hz": "DbUf", "k_of": "KOf", "k_uf": "KUf",
              "response_time_s": "RspTms", "p_min_pct": "PMin"}


def read_freq_droop(device: SunSpecDevice) -> FreqDroop:
    """The control set in use (set 1) and whether the function is on."""
    m = device.read_models([FREQ_DROOP_MODEL])[FREQ_DROOP_MODEL]
    v = m.values
    return FreqDroop(**{k: _stated(v.get(f"Ctl[1].{p}")) for k, p in _FD_POINTS.items()},
                     enabled=m.raw.get("Ena") == 1,
                     not_carried=_not_carried(device, FREQ_DROOP_MODEL))


def write_freq_droop(device: SunSpecDevice, fd: FreqDroop, adopt_timeout_s: float = 5.0) -> None:
    """Program a control set, adopt it, keep the function on (never off), read back."""
    if not fd.enabled:
        raise CurveError("frequency droop: a gateway never switches the device's own off")
    m = device.read_models([FREQ_DROOP_MODEL])[FREQ_DROOP_MODEL]
    k = 1 if m.raw.get("Ctl[1].ReadOnly") != 1 else 2
    if k > int(m.raw.get("NCtl") or 0):
        raise CurveError("the device's only frequency droop control set is read-only")
    skip = _not_carried(device, FREQ_DROOP_MODEL)
    points = {f"Ctl[{k}].{p}": getattr(fd, name) for name, p in _FD_POINTS.items()
              if name not in skip}
    try:  # set 1 (the set in use, when writable) is written back if not adopted
        write_and_adopt(device, FREQ_DROOP_MODEL, k, points, "frequency droop control set",
                        adopt_timeout_s, m.values, req="AdptCtlReq", rslt_point="AdptCtlRslt")
    except ValueError as exc:
        raise CurveError(f"frequency droop: {exc}") from None
    if m.raw.get("Ena") != 1:
        device.write_points(FREQ_DROOP_MODEL, {"Ena": 1})
    held = _carried(device, FREQ_DROOP_MODEL, fd, read_freq_droop(device), _FD_POINTS)
    if not held.close_to(fd):
        raise CurveError(f"frequency droop: the device holds {held.points} after {fd.points}")
    log.info("unit %d: frequency droop programmed: %s", device.unit, fd.points)
