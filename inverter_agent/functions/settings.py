"""The ``Settings`` aggregate, its validator and its plain-dict form.

One frozen dataclass per function (each defined in its own module, each with
``enabled``), gathered here. :func:`validate` is the single gate every path
uses (profiles, the config file, persistence, IEC 61850 writes): it raises
:class:`SettingsError` naming the setting path, the bad value and the allowed
range. :func:`settings_to_dict` / :func:`settings_from_dict` give a JSON-able
dict with stable keys; unknown keys are rejected by name.

Ranges: where IEEE 1547-2018 gives a settings range (Tables 4, 8, 10, 24) the
range used is noted "1547 Table N"; those ranges are recalled from the
standard, not from DOMAIN.md, and should be confirmed against it. The others
are sanity bounds chosen for this gateway ("sanity") so that a typo cannot
produce a setting no profile would use.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from .anti_islanding import AntiIslandingSettings
from .constant_var import ConstantVarSettings
from .enter_service import EnterServiceSettings
from .fixed_pf import FixedPfSettings
from .freq_watt import FreqWattSettings
from .ramp import RampSettings
from .ride_through import RegionMode, RideThroughSettings
from .volt_var import VoltVarSettings
from .volt_watt import VoltWattSettings

MAX_CURVE_POINTS = 8  # 1547-2018 5.3.3 volt-var curves have 4 points; SunSpec 705 allows up to 8


class SettingsError(ValueError):
    """An invalid setting; the message names its path, value and allowed range."""


class InvalidPolicy(enum.Enum):
    """What the gateway does while measurements are missing, implausible or not understood.

    ``STAND_ASIDE`` (the default: first, do no harm) releases the gateway's
    controls so the inverter runs on its own certified settings, raises an
    alarm and resumes once it understands the device again; the controller
    does that without running the engine. The other two are for sites whose
    utility requires ceasing to energize on unknown measurements, and must be
    chosen explicitly.
    """

    STAND_ASIDE = "stand_aside"
    HOLD_LAST = "hold_last"  # keep the last setpoints for safety.hold_s, then cease
    CEASE_TO_ENERGIZE = "cease_to_energize"  # cease at once


@dataclass(frozen=True)
class NameplateSettings:
    """Ratings the functions need: nominal frequency, rated VAr as % of rated VA."""

    f_nom_hz: float = 60.0
    var_max_pct: float = 44.0  # 1547-2018 Cat B minimum reactive capability: 44 % of rated VA


@dataclass(frozen=True)
class PowerLimitSettings:
    """Utility / base active power limit (limit maximum active power), % of rated W."""

    enabled: bool = False
    p_limit_pct: float = 100.0


@dataclass(frozen=True)
class SafetySettings:
    """Behaviour on invalid measurements (see engine module docstring)."""

    on_invalid_measurements: InvalidPolicy = InvalidPolicy.STAND_ASIDE
    hold_s: float = 5.0


@dataclass(frozen=True)
class Settings:
    """Every function's settings. Build one with ``profiles.get_profile``."""

    nameplate: NameplateSettings
    safety: SafetySettings
    active_power_limit: PowerLimitSettings
    ramp: RampSettings
    voltage_ride_through: RideThroughSettings
    frequency_ride_through: RideThroughSettings
    anti_islanding: AntiIslandingSettings
    enter_service: EnterServiceSettings
    volt_var: VoltVarSettings
    fixed_pf: FixedPfSettings
    constant_var: ConstantVarSettings
    volt_watt: VoltWattSettings
    freq_watt: FreqWattSettings


# ---------------------------------------------------------------- validation


def _fail(path: str, value: object, allowed: str) -> typing.NoReturn:
    raise SettingsError(f"{path} = {value!r}: {allowed}")


def _range(path: str, value: float, lo: float, hi: float, *, lo_open: bool = False,
           hi_open: bool = False) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        _fail(path, value, "must be a number")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        lb, hb = ("(" if lo_open else "["), (")" if hi_open else "]")
        _fail(path, value, f"allowed range {lb}{lo:g}, {hi:g}{hb}")


def _check_ride_through(path: str, rt: RideThroughSettings, unit_nom: float, span: float) -> None:
    _range(f"{path}.trip_margin_s", rt.trip_margin_s, 0.0, 1.0)  # sanity
    names: set[str] = set()
    for side, regions, sign in (("over", rt.over, 1.0), ("under", rt.under, -1.0)):
        prev: float | None = None
        for i, reg in enumerate(regions):
            p = f"{path}.{side}[{i}]"
            if not reg.name or reg.name in names:
                _fail(f"{p}.name", reg.name, "must be a unique, non-empty region name")
            names.add(reg.name)
            if sign > 0:
                _range(f"{p}.threshold", reg.threshold, unit_nom, unit_nom + span, lo_open=True)
            else:
                _range(f"{p}.threshold", reg.threshold, unit_nom - span, unit_nom, hi_open=True)
            if prev is not None and (reg.threshold - prev) * sign <= 0:
                order = "ascend" if sign > 0 else "descend"
                _fail(f"{p}.threshold", reg.threshold,
                      f"{side} thresholds must strictly {order}; previous is {prev:g}")
            prev = reg.threshold
            if reg.clearing_time_s is not None:
                _range(f"{p}.clearing_time_s", reg.clearing_time_s, rt.trip_margin_s, 3600.0,
                       lo_open=True)  # sanity; must leave a positive backup delay
            elif reg.mode is RegionMode.MUST_TRIP:
                _fail(f"{p}.clearing_time_s", None, "a must-trip region needs a clearing time")
            if reg.ride_through_s is not None:
                hi = 3600.0
                if reg.clearing_time_s is not None:
                    hi = reg.clearing_time_s - rt.trip_margin_s
                _range(f"{p}.ride_through_s", reg.ride_through_s, 0.0, hi)


def _check_curve(path: str, xs: list[float], ys: list[float], x_rng: tuple[float, float],
                 y_rng: tuple[float, float], x_name: str, y_name: str) -> None:
    if not 2 <= len(xs) <= MAX_CURVE_POINTS:
        _fail(path, len(xs), f"a curve has 2 to {MAX_CURVE_POINTS} points")
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        _range(f"{path}[{i}].{x_name}", x, *x_rng)
        _range(f"{path}[{i}].{y_name}", y, *y_rng)
        if i > 0 and x < xs[i - 1]:
            _fail(f"{path}[{i}].{x_name}", x,
                  f"curve voltages must not decrease; {path}[{i - 1}].{x_name} is {xs[i - 1]:g}")
        if i > 1 and x == xs[i - 1] == xs[i - 2]:
            _fail(f"{path}[{i}].{x_name}", x, "at most two neighbouring points share a voltage")


def validate(s: Settings) -> None:
    """Check every setting and their consistency; raise :class:`SettingsError`."""
    np_ = s.nameplate
    _range("nameplate.f_nom_hz", np_.f_nom_hz, 45.0, 65.0)  # sanity: 50 or 60 Hz systems
    _range("nameplate.var_max_pct", np_.var_max_pct, 0.0, 100.0, lo_open=True)
    _range("safety.hold_s", s.safety.hold_s, 0.0, 60.0)  # sanity
    _range("active_power_limit.p_limit_pct", s.active_power_limit.p_limit_pct, 0.0, 100.0)
    for d in ("up_pct_per_s", "down_pct_per_s"):
        rate = getattr(s.ramp, d)
        if rate is not None:
            _range(f"ramp.{d}", rate, 0.0, 1000.0, lo_open=True)  # sanity
    _check_ride_through("voltage_ride_through", s.voltage_ride_through, 1.0, 1.0)
    _check_ride_through("frequency_ride_through", s.frequency_ride_through, np_.f_nom_hz, 10.0)

    ai = s.anti_islanding
    _range("anti_islanding.rocof_hz_per_s", ai.rocof_hz_per_s, 0.0, 10.0, lo_open=True)
    _range("anti_islanding.rocof_time_s", ai.rocof_time_s, 0.0, 10.0)

    es = s.enter_service
    _range("enter_service.v_low_pu", es.v_low_pu, 0.5, 1.0)  # sanity (1547 Table 4: 0.88-0.95)
    _range("enter_service.v_high_pu", es.v_high_pu, 1.0, 1.2)  # sanity (Table 4: 1.05-1.06)
    if es.v_low_pu >= es.v_high_pu:
        _fail("enter_service.v_low_pu", es.v_low_pu,
              f"must be below enter_service.v_high_pu ({es.v_high_pu:g})")
    _range("enter_service.f_low_hz", es.f_low_hz, np_.f_nom_hz - 5.0, np_.f_nom_hz)
    _range("enter_service.f_high_hz", es.f_high_hz, np_.f_nom_hz, np_.f_nom_hz + 5.0)
    if es.f_low_hz >= es.f_high_hz:
        _fail("enter_service.f_low_hz", es.f_low_hz,
              f"must be below enter_service.f_high_hz ({es.f_high_hz:g})")
    _range("enter_service.delay_s", es.delay_s, 0.0, 3600.0)  # sanity (Table 4: 0-600 s)
    _range("enter_service.random_delay_s", es.random_delay_s, 0.0, 3600.0)  # sanity
    _range("enter_service.ramp_time_s", es.ramp_time_s, 0.0, 3600.0)  # sanity (1-1000 s)
    # Entering service into a region that trips would cycle: the window must lie
    # inside every trip threshold.
    for key, lo, hi, rt in (
        ("v", es.v_low_pu, es.v_high_pu, s.voltage_ride_through),
        ("f", es.f_low_hz, es.f_high_hz, s.frequency_ride_through),
    ):
        if not rt.enabled:
            continue
        unit = "pu" if key == "v" else "hz"
        for reg in rt.over:
            if hi > reg.threshold:
                _fail(f"enter_service.{key}_high_{unit}", hi,
                      f"must not exceed the {reg.name} threshold ({reg.threshold:g})")
        for reg in rt.under:
            if lo < reg.threshold:
                _fail(f"enter_service.{key}_low_{unit}", lo,
                      f"must not be below the {reg.name} threshold ({reg.threshold:g})")

    vv = s.volt_var
    _check_curve("volt_var.curve", [p.v_pu for p in vv.curve], [p.q_pct for p in vv.curve],
                 (0.5, 1.5), (-100.0, 100.0), "v_pu", "q_pct")  # sanity; Q +-100 %
    _range("volt_var.response_time_s", vv.response_time_s, 1.0, 90.0)  # 1547 Table 8
    _range("volt_var.vref_pu", vv.vref_pu, 0.95, 1.05)  # 1547 Table 8
    _range("volt_var.vref_time_s", vv.vref_time_s, 300.0, 5000.0)  # 1547 Table 8
    _range("volt_var.vref_min_pu", vv.vref_min_pu, 0.9, 1.0)  # sanity, OpenDER 0.95
    _range("volt_var.vref_max_pu", vv.vref_max_pu, 1.0, 1.1)  # sanity, OpenDER 1.05

    pf = s.fixed_pf
    # 0.80 is the lowest pf any 1547 category or SunSpec profile here asks for (sanity).
    _range("fixed_pf.pf_min_injecting", pf.pf_min_injecting, 0.8, 1.0)
    _range("fixed_pf.pf_min_absorbing", pf.pf_min_absorbing, 0.8, 1.0)
    pf_min = pf.pf_min_absorbing if pf.absorbing else pf.pf_min_injecting
    _range("fixed_pf.pf", pf.pf, pf_min, 1.0)
    _range("constant_var.q_pct", s.constant_var.q_pct, -100.0, 100.0)

    vw = s.volt_watt
    _check_curve("volt_watt.curve", [p.v_pu for p in vw.curve], [p.p_pct for p in vw.curve],
                 (1.0, 1.5), (0.0, 100.0), "v_pu", "p_pct")  # sanity
    _range("volt_watt.response_time_s", vw.response_time_s, 0.5, 60.0)  # 1547 Table 10

    fw = s.freq_watt
    _range("freq_watt.db_of_hz", fw.db_of_hz, 0.017, 1.0)  # 1547 Table 24
    _range("freq_watt.db_uf_hz", fw.db_uf_hz, 0.017, 1.0)  # 1547 Table 24
    _range("freq_watt.k_of", fw.k_of, 0.02, 0.05)  # 1547 Table 24 (2-5 %)
    _range("freq_watt.k_uf", fw.k_uf, 0.02, 0.05)  # 1547 Table 24
    _range("freq_watt.response_time_s", fw.response_time_s, 0.2, 10.0)  # 1547 Table 24
    _range("freq_watt.p_min_pct", fw.p_min_pct, 0.0, 100.0)

    # 1547-2018 5.3.1: the reactive power modes are mutually exclusive.
    on = [n for n in ("volt_var", "fixed_pf", "constant_var") if getattr(s, n).enabled]
    if len(on) > 1:
        _fail(f"{on[1]}.enabled", True,
              f"reactive modes are mutually exclusive (1547-2018 5.3.1); {on[0]} is enabled")


# ---------------------------------------------------------------- dict form


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def settings_to_dict(s: Settings) -> dict[str, Any]:
    """Plain JSON-able dict (enums as their string values, tuples as lists)."""
    out = _to_plain(s)
    assert isinstance(out, dict)
    return out


def _from_plain(tp: Any, value: Any, path: str, base: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_plain(inner, value, path, base)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            _fail(path, value, "must be a list")
        return tuple(_from_plain(item_tp, v, f"{path}[{i}]", None) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(path, value, "must be a mapping")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            where = f"{path}." if path else ""
            _fail(f"{where}{unknown[0]}", value[unknown[0]],
                  f"unknown setting (probably a typo); known keys: {', '.join(names)}")
        kwargs = {}
        for n in names:
            p = f"{path}.{n}" if path else n
            if n in value:
                kwargs[n] = _from_plain(hints[n], value[n], p, getattr(base, n, None))
            elif base is not None:
                kwargs[n] = getattr(base, n)
            else:
                _fail(p, None, "missing setting")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            _fail(path, value, f"one of {', '.join(str(m.value) for m in tp)}")
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, value, "must be true or false")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(path, value, "must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(path, value, "must be a string")
        return value
    raise TypeError(f"unsupported settings type {tp!r} at {path}")  # programming error


def settings_from_dict(d: dict[str, Any], base: Settings | None = None) -> Settings:
    """Build and validate :class:`Settings` from a plain dict.

    Unknown keys are rejected by name. Missing keys take ``base``'s values when
    a base is given (partial update), and are an error otherwise.
    """
    s = _from_plain(Settings, d, "", base)
    validate(s)
    return s
