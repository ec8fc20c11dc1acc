"""Status rendering: a controller's state turned into the typed :class:`FunctionsStatus`.

Kept out of the controller, which steers; this module only reads what the
controller and the engine recorded last cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inverter_agent.core.view import (
    HEALTH_ALARM,
    HEALTH_OK,
    HEALTH_WARNING,
    FunctionsStatus,
    FunctionState,
    SetpointsView,
    TripCause,
)

#: The functions a status lists, in display order.
STATUS_FUNCTIONS = ("voltage_ride_through", "frequency_ride_through", "anti_islanding",
                    "enter_service", "volt_var", "fixed_pf", "constant_var", "volt_watt",
                    "freq_watt", "active_power_limit", "ramp")
#: Which "not followed" check covers a function (the controller's follow keys).
FOLLOW_KEY = {"volt_var": "reactive", "fixed_pf": "reactive", "constant_var": "reactive",
              "active_power_limit": "p_limit", "volt_watt": "p_limit", "freq_watt": "p_limit",
              "enter_service": "connect", "voltage_ride_through": "connect",
              "frequency_ride_through": "connect"}
#: Functions whose output is only active while the engine computes one.
_OUTPUT = {"volt_var": "volt_var_q_pct", "volt_watt": "volt_watt_p_pct",
           "freq_watt": "freq_watt_p_pct"}


def health(standing_aside: str | None, notes: tuple[str, ...]) -> int:
    """HealthKind of the functions: alarm while standing aside, warning with caveats."""
    if standing_aside is not None:
        return HEALTH_ALARM
    return HEALTH_WARNING if notes else HEALTH_OK


def functions_status(controller: Any, utility: Mapping[str, Any] | None = None
                     ) -> FunctionsStatus:
    """The typed status of ``controller`` (a :class:`~inverter_agent.core.controller.
    Controller`) after its last cycle."""
    s, st = controller.settings, controller.status
    es = controller.state.status if controller.state is not None else None
    sp = st.setpoints
    functions = {}
    for name in STATUS_FUNCTIONS:
        enabled = bool(getattr(getattr(s, name), "enabled", False))
        active = enabled and st.active
        if name in _OUTPUT:
            active = active and es is not None and getattr(es, _OUTPUT[name]) is not None
        key = FOLLOW_KEY.get(name)
        followed = (key not in st.not_followed) if key is not None and active else None
        functions[name] = FunctionState(enabled, active, followed)
    return FunctionsStatus(
        running=st.active, reason=st.reason,
        state=es.state.value if es is not None else "out_of_service",
        out_of_service_cause=es.out_of_service_cause if es is not None else "boot",
        out_of_service_kind=es.out_of_service_kind if es is not None else TripCause.BOOT,
        voltage_region=es.voltage_region if es is not None else "NN",
        frequency_region=es.frequency_region if es is not None else "NN",
        anti_islanding=es.anti_islanding.value if es is not None else "not_reported",
        enter_service_remaining_s=es.enter_service_remaining_s if es else 0.0,
        functions=functions,
        not_followed=dict(st.not_followed),
        setpoints=None if sp is None else SetpointsView(
            sp.connect, sp.p_limit_pct, sp.reactive_mode.value, sp.pf, sp.pf_absorbing,
            sp.q_pct),
        last_event=st.last_event,
        plant_cap_pct=controller.plant_cap_pct,
        standing_aside=st.standing_aside,
        notes=tuple(st.notes),
        health=health(st.standing_aside, tuple(st.notes)),
        utility=utility,
    )
