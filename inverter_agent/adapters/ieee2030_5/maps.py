"""What the IEEE 2030.5 adapter maps of the core: every registered grid function (or
why not) and every refusal cause (as a DER control Response status). The contract
test reads these for every adapter in the registry."""

from __future__ import annotations

from inverter_agent.core.commands import RefusalCause

from .translate import NOT_OFFERED, OFFERED

#: Core refusal cause -> IEEE 2030.5 Response status (Table "ResponseType" / CSIP):
#: 252 event not applicable to this device, 253 invalid, 254 expired. A valid control
#: the gateway will not carry out (two reactive modes together, a function this server
#: may not command here) is 252 per CSIP, not 253: 253 is for an invalid event.
#: responses.py raises what py20305 answers with these codes (its table: the README).
REFUSALS: dict[RefusalCause, int] = {
    RefusalCause.NOT_SUPPORTED: 252,
    RefusalCause.INVALID_VALUE: 253,
    RefusalCause.CONFLICT: 252,
    RefusalCause.NOT_AUTHORIZED: 252,
    RefusalCause.BLOCKED: 252,
    RefusalCause.EXPIRED: 254,
}

__all__ = ["NOT_OFFERED", "OFFERED", "REFUSALS"]
