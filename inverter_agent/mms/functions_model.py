"""Grid-support functions as IEC 61850 logical nodes: model, settings map, status map.

Extends :func:`~inverter_agent.mms.der_model.der_model_spec` (same logical
device) with one logical node per Rule 21 / IEEE 1547-2018 function. Settings
are under FC SP and writable (validated, see ``binding``); status under ST/MX.
7-420 Ed.2 (2021) is not public: names come from 7-420 Ed.1 / 61850-90-7 where
known (DRCT, DRCS, DRCC, DWMX, DFPF, DVAR, DVVR), 7-4 where a protection LN
fits (PFRC for ROCOF) and are chosen here otherwise (marked *); change them in
this one module once confirmed. ``docs/iec61850-model.md`` has the full table.

======  ================================  =========================================
LN      Function                          Settings (SP) / controls (CO) / status
======  ================================  =========================================
DRCT1   DER characteristics               HzNom, VArMaxPct, Rmp*, InvMeas*, WMax
DRCS1   controller status                 CtlSt, Trip, OosCause, VRgn, HzRgn, AISt,
                                          NotFlw, WLimPct, PFSpt, VArSptPct; AIEna,
                                          AICeaseDis (SP)
DRCC1   supervisory control               Conn (DPC, SBO), RlsCmd (SPC)
DWMX1   limit maximum active power        FctEna, WMaxSptPct; WMaxLimPct (APC), ModEna
DFPF1   constant power factor             FctEna, PFGnTgtSpt, PFAbs, PFMinInj, PFMinAbs;
                                          ModEna
DVAR1   constant reactive power           FctEna, VArTgtSptPct; ModEna
DVVR1   volt-var                          FctEna, Crv (8), RspTms, VRef*, QBaseVAr; ModEna
DVWC1*  volt-watt                         FctEna, Crv (8), RspTms; ModEna
DHFW1*  frequency-watt (droop)            FctEna, DbOfHz, DbUfHz, KOfPct, KUfPct,
                                          RspTms, WMinPct; ModEna
DESE1*  enter service (soft start)        SvcPmt, VLo, VHi, HzLo, HzHi, DlTms, RndDlTms,
                                          RmpTms; RmgTms (MX)
DHVT1*  voltage ride-through, over        FctEna, TripMgnTms, Crv (4 regions)
DLVT1*  voltage ride-through, under       FctEna, TripMgnTms, Crv (4 regions)
DHFT1*  frequency ride-through, over      FctEna, TripMgnTms, Crv (4 regions)
DLFT1*  frequency ride-through, under     FctEna, TripMgnTms, Crv (4 regions)
PFRC1   ROCOF (anti-islanding backup)     FctEna, StrVal, OpDlTms
======  ================================  =========================================

Every function LN also has Beh, FctAct (SPS: acting now) and FctFlw (SPS: the
inverter follows it; q invalid when not applicable). ModEna (SPC) is the
*temporary* enable command; FctEna (SPG) the *persisted* enable; both show
the effective value.

Units: voltages in % of nominal (curve xVal, VRef, enter-service window,
voltage region thresholds) as SunSpec 126 / 90-7 do; internally pu
(value / 100). Q and P in %; frequencies in Hz; times in s; droop K in %
(internally a fraction). Optional times: a negative value means "not set".

Curves (``Crv``, CSG-like): ``numPts`` (read-only) and ``crvPts[N]`` with
xVal/yVal. Points in use come first; the first element whose xVal is 0 (curves)
or whose yVal is 0 (ride-through regions) ends the curve, so a write of the
whole array sets the number of points. Ride-through region elements are
{xVal clearing time s (<0 none), yVal threshold (% or Hz), rtTms ride-through
time s (<0 none), mode (``REGION_MODES`` code), incl (threshold inclusive)};
names are kept by position (new regions are named HV3, LF2, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inverter_agent.functions import SettingsError

from . import _native as nat
from .der_model import DEFAULT_LD_INST, der_model_spec
from .model import (
    CURVE_ARRAY,
    SI_UNIT,
    Cdc,
    DataObjectSpec,
    DataSetSpec,
    LogicalDeviceSpec,
    LogicalNodeSpec,
    ModelSpec,
    ReportSpec,
)

_OPT_UNIT = 1 << 6
_DIRECT = nat.CTL_MODEL_DIRECT_NORMAL
_SBO = nat.CTL_MODEL_SBO_NORMAL

#: DRCS1.CtlSt codes (engine OperatingState); 0 = unknown.
OPERATING_STATES = ("out_of_service", "ramping", "continuous", "momentary_cessation",
                    "safe_hold", "safe_cease")
#: DRCS1.AISt codes (anti-islanding status); 0 = unknown.
AI_STATES = ("ok", "not_reported", "disabled_alarm", "tripped")
#: Ride-through region ``mode`` codes (RegionMode values); 0 is invalid.
REGION_MODES = ("continuous", "mandatory_operation", "permissive_operation",
                "momentary_cessation", "must_trip")


def code_of(names: tuple[str, ...], name: Any) -> int:
    """1-based code of ``name`` in ``names``; 0 if unknown."""
    return names.index(name) + 1 if name in names else 0


# ---------------------------------------------------------------- settings map

@dataclass(frozen=True)
class Setting:
    """One scalar setting: ``target`` attribute (below the LD) <-> settings ``path``.

    kind: ``float`` (mms = value * scale), ``opt_float`` (None <-> exactly -1),
    ``bool``, or ``flag`` (bool <-> ``path`` == ``when_true`` / ``when_false``).
    """

    target: str
    path: str
    kind: str = "float"
    scale: float = 1.0
    when_true: str = ""
    when_false: str = ""

    def to_mms(self, settings: Mapping[str, Any]) -> Any:
        value = get_path(settings, self.path)
        if self.kind == "bool":
            return bool(value)
        if self.kind == "flag":
            return value == self.when_true
        if value is None:
            return -1.0
        return float(value) * self.scale

    def to_setting(self, value: Any) -> Any:
        if self.kind in ("bool", "flag"):
            if not isinstance(value, bool):
                raise SettingsError(f"{self.path} = {value!r}: must be true or false")
            return (self.when_true if value else self.when_false) if self.kind == "flag" else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{self.path} = {value!r}: must be a number")
        if self.kind == "opt_float" and value == -1:  # the "off" sentinel, nothing else
            return None
        return clean(value / self.scale)


@dataclass(frozen=True)
class Curve:
    """A point array ``target`` (a CSG data object) <-> settings list ``path``.

    ``fields`` name the element fields in order; ``regions`` selects the
    ride-through element layout (see the module docstring).
    """

    target: str
    path: str
    points: int
    x_key: str = ""
    y_key: str = ""
    x_scale: float = 1.0
    y_scale: float = 1.0
    regions: bool = False
    name_prefix: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return ("xVal", "yVal", "rtTms", "mode", "incl") if self.regions else ("xVal", "yVal")

    def elements(self, settings: Mapping[str, Any]) -> list[list[Any]]:
        """The array as served: one list of field values per element."""
        items = get_path(settings, self.path)
        out: list[list[Any]] = []
        for i in range(self.points):
            if i >= len(items):
                out.append([-1.0, 0.0, -1.0, 0, False] if self.regions else [0.0, 0.0])
            elif self.regions:
                r = items[i]
                out.append([_opt(r["clearing_time_s"]), r["threshold"] * self.y_scale,
                            _opt(r["ride_through_s"]), code_of(REGION_MODES, r["mode"]),
                            bool(r["inclusive"])])
            else:
                p = items[i]
                out.append([p[self.x_key] * self.x_scale, p[self.y_key] * self.y_scale])
        return out

    def to_setting(self, elements: list[list[Any]], settings: Mapping[str, Any]) -> list[Any]:
        """Settings list from served elements (the leading elements in use)."""
        old = get_path(settings, self.path)
        out: list[Any] = []
        for i, element in enumerate(elements):
            if len(element) != len(self.fields):
                raise SettingsError(f"{self.path}[{i}] = {element!r}: expected "
                                    f"{len(self.fields)} fields ({', '.join(self.fields)})")
            for v in element[:2]:
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise SettingsError(f"{self.path}[{i}] = {element!r}: xVal/yVal numbers")
            if self.regions:
                clearing, threshold, ride, mode, inclusive = element
                if threshold == 0:
                    break
                if not isinstance(mode, int) or not 1 <= mode <= len(REGION_MODES):
                    raise SettingsError(f"{self.path}[{i}].mode = {mode!r}: one of "
                                        f"1..{len(REGION_MODES)} ({', '.join(REGION_MODES)})")
                name = old[i]["name"] if i < len(old) else f"{self.name_prefix}{i + 1}"
                out.append({"name": name, "threshold": clean(threshold / self.y_scale),
                            "inclusive": bool(inclusive), "mode": REGION_MODES[mode - 1],
                            # exactly -1 is "none"; any other value goes to the validator
                            "ride_through_s": None if ride == -1 else clean(ride),
                            "clearing_time_s": None if clearing == -1 else clean(clearing)})
            else:
                x, y = element
                if x == 0:
                    break
                out.append({self.x_key: clean(x / self.x_scale),
                            self.y_key: clean(y / self.y_scale)})
        return out

    def apply_write(self, value: Any, path: str, settings: Mapping[str, Any]) -> list[Any]:
        """The whole settings list after a write of ``value`` at ``path`` below the array.

        A partial write (one element, or one field of it) is validated as the
        whole curve with that part replaced.
        """
        elements = self.elements(settings)
        parts = [p for p in path.split(".") if p] if path else []
        if not parts:
            if not isinstance(value, list) or len(value) != self.points:
                raise SettingsError(f"{self.path}: write all {self.points} elements")
            elements = [list(e) if isinstance(e, list) else e for e in value]
        else:
            index = int(parts[0])
            if len(parts) == 1:
                if not isinstance(value, list):
                    raise SettingsError(f"{self.path}[{index}] = {value!r}: not a point")
                elements[index] = list(value)
            else:
                elements[index][self.fields.index(parts[1])] = value
        result = self.to_setting(elements, settings)
        if parts and int(parts[0]) >= len(result) and elements[int(parts[0])][
                1 if self.regions else 0] != 0:
            raise SettingsError(f"{self.path}[{parts[0]}]: points in use must be contiguous; "
                                f"the curve has {len(result)} points")
        return result


def _opt(value: float | None) -> float:
    return -1.0 if value is None else float(value)


def clean(value: float) -> float:
    """A float32 value as the decimal the client meant (91.69999694824219 -> 91.7).

    MMS FLOAT32 keeps about 7 significant digits; without this a write of 91.7 %
    would persist 0.9169999694824219 pu.
    """
    return float(f"{float(value):.7g}")


def get_path(d: Mapping[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        node = node[part]
    return node


def _asg(name: str, unit: str = "dimensionless", desc: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.ASG, options=_OPT_UNIT,
                          init={"units.SIUnit": SI_UNIT.get(unit, 1)}, desc=desc)


def _spg(name: str, desc: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.SPG, desc=desc)


def _sps(name: str, desc: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.SPS, desc=desc)


def _curve(name: str, points: int, regions: bool = False, desc: str = "") -> DataObjectSpec:
    fields = ((("xVal", nat.DA_FLOAT32), ("yVal", nat.DA_FLOAT32), ("rtTms", nat.DA_FLOAT32),
               ("mode", nat.DA_INT32), ("incl", nat.DA_BOOLEAN)) if regions
              else (("xVal", nat.DA_FLOAT32), ("yVal", nat.DA_FLOAT32)))
    return DataObjectSpec(name, Cdc.CSG, points=points, fields=fields, desc=desc)


def _ena(desc: str) -> tuple[DataObjectSpec, ...]:
    return (_spg("FctEna", f"{desc}: enabled (persisted setting)"),)


def _status() -> tuple[DataObjectSpec, ...]:
    return (_sps("FctAct", "function acting now"),
            _sps("FctFlw", "inverter follows the function; q invalid when not applicable"))


def _mod_ena(desc: str) -> DataObjectSpec:
    return DataObjectSpec("ModEna", Cdc.SPC, ctl_model=_DIRECT,
                          desc=f"{desc}: temporary enable command; stVal effective")


def _beh() -> DataObjectSpec:
    return DataObjectSpec("Beh", Cdc.ENS, init={"stVal": 1})


def _ln(ln_class: str, *dos: DataObjectSpec) -> LogicalNodeSpec:
    return LogicalNodeSpec(ln_class, "1", (_beh(), *dos))


# ---------------------------------------------------------------- the tables

#: Scalar settings (target below the LD -> settings path).
SETTINGS: tuple[Setting, ...] = (
    Setting("DRCT1.HzNom.setMag.f", "nameplate.f_nom_hz"),
    Setting("DRCT1.VArMaxPct.setMag.f", "nameplate.var_max_pct"),
    Setting("DRCT1.RmpEna.setVal", "ramp.enabled", "bool"),
    Setting("DRCT1.RmpUpRte.setMag.f", "ramp.up_pct_per_s", "opt_float"),
    Setting("DRCT1.RmpDnRte.setMag.f", "ramp.down_pct_per_s", "opt_float"),
    Setting("DRCT1.InvMeasCease.setVal", "safety.on_invalid_measurements", "flag",
            when_true="cease_to_energize", when_false="stand_aside"),
    Setting("DRCT1.InvMeasHoldTms.setMag.f", "safety.hold_s"),
    Setting("DRCS1.AIEna.setVal", "anti_islanding.enabled", "bool"),
    Setting("DRCS1.AICeaseDis.setVal", "anti_islanding.cease_on_disabled", "bool"),
    Setting("DWMX1.FctEna.setVal", "active_power_limit.enabled", "bool"),
    Setting("DWMX1.WMaxSptPct.setMag.f", "active_power_limit.p_limit_pct"),
    Setting("DFPF1.FctEna.setVal", "fixed_pf.enabled", "bool"),
    Setting("DFPF1.PFGnTgtSpt.setMag.f", "fixed_pf.pf"),
    Setting("DFPF1.PFAbs.setVal", "fixed_pf.absorbing", "bool"),
    Setting("DFPF1.PFMinInj.setMag.f", "fixed_pf.pf_min_injecting"),
    Setting("DFPF1.PFMinAbs.setMag.f", "fixed_pf.pf_min_absorbing"),
    Setting("DVAR1.FctEna.setVal", "constant_var.enabled", "bool"),
    Setting("DVAR1.VArTgtSptPct.setMag.f", "constant_var.q_pct"),
    Setting("DVVR1.FctEna.setVal", "volt_var.enabled", "bool"),
    Setting("DVVR1.RspTms.setMag.f", "volt_var.response_time_s"),
    Setting("DVVR1.VRef.setMag.f", "volt_var.vref_pu", scale=100.0),
    Setting("DVVR1.VRefAuto.setVal", "volt_var.vref_auto", "bool"),
    Setting("DVVR1.VRefTms.setMag.f", "volt_var.vref_time_s"),
    Setting("DVVR1.VRefMin.setMag.f", "volt_var.vref_min_pu", scale=100.0),
    Setting("DVVR1.VRefMax.setMag.f", "volt_var.vref_max_pu", scale=100.0),
    Setting("DVVR1.QBaseVAr.setVal", "volt_var.q_base", "flag",
            when_true="rated_var", when_false="rated_va"),
    Setting("DVWC1.FctEna.setVal", "volt_watt.enabled", "bool"),
    Setting("DVWC1.RspTms.setMag.f", "volt_watt.response_time_s"),
    Setting("DHFW1.FctEna.setVal", "freq_watt.enabled", "bool"),
    Setting("DHFW1.DbOfHz.setMag.f", "freq_watt.db_of_hz"),
    Setting("DHFW1.DbUfHz.setMag.f", "freq_watt.db_uf_hz"),
    Setting("DHFW1.KOfPct.setMag.f", "freq_watt.k_of", scale=100.0),
    Setting("DHFW1.KUfPct.setMag.f", "freq_watt.k_uf", scale=100.0),
    Setting("DHFW1.RspTms.setMag.f", "freq_watt.response_time_s"),
    Setting("DHFW1.WMinPct.setMag.f", "freq_watt.p_min_pct"),
    Setting("DESE1.SvcPmt.setVal", "enter_service.enabled", "bool"),
    Setting("DESE1.VLo.setMag.f", "enter_service.v_low_pu", scale=100.0),
    Setting("DESE1.VHi.setMag.f", "enter_service.v_high_pu", scale=100.0),
    Setting("DESE1.HzLo.setMag.f", "enter_service.f_low_hz"),
    Setting("DESE1.HzHi.setMag.f", "enter_service.f_high_hz"),
    Setting("DESE1.DlTms.setMag.f", "enter_service.delay_s"),
    Setting("DESE1.RndDlTms.setMag.f", "enter_service.random_delay_s"),
    Setting("DESE1.RmpTms.setMag.f", "enter_service.ramp_time_s"),
    *(s for ln, group in (("DHVT1", "voltage_ride_through"), ("DLVT1", "voltage_ride_through"),
                          ("DHFT1", "frequency_ride_through"),
                          ("DLFT1", "frequency_ride_through"))
      for s in (Setting(f"{ln}.FctEna.setVal", f"{group}.enabled", "bool"),
                Setting(f"{ln}.TripMgnTms.setMag.f", f"{group}.trip_margin_s"))),
    Setting("PFRC1.FctEna.setVal", "anti_islanding.rocof_enabled", "bool"),
    Setting("PFRC1.StrVal.setMag.f", "anti_islanding.rocof_hz_per_s"),
    Setting("PFRC1.OpDlTms.setMag.f", "anti_islanding.rocof_time_s"),
)

CURVES: tuple[Curve, ...] = (
    Curve("DVVR1.Crv", "volt_var.curve", 8, "v_pu", "q_pct", x_scale=100.0),
    Curve("DVWC1.Crv", "volt_watt.curve", 8, "v_pu", "p_pct", x_scale=100.0),
    Curve("DHVT1.Crv", "voltage_ride_through.over", 4, y_scale=100.0, regions=True,
          name_prefix="HV"),
    Curve("DLVT1.Crv", "voltage_ride_through.under", 4, y_scale=100.0, regions=True,
          name_prefix="LV"),
    Curve("DHFT1.Crv", "frequency_ride_through.over", 4, regions=True, name_prefix="HF"),
    Curve("DLFT1.Crv", "frequency_ride_through.under", 4, regions=True, name_prefix="LF"),
)


@dataclass(frozen=True)
class Control:
    """A controllable object ``target`` (below the LD) and what operating it does.

    ``control`` is a ``SettingsService.CONTROLS`` name, or ``"release"`` (all
    temporary commands released); ``status`` the settings path whose effective
    value the object shows.
    """

    target: str
    control: str
    ctl_model: int
    status: str


CONTROLS: tuple[Control, ...] = (
    Control("DRCC1.Conn", "connect", _SBO, "enter_service.enabled"),
    Control("DRCC1.RlsCmd", "release", _DIRECT, ""),
    Control("DWMX1.WMaxLimPct", "p_limit_pct", _DIRECT, "active_power_limit.p_limit_pct"),
    Control("DWMX1.ModEna", "p_limit_enabled", _DIRECT, "active_power_limit.enabled"),
    Control("DFPF1.ModEna", "fixed_pf_enabled", _DIRECT, "fixed_pf.enabled"),
    Control("DVAR1.ModEna", "constant_var_enabled", _DIRECT, "constant_var.enabled"),
    Control("DVVR1.ModEna", "volt_var_enabled", _DIRECT, "volt_var.enabled"),
    Control("DVWC1.ModEna", "volt_watt_enabled", _DIRECT, "volt_watt.enabled"),
    Control("DHFW1.ModEna", "freq_watt_enabled", _DIRECT, "freq_watt.enabled"),
)

#: status_view()["functions"] name -> (LN, FctAct DO, FctFlw DO) rows.
FUNCTION_STATUS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "voltage_ride_through": (("DHVT1", "FctAct", "FctFlw"), ("DLVT1", "FctAct", "FctFlw")),
    "frequency_ride_through": (("DHFT1", "FctAct", "FctFlw"), ("DLFT1", "FctAct", "FctFlw")),
    "anti_islanding": (("PFRC1", "FctAct", "FctFlw"),),
    "enter_service": (("DESE1", "FctAct", "FctFlw"),),
    "volt_var": (("DVVR1", "FctAct", "FctFlw"),),
    "fixed_pf": (("DFPF1", "FctAct", "FctFlw"),),
    "constant_var": (("DVAR1", "FctAct", "FctFlw"),),
    "volt_watt": (("DVWC1", "FctAct", "FctFlw"),),
    "freq_watt": (("DHFW1", "FctAct", "FctFlw"),),
    "active_power_limit": (("DWMX1", "FctAct", "FctFlw"),),
    "ramp": (("DRCT1", "RmpAct", "RmpFlw"),),
}


def status_values(view: Mapping[str, Any]) -> dict[str, Any]:
    """Data point (below the LD) -> value for a ``Controller.status_view()`` dict.

    None marks the point invalid (not known / not applicable).
    """
    sp = view.get("setpoints") or {}
    out: dict[str, Any] = {
        "DRCS1.CtlSt": code_of(OPERATING_STATES, view.get("state")),
        "DRCS1.Trip": bool(view.get("tripped")),
        "DRCS1.OosCause": view.get("out_of_service_cause") or "",
        "DRCS1.VRgn": view.get("voltage_region") or "",
        "DRCS1.HzRgn": view.get("frequency_region") or "",
        "DRCS1.AISt": code_of(AI_STATES, view.get("anti_islanding")),
        "DRCS1.NotFlw": ", ".join(sorted(view.get("not_followed") or {})),
        "DRCS1.WLimPct": sp.get("p_limit_pct"),
        "DRCS1.PFSpt": sp.get("pf"),
        "DRCS1.VArSptPct": sp.get("q_pct"),
        "DESE1.RmgTms": view.get("enter_service_remaining_s"),
    }
    functions = view.get("functions") or {}
    for name, rows in FUNCTION_STATUS.items():
        state = functions.get(name) or {}
        for ln, act, flw in rows:
            out[f"{ln}.{act}"] = bool(state.get("active"))
            out[f"{ln}.{flw}"] = state.get("followed")
    return out


# ---------------------------------------------------------------- the model

def _function_lns() -> tuple[LogicalNodeSpec, ...]:
    ctl = {c.target: c for c in CONTROLS}
    return (
        _ln("DRCS",
            DataObjectSpec("CtlSt", Cdc.ENS, desc="operating state: " + ", ".join(
                f"{i} {n}" for i, n in enumerate(OPERATING_STATES, 1))),
            _sps("Trip", "tripped (clearing time, ROCOF or inverter anti-islanding trip)"),
            DataObjectSpec("OosCause", Cdc.VSS, desc="why out of service"),
            DataObjectSpec("VRgn", Cdc.VSS, desc="voltage region (NN, HV1, LV2 ...)"),
            DataObjectSpec("HzRgn", Cdc.VSS, desc="frequency region"),
            DataObjectSpec("AISt", Cdc.ENS, desc="anti-islanding: " + ", ".join(
                f"{i} {n}" for i, n in enumerate(AI_STATES, 1))),
            DataObjectSpec("NotFlw", Cdc.VSS, desc="commands the inverter does not follow"),
            DataObjectSpec("WLimPct", Cdc.MV, desc="active power limit commanded, %"),
            DataObjectSpec("PFSpt", Cdc.MV, desc="power factor commanded"),
            DataObjectSpec("VArSptPct", Cdc.MV, desc="reactive power commanded, %"),
            _spg("AIEna", "anti-islanding supervision enabled"),
            _spg("AICeaseDis", "cease to energize when the inverter reports AI disabled")),
        _ln("DRCC",
            DataObjectSpec("Conn", Cdc.DPC, ctl_model=ctl["DRCC1.Conn"].ctl_model,
                           desc="connect (permit service) / disconnect (cease to energize)"),
            DataObjectSpec("RlsCmd", Cdc.SPC, ctl_model=_DIRECT,
                           desc="true releases every temporary command; stVal: some active")),
        _ln("DWMX", *_ena("limit maximum active power"),
            _asg("WMaxSptPct", desc="active power limit, % of rated W"),
            DataObjectSpec("WMaxLimPct", Cdc.APC, ctl_model=_DIRECT,
                           desc="temporary active power limit, %; enables the limit"),
            _mod_ena("limit maximum active power"), *_status()),
        _ln("DFPF", *_ena("constant power factor"),
            _asg("PFGnTgtSpt", desc="power factor setpoint"),
            _spg("PFAbs", "true: absorbing (under-excited)"),
            _asg("PFMinInj", desc="lowest pf injecting"),
            _asg("PFMinAbs", desc="lowest pf absorbing"),
            _mod_ena("constant power factor"), *_status()),
        _ln("DVAR", *_ena("constant reactive power"),
            _asg("VArTgtSptPct", desc="reactive power, % (+ inject)"),
            _mod_ena("constant reactive power"), *_status()),
        _ln("DVVR", *_ena("volt-var"),
            _curve("Crv", 8, desc="xVal V % of nominal, yVal Q % (+ inject)"),
            _asg("RspTms", "dimensionless", "open-loop response time, s"),
            _asg("VRef", desc="VRef, % of nominal"), _spg("VRefAuto", "autonomous VRef"),
            _asg("VRefTms", desc="VRef time constant, s"),
            _asg("VRefMin", desc="lowest VRef, %"), _asg("VRefMax", desc="highest VRef, %"),
            _spg("QBaseVAr", "true: Q % of rated var, false: of rated VA"),
            _mod_ena("volt-var"), *_status()),
        _ln("DVWC", *_ena("volt-watt"),
            _curve("Crv", 8, desc="xVal V % of nominal, yVal P % of rated W"),
            _asg("RspTms", desc="open-loop response time, s"),
            _mod_ena("volt-watt"), *_status()),
        _ln("DHFW", *_ena("frequency-watt"),
            _asg("DbOfHz", "Hz", "over-frequency deadband"),
            _asg("DbUfHz", "Hz", "under-frequency deadband"),
            _asg("KOfPct", desc="over-frequency droop, %"),
            _asg("KUfPct", desc="under-frequency droop, %"),
            _asg("RspTms", desc="open-loop response time, s"),
            _asg("WMinPct", desc="lowest active power, %"),
            _mod_ena("frequency-watt"), *_status()),
        _ln("DESE",
            _spg("SvcPmt", "permit service (false: cease to energize)"),
            _asg("VLo", desc="window low voltage, %"), _asg("VHi", desc="window high voltage, %"),
            _asg("HzLo", "Hz", "window low frequency"), _asg("HzHi", "Hz", "window high frequency"),
            _asg("DlTms", desc="delay, s"), _asg("RndDlTms", desc="random delay, s"),
            _asg("RmpTms", desc="ramp time, s"),
            DataObjectSpec("RmgTms", Cdc.MV, desc="enter-service time remaining, s"),
            *_status()),
        *(_ln(cls, *_ena(desc), _asg("TripMgnTms", desc="backup trip margin, s"),
              _curve("Crv", 4, regions=True, desc=desc + " regions"), *_status())
          for cls, desc in (("DHVT", "voltage ride-through over"),
                            ("DLVT", "voltage ride-through under"),
                            ("DHFT", "frequency ride-through over"),
                            ("DLFT", "frequency ride-through under"))),
        _ln("PFRC", *_ena("ROCOF trip"), _asg("StrVal", desc="ROCOF threshold, Hz/s"),
            _asg("OpDlTms", desc="ROCOF time, s"), *_status()),
    )


#: Members of the two data sets (hosted by LLN0).
MEASUREMENTS = tuple(f"MMXU1.{d} [MX]" for d in ("TotW", "TotVAr", "TotVA", "TotPF", "Hz",
                                                   "PhV", "A"))
EVENTS = ("DRCS1.Trip [ST]", "DRCS1.CtlSt [ST]", "DRCS1.AISt [ST]", "DRCS1.VRgn [ST]",
          "DRCS1.HzRgn [ST]", "DGEN1.DEROpSt [ST]", "DGEN1.Alm [ST]", "LLN0.Health [ST]",
          "DRCC1.Conn [ST]", "DRCC1.RlsCmd [ST]",
          *(f"{ln}.{act} [ST]" for rows in FUNCTION_STATUS.values() for ln, act, _ in rows))
#: Report control block instances per data set (one per concurrent client).
RCB_INSTANCES = 3


#: Trigger options and optional fields of every report control block served.
REPORT_TRIGGERS = (nat.TRG_OPT_DATA_CHANGED | nat.TRG_OPT_QUALITY_CHANGED
                   | nat.TRG_OPT_INTEGRITY | nat.TRG_OPT_GI)
REPORT_FIELDS = (nat.RPT_OPT_SEQ_NUM | nat.RPT_OPT_TIME_STAMP | nat.RPT_OPT_REASON_FOR_INCLUSION
                 | nat.RPT_OPT_DATA_SET | nat.RPT_OPT_CONF_REV)


def _reports() -> tuple[ReportSpec, ...]:
    trg, opt = REPORT_TRIGGERS, REPORT_FIELDS
    out = []
    for i in range(1, RCB_INSTANCES + 1):
        out.append(ReportSpec(f"urcbMeas{i:02d}", "Meas", False, "Meas", trg, opt, buf_tm_ms=10))
    for i in range(1, RCB_INSTANCES + 1):
        out.append(ReportSpec(f"brcbEvents{i:02d}", "Events", True, "Events", trg,
                              opt | nat.RPT_OPT_ENTRY_ID | nat.RPT_OPT_BUFFER_OVERFLOW,
                              buf_tm_ms=50))
    return tuple(out)


def functions_model_spec(ld_inst: str = DEFAULT_LD_INST) -> ModelSpec:
    """The DER model plus the function logical nodes, data sets and reports."""
    base = der_model_spec(ld_inst)
    (ld,) = base.logical_devices
    drct_extra = (_asg("HzNom", "Hz", "nominal frequency"),
                  _asg("VArMaxPct", desc="reactive capability, % of rated VA"),
                  _spg("RmpEna", "ramp rate limits enabled"),
                  _asg("RmpUpRte", desc="ramp up, %/s (<0 none)"),
                  _asg("RmpDnRte", desc="ramp down, %/s (<0 none)"),
                  _spg("InvMeasCease", "invalid measurements: true cease, false stand aside"),
                  _asg("InvMeasHoldTms", desc="hold time on invalid measurements, s"),
                  _sps("RmpAct", "ramp limiting now"), _sps("RmpFlw", "inverter follows ramp"))
    lns = tuple(dataclasses.replace(ln, data_objects=ln.data_objects + drct_extra)
                if ln.name == "DRCT1" else ln for ln in ld.logical_nodes)
    new_ld = LogicalDeviceSpec(ld.inst, lns + _function_lns(),
                               (DataSetSpec("Meas", MEASUREMENTS),
                                DataSetSpec("Events", EVENTS)), _reports())
    return ModelSpec((new_ld,), base.bindings)


def curve_paths(curve: Curve) -> list[str]:
    """Attribute paths (below the LD) of every served field of a curve."""
    return [f"{curve.target}.{CURVE_ARRAY}.{i}.{f}" for i in range(curve.points)
            for f in curve.fields]
