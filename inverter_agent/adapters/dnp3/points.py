"""The DNP3 point map as data: which point carries which value of the core.

Indices, names, ranges and default event classes are those of the DNP Users
Group's DER profile, Application Note AN2018-001, as EPRI published it in
``epri-dev/der-dnp3-an2018`` (``der-an-2018/DERAppNoteDefinition.h``), which
carries this notice:

    Copyright (c) 2019 Electric Power Research Institute, Inc. All rights reserved.

    Redistribution and use in source and binary forms, with or without
    modification, are permitted provided that the following conditions are met:
    - Redistributions of source code must retain the above copyright notice, this
      list of conditions and the following disclaimer.
    - Redistributions in binary form must reproduce the above copyright notice,
      this list of conditions and the following disclaimer in the documentation
      and/or other materials provided with the distribution.
    - Neither the name of the EPRI nor the names of its contributors may be used
      to endorse or promote products derived from this software without specific
      prior written permission.

IEEE 1815.2-2025 keeps AN2018-001's indices for configuration, functions,
curves and the system meter (the rows below); it moved the schedules to the
2000 / 3000 blocks (none served here). Its companion workbook may not be
redistributed: it is never part of this project. A utility that wants its own
copy's map serves a JSON file of rows like these (``[dnp3] point_map``).

Event classes are AN2018-001's defaults; the meter's deadbands (engineering units)
are this project's defaults, a utility sets its own in its map file.

Multipliers follow AN2018-001's integer encoding: the engineering value is the
transmitted integer times ``scale`` (V x0.1, Hz x0.001, PF x0.01, % x0.1, W /
var / VA x1). ``source`` says where the value comes from:

- ``reading:<name>``: the inverter's HAL reading (quality from the core's view);
- ``state:<name>``: a state the adapter derives from the view (``link_lost``,
  ``generating``, ``tripped``: a protection trip holds the DER out of service,
  ``health_alarm`` / ``health_warning``: the core's health of the functions);
- ``curve_state:referenced``: whether a function follows the selected curve;
- ``setting:<dotted path>``: an output that writes the core's setting through
  the command API; its paired input (``pairs``) reads the effective setting back;
- ``supports``: a "supports" input, true when the output it names (``enables``)
  is served;
- ``curve:<cell>``: a cell of the curve edit buffer (``select``, ``type``,
  ``count``, ``x_units``, ``y_units``, ``x1``, ``y1``, ...; :mod:`.curves`);
- ``curve_ref:<function>``: the number of the curve a function follows; writing it
  applies that curve through the command API;
- ``timeout:<function>``: the function's reversion timeout, seconds (:mod:`.reversion`).
- ``storage:<attr>``: the battery of a hybrid, the core's StorageView attribute
  (``-attr``: negated, for AN2018-001's charging points, negative while charging);
  OFFLINE where the inverter has no storage model or does not state the value.

Storage (issue 20): the charge / discharge mode (BO18 enable, AO93 active power
target in % of the maximum active power, + discharge / - charge, AO100 minimum
reserve) drives the core's set active power; its monitoring points are those of
the system (AI5 / AI16 / AI33 / AI44 / AI47, BI4 / BI7 / BI20) and of battery bank #1
(AI958, AI960, AI961, AI966).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from . import curves

I32_MIN, I32_MAX = -2147483648, 2147483647


@dataclass(frozen=True)
class Row:
    kind: str  # "AI", "BI", "AO", "BO", "CTR" (a counter, with its frozen counter)
    index: int
    name: str
    source: str
    scale: float | None = None
    lo: float | None = None
    hi: float | None = None
    #: 1-3 reports events in that class, 0 static only.
    cls: int = 0
    #: The grid function the point belongs to (the settings key), if any.
    function: str | None = None
    #: The paired point ("AI149" for AO88, and back).
    pairs: str | None = None
    #: For a "supports" input: the enable output of its function.
    enables: str | None = None
    units: str | None = None
    #: Event deadband of an analog input, engineering units (None: every change).
    deadband: float | None = None


def _r(kind: str, index: int, name: str, source: str, **kw: Any) -> Row:
    return Row(kind, index, name, source, **kw)


def _paired(kind: str, index: int, back_kind: str, back: int, name: str, source: str,
            function: str | None, out_cls: int = 0, **kw: Any) -> tuple[Row, Row]:
    """An output and the input that reads it back (class 2), of one name and scaling."""
    return (_r(kind, index, name, source, cls=out_cls, function=function,
               pairs=f"{back_kind}{back}", **kw),
            _r(back_kind, back, name, "mirror", cls=2, function=function,
               pairs=f"{kind}{index}", **kw))


def _enable(function: str, bo: int, name: str, bi: int, mode: str, supports: int,
            supports_name: str) -> tuple[Row, ...]:
    """A function's enable, its "operating mode" readback and its "supports" input."""
    enable, back = _paired("BO", bo, "BI", bi, name, f"setting:{function}.enabled", function,
                           out_cls=2)
    return (enable, replace(back, name=mode),
            _r("BI", supports, supports_name, "supports", enables=f"BO{bo}"))


def _timeout(function: str, ao: int, ai: int, name: str) -> tuple[Row, Row]:
    """A function's reversion timeout (seconds) and its readback."""
    return _paired("AO", ao, "AI", ai, name, f"timeout:{function}", function, scale=1, lo=0,
                   hi=I32_MAX, units="s")


def _curve_window() -> tuple[Row, ...]:
    """The curve edit buffer (AO244 on) and its readback (AI328 on): the selector, the
    mode type, the number of points, the units, then X / Y of each point."""
    names = {"type": ("Curve Mode Type", 0, 20, None),
             "count": ("Curve Number of Points", 0, curves.POINTS, None),
             "x_units": ("Independent (X-Value) Units for Curve", 0, 255, None),
             "y_units": ("Dependent (Y-Value) Units for Curve", 0, 255, None)}
    select, back = _paired("AO", curves.SELECTOR_AO, "AI", curves.SELECTOR_AI,
                           "Curve Edit Selection", "curve:select", None, lo=1, hi=curves.CURVES)
    rows = [select, replace(back, name="Curve Edit Selector")]
    for offset, cell in enumerate(curves.field_names(), start=1):
        if cell in names:
            name, lo, hi, scale = names[cell]
        else:
            name = f"Curve Point {cell[1:]} {cell[0].upper()}-Value"
            lo, hi, scale = I32_MIN, I32_MAX, curves.SCALE
        ao, ai = curves.SELECTOR_AO + offset, curves.SELECTOR_AI + offset
        rows += _paired("AO", ao, "AI", ai, name, f"curve:{cell}", None, scale=scale, lo=lo,
                        hi=hi, units=None if scale is None else "%")
    return tuple(rows)


#: The built-in map (AN2018-001 indices).
ROWS: tuple[Row, ...] = (
    # -- nameplate and ratings (class 3)
    _r("AI", 4, "Nameplate Active Generation Power Rating at Unity Power Factor",
       "reading:WRtg", scale=1, lo=0, hi=I32_MAX, cls=3, units="W"),
    _r("AI", 12, "Nameplate Reactive Supply (Injection) Power Rating", "reading:VArRtgQ1",
       scale=1, lo=0, hi=I32_MAX, cls=3, units="var"),
    _r("AI", 13, "Nameplate Reactive Absorption Power Rating", "reading:VArRtgQ4",
       scale=1, lo=I32_MIN, hi=0, cls=3, units="var"),
    _r("AI", 14, "Nameplate Apparent Generation Power Rating", "reading:VARtg",
       scale=1, lo=0, hi=I32_MAX, cls=3, units="VA"),
    _r("AI", 31, "Nominal Grid Frequency", "reading:ECPNomHz", scale=0.001, lo=0, hi=70000,
       cls=2, units="Hz"),
    # -- system meter
    _r("AI", 536, "System Meter Frequency", "reading:Hz", scale=0.001, lo=0, hi=70000, cls=3,
       deadband=0.01, units="Hz"),
    _r("AI", 537, "System Meter Active Power", "reading:W", scale=1, lo=I32_MIN, hi=I32_MAX,
       deadband=20, cls=3, units="W"),
    _r("AI", 541, "System Meter Reactive Power", "reading:VAr", scale=1, lo=I32_MIN,
       deadband=20, hi=I32_MAX, cls=3, units="var"),
    _r("AI", 545, "System Meter Power Factor", "reading:PF", scale=0.01, lo=-100, hi=100,
       deadband=0.01, cls=3),
    _r("AI", 546, "System Meter Apparent Power", "reading:VA", scale=1, lo=I32_MIN, hi=I32_MAX,
       deadband=20, cls=3, units="VA"),
    _r("AI", 547, "System Meter Phase A Volts", "reading:PhVphA", scale=0.1, lo=0, hi=I32_MAX,
       deadband=0.5, cls=3, units="V"),
    _r("AI", 549, "System Meter Phase B Volts", "reading:PhVphB", scale=0.1, lo=0, hi=I32_MAX,
       deadband=0.5, cls=3, units="V"),
    _r("AI", 551, "System Meter Phase C Volts", "reading:PhVphC", scale=0.1, lo=0, hi=I32_MAX,
       deadband=0.5, cls=3, units="V"),
    _r("AI", 554, "System Meter Current A", "reading:AphA", scale=0.1, lo=I32_MIN, hi=I32_MAX,
       deadband=0.1, cls=1, units="A"),
    _r("AI", 555, "System Meter Current B", "reading:AphB", scale=0.1, lo=I32_MIN, hi=I32_MAX,
       deadband=0.1, cls=1, units="A"),
    _r("AI", 556, "System Meter Current C", "reading:AphC", scale=0.1, lo=I32_MIN, hi=I32_MAX,
       deadband=0.1, cls=1, units="A"),
    # -- operating and connection states
    _r("BI", 0, "System Communication Error", "state:link_lost", cls=1),
    _r("BI", 19, "DER is Connected and Generating", "state:generating", cls=2),
    _r("BI", 23, "DER Connect/Disconnect Switch Closed Status", "reading:Conn", cls=2),
    # -- alarms: the core's own knowledge (a trip, its health), not the inverter's codes
    _r("BI", 1, "System Has Priority 1 Alarms", "state:tripped", cls=1),
    _r("BI", 2, "System Has Priority 2 Alarms", "state:health_alarm", cls=1),
    _r("BI", 3, "System Has Priority 3 Alarms", "state:health_warning", cls=1),
    # -- energy (a counter with its frozen counter; AN2018-001's header lists none: the
    # index is the one py1815's IEEE 1815.2 reference DER gives "Wh delivered")
    _r("CTR", 0, "Total Active Energy Delivered", "reading:WH", cls=3, units="Wh"),
    # -- limit maximum active power
    *_enable("active_power_limit", 17, "Enable Active Power Limit Mode",
             69, "Operating Mode - Active Power Limit Enabled",
             36, "Supports Active Power Limit Mode"),
    *_paired("AO", 88, "AI", 149, "Active Power Limit Discharge (Generation) Setpoint",
             "setting:active_power_limit.p_limit_pct", "active_power_limit", scale=0.1, lo=0,
             hi=1000, units="%"),
    *_timeout("active_power_limit", 85, 145, "Active Power Limit Reversion Timeout Period"),
    # -- constant power factor (BO10: 0 over-excited / injecting, 1 under-excited / absorbing)
    *_enable("fixed_pf", 28, "Enable Fixed Power Factor Mode",
             80, "Operating Mode - Fixed Power Factor Enabled",
             47, "Supports Fixed Power Factor Mode"),
    *_paired("AO", 210, "AI", 288, "Fixed Power Factor Setpoint When Generating / Discharging",
             "setting:fixed_pf.pf", "fixed_pf", scale=0.01, lo=0, hi=100),
    *_paired("BO", 10, "BI", 29, "Power Factor Excitation When Discharging / Generating",
             "setting:fixed_pf.absorbing", "fixed_pf", out_cls=2),
    *_timeout("fixed_pf", 209, 287, "Fixed Power Factor Reversion Timeout Period"),
    # -- constant reactive power (AO203: % of max VArs, + injecting, as AI12 / AI13)
    *_enable("constant_var", 27, "Enable Constant VArs Mode",
             79, "Operating Mode - Constant VArs Enabled", 46, "Supports Constant VArs Mode"),
    *_paired("AO", 203, "AI", 281, "Constant VArs Reactive Power Target",
             "setting:constant_var.q_pct", "constant_var", scale=0.1, lo=-1000, hi=1000,
             units="%"),
    *_timeout("constant_var", 202, 280, "Constant VArs Reversion Timeout Period"),
    # -- frequency-watt: the enable only (the droop parameters stay as configured)
    *_enable("freq_watt", 16, "Enable Frequency-Watt Mode",
             68, "Operating Mode - Frequency-Watt Enabled", 35, "Supports Frequency-Watt Mode"),
    # -- volt-var (its curve through the edit buffer below)
    *_enable("volt_var", 29, "Enable Volt-VAR Control Mode",
             81, "Operating Mode - Volt-VAR Control Enabled",
             48, "Supports Volt-VAr Control Mode"),
    *_timeout("volt_var", 215, 293, "Volt-VAr Control Reversion Timeout Period"),
    *_paired("AO", 217, "AI", 297, "Volt-VAr Curve Index", "curve_ref:volt_var", "volt_var",
             lo=1, hi=curves.CURVES),
    # -- volt-watt (its curve through the edit buffer below)
    *_enable("volt_watt", 25, "Enable Volt-Watt Mode",
             77, "Operating Mode - Volt-Watt Enabled", 44, "Supports Volt-Watt Mode"),
    *_timeout("volt_watt", 171, 245, "Volt-Watt Reversion Timeout Period"),
    *_paired("AO", 173, "AI", 248, "Volt-Watt Curve Index", "curve_ref:volt_watt", "volt_watt",
             lo=1, hi=curves.CURVES),
    *_curve_window(),
    _r("BI", 107, "Selected Curve is Referenced by a Mode", "curve_state:referenced", cls=1),
    # -- storage (a hybrid's battery; OFFLINE without one)
    _r("AI", 5, "Nameplate Active Charging Power Rating at Unity Power Factor",
       "storage:-w_cha_max", scale=1, lo=I32_MIN, hi=0, cls=3, units="W"),
    _r("AI", 16, "Nameplate Storage Actual Energy Capacity", "storage:wh_rtg", scale=1,
       lo=0, hi=I32_MAX, cls=3, units="Wh"),
    _r("AI", 33, "Maximum Active Charging Power", "storage:-w_cha_max", scale=1,
       lo=I32_MIN, hi=0, cls=2, units="W"),
    _r("AI", 44, "System Available Active Charging Power", "storage:-avail_cha_w", scale=1,
       lo=I32_MIN, hi=0, cls=2, deadband=20, units="W"),
    _r("AI", 47, "System Available Actual State of Charge", "storage:soc_pct", scale=0.1,
       lo=0, hi=1000, cls=2, deadband=0.1, units="%"),
    _r("AI", 958, "Battery Bank #1 Minimum Reserve for Storage", "storage:reserve_pct",
       scale=0.1, lo=0, hi=1000, cls=2, units="%"),
    _r("AI", 960, "Battery Bank #1 Battery State", "storage:state", scale=1, lo=0, hi=99,
       cls=2),
    _r("AI", 961, "Battery Bank #1 Actual State of Charge", "storage:soc_pct", scale=0.1,
       lo=0, hi=1000, cls=3, deadband=0.1, units="%"),
    _r("AI", 966, "Battery Bank #1 Power", "storage:w", scale=1, lo=I32_MIN, hi=I32_MAX,
       cls=1, deadband=20, units="W"),
    _r("BI", 4, "Storage State of Charge at Maximum", "state:soc_at_max", cls=1),
    _r("BI", 7, "Storage State of Charge is Depleted", "state:soc_at_reserve", cls=1),
    _r("BI", 20, "DER is Connected and Charging", "state:charging", cls=2),
    # -- charge / discharge mode: the core's set active power (+ discharge, - charge)
    *_enable("set_active_power", 18, "Enable Charge/Discharge Mode",
             70, "Operating Mode - Charge/Discharge Enabled",
             37, "Supports Charge/Discharge Mode"),
    *_paired("AO", 93, "AI", 154, "Charge/Discharge Active Power Target",
             "setting:set_active_power.w_pct", "set_active_power", scale=0.1, lo=-1000,
             hi=1000, units="%"),
    *_paired("AO", 100, "AI", 161, "Charge/Discharge Minimum Reserve for Storage",
             "setting:set_active_power.reserve_pct", "set_active_power", scale=0.1, lo=0,
             hi=1000, units="%"),
)

_FIELDS = tuple(Row.__dataclass_fields__)


def load(path: str | None) -> tuple[Row, ...]:
    """The built-in rows, or those of a JSON file (a list of objects with Row's fields)."""
    if path is None:
        return ROWS
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a point map is a JSON list of rows")
    rows = []
    for i, item in enumerate(data):
        unknown = set(item) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{path}: row {i}: unknown field(s) {sorted(unknown)}")
        rows.append(Row(**item))
    return check(tuple(rows))


def check(rows: tuple[Row, ...]) -> tuple[Row, ...]:
    """Refuse a map with a duplicate address, an unknown kind or a dangling pair."""
    seen: set[str] = set()
    for row in rows:
        if row.kind not in ("AI", "BI", "AO", "BO", "CTR"):
            raise ValueError(f"{row.kind}{row.index}: unknown kind {row.kind!r}")
        addr = f"{row.kind}{row.index}"
        if addr in seen:
            raise ValueError(f"{addr} appears twice")
        seen.add(addr)
    for row in rows:
        for other in (row.pairs, row.enables):
            if other is not None and other not in seen:
                raise ValueError(f"{row.kind}{row.index} names {other}, which the map lacks")
    return rows
