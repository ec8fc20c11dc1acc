"""The curve edit buffer of AN2018-001 / IEEE 1815.2 (clause 6.1.3), over the core.

A master edits curves through one window: a selector (AO244) says which curve
the window shows, then the curve's mode type (AO245), its number of points
(AO246), the units of X and Y (AO247, AO248) and the X / Y pairs (AO249 on);
the inputs AI328 on read the window back. A function names the curve it
follows by number (volt-var AO217, read back at AI297; volt-watt AO173 /
AI248). Enumerations are AN2018-001's: mode type 2 volt-var, 5 volt-watt; X
units 129 "percent voltage"; Y units 2 "VArs as percent of max VArs", 5
"Watts as percent of max Watts".

How it meets the core:

- Edits go to a *draft* of the selected curve, held here; nothing reaches the
  core, so a half-written curve never runs. A draft starts as a copy of what
  the window showed.
- A curve is *applied* when a function is pointed at it (its curve index
  output), or when the function is enabled while its curve has a draft (the
  EPRI reference outstation's order: edit, then enable). The whole curve then
  goes through the core's command API as one settings write: the one
  validator (point count, ranges, voltages not decreasing), persisted before
  SUCCESS, audited; refused whole with nothing changed otherwise.
- A curve a function names shows that function's *effective* curve (whoever
  set it: MMS, 2030.5, DNP3), so every protocol reads the same curve.
- A curve named by an enabled function is locked (IEEE 1815.2 6.1.3): an edit
  of it is refused as blocked; edit another curve and point the function at it.

Refusals are the core's causes (:class:`RefusalCause`), mapped to a command
status by :data:`.maps.REFUSALS`: a point left unwritten within the number of
points (a gap) or a curve the validator refuses is an invalid value (out of
range); a curve of another mode type or in units the gateway does not take is
not supported; an edit of a locked curve is blocked.

Transmitted values: X and Y in tenths of a percent (x0.1), like the map's other
percentages. Drafts of curves no function names live in memory only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.functions.settings import MAX_CURVE_POINTS

#: The edit window's outputs and the inputs that read it back (AN2018-001).
SELECTOR_AO, SELECTOR_AI = 244, 328
FIELDS = ("type", "count", "x_units", "y_units")
#: How many curves the gateway holds (numbered from 1) and points per curve (the core's).
CURVES = 8
POINTS = MAX_CURVE_POINTS
#: The transmitted multiplier of X and Y (tenths of a percent).
SCALE = 0.1

#: AN2018-001 enumerations (AO245 mode type, AO247 / AO248 units).
VOLT_VAR, VOLT_WATT = 2, 5
X_PERCENT_VOLTAGE = 129
Y_PERCENT_MAX_VARS, Y_PERCENT_MAX_WATTS = 2, 5


@dataclass(frozen=True)
class CurveFunction:
    """A grid function that follows a curve of the buffer."""

    name: str  # its settings key
    mode_type: int
    x_units: int
    y_units: int
    path: str  # the settings list
    x_key: str
    y_key: str
    #: The curve number it names until a master points it elsewhere.
    number: int
    #: Further settings written with the curve (what its Y is a percentage of).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_points(self, xs: list[float], ys: list[float]) -> list[dict[str, float]]:
        return [{self.x_key: round(x / 100.0, 6), self.y_key: round(y, 6)}
                for x, y in zip(xs, ys, strict=True)]


FUNCTIONS: dict[str, CurveFunction] = {
    "volt_var": CurveFunction("volt_var", VOLT_VAR, X_PERCENT_VOLTAGE, Y_PERCENT_MAX_VARS,
                              "volt_var.curve", "v_pu", "q_pct", 1,
                              {"volt_var.q_base": "rated_var"}),
    "volt_watt": CurveFunction("volt_watt", VOLT_WATT, X_PERCENT_VOLTAGE, Y_PERCENT_MAX_WATTS,
                               "volt_watt.curve", "v_pu", "p_pct", 2),
}


@dataclass
class Curve:
    """One curve as the window shows it; None: a point never written."""

    type: int = 0
    count: int = 0
    x_units: int = 0
    y_units: int = 0
    x: list[float | None] = field(default_factory=lambda: [None] * POINTS)
    y: list[float | None] = field(default_factory=lambda: [None] * POINTS)

    def get(self, name: str) -> float | None:
        if name in FIELDS:
            return float(getattr(self, name))
        axis, n = name[0], int(name[1:]) - 1
        return (self.x if axis == "x" else self.y)[n]

    def set(self, name: str, value: float) -> None:
        if name in FIELDS:
            setattr(self, name, round(value))
        else:
            axis, n = name[0], int(name[1:]) - 1
            (self.x if axis == "x" else self.y)[n] = float(value)


def field_names() -> list[str]:
    """The window's cells after the selector, in AO order (AO245 on)."""
    return [*FIELDS, *(f"{axis}{n}" for n in range(1, POINTS + 1) for axis in "xy")]


def shown_from_settings(fn: CurveFunction, effective: Mapping[str, Any]) -> Curve:
    """The function's effective curve as the window shows it (X, Y in percent)."""
    section = effective[fn.name]
    points = section["curve"]
    y_factor = 1.0
    if fn.name == "volt_var" and section.get("q_base") == "rated_va":
        # % of rated VA -> % of max VArs (the nameplate's var_max_pct of rated VA)
        y_factor = 100.0 / float(effective["nameplate"]["var_max_pct"])
    curve = Curve(fn.mode_type, len(points), fn.x_units, fn.y_units)
    for i, p in enumerate(points[:POINTS]):
        curve.x[i] = round(p[fn.x_key] * 100.0, 6)
        curve.y[i] = round(p[fn.y_key] * y_factor, 6)
    return curve


class CurveEdit:
    """The drafts, the selection and which curve each function names."""

    def __init__(self, effective: Callable[[], Mapping[str, Any]]) -> None:
        self._effective = effective
        self.selected = 1
        self.drafts: dict[int, Curve] = {}
        self.refs: dict[str, int] = {name: fn.number for name, fn in FUNCTIONS.items()}

    def referenced_by(self, number: int) -> CurveFunction | None:
        return next((FUNCTIONS[n] for n, c in self.refs.items() if c == number), None)

    def shown(self, number: int) -> Curve:
        if number in self.drafts:
            return self.drafts[number]
        fn = self.referenced_by(number)
        if fn is None:
            return Curve()
        return shown_from_settings(fn, self._effective())

    def check_edit(self) -> None:
        """Raise if the selected curve may not be edited now (an enabled function names it)."""
        fn = self.referenced_by(self.selected)
        if fn is not None and self._effective()[fn.name]["enabled"]:
            raise CommandRefused(RefusalCause.BLOCKED,
                                 f"curve {self.selected} is followed by {fn.name}, which is "
                                 f"enabled: edit another curve and point {fn.name} at it")

    def edit(self, name: str, value: float) -> None:
        number = self.selected
        if number not in self.drafts:
            self.drafts[number] = copy.deepcopy(self.shown(number))
        self.drafts[number].set(name, value)

    def changes(self, fn: CurveFunction, number: int) -> dict[str, Any]:
        """The settings write that makes ``fn`` follow curve ``number``; raises
        :class:`CommandRefused` for a curve it cannot follow (nothing is checked
        against the other settings here: the core's validator does that)."""
        curve = self.shown(number)
        if curve.type != fn.mode_type:
            raise CommandRefused(RefusalCause.NOT_SUPPORTED,
                                 f"curve {number} has mode type {curve.type}; {fn.name} "
                                 f"follows type {fn.mode_type}")
        if (curve.x_units, curve.y_units) != (fn.x_units, fn.y_units):
            raise CommandRefused(RefusalCause.NOT_SUPPORTED,
                                 f"curve {number} units X {curve.x_units} / Y "
                                 f"{curve.y_units}; {fn.name} takes X {fn.x_units} / Y "
                                 f"{fn.y_units}")
        xs, ys = curve.x[:curve.count], curve.y[:curve.count]
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if x is None or y is None:
                raise CommandRefused(RefusalCause.INVALID_VALUE,
                                     f"curve {number}: point {i + 1} of {curve.count} was "
                                     f"never written (a gap)")
        return {fn.path: fn.to_points([float(x) for x in xs if x is not None],
                                      [float(y) for y in ys if y is not None]),
                **fn.extra}

    def applied(self, fn: CurveFunction, number: int) -> None:
        """``fn`` now follows curve ``number`` (the core accepted it): its draft is
        in force and the window shows the effective curve again."""
        self.refs[fn.name] = number
        self.drafts.pop(number, None)
