"""Grid-support functions as IEC 61850-7-420 Edition 2 logical nodes: model, settings
map, status map.

Extends :func:`~inverter_agent.adapters.mms.der_model.der_model_spec` (same logical
device) with one logical node per Rule 21 / IEEE 1547-2018 function, in the
class 7-420 Ed.2 gives it (the NSD files are the authority; the tests check
every name, CDC, FC and mandatory object against them):

======  ================================  =========================================
LN      Function                          Settings (SP) / controls (CO) / status
======  ================================  =========================================
DWMX1   limit maximum active power        Mod, WMaxSptPct (APC), RpuMax, RpdMax;
                                          WMaxLimPct* (temporary)
DFPF1   constant power factor             Mod, PFGnTgtSpt (APC), PFGnExtQud (SPC)
DVAR1   constant reactive power           Mod, VArTgtSptPct (APC)
DVVR1   volt-var                          Mod, VVArCrv, RspTmms, VRefPct, VRefAdjEna,
                                          VRefTmms, VRefMinPct*, VRefMaxPct*, QBaseVAr*
DVWC1   volt-watt                         Mod, VWCrv, RspTmms
DHFW1   frequency-watt (droop)            Mod, WGra, ChaWGra, HzStr, DbUfHz*, WMinPct*,
                                          RspTmms
DWGC1   set active power (storage)        Mod, WSpt (APC, W: + discharge, - charge),
                                          SocUseMinPct (reserve), ReqW (commanded);
                                          the battery itself: DSTO1, DBAT1
                                          (``storage_model``)
DCTE1   enter service, cease to energize  RtnSvcAuth (SPC), CeaEgzReqCtl (temporary),
                                          VLoLim, VHiLim, HzLoLim, HzHiLim, RtnDlTmms,
                                          WinTms, RtnRmpTmms
DHVT1.. voltage / frequency ride-through  Mod, ModRtSt, TrZnSt, CeaZnSt, PrmZnSt,
DLFT1                                     RtCrv* (regions), TrMgnTmms*
PFRC1   ROCOF (anti-islanding backup)     Mod, StrVal, OpDlTmms, Str, Op
======  ================================  =========================================

``*`` private objects (``dataNs`` = :data:`~inverter_agent.adapters.mms.der_model.EXT_NS`).
Every function LN has Beh, Mod (the persisted enable: operate 1 on / 5 off),
Health (the inverter follows it) and InEcpRef. Settings under FC SP are
written (``SETTINGS``, ``CURVES``); settings 7-420 makes controllable are
operated (``SETTING_CONTROLS``); temporary commands are ``CONTROLS``;
:func:`writable_settings` lists every writable setting. ``OFFERED`` /
``NOT_OFFERED`` say, for every registered grid function, which LNs carry it.
``docs/iec61850-model.md`` is the full map (units, ranges, roles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inverter_agent.functions import FUNCTIONS, SettingsError

from . import _native as nat
from .der_model import DEFAULT_LD_INST, EXT_NS, der_model_spec, ecp_ref
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

#: DGEN1.CtlSt codes (engine OperatingState); 0 = unknown.
OPERATING_STATES = ("out_of_service", "ramping", "continuous", "momentary_cessation",
                    "safe_hold", "safe_cease")
#: DECP1.AISt codes (anti-islanding status); 0 = unknown.
AI_STATES = ("ok", "not_reported", "disabled_alarm", "tripped")
#: Ride-through region ``mode`` codes (RegionMode values); 0 is invalid.
REGION_MODES = ("continuous", "mandatory_operation", "permissive_operation",
                "momentary_cessation", "must_trip")


def code_of(names: tuple[str, ...], name: Any) -> int:
    """1-based code of ``name`` in ``names``; 0 if unknown."""
    return names.index(name) + 1 if name in names else 0


# ---------------------------------------------------------------- settings map

F_NOM = "nameplate.f_nom_hz"

@dataclass(frozen=True)
class Setting:
    """One scalar setting: ``target`` attribute (below the LD) <-> settings ``path``.

    kind: ``float`` (mms = value * scale), ``opt_float`` (None <-> exactly -1),
    ``bool``, ``flag`` (bool <-> ``path`` == ``when_true`` / ``when_false``),
    ``ms`` (an ING in milliseconds <-> seconds; the standard's ``...Tmms``) or
    ``s`` (an ING in whole seconds, the standard's ``...Tms``), ``per_hz``
    (a droop fraction shown as a gradient in % of rated W per Hz: 100 / (k *
    HzNom)) or ``above_nom`` (a deadband shown as the absolute frequency HzNom +
    deadband); these two read ``nameplate.f_nom_hz`` from the settings.
    """

    target: str
    path: str
    kind: str = "float"
    scale: float = 1.0
    when_true: str = ""
    when_false: str = ""

    def to_mms(self, settings: Mapping[str, Any]) -> Any:
        value = get_path(settings, self.path)
        if self.kind == "per_hz":
            return 100.0 / (value * get_path(settings, F_NOM)) if value else 0.0
        if self.kind == "above_nom":
            return get_path(settings, F_NOM) + value
        if self.kind == "bool":
            return bool(value)
        if self.kind == "flag":
            return value == self.when_true
        if self.kind == "ms":
            return -1 if value is None else int(round(float(value) * 1000))
        if self.kind == "s":
            return -1 if value is None else int(round(float(value)))
        if value is None:
            return -1.0
        return float(value) * self.scale

    def to_setting(self, value: Any, settings: Mapping[str, Any] | None = None) -> Any:
        """The settings value for an MMS ``value``; ``settings`` (the persisted ones) are
        needed by the kinds that depend on the nominal frequency."""
        if self.kind in ("bool", "flag"):
            if not isinstance(value, bool):
                raise SettingsError(f"{self.path} = {value!r}: must be true or false")
            return (self.when_true if value else self.when_false) if self.kind == "flag" else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{self.path} = {value!r}: must be a number")
        if self.kind in ("ms", "s"):
            if not isinstance(value, int):
                raise SettingsError(f"{self.path} = {value!r}: an integer number of "
                                    f"{'milliseconds' if self.kind == 'ms' else 'seconds'}")
            return clean(value / 1000) if self.kind == "ms" else float(value)
        if self.kind in ("per_hz", "above_nom"):
            f_nom, value = get_path(settings or {}, F_NOM), clean(value)
            if self.kind == "above_nom":
                return clean(value - f_nom)
            if value <= 0:
                raise SettingsError(f"{self.path}: gradient {value!r} must be > 0")
            return clean(100.0 / (value * f_nom))
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


def _asg(name: str, unit: str = "dimensionless", desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.ASG, options=_OPT_UNIT,
                          init={"units.SIUnit": SI_UNIT.get(unit, 1)}, desc=desc, ns=ns)


def _ing(name: str, desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.ING, desc=desc, ns=ns)


def _spg(name: str, desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.SPG, desc=desc, ns=ns)


def _sps(name: str, desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.SPS, desc=desc, ns=ns)


def _mv(name: str, desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.MV, desc=desc, ns=ns)


def _vss(name: str, desc: str = "", ns: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.VSS, desc=desc, ns=ns)


def _curve(name: str, points: int, x: tuple[str, str], y: tuple[str, str],
           regions: bool = False, desc: str = "", ns: str = "") -> DataObjectSpec:
    """A CSG: ``x``/``y`` are (unit, description) of the axes."""
    fields = ((("xVal", nat.DA_FLOAT32), ("yVal", nat.DA_FLOAT32), ("rtTms", nat.DA_FLOAT32),
               ("mode", nat.DA_INT32), ("incl", nat.DA_BOOLEAN)) if regions
              else (("xVal", nat.DA_FLOAT32), ("yVal", nat.DA_FLOAT32)))
    init = {"maxPts": points, "xUnits.SIUnit": SI_UNIT.get(x[0], 1), "xD": x[1],
            "yUnits.SIUnit": SI_UNIT.get(y[0], 1), "yD": y[1]}
    return DataObjectSpec(name, Cdc.CSG, points=points, fields=fields, desc=desc, init=init,
                          ns=ns)


def _mod(desc: str) -> DataObjectSpec:
    """LN Mod, controllable: on (1) / off (5) enables the function (a persisted setting)."""
    return DataObjectSpec("Mod", Cdc.ENC, ctl_model=_DIRECT, enum="BehaviourModeKind",
                          desc=f"{desc}: 1 on / 5 off (persisted setting)")


def _health() -> DataObjectSpec:
    return DataObjectSpec("Health", Cdc.ENS, enum="HealthKind",
                          desc="1 Ok: the inverter follows the function; 2 Warning: it does "
                               "not; 3 Alarm: the inverter's own function refused the "
                               "gateway's program or was changed at its panel; invalid: "
                               "not applicable")


def _beh() -> DataObjectSpec:
    return DataObjectSpec("Beh", Cdc.ENS, init={"stVal": 1}, enum="BehaviourModeKind")


def _function_ln(ln_class: str, desc: str, *dos: DataObjectSpec) -> LogicalNodeSpec:
    """A 7-420 function LN: Beh and Mod (enable), Health (followed), InEcpRef, ``dos``."""
    return LogicalNodeSpec(ln_class, "1", (_beh(), _mod(desc), _health(), ecp_ref(), *dos))


def _ext(do: DataObjectSpec) -> DataObjectSpec:
    return dataclasses.replace(do, ns=EXT_NS)


# ---------------------------------------------------------------- the tables

_RAMPED = ("DWMX1", "DFPF1", "DVAR1", "DVVR1", "DVWC1", "DHFW1", "DWGC1")  # RampRatesLN: RmpRteUse
_RIDE_THROUGH = (("DHVT1", "voltage_ride_through", "over"),
                 ("DLVT1", "voltage_ride_through", "under"),
                 ("DHFT1", "frequency_ride_through", "over"),
                 ("DLFT1", "frequency_ride_through", "under"))

#: Scalar settings written under FC SP (target below the LD -> settings path).
SETTINGS: tuple[Setting, ...] = (
    Setting("DECP1.HzNom.setMag.f", "nameplate.f_nom_hz"),
    Setting("DINV1.VArMaxPct.setMag.f", "nameplate.var_max_pct"),
    *(Setting(f"{ln}.RmpRteUse.setVal", "ramp.enabled", "bool") for ln in _RAMPED),
    Setting("DGEN1.WRmp.setMag.f", "ramp.up_pct_per_s", "opt_float"),
    Setting("DWMX1.RpuMax.setMag.f", "ramp.up_pct_per_s", "opt_float"),
    Setting("DWMX1.RpdMax.setMag.f", "ramp.down_pct_per_s", "opt_float"),
    Setting("DGEN1.InvMsCease.setVal", "safety.on_invalid_measurements", "flag",
            when_true="cease_to_energize", when_false="stand_aside"),
    Setting("DGEN1.InvMsHldTmms.setVal", "safety.hold_s", "ms"),
    Setting("DECP1.AIEna.setVal", "anti_islanding.enabled", "bool"),
    Setting("DECP1.AICeaseDis.setVal", "anti_islanding.cease_on_disabled", "bool"),
    Setting("DGEN1.OvPFRtg.setMag.f", "fixed_pf.pf_min_injecting"),
    Setting("DGEN1.UnPFRtg.setMag.f", "fixed_pf.pf_min_absorbing"),
    Setting("DVVR1.RspTmms.setVal", "volt_var.response_time_s", "ms"),
    Setting("DVVR1.VRefPct.setMag.f", "volt_var.vref_pu", scale=100.0),
    Setting("DVVR1.VRefAdjEna.setVal", "volt_var.vref_auto", "bool"),
    Setting("DVVR1.VRefTmms.setVal", "volt_var.vref_time_s", "ms"),
    Setting("DVVR1.VRefMinPct.setMag.f", "volt_var.vref_min_pu", scale=100.0),
    Setting("DVVR1.VRefMaxPct.setMag.f", "volt_var.vref_max_pu", scale=100.0),
    Setting("DVVR1.QBaseVAr.setVal", "volt_var.q_base", "flag",
            when_true="rated_var", when_false="rated_va"),
    Setting("DVWC1.RspTmms.setVal", "volt_watt.response_time_s", "ms"),
    Setting("DHFW1.HzStr.setMag.f", "freq_watt.db_of_hz", "above_nom"),
    Setting("DHFW1.DbUfHz.setMag.f", "freq_watt.db_uf_hz"),
    Setting("DHFW1.WGra.setMag.f", "freq_watt.k_of", "per_hz"),
    Setting("DHFW1.ChaWGra.setMag.f", "freq_watt.k_uf", "per_hz"),
    Setting("DHFW1.RspTmms.setVal", "freq_watt.response_time_s", "ms"),
    Setting("DHFW1.WMinPct.setMag.f", "freq_watt.p_min_pct"),
    Setting("DCTE1.VLoLim.setMag.f", "enter_service.v_low_pu", scale=100.0),
    Setting("DCTE1.VHiLim.setMag.f", "enter_service.v_high_pu", scale=100.0),
    Setting("DCTE1.HzLoLim.setMag.f", "enter_service.f_low_hz"),
    Setting("DCTE1.HzHiLim.setMag.f", "enter_service.f_high_hz"),
    Setting("DCTE1.RtnDlTmms.setVal", "enter_service.delay_s", "ms"),
    Setting("DCTE1.WinTms.setVal", "enter_service.random_delay_s", "s"),
    Setting("DCTE1.RtnRmpTmms.setVal", "enter_service.ramp_time_s", "ms"),
    Setting("DHVT1.TrMgnTmms.setVal", "voltage_ride_through.trip_margin_s", "ms"),
    Setting("DHFT1.TrMgnTmms.setVal", "frequency_ride_through.trip_margin_s", "ms"),
    Setting("PFRC1.StrVal.setMag.f", "anti_islanding.rocof_hz_per_s"),
    Setting("PFRC1.OpDlTmms.setVal", "anti_islanding.rocof_time_s", "ms"),
    Setting("DWGC1.SocUseMinPct.setMag.f", "set_active_power.reserve_pct"),
)

CURVES: tuple[Curve, ...] = (
    Curve("DVVR1.VVArCrv", "volt_var.curve", 8, "v_pu", "q_pct", x_scale=100.0),
    Curve("DVWC1.VWCrv", "volt_watt.curve", 8, "v_pu", "p_pct", x_scale=100.0),
    Curve("DHVT1.RtCrv", "voltage_ride_through.over", 4, y_scale=100.0, regions=True,
          name_prefix="HV"),
    Curve("DLVT1.RtCrv", "voltage_ride_through.under", 4, y_scale=100.0, regions=True,
          name_prefix="LV"),
    Curve("DHFT1.RtCrv", "frequency_ride_through.over", 4, regions=True, name_prefix="HF"),
    Curve("DLFT1.RtCrv", "frequency_ride_through.under", 4, regions=True, name_prefix="LF"),
)


@dataclass(frozen=True)
class SettingControl:
    """A setting the standard makes a controllable object (APC set point, LN ``Mod``,
    SPC authorisation): operating ``target`` writes settings ``path`` like an SP
    write does (validated, persisted before the positive response).

    kind: ``mod`` (ENC ctlVal 1 on / 5 off <-> bool), ``float`` (APC ctlVal.f =
    value * scale), ``bool`` (SPC) or ``not`` (SPC showing the negation).
    ``clears``: a settings path set to None with it (the same setpoint's other form).
    """

    target: str
    path: str
    kind: str
    scale: float = 1.0
    ctl_model: int = _DIRECT
    clears: str = ""

    def to_setting(self, value: Any) -> Any:
        if self.kind == "mod":
            if isinstance(value, bool) or value not in (1, 5):
                raise SettingsError(f"{self.path}: ctlVal {value!r}: 1 (on) or 5 (off)")
            return value == 1
        if self.kind in ("bool", "not"):
            if not isinstance(value, bool):
                raise SettingsError(f"{self.path}: ctlVal {value!r}: true or false")
            return value if self.kind == "bool" else not value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{self.path}: ctlVal {value!r} is not a number")
        return clean(value / self.scale)

    def to_mms(self, settings: Mapping[str, Any]) -> Any:
        value = get_path(settings, self.path)
        if self.kind == "mod":
            return 1 if value else 5
        if self.kind in ("bool", "not"):
            return bool(value) == (self.kind == "bool")
        return float(value) * self.scale


_FUNCTION_PATHS = (("DWMX1", "active_power_limit"), ("DFPF1", "fixed_pf"),
                   ("DVAR1", "constant_var"), ("DVVR1", "volt_var"), ("DVWC1", "volt_watt"),
                   ("DHFW1", "freq_watt"), ("PFRC1", "anti_islanding.rocof"),
                   ("DWGC1", "set_active_power"),
                   *((ln, group) for ln, group, _ in _RIDE_THROUGH))

#: Settings operated as controls (direct-with-normal-security).
SETTING_CONTROLS: tuple[SettingControl, ...] = (
    *(SettingControl(f"{ln}.Mod", "anti_islanding.rocof_enabled" if ln == "PFRC1"
                     else f"{group}.enabled", "mod") for ln, group in _FUNCTION_PATHS),
    SettingControl("DWMX1.WMaxSptPct", "active_power_limit.p_limit_pct", "float"),
    SettingControl("DFPF1.PFGnTgtSpt", "fixed_pf.pf", "float"),
    SettingControl("DFPF1.PFGnExtQud", "fixed_pf.absorbing", "not"),
    SettingControl("DVAR1.VArTgtSptPct", "constant_var.q_pct", "float"),
    SettingControl("DCTE1.RtnSvcAuth", "enter_service.enabled", "bool"),
    # set active power (storage): + discharge, - charge; W, or % of rated W
    SettingControl("DWGC1.WSpt", "set_active_power.w", "float",
                   clears="set_active_power.w_pct"),
)


@dataclass(frozen=True)
class Control:
    """A temporary command ``target`` (below the LD) and what operating it does.

    ``control`` is a ``SettingsService.CONTROLS`` name, or ``"release"`` (all
    temporary commands released); ``status`` the settings path whose effective
    value the object shows. ``values`` maps the ctlVal (ENC) to the command's value.
    """

    target: str
    control: str
    ctl_model: int
    status: str
    values: tuple[tuple[int, bool], ...] = ()


CONTROLS: tuple[Control, ...] = (
    # 7-420 DCTE: 1 cease to energize, 2 return to service (temporary: communication loss reverts)
    Control("DCTE1.CeaEgzReqCtl", "connect", _SBO, "enter_service.enabled",
            values=((1, False), (2, True))),
    Control("DGEN1.RlsCmd", "release", _DIRECT, ""),
    Control("DWMX1.WMaxLimPct", "p_limit_pct", _DIRECT, "active_power_limit.p_limit_pct"),
)


def writable_settings() -> list[tuple[str, str, str]]:
    """Every setting a client can change: (target below the LD, settings path, route).

    route: ``SP`` (write), ``CO`` (operate a controllable setting) or ``curve``.
    """
    return ([(s.target, s.path, "SP") for s in SETTINGS]
            + [(c.target, c.path, "CO") for c in SETTING_CONTROLS]
            + [(c.target, c.path, "curve") for c in CURVES])


#: status_view()["functions"] name -> (LN, DO showing "acting now" or "") rows; the
#: LN's Health shows whether the inverter follows the function.
FUNCTION_STATUS: dict[str, tuple[tuple[str, str], ...]] = {
    "voltage_ride_through": (("DHVT1", "ModRtSt"), ("DLVT1", "ModRtSt")),
    "frequency_ride_through": (("DHFT1", "ModRtSt"), ("DLFT1", "ModRtSt")),
    "anti_islanding": (("PFRC1", "Str"),),
    "enter_service": (("DCTE1", ""),),
    "volt_var": (("DVVR1", ""),),
    "fixed_pf": (("DFPF1", ""),),
    "constant_var": (("DVAR1", ""),),
    "volt_watt": (("DVWC1", ""),),
    "freq_watt": (("DHFW1", ""),),
    "active_power_limit": (("DWMX1", ""),),
    "ramp": (),
    "set_active_power": (("DWGC1", ""),),
}



def _carriers() -> dict[str, str]:
    """Registered function -> the logical nodes that carry it (its writable settings
    and its status rows), from the tables above."""
    lns: dict[str, set[str]] = {}
    for target, path, _ in writable_settings():
        lns.setdefault(path.split(".")[0], set()).add(target.split(".")[0])
    for name, rows in FUNCTION_STATUS.items():
        lns.setdefault(name, set()).update(ln for ln, _ in rows)
    return {f.name: ", ".join(sorted(lns[f.name])) for f in FUNCTIONS if lns.get(f.name)}


#: Every registered grid function this model serves -> the LNs that carry it.
OFFERED: dict[str, str] = _carriers()
#: Registered functions the model does not serve -> why (none: 7-420 has an LN for each).
NOT_OFFERED: dict[str, str] = {}

_HEALTH_OK, _HEALTH_WARNING, _HEALTH_ALARM = 1, 2, 3
#: Function LN -> the functions the inverter may run itself from the gateway's program
#: (status "steering" names): an alarm naming one (its program refused, changed at
#: the panel) makes that LN's Health Alarm.
STEERED_BY: dict[str, tuple[str, ...]] = {
    "DVVR1": ("volt_var",), "DVWC1": ("volt_watt",), "DCTE1": ("enter_service",),
    "DHFW1": ("freq_watt",), "DHVT1": ("hv_trip",), "DLVT1": ("lv_trip",),
    "DHFT1": ("hf_trip",), "DLFT1": ("lf_trip",)}


#: The private object each LN of :data:`STEERED_BY` carries: who runs the function.
STEERING_DO = "FctExeBy"


def _steering_do() -> DataObjectSpec:
    return _ext(DataObjectSpec(
        STEERING_DO, Cdc.VSS, desc="who carries the function: 'native: <why>' (the "
        "inverter's own, programmed by the gateway), 'gateway: <why>' (steered by "
        "immediate controls), 'device: <why>' (the inverter's own settings, untouched); "
        "invalid while not known"))


def with_steering(lns: tuple[LogicalNodeSpec, ...]) -> tuple[LogicalNodeSpec, ...]:
    """Each function LN the inverter may run itself gains :data:`STEERING_DO`."""
    return tuple(dataclasses.replace(ln, data_objects=(*ln.data_objects, _steering_do()))
                 if ln.name in STEERED_BY else ln for ln in lns)


def steering_text(choices: Mapping[str, Mapping[str, str]], names: tuple[str, ...]
                  ) -> str | None:
    """``'native: why'`` for the LN's functions (joined by ``'; '`` if several, at most
    255 characters: a VSS)."""
    parts = [f"{c.get('by')}: {c.get('why')}" for n in names if (c := choices.get(n))]
    return "; ".join(parts)[:255] if parts else None


def status_values(view: Mapping[str, Any]) -> dict[str, Any]:
    """Data point (below the LD) -> value for a ``Controller.status_view()`` dict.

    None marks the point invalid (not known / not applicable).
    """
    sp = view.get("setpoints") or {}
    functions = view.get("functions") or {}
    out: dict[str, Any] = {
        "DGEN1.CtlSt": code_of(OPERATING_STATES, view.get("state")),
        "DGEN1.Trip": bool(view.get("tripped")),
        "DGEN1.OosCause": view.get("out_of_service_cause") or "",
        "DGEN1.VRgn": view.get("voltage_region") or "",
        "DGEN1.HzRgn": view.get("frequency_region") or "",
        "DGEN1.NotFlw": ", ".join(sorted(view.get("not_followed") or {})),
        "DECP1.AISt": code_of(AI_STATES, view.get("anti_islanding")),
        "DWMX1.ReqWMaxPct": sp.get("p_limit_pct"),
        "DFPF1.ReqPF": sp.get("pf"),
        "DVAR1.ReqVArPct": sp.get("q_pct"),
        "DCTE1.RtnRmgTms": view.get("enter_service_remaining_s"),
        "PFRC1.Op": bool(view.get("tripped")) and view.get("anti_islanding") == "tripped",
        "DECP1.EcpIsldSt": (None if view.get("anti_islanding") is None
                            else 4 if view.get("anti_islanding") == "tripped" else 3),
        # the utility protocol client's link, if one runs (cli.py adds it to the view)
        "LCCH1.ChLiv": (None if not view.get("utility")
                        else view["utility"].get("state") == "connected"),
    }
    for name, rows in FUNCTION_STATUS.items():
        state = functions.get(name) or {}
        followed = state.get("followed")
        for ln, act in rows:
            if act:
                out[f"{ln}.{act}"] = bool(state.get("active"))
            out[f"{ln}.Health"] = (None if followed is None
                                   else _HEALTH_OK if followed else _HEALTH_WARNING)
    alarms = tuple(view.get("alarms") or ())
    choices = view.get("steering") or {}
    for ln, names in STEERED_BY.items():
        if any(a.startswith(f"{name}:") for a in alarms for name in names):
            out[f"{ln}.Health"] = _HEALTH_ALARM
        out[f"{ln}.{STEERING_DO}"] = steering_text(choices, names)
    return out


_ZONES = (("TrZnSt", "must_trip"), ("CeaZnSt", "momentary_cessation"),
          ("PrmZnSt", "permissive_operation"))


def zone_values(view: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ride-through LNs' zone states from the region the controller reports and the
    region table (settings) that names its mode."""
    out: dict[str, Any] = {}
    for ln, group, side in _RIDE_THROUGH:
        key = "voltage_region" if group.startswith("voltage") else "frequency_region"
        region = view.get(key)
        modes = {r["name"]: r["mode"] for r in get_path(settings, f"{group}.{side}")}
        mode = modes.get(region) if region else None
        for do, wanted in _ZONES:
            out[f"{ln}.{do}"] = None if region is None else mode == wanted
    return out


# ---------------------------------------------------------------- the model

def _status_only_apc(name: str, desc: str) -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.APC, desc=desc)  # ctlModel 0: status-only


def _function_lns() -> tuple[LogicalNodeSpec, ...]:
    ramp_use = _spg("RmpRteUse", "ramp rate limits in use (ramp.enabled, shared by all)")
    snapshot = DataObjectSpec("SnptBarEna", Cdc.SPG, init={"setVal": False},
                              desc="snapshot of the pre-event power: not used")
    return (
        _function_ln(
            "DWMX", "limit maximum active power", ramp_use,
            DataObjectSpec("WMaxSptPct", Cdc.APC, ctl_model=_DIRECT,
                           desc="active power limit, % of rated W (persisted setting)"),
            _asg("RpuMax", desc="ramp up, % of rated W per s (-1 none)"),
            _asg("RpdMax", desc="ramp down, % of rated W per s (-1 none)"),
            _ext(DataObjectSpec("WMaxLimPct", Cdc.APC, ctl_model=_DIRECT,
                                desc="temporary active power limit, %; enables the limit; "
                                     "reverted on communication loss")),
            _ext(_mv("ReqWMaxPct", "active power limit commanded, % of rated W"))),
        _function_ln(
            "DFPF", "constant power factor", ramp_use,
            DataObjectSpec("ReqPFExt", Cdc.SPS, desc="requested pf is over-excited "
                                                     "(injecting)"),
            _mv("ReqPF", "power factor commanded"),
            DataObjectSpec("PFGnTgtSpt", Cdc.APC, ctl_model=_DIRECT,
                           desc="power factor set point (persisted setting)"),
            DataObjectSpec("PFGnExtQud", Cdc.SPC, ctl_model=_DIRECT,
                           desc="true: over-excited (injecting), false: absorbing "
                                "(persisted setting)"),
            ),
        _function_ln(
            "DVAR", "constant reactive power", ramp_use,
            _mv("ReqVAr", "reactive power requested, var: not computed (invalid)"),
            DataObjectSpec("VArTgtSptPct", Cdc.APC, ctl_model=_DIRECT,
                           desc="reactive power, % (+ inject) (persisted setting)"),
            _ext(_mv("ReqVArPct", "reactive power commanded, %"))),
        _function_ln(
            "DVVR", "volt-var", ramp_use,
            _mv("ReqVAr", "reactive power requested, var: not computed (invalid)"),
            # ReactivePowerLN wants one of VArTgtSpt / VArTgtSptPct; group 1, as VVArCrv is
            _status_only_apc("VArTgtSpt", "not used by volt-var (status-only)"),
            _mv("VRefEsp", "estimated VRef: not reported (invalid)"),
            _curve("VVArCrv", 8, ("dimensionless", "V, % of nominal"),
                   ("dimensionless", "Q, % (+ inject)"), desc="volt-var curve"),
            _ing("RspTmms", "open-loop response time, ms"),
            _asg("VRefPct", desc="VRef, % of nominal"),
            _spg("VRefAdjEna", "autonomous VRef adjustment"),
            _ing("VRefTmms", "VRef time constant, ms"),
            _ext(_asg("VRefMinPct", desc="lowest VRef, %")),
            _ext(_asg("VRefMaxPct", desc="highest VRef, %")),
            _ext(_spg("QBaseVAr", "true: Q % of rated var, false: of rated VA"))),
        _function_ln(
            "DVWC", "volt-watt", ramp_use, snapshot,
            _mv("ReqW", "active power requested: not computed (invalid)"),
            _mv("VRefEsp", "estimated VRef: not reported (invalid)"),
            _curve("VWCrv", 8, ("dimensionless", "V, % of nominal"),
                   ("dimensionless", "P, % of rated W"), desc="volt-watt curve"),
            _ing("RspTmms", "open-loop response time, ms")),
        _function_ln(
            "DHFW", "frequency-watt", ramp_use, snapshot,
            _mv("ReqW", "active power requested: not computed (invalid)"),
            _asg("WGra", desc="over-frequency droop as a gradient, % of rated W per Hz "
                              "(= 100 / (droop x HzNom))"),
            _asg("ChaWGra", desc="under-frequency droop as a gradient, % of rated W per Hz"),
            _asg("HzStr", "Hz", "over-frequency droop starts, Hz (= HzNom + deadband)"),
            _ing("RspTmms", "open-loop response time, ms"),
            _ext(_asg("DbUfHz", "Hz", "under-frequency deadband")),
            _ext(_asg("WMinPct", desc="lowest active power, %"))),
        _function_ln(
            "DWGC", "set active power (storage: + discharge, - charge)", ramp_use,
            _mv("ReqW", "battery power commanded, W (+ discharge, - charge), after the "
                        "battery's limits and the arbitration; invalid: none"),
            # 7-420 serves one of WSpt / WSptPct (AllOnlyOneGroup): W, a battery's unit
            DataObjectSpec("WSpt", Cdc.APC, ctl_model=_DIRECT,
                           desc="setpoint, W (+ discharge, - charge; persisted setting; "
                                "a % of rated W set elsewhere applies instead until this "
                                "is written)"),
            _asg("SocUseMinPct", desc="reserve the site keeps, % SoC (on top of the "
                                      "device's)")),
        LogicalNodeSpec("DCTE", "1", (
            _beh(), _health(), ecp_ref(),
            DataObjectSpec("CeaEgzReqSt", Cdc.ENS, enum="CeasetoEnergizeStateKind",
                           desc="6 return to service authorized, 4 ceased and not authorized"),
            _sps("CeaEgzReq", "cease to energize requested"),
            DataObjectSpec("CeaEgzReqCtl", Cdc.ENC, ctl_model=_SBO,
                           enum="CeasetoEnergizeStateTransitionKind",
                           desc="1 cease to energize / 2 return to service (temporary "
                                "command); stVal: effective"),
            DataObjectSpec("RtnSvcAuth", Cdc.SPC, ctl_model=_DIRECT,
                           desc="return to service authorized: permit service "
                                "(persisted setting)"),
            DataObjectSpec("RtnSvcAuto", Cdc.SPG, init={"setVal": True},
                           desc="returns to service by itself once the window is met"),
            _ing("RtnRmpTmms", "enter-service ramp time, ms"),
            _ing("RtnDlTmms", "enter-service delay, ms"),
            _ing("WinTms", "random delay window, s"),
            DataObjectSpec("VArLimPct", Cdc.ASG, options=_OPT_UNIT,
                           init={"units.SIUnit": 1, "setMag.f": 100.0},
                           desc="reactive power while entering service: not limited (100)"),
            _asg("VHiLim", desc="window high voltage, % of nominal"),
            _asg("VLoLim", desc="window low voltage, % of nominal"),
            _asg("HzHiLim", "Hz", "window high frequency"),
            _asg("HzLoLim", "Hz", "window low frequency"),
            _ext(_mv("RtnRmgTms", "enter-service time remaining, s")))),
        *(_function_ln(
            cls, desc,
            _sps("ModRtSt", "in ride-through now"),
            _sps("TrZnSt", "in a must-trip region now"),
            _sps("CeaZnSt", "in a momentary-cessation region now"),
            _sps("PrmZnSt", "in a permissive-operation region now"),
            *((_ext(_ing("TrMgnTmms", "backup trip margin, ms (over and under)")),)
              if cls in ("DHVT", "DHFT") else ()),
            _ext(_curve("RtCrv", 4, ("s", "clearing time, s (-1 none)"),
                        ("dimensionless", "threshold, % of nominal or Hz (0 ends)"),
                        regions=True, desc=desc + " regions {xVal clearing s, yVal "
                        "threshold, rtTms ride-through s, mode, incl}")))
          for cls, desc in (("DHVT", "voltage ride-through over"),
                            ("DLVT", "voltage ride-through under"),
                            ("DHFT", "frequency ride-through over"),
                            ("DLFT", "frequency ride-through under"))),
        LogicalNodeSpec("PFRC", "1", (
            _beh(), _mod("ROCOF trip"), _health(),
            DataObjectSpec("Str", Cdc.ACD, desc="ROCOF supervision acting"),
            DataObjectSpec("Op", Cdc.ACT, desc="tripped on anti-islanding"),
            _asg("StrVal", desc="ROCOF threshold, Hz/s"),
            _ing("OpDlTmms", "ROCOF time, ms"))),
        # IEC 61850-7-4 channel supervision, for the utility protocol client's link
        # (IEEE 2030.5): ChLiv false when its server is unreachable; invalid without one.
        LogicalNodeSpec("LCCH", "1", (
            _beh(), _sps("ChLiv", "utility protocol (IEEE 2030.5) server reachable; invalid "
                                  "when no utility client runs"))),
    )


def derived_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Read-only objects computed from the settings (target below the LD -> value)."""
    out: dict[str, Any] = {}
    out["DFPF1.ReqPFExt"] = not get_path(settings, "fixed_pf.absorbing")
    enabled = bool(get_path(settings, "enter_service.enabled"))
    out["DCTE1.CeaEgzReq"] = not enabled
    out["DCTE1.CeaEgzReqSt"] = 6 if enabled else 4
    return out


#: Members of the two data sets (hosted by LLN0).
MEASUREMENTS = tuple(f"MMXU1.{d} [MX]" for d in ("TotW", "TotVAr", "TotVA", "TotPF", "Hz",
                                                   "PhV", "A"))
EVENTS = ("DGEN1.Trip [ST]", "DGEN1.CtlSt [ST]", "DECP1.AISt [ST]", "DGEN1.VRgn [ST]",
          "DGEN1.HzRgn [ST]", "DGEN1.DEROpSt [ST]", "DGEN1.Health [ST]", "LLN0.Health [ST]",
          "DCTE1.CeaEgzReqCtl [ST]", "DGEN1.RlsCmd [ST]",
          *(f"{ln}.{act} [ST]" for rows in FUNCTION_STATUS.values() for ln, act in rows
            if act))
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
    extra = {
        "DECP": (_asg("HzNom", "Hz", "nominal frequency"),
                 DataObjectSpec("EcpIsldSt", Cdc.ENS, enum="ECPIslandStateKind",
                                desc="3 grid connected; 4 islanded: the anti-islanding "
                                     "supervision tripped"),
                 _ext(DataObjectSpec("AISt", Cdc.ENS, enum="GwAIStKind",
                                     desc="anti-islanding: " + ", ".join(
                                         f"{i} {n}" for i, n in enumerate(AI_STATES, 1)))),
                 _ext(_spg("AIEna", "anti-islanding supervision enabled")),
                 _ext(_spg("AICeaseDis", "cease to energize when the inverter reports AI "
                                         "disabled"))),
        "DINV": (_ext(_asg("VArMaxPct", desc="reactive capability, % of rated VA")),),
        "DGEN": (_asg("OvPFRtg", desc="lowest power factor injecting (over-excited)"),
                 _asg("UnPFRtg", desc="lowest power factor absorbing (under-excited)"),
                 _ext(DataObjectSpec("CtlSt", Cdc.ENS, enum="GwCtlStKind",
                                     desc="gateway operating state: " + ", ".join(
                                         f"{i} {n}" for i, n in
                                         enumerate(OPERATING_STATES, 1)))),
                 _ext(_sps("Trip", "tripped (clearing time, ROCOF or inverter "
                                   "anti-islanding trip)")),
                 _ext(_vss("OosCause", "why out of service")),
                 _ext(_vss("VRgn", "voltage region (NN, HV1, LV2 ...)")),
                 _ext(_vss("HzRgn", "frequency region")),
                 _ext(_vss("NotFlw", "commands the inverter does not follow")),
                 _ext(_spg("InvMsCease", "invalid measurements: true cease (explicit), "
                                         "false stand aside (default)")),
                 _ext(_ing("InvMsHldTmms", "hold time on invalid measurements, ms")),
                 _ext(DataObjectSpec("RlsCmd", Cdc.SPC, ctl_model=_DIRECT,
                                     desc="true releases every temporary command; stVal: "
                                          "some active"))),
    }
    lns = tuple(dataclasses.replace(ln, data_objects=ln.data_objects + extra[ln.ln_class])
                if ln.ln_class in extra else ln for ln in ld.logical_nodes)
    new_ld = LogicalDeviceSpec(ld.inst, lns + with_steering(_function_lns()),
                               (DataSetSpec("Meas", MEASUREMENTS),
                                DataSetSpec("Events", EVENTS)), _reports())
    from . import storage_model

    return ModelSpec((new_ld,), base.bindings + storage_model.function_bindings(ld_inst))


def curve_paths(curve: Curve) -> list[str]:
    """Attribute paths (below the LD) of every served field of a curve."""
    return [f"{curve.target}.{CURVE_ARRAY}.{i}.{f}" for i in range(curve.points)
            for f in curve.fields]
