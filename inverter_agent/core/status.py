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
from inverter_agent.functions.registry import FUNCTIONS


def health(standing_aside: str | None, notes: tuple[str, ...],
           alarms: tuple[str, ...] = ()) -> int:
    """HealthKind of the functions: alarm while standing aside or while a function the
    device should run itself does not (a refused program, a change at the panel),
    warning with caveats."""
    if standing_aside is not None or alarms:
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
    for spec in FUNCTIONS:  # every registered function, in the registry's order
        enabled = bool(getattr(getattr(s, spec.name), "enabled", False))
        active = enabled and st.active and (
            spec.output is None or (es is not None and getattr(es, spec.output) is not None))
        followed = ((spec.follows not in st.not_followed)
                    if spec.follows is not None and active else None)
        functions[spec.name] = FunctionState(enabled, active, followed)
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
        health=health(st.standing_aside, tuple(st.notes), tuple(st.alarms)),
        steering={f: dict(c) for f, c in st.steering.items()},
        alarms=tuple(st.alarms),
        utility=utility,
        own_recorded=controller.steer.recorded_at() if hasattr(controller, "steer") else None,
    )
