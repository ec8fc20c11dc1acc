"""The grid functions, each declared once.

A function is named by its key in :class:`~inverter_agent.functions.settings.Settings`
(and in the settings dict, the persisted file and every protocol's map). Its
settings dataclass carries the allowed ranges beside its fields
(:mod:`.ranges`). The validator, the engine's reactive-mode choice, the
settings service and every adapter's function map enumerate :data:`FUNCTIONS`
instead of a list of their own.

Adding a function: write its module (settings dataclass with ranges, pure
step), add its field to ``Settings`` and its line here; then every adapter
must say whether it offers the function or why not (``OFFERED`` /
``NOT_OFFERED`` beside the adapter's map, checked by
``tests/adapters/test_function_coverage.py`` with :func:`coverage_problems`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .anti_islanding import AntiIslandingSettings
from .constant_var import ConstantVarSettings
from .enter_service import EnterServiceSettings
from .fixed_pf import FixedPfSettings
from .freq_watt import FreqWattSettings
from .power_limit import PowerLimitSettings
from .ramp import RampSettings
from .ride_through import RideThroughSettings
from .set_active_power import SetActivePowerSettings
from .volt_var import VoltVarSettings
from .volt_watt import VoltWattSettings


class Family(enum.Enum):
    """What a function acts on, which decides how it combines with the others."""

    PROTECTION = "protection"  # backup trips and supervision (1547-2018 6.4, 6.5, 8.1)
    SERVICE = "service"  # whether the DER may energize (4.10)
    ACTIVE = "active"  # active power: every limit applies, the lowest wins
    REACTIVE = "reactive"  # reactive power: one mode at a time (5.3.1)


#: The setpoint part the controller checks the inverter follows (``not_followed`` keys).
Follow = Literal["connect", "p_limit", "reactive", "storage"]


@dataclass(frozen=True)
class FunctionSpec:
    """One grid function.

    Attributes:
        name: its key in ``Settings`` (``"volt_var"``).
        settings: its frozen settings dataclass (ranges in the field metadata).
        title: what a person calls it.
        family: see :class:`Family`; the reactive family is mutually exclusive, in
            the order of :data:`FUNCTIONS` when unvalidated settings enable several.
        follows: the setpoint part through which the inverter carries the function
            (the controller's "not followed" key), None if it commands nothing itself.
        output: the ``EngineStatus`` field that is None while the function is not
            acting (None: acting whenever enabled and the controller runs).
    """

    name: str
    settings: type
    title: str
    family: Family
    follows: Follow | None = None
    output: str | None = None


#: Every function, in display order (the controller's status and the adapters list
#: them in this order). The reactive ones are in priority order.
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("voltage_ride_through", RideThroughSettings, "voltage ride-through",
                 Family.PROTECTION, "connect"),
    FunctionSpec("frequency_ride_through", RideThroughSettings, "frequency ride-through",
                 Family.PROTECTION, "connect"),
    FunctionSpec("anti_islanding", AntiIslandingSettings, "anti-islanding supervision",
                 Family.PROTECTION),
    FunctionSpec("enter_service", EnterServiceSettings, "enter service", Family.SERVICE,
                 "connect"),
    FunctionSpec("volt_var", VoltVarSettings, "volt-var", Family.REACTIVE, "reactive",
                 "volt_var_q_pct"),
    FunctionSpec("fixed_pf", FixedPfSettings, "constant power factor", Family.REACTIVE,
                 "reactive"),
    FunctionSpec("constant_var", ConstantVarSettings, "constant reactive power",
                 Family.REACTIVE, "reactive"),
    FunctionSpec("volt_watt", VoltWattSettings, "volt-watt", Family.ACTIVE, "p_limit",
                 "volt_watt_p_pct"),
    FunctionSpec("freq_watt", FreqWattSettings, "frequency droop", Family.ACTIVE, "p_limit",
                 "freq_watt_p_pct"),
    FunctionSpec("active_power_limit", PowerLimitSettings, "limit maximum active power",
                 Family.ACTIVE, "p_limit"),
    FunctionSpec("ramp", RampSettings, "normal ramp rate", Family.ACTIVE),
    # Storage: a charge / discharge setpoint; no limit of the others' (never lifts or
    # forces one), so it combines by core/arbitration.py storage_setpoint.
    FunctionSpec("set_active_power", SetActivePowerSettings,
                 "set active power (storage charge / discharge)", Family.ACTIVE, "storage",
                 "storage_w"),
)

#: Name -> spec.
BY_NAME: Mapping[str, FunctionSpec] = {f.name: f for f in FUNCTIONS}
#: Names of the reactive power modes, in priority order (mutually exclusive).
REACTIVE: tuple[str, ...] = tuple(f.name for f in FUNCTIONS if f.family is Family.REACTIVE)


def get(name: str) -> FunctionSpec:
    """The spec of function ``name``; KeyError naming the known functions otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no grid function {name!r}; known: "
                       f"{', '.join(BY_NAME)}") from None


def family(fam: Family) -> tuple[FunctionSpec, ...]:
    """The functions of one family, in :data:`FUNCTIONS` order."""
    return tuple(f for f in FUNCTIONS if f.family is fam)


def coverage_problems(offered: Mapping[str, str], not_offered: Mapping[str, str],
                      functions: tuple[FunctionSpec, ...] = FUNCTIONS) -> list[str]:
    """What is wrong with an adapter's function map; empty when it is complete.

    ``offered`` maps a function name to what carries it in the protocol (a logical
    node, an opMod...); ``not_offered`` maps a function name to the reason the
    protocol does not carry it. Every registered function must be in exactly one of
    the two, with a non-empty carrier or reason, and no other name may appear.
    """
    problems = []
    known = {f.name for f in functions}
    for f in functions:
        if f.name in offered and f.name in not_offered:
            problems.append(f"{f.name}: both offered and declared not offered")
        elif f.name not in offered and f.name not in not_offered:
            problems.append(f"{f.name}: neither offered nor declared not offered")
    for what, table in (("offered", offered), ("not offered", not_offered)):
        for name, text in table.items():
            if name not in known:
                problems.append(f"{name}: {what}, but no such grid function")
            elif not isinstance(text, str) or not text.strip():
                kind = "carrier" if table is offered else "reason"
                problems.append(f"{name}: {what} with an empty {kind}")
    return problems
