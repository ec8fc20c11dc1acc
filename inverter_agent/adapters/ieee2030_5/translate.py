"""IEEE 2030.5 DERControlBase -> the core's :class:`UtilityControl`, refusing absurd values.

Pure functions over the JSON form py20305 relays (``control_base``: snake-case
opMod names, values as IEEE 2030.5 encodes them). Every value is checked
against the range IEEE 2030.5-2018 gives its type; a control with any value
out of range is refused as a whole (:class:`ControlRejected`), never clamped:
a server that sends 250 % or a NaN has a bug, and guessing what it meant could
harm the grid or the inverter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inverter_agent.core.arbitration import UtilityControl
from inverter_agent.core.commands import RefusalCause
from inverter_agent.functions import FUNCTIONS

#: opMod functions this gateway applies. Others (fixed W, target W/var/V, ride-through
#: curves, watt-var, frequency-watt...) are reported unsupported: a ride-through curve from
#: a server would relax the protection the gateway runs (docs/arbitration.md, protection
#: first); a frequency-watt curve (absolute %setMaxW against Hz) is not the core's 1547
#: droop (deadband and slope relative to the power before the event), so the local droop
#: keeps running rather than a guess at what the curve meant; opModFreqDroop, the
#: parameterized form, maps onto the core's droop settings and is applied.
#: Each maps to the registered grid function it drives (OPMOD_FUNCTION).
OPMOD_FUNCTION: dict[str, str] = {
    "op_mod_connect": "enter_service", "op_mod_energize": "enter_service",
    "op_mod_max_lim_w": "active_power_limit",
    # opModFixedPFAbsorbW is recognised so that it gets its own refusal (a PF while
    # charging is not applied); only the injecting form is applied.
    "op_mod_fixed_pfinject_w": "fixed_pf", "op_mod_fixed_pfabsorb_w": "fixed_pf",
    "op_mod_fixed_var": "constant_var", "op_mod_volt_var": "volt_var",
    "op_mod_volt_watt": "volt_watt", "op_mod_freq_droop": "freq_watt",
    # Storage (issue 20): a charge / discharge setpoint, where the DER has a battery the
    # core commands (Storage below); refused 252 with the reason where it has not.
    "op_mod_fixed_w": "set_active_power",
}
SUPPORTED = tuple(OPMOD_FUNCTION)
#: Why opModFreqWatt (a frequency-watt DERCurve) stays refused: its y is an absolute
#: active power output in %setMaxW, "with hysteresis" (the 2030.5 XSD), while the core's
#: frequency response is IEEE 1547-2018 droop applied to the pre-disturbance power; the
#: two agree only at full output, so no curve is converted into droop (it would curtail
#: more, or less, than the server asked). opModFreqDroop is the supported way.
FREQ_WATT_CURVE_REFUSED = (
    "op_mod_freq_watt: a frequency-watt curve (absolute %setMaxW) is not the 1547-2018 "
    "droop this gateway runs (on pre-disturbance power); send opModFreqDroop")
#: Registered grid function -> the opMods that drive it (from OPMOD_FUNCTION).
OFFERED: dict[str, str] = {
    f.name: ", ".join(op for op, fn in OPMOD_FUNCTION.items() if fn == f.name)
    for f in FUNCTIONS if f.name in OPMOD_FUNCTION.values()}
#: Registered grid functions no DERControl reaches -> why.
NOT_OFFERED: dict[str, str] = {
    "voltage_ride_through": "the opModHVRT*/opModLVRT* curves are refused: a server's "
                            "ride-through curve would relax the protection the gateway "
                            "runs (docs/arbitration.md, protection first)",
    "frequency_ride_through": "the opModHFRT*/opModLFRT* curves are refused: a server's "
                              "ride-through curve would relax the protection the gateway "
                              "runs (docs/arbitration.md, protection first)",
    "anti_islanding": "IEEE 2030.5 has no control for anti-islanding supervision; the "
                      "site's settings govern it",
    "ramp": "neither a DERControl's rampTms nor DERSettings setGradW is applied: the "
            "persisted ramp rates govern",
}
#: Why opModTargetW stays refused: it is a target of the DER's whole output at its
#: terminals (PV + battery), while the core's set active power commands the battery's
#: power; holding a total would mean chasing the sun with the battery, which the core
#: does not do. opModFixedW (and CSIP-AUS opModStorageTargetW) are the battery's.
TARGET_W_REFUSED = (
    "op_mod_target_w: a target of the DER's total output is not applied (the core sets "
    "the battery's power); send opModFixedW")
#: CSIP-AUS: the battery's target power (W, + discharge), the JSON key the connector
#: gives it (py20305's JSON form does not carry it: connector.storage_target).
STORAGE_TARGET = "op_mod_storage_target_w"
#: DERUnitRefType (IEEE 2030.5-2018): 1 %setMaxW, 2 %setMaxVar, 8 %setMaxVA.
REF_SET_MAX_W = 1
REF_SET_MAX_VAR = 2
REF_SET_MAX_VA = 8
#: DERCurveType (IEEE 2030.5-2018): the curve each curve-based opMod must link to.
CURVE_VOLT_VAR = 11
CURVE_VOLT_WATT = 12
#: The settings' volt-var Q base for each yRefType accepted for a volt-var curve: the
#: core's curve keeps the utility's percentages and says what they are a percentage of
#: (setMaxVar / setMaxVA are the rated var / VA this gateway reports in DERSettings).
VOLT_VAR_Q_BASE = {REF_SET_MAX_VAR: "rated_var", REF_SET_MAX_VA: "rated_va"}


#: CSIP-AUS dynamic-operating-envelope limits this gateway applies (profile.DOE_APPLIED):
#: the generation limit, and the export limit as a generation limit (no site meter).
DOE_SUPPORTED = ("op_mod_gen_lim_w", "op_mod_exp_lim_w")


@dataclass
class Storage:
    """The site's battery for a translation: ``why_not`` None when the core commands it;
    ``set_max_w`` the base of the core's % (setMaxW), ``cha_w`` / ``dis_w`` the
    site's setMaxChargeRateW / setMaxDischargeRateW (W; None not stated)."""

    why_not: str | None
    set_max_w: float | None = None
    cha_w: float | None = None
    dis_w: float | None = None

    def pct(self, name: str, w: float) -> float:
        """Battery W (+ discharge) as the core's % of setMaxW; raises ControlRejected
        where there is no battery to command, or beyond the DER's rating (253; within
        it, the core limits a setpoint to the battery's rates and reserve)."""
        if self.why_not is not None:
            raise ControlRejected(f"{name}: {self.why_not}", _NOT_SUPPORTED)
        if not self.set_max_w or self.set_max_w <= 0:
            raise ControlRejected(f"{name}: the site's setMaxW is not known yet",
                                  RefusalCause.BLOCKED)
        pct = w / self.set_max_w * 100.0
        if abs(pct) > 100.0 + 1e-9:
            raise ControlRejected(f"{name} = {w:g} W: beyond the DER's rating "
                                  f"(setMaxW {self.set_max_w:g} W)")
        return round(pct, 6)


@dataclass
class Doe:
    """The CSIP-AUS profile's context for a translation: the site's setMaxW (W), which a
    limit in W is a percentage of, and what the caller should say about the result."""

    set_max_w: float | None
    notes: list[str] = field(default_factory=list)
    #: A site meter at the connection point is configured ([meter]): opModExpLimW is
    #: held there (the core's export_limit_w), not applied as a generation limit.
    site_meter: bool = False


class ControlRejected(ValueError):
    """A control the gateway refuses; the message says which value and why, ``cause``
    the kind of refusal (:mod:`.responses` maps it to the Response status): a value
    outside the range 2030.5 gives its type is an invalid event, unless said otherwise."""

    def __init__(self, why: str, cause: RefusalCause = RefusalCause.INVALID_VALUE) -> None:
        super().__init__(why)
        self.cause = cause


_NOT_SUPPORTED = RefusalCause.NOT_SUPPORTED


def _enabled(v: Any) -> bool:
    return v is not None and not (isinstance(v, Mapping) and v.get("disabled") is True)


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or v != int(v) or not lo <= v <= hi:
        raise ControlRejected(f"{name} = {v!r}: allowed {lo}..{hi}")
    return int(v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ControlRejected(f"{name} = {v!r}: a boolean")
    return v


def _unwrap(v: Any) -> Any:
    """py20305's JSON form wraps simple types ({"value": -2} for a PowerOfTenMultiplier)."""
    return v.get("value") if isinstance(v, Mapping) else v


def _pf(name: str, v: Mapping[str, Any]) -> tuple[float, bool]:
    displacement = _int(f"{name}.displacement", _unwrap(v.get("displacement")), 0, 0xFFFF)
    multiplier = _int(f"{name}.multiplier", _unwrap(v.get("multiplier", 0)), -9, 9)
    pf = displacement * 10.0 ** multiplier
    if not 0.0 < pf <= 1.0:
        raise ControlRejected(f"{name} = {pf!r}: a power factor 0 < PF <= 1")
    # PowerFactorWithExcitation.excitation: true when absorbing reactive power (under-excited).
    absorbing = _unwrap(v.get("excitation", False))
    if not isinstance(absorbing, bool):
        raise ControlRejected(f"{name}.excitation = {absorbing!r}: a boolean")
    return round(pf, 4), absorbing


def curve_points(name: str, curve: Mapping[str, Any], curve_type: int,
                 y_refs: Iterable[int]) -> tuple[int, tuple[tuple[float, float], ...]]:
    """(yRefType, ((x, y), ...)) of a DERCurve (plain form, see :func:`control_from_base`):
    x in % of nominal voltage -> per unit, y in percent of yRefType's base, both scaled by
    their PowerOfTenMultiplier. Checks the type, the multipliers and that every value is
    a finite number; the point count, the order of x and the ranges are the settings'
    validator's (the same as for a persisted curve)."""
    kind = _int(f"{name}.curveType", _unwrap(curve.get("curve_type")), 0, 255)
    if kind != curve_type:
        raise ControlRejected(f"{name}.curveType = {kind}: the link needs curveType "
                              f"{curve_type}")
    ref = _int(f"{name}.yRefType", _unwrap(curve.get("y_ref_type")), 0, 255)
    if ref not in tuple(y_refs):
        raise ControlRejected(f"{name}.yRefType = {ref}: supported "
                              f"{', '.join(str(r) for r in y_refs)}", _NOT_SUPPORTED)
    xm = _int(f"{name}.xMultiplier", _unwrap(curve.get("x_multiplier")), -9, 9)
    ym = _int(f"{name}.yMultiplier", _unwrap(curve.get("y_multiplier")), -9, 9)
    data = curve.get("curve_data")
    if not isinstance(data, list | tuple) or not data:
        raise ControlRejected(f"{name}.CurveData = {data!r}: a list of points")
    points = []
    for i, p in enumerate(data):
        if not isinstance(p, Mapping):
            raise ControlRejected(f"{name}.CurveData[{i}] = {p!r}: a point")
        # IEEE 2030.5-2018 CurveData: xvalue / yvalue are Int32.
        x = _int(f"{name}.CurveData[{i}].xvalue", _unwrap(p.get("xvalue")), -2**31, 2**31 - 1)
        y = _int(f"{name}.CurveData[{i}].yvalue", _unwrap(p.get("yvalue")), -2**31, 2**31 - 1)
        points.append((round(x * 10.0 ** xm / 100.0, 6), round(y * 10.0 ** ym, 6)))
    return ref, tuple(points)


def freq_droop(fd: Any) -> tuple[float, float, float, float, float | None]:
    """The core's freq_watt droop (db_of_hz, db_uf_hz, k_of, k_uf, response_time_s or None)
    for an opModFreqDroop (FreqDroopType, plain form), in IEEE 2030.5-2018's units:
    dBOF / dBUF in thousandths of Hz (UInt32: 36 -> 0.036 Hz), kOF / kUF per-unit
    frequency change for 1 pu power change in thousandths (UInt16: 50 -> 0.05, the core's
    k_of 5 %), openLoopTms in hundredths of a second (UInt16: 500 -> 5 s; 0 means "no
    limit", and the persisted response time stays). The ranges are the settings'
    validator's, as for a persisted freq_watt setting (1547-2018 Table 24)."""
    if not isinstance(fd, Mapping):
        raise ControlRejected(f"opModFreqDroop = {fd!r}: a FreqDroopType")
    if fd.get("p_min") is not None:
        # 2023's pMin is an absolute ActivePower: not taken rather than guessed.
        raise ControlRejected("opModFreqDroop.pMin: not supported (the persisted "
                              "freq_watt.p_min_pct applies)", _NOT_SUPPORTED)
    db_of = _int("opModFreqDroop.dBOF", _unwrap(fd.get("d_bof")), 0, 2**32 - 1)
    db_uf = _int("opModFreqDroop.dBUF", _unwrap(fd.get("d_buf")), 0, 2**32 - 1)
    k_of = _int("opModFreqDroop.kOF", _unwrap(fd.get("k_of")), 0, 0xFFFF)
    k_uf = _int("opModFreqDroop.kUF", _unwrap(fd.get("k_uf")), 0, 0xFFFF)
    tms = _int("opModFreqDroop.openLoopTms", _unwrap(fd.get("open_loop_tms")), 0, 0xFFFF)
    return (db_of / 1000.0, db_uf / 1000.0, k_of / 1000.0, k_uf / 1000.0,
            None if tms == 0 else tms / 100.0)


def _linked(name: str, link: Any, curves: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    href = link.get("href") if isinstance(link, Mapping) else None
    if not isinstance(href, str) or not href:
        raise ControlRejected(f"{name} = {link!r}: a DERCurveLink")
    curve = curves.get(href)
    if curve is None:
        # Not (yet) fetched from the server's DERCurveList: never guess a curve.
        raise ControlRejected(f"{name}: DERCurve {href} is not in the program's DERCurveList")
    return curve


def _active_power_w(name: str, v: Any) -> float:
    """An ActivePower (value Int16 x 10^multiplier W) as W."""
    value = _unwrap(v.get("value")) if isinstance(v, Mapping) else v
    mult = _unwrap(v.get("multiplier", 0)) if isinstance(v, Mapping) else 0
    return _int(f"{name}.value", value, -2**15, 2**15 - 1) * 10.0 ** _int(
        f"{name}.multiplier", mult, -9, 9)


def _watts(name: str, v: Any) -> float:
    """An ActivePower limit as W; a limit is not negative."""
    w = _active_power_w(name, v)
    if w < 0:
        raise ControlRejected(f"{name} = {w:g} W: a limit is not negative")
    return w


def _fixed_w(v: Any, storage: Storage) -> float:
    """opModFixedW (SignedPerCent, hundredths) as battery W: negative in % of
    setMaxChargeRateW, positive in % of setMaxDischargeRateW (setMaxW where that is not
    stated), IEEE 2030.5-2018's bases."""
    raw = _unwrap(v.get("value")) if isinstance(v, Mapping) else v
    pct = _int("opModFixedW", raw, -10000, 10000) / 100.0
    base = storage.cha_w if pct < 0 else (storage.dis_w or storage.set_max_w)
    if storage.why_not is None and not base:
        raise ControlRejected("opModFixedW: the battery's charge / discharge rate is not "
                              "known yet", RefusalCause.BLOCKED)
    return pct / 100.0 * (base or 0.0)


def _storage_target(v: Any) -> float:
    """CSIP-AUS opModStorageTargetW (ActivePower, W; + discharge, - charge)."""
    return _active_power_w("opModStorageTargetW", v)


def _doe_limit(base: Mapping[str, Any], doe: Doe) -> float | None:
    """The CSIP-AUS generation / export limits as the core's % of setMaxW (the lower),
    rounded down (never above the limit); None if neither is set."""
    limits = {name: _watts(name, base[key]) for key, name in (
        ("op_mod_gen_lim_w", "opModGenLimW"), ("op_mod_exp_lim_w", "opModExpLimW"))
        if _enabled(base.get(key))}
    if doe.site_meter:
        limits.pop("opModExpLimW", None)  # held at the connection point (control_from_base)
    if not limits:
        return None
    if not doe.set_max_w or doe.set_max_w <= 0:
        raise ControlRejected(f"{', '.join(limits)}: the site's setMaxW is not known yet "
                              "(no inverter read)", RefusalCause.BLOCKED)
    if "opModExpLimW" in limits:
        doe.notes.append(
            f"opModExpLimW {limits['opModExpLimW']:g} W applied as a generation limit (no "
            "site meter): export stays at or below it, lower by the site's own load")
    w = min(limits.values())
    return min(100.0, math.floor(w / doe.set_max_w * 100.0 * 1000.0) / 1000.0)


def control_from_base(base: Mapping[str, Any] | None,
                      curves: Mapping[str, Mapping[str, Any]] | None = None,
                      doe: Doe | None = None,
                      storage: Storage | None = None) -> UtilityControl:
    """The core's control for a DERControlBase; raises ControlRejected.

    ``opModMaxLimW`` is a PerCent of setMaxW in hundredths (0..10000);
    ``opModFixedVar`` a SignedPerCent (hundredths, -10000..10000) of setMaxVar.
    ``opModVoltVar`` / ``opModVoltWatt`` are DERCurveLinks, resolved in ``curves``
    (href -> the DERCurve's plain form: ``curve_type``, ``x_multiplier``,
    ``y_multiplier``, ``y_ref_type``, ``curve_data`` [{``xvalue``, ``yvalue``}], and for
    volt-var ``v_ref``, ``autonomous_vref_enable``). A volt-var curve's x is in % of
    nominal voltage and its y in % of setMaxVar (yRefType 2) or of setMaxVA (8), kept as
    they are with the settings' matching ``q_base``; a volt-watt curve's y is in % of
    setMaxW (yRefType 1), the core's % of rated W.

    With ``doe`` (the CSIP-AUS profile), ``opModGenLimW`` and ``opModExpLimW``
    (ActivePower, W) become the core's limit in % of ``doe.set_max_w``, the lower of
    them and of ``opModMaxLimW``; the import and load limits stay refused, and
    ``op_mod_storage_target_w`` (CSIP-AUS opModStorageTargetW, W) is the battery's
    setpoint, as opModFixedW is.

    ``opModFixedW`` (and the storage target) become the core's set active power
    (``storage_w_pct``, % of setMaxW, + discharge) through ``storage``, the site's
    battery; without one (None, or ``storage.why_not``) they are refused 252 with why.
    """
    if base is None:
        return UtilityControl()
    curves = curves or {}
    supported = SUPPORTED + ((*DOE_SUPPORTED, STORAGE_TARGET) if doe is not None else ())
    unsupported = sorted(k for k, v in base.items()
                         if k.startswith("op_mod_") and k not in supported and _enabled(v))
    if "op_mod_imp_lim_w" in unsupported:
        raise ControlRejected(
            f"not supported by this gateway: {', '.join(unsupported)} (an import limit at "
            "the connection point cannot be held by a PV inverter, with or without a site "
            "meter: it can only raise its output, which it already runs at the available "
            "power; holding import needs storage or a controllable load)", _NOT_SUPPORTED)
    if "op_mod_freq_watt" in unsupported:
        raise ControlRejected(FREQ_WATT_CURVE_REFUSED, _NOT_SUPPORTED)
    if "op_mod_target_w" in unsupported:
        raise ControlRejected(TARGET_W_REFUSED, _NOT_SUPPORTED)
    if unsupported:
        raise ControlRejected(f"not supported by this gateway: {', '.join(unsupported)}",
                              _NOT_SUPPORTED)
    fields: dict[str, Any] = {}
    if _enabled(base.get("op_mod_connect")):
        fields["connect"] = _bool("opModConnect", base["op_mod_connect"])
    if _enabled(base.get("op_mod_energize")):
        fields["energize"] = _bool("opModEnergize", base["op_mod_energize"])
    lim = base.get("op_mod_max_lim_w")
    if _enabled(lim):
        value = lim.get("value") if isinstance(lim, Mapping) else lim
        fields["p_limit_pct"] = _int("opModMaxLimW", value, 0, 10000) / 100.0
    if doe is not None and (pct := _doe_limit(base, doe)) is not None:
        fields["p_limit_pct"] = min(fields.get("p_limit_pct", 100.0), pct)
    if doe is not None and doe.site_meter and _enabled(base.get("op_mod_exp_lim_w")):
        fields["export_limit_w"] = _watts("opModExpLimW", base["op_mod_exp_lim_w"])
        doe.notes.append(f"opModExpLimW {fields['export_limit_w']:g} W held at the "
                         "connection point with the site meter")
    inject, absorb = base.get("op_mod_fixed_pfinject_w"), base.get("op_mod_fixed_pfabsorb_w")
    if _enabled(inject):
        if not isinstance(inject, Mapping):
            raise ControlRejected(f"opModFixedPFInjectW = {inject!r}: a PowerFactorWithExcitation")
        fields["fixed_pf"] = _pf("opModFixedPFInjectW", inject)
    elif _enabled(absorb):
        # A PF while absorbing active power (a battery charging): the core's fixed PF
        # is one setpoint for both directions, so a charging PF alone is not applied.
        raise ControlRejected("opModFixedPFAbsorbW: a power factor while absorbing active "
                              "power (charging) is not applied; send opModFixedPFInjectW",
                              _NOT_SUPPORTED)
    var = base.get("op_mod_fixed_var")
    if _enabled(var):
        if not isinstance(var, Mapping):
            raise ControlRejected(f"opModFixedVar = {var!r}: a FixedVar")
        ref = _int("opModFixedVar.refType", _unwrap(var.get("ref_type")), 0, 255)
        if ref != REF_SET_MAX_VAR:
            raise ControlRejected(f"opModFixedVar.refType = {ref}: only {REF_SET_MAX_VAR} "
                                  "(%setMaxVar) is supported", _NOT_SUPPORTED)
        raw = var.get("value")
        raw = raw.get("value") if isinstance(raw, Mapping) else raw
        fields["fixed_var_pct"] = _int("opModFixedVar.value", raw, -10000, 10000) / 100.0
    vv = base.get("op_mod_volt_var")
    if _enabled(vv):
        curve = _linked("opModVoltVar", vv, curves)
        ref, points = curve_points("opModVoltVar", curve, CURVE_VOLT_VAR, VOLT_VAR_Q_BASE)
        v_ref = _unwrap(curve.get("v_ref"))
        # vRef (PerCent, hundredths) shifts the curve; the utility's curve runs about
        # nominal here (the settings' vRef is 1.0 for the event), so only 100 % is taken.
        if v_ref is not None and _int("opModVoltVar.vRef", v_ref, 0, 0xFFFF) != 10000:
            raise ControlRejected(f"opModVoltVar.vRef = {v_ref}: only 10000 (100 %) is "
                                  "supported", _NOT_SUPPORTED)
        fields["volt_var_curve"] = points
        fields["volt_var_q_base"] = VOLT_VAR_Q_BASE[ref]
    vw = base.get("op_mod_volt_watt")
    if _enabled(vw):
        curve = _linked("opModVoltWatt", vw, curves)
        _, fields["volt_watt_curve"] = curve_points("opModVoltWatt", curve, CURVE_VOLT_WATT,
                                                    (REF_SET_MAX_W,))
    fd = base.get("op_mod_freq_droop")
    if _enabled(fd):
        fields["freq_droop"] = freq_droop(fd)
    sto = storage if storage is not None else Storage("no storage context (not a hybrid)")
    for key, name in (("op_mod_fixed_w", "opModFixedW"),
                      (STORAGE_TARGET, "opModStorageTargetW")):
        if _enabled(base.get(key)):
            w = (_fixed_w(base[key], sto) if key == "op_mod_fixed_w"
                 else _storage_target(base[key]))
            if "storage_w_pct" in fields:
                raise ControlRejected("opModFixedW and opModStorageTargetW together: one "
                                      "battery setpoint at a time", RefusalCause.CONFLICT)
            fields["storage_w_pct"] = sto.pct(name, w)
    reactive = [k for k in ("fixed_pf", "fixed_var_pct", "volt_var_curve") if k in fields]
    if len(reactive) > 1:
        names = {"fixed_pf": "opModFixedPFInjectW", "fixed_var_pct": "opModFixedVar",
                 "volt_var_curve": "opModVoltVar"}
        raise ControlRejected(f"{' and '.join(names[k] for k in reactive)} together: one "
                              "reactive mode at a time (IEEE 1547-2018 5.3.1)",
                              RefusalCause.CONFLICT)
    return UtilityControl(**fields)
