"""What the DNP3 adapter maps of the core: every registered grid function (or why
not) and every refusal cause as an IEEE 1815 command status (group 12 / 41 echo).
The contract test reads these for every adapter in the registry."""

from __future__ import annotations

from inverter_agent.core.commands import RefusalCause

from .points import ROWS

#: IEEE 1815 control status codes (the status octet of a CROB / analog output echo),
#: as numbers so this module imports no engine.
SUCCESS = 0
TIMEOUT = 1
FORMAT_ERROR = 3
NOT_SUPPORTED = 4
NOT_AUTHORIZED = 9
OUT_OF_RANGE = 12
BLOCKED = 15

#: Every refusal cause of the core -> the command status the master is answered with.
REFUSALS: dict[RefusalCause, int] = {
    RefusalCause.NOT_SUPPORTED: NOT_SUPPORTED,
    RefusalCause.INVALID_VALUE: OUT_OF_RANGE,
    # valid alone, not with what is in force (two reactive modes): the point is blocked
    RefusalCause.CONFLICT: BLOCKED,
    RefusalCause.NOT_AUTHORIZED: NOT_AUTHORIZED,
    RefusalCause.BLOCKED: BLOCKED,
    # a window already over: DNP3's "timed out before it was executed"
    RefusalCause.EXPIRED: TIMEOUT,
}


def _carriers() -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for row in ROWS:
        if row.kind in ("AO", "BO") and row.function:
            out.setdefault(row.function, []).append(f"{row.kind}{row.index}")
    return {name: ", ".join(points) for name, points in out.items()}


#: Function -> the outputs that command it (from the point map).
OFFERED: dict[str, str] = _carriers()

#: Function -> why the outstation does not offer it (yet).
NOT_OFFERED: dict[str, str] = {
    "voltage_ride_through": "a must-trip / momentary-cessation curve (AO23-26) gives "
                            "thresholds and clearing times, not each region's mode or "
                            "ride-through time, and the curve types' and time units' "
                            "enumeration values are not in any redistributable source: "
                            "a curve read in the wrong unit would change protection "
                            "otherwise than the master wrote (first, do no harm). "
                            "They stay as configured "
                            "(MMS carries them whole, DHVT1 / DLVT1 RtCrv)",
    "frequency_ride_through": "as voltage ride-through: the must-trip curves (AO28-29) are "
                              "not turned into protection settings (MMS DHFT1 / DLFT1 RtCrv)",
    "anti_islanding": "AN2018-001 has no point for it: supervision stays local",
    "enter_service": "the enter-service window (AO6-12) is not mapped yet",
    "ramp": "AN2018-001 ramp rates are per mode (e.g. AO175/176), not mapped yet",
}
