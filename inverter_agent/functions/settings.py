"""The ``Settings`` aggregate, its validator and its plain-dict form.

One frozen dataclass per function (each defined in its own module, each with
``enabled``), gathered here. :func:`validate` is the single gate every path
uses (profiles, the config file, persistence, IEC 61850 writes): it raises
:class:`SettingsError` naming the setting path, the bad value and the allowed
range. :func:`settings_to_dict` / :func:`settings_from_dict` give a JSON-able
dict with stable keys; unknown keys are rejected by name.

Ranges: each settings dataclass declares its fields' ranges beside them
(:mod:`.ranges`, with where each comes from); :func:`validate` applies them,
section by section, then the checks that relate several settings. The
functions themselves are listed once, in :mod:`.registry`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .anti_islanding import AntiIslandingSettings
from .constant_var import ConstantVarSettings
from .enter_service import EnterServiceSettings
from .fixed_pf import FixedPfSettings
from .freq_watt import FreqWattSettings
from .power_limit import PowerLimitSettings
from .ramp import RampSettings
from .ranges import SettingsConflict as SettingsConflict
from .ranges import SettingsError as SettingsError  # re-exported: its home until now
from .ranges import check_fields, rng
from .ranges import check_range as _range
from .ranges import fail as _fail
from .registry import REACTIVE
from .ride_through import RegionMode, RideThroughSettings
from .set_active_power import SetActivePowerSettings
from .trip_ranges import check as _check_trip_ranges
from .volt_var import VoltVarSettings
from .volt_watt import VoltWattSettings

MAX_CURVE_POINTS = 8  # 1547-2018 5.3.3 volt-var curves have 4 points; SunSpec 705 allows up to 8


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

    f_nom_hz: float = field(default=60.0, metadata=rng(45.0, 65.0, "sanity: 50 or 60 Hz"))
    # 1547-2018 Cat B minimum reactive capability: 44 % of rated VA
    var_max_pct: float = field(default=44.0, metadata=rng(0.0, 100.0, "sanity", lo_open=True))
    #: IEEE 1547-2018 abnormal performance category the DER is certified to ("I", "II",
    #: "III"), or "" for none: its trip tables are then held to that category's ranges
    #: of allowable settings (:mod:`.trip_ranges`). Fixed by the profile.
    abnormal_category: str = ""


@dataclass(frozen=True)
class SafetySettings:
    """Behaviour on invalid measurements (see engine module docstring)."""

    on_invalid_measurements: InvalidPolicy = InvalidPolicy.STAND_ASIDE
    hold_s: float = field(default=5.0, metadata=rng(0.0, 60.0, "sanity"))


@dataclass(frozen=True)
class Settings:
    """Every function's settings (one field per :data:`registry.FUNCTIONS` entry, named
    as it is there) and the ratings and safety policy they share. Build one with
    ``profiles.get_profile``."""

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
    #: Storage charge / discharge setpoint (off by default; a file without it keeps it off).
    set_active_power: SetActivePowerSettings = SetActivePowerSettings()


# ---------------------------------------------------------------- validation


def _check_ride_through(path: str, rt: RideThroughSettings, unit_nom: float, span: float) -> None:
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


def _check_curve(path: str, points: tuple[Any, ...], x_name: str) -> None:
    """Point count, each point's declared ranges, voltages in order."""
    if not 2 <= len(points) <= MAX_CURVE_POINTS:
        _fail(path, len(points), f"a curve has 2 to {MAX_CURVE_POINTS} points")
    xs = [getattr(p, x_name) for p in points]
    for i, (x, point) in enumerate(zip(xs, points, strict=True)):
        check_fields(f"{path}[{i}]", point)
        if i > 0 and x < xs[i - 1]:
            _fail(f"{path}[{i}].{x_name}", x,
                  f"curve voltages must not decrease; {path}[{i - 1}].{x_name} is {xs[i - 1]:g}")
        if i > 1 and x == xs[i - 1] == xs[i - 2]:
            _fail(f"{path}[{i}].{x_name}", x, "at most two neighbouring points share a voltage")


def _check_enter_service(s: Settings) -> None:
    es = s.enter_service
    if es.v_low_pu >= es.v_high_pu:
        _fail("enter_service.v_low_pu", es.v_low_pu,
              f"must be below enter_service.v_high_pu ({es.v_high_pu:g})")
    if es.f_low_hz >= es.f_high_hz:
        _fail("enter_service.f_low_hz", es.f_low_hz,
              f"must be below enter_service.f_high_hz ({es.f_high_hz:g})")
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


def _check_fixed_pf(s: Settings) -> None:
    pf = s.fixed_pf
    pf_min = pf.pf_min_absorbing if pf.absorbing else pf.pf_min_injecting
    _range("fixed_pf.pf", pf.pf, pf_min, 1.0)


def _check_frequency_ride_through(s: Settings) -> None:
    _check_ride_through("frequency_ride_through", s.frequency_ride_through,
                        s.nameplate.f_nom_hz, 10.0)
    # Both trip tables within the 1547-2018 ranges of the declared category.
    _check_trip_ranges(s.nameplate.abnormal_category, s.nameplate.f_nom_hz,
                       s.voltage_ride_through, s.frequency_ride_through)


#: Checks beyond the declared ranges, by section: those relating several settings.
_CROSS_CHECKS: dict[str, Callable[[Settings], None]] = {
    "voltage_ride_through": lambda s: _check_ride_through(
        "voltage_ride_through", s.voltage_ride_through, 1.0, 1.0),
    "frequency_ride_through": _check_frequency_ride_through,
    "enter_service": _check_enter_service,
    "volt_var": lambda s: _check_curve("volt_var.curve", s.volt_var.curve, "v_pu"),
    "fixed_pf": _check_fixed_pf,
    "volt_watt": lambda s: _check_curve("volt_watt.curve", s.volt_watt.curve, "v_pu"),
}


def validate(s: Settings) -> None:
    """Check every setting and their consistency; raise :class:`SettingsError`.

    Section by section (in ``Settings`` order): the ranges each settings dataclass
    declares, then the section's checks against other settings; last, that at most
    one reactive mode is enabled.
    """
    refs = {"f_nom_hz": s.nameplate.f_nom_hz}
    for f in dataclasses.fields(Settings):
        check_fields(f.name, getattr(s, f.name), refs)
        cross = _CROSS_CHECKS.get(f.name)
        if cross is not None:
            cross(s)

    # 1547-2018 5.3.1: the reactive power modes are mutually exclusive.
    on = [n for n in REACTIVE if getattr(s, n).enabled]
    if len(on) > 1:
        raise SettingsConflict(f"{on[1]}.enabled = True: reactive modes are mutually "
                               f"exclusive (1547-2018 5.3.1); {on[0]} is enabled")


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


def check_fixed(s: Settings, fixed: Settings) -> None:
    """Raise :class:`SettingsError` if ``s`` changes what the profile fixes: the
    abnormal performance category, which decides how far the trip settings may go
    (changing it could loosen the protection past the certified ranges)."""
    cat, want = s.nameplate.abnormal_category, fixed.nameplate.abnormal_category
    if cat != want:
        _fail("nameplate.abnormal_category", cat,
              f"fixed by the settings profile to {want!r} (the DER's certified category)")


def settings_from_dict(d: dict[str, Any], base: Settings | None = None) -> Settings:
    """Build and validate :class:`Settings` from a plain dict.

    Unknown keys are rejected by name. Missing keys take ``base``'s values when
    a base is given (partial update), and are an error otherwise; a base's
    abnormal performance category may not be changed (:func:`check_fixed`).
    """
    s = _from_plain(Settings, d, "", base)
    if base is not None:
        check_fixed(s, base)
    validate(s)
    return s
