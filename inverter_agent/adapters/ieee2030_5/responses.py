"""Why a control is refused, and the IEEE 2030.5 Response status that says so.

The core says why it refuses a control in protocol-neutral terms
(:class:`~inverter_agent.core.commands.RefusalCause`); IEEE 2030.5-2018
Table 27 (the CSIP profile) answers a DERControl with a Response status, by
the one map :data:`.maps.REFUSALS`. The lifecycle codes are the engine's
(py20305 posts them from the event's state): 1 received, 2 started,
3 completed, 6 cancelled, 7 superseded, and 254 for an event whose end has
passed when it is received. A refusal is this module's:

====================  ======  ===================================================
core cause            status  meaning (2030.5-2018 Table 27)
====================  ======  ===================================================
NOT_SUPPORTED         252     a valid control this gateway does not carry out
                              (a mode it does not apply, a value outside this
                              DER's own range, a curve reference it does not
                              take)
CONFLICT              252     valid alone, not together (two reactive modes)
NOT_AUTHORIZED        252     this server may not command that function here
BLOCKED               252     held off locally (protection, a local interlock)
INVALID_VALUE         253     the event is invalid (a value outside the range
                              2030.5 gives its type, an unresolvable link)
EXPIRED               254     the event's end had passed when it came to apply
====================  ======  ===================================================

Conformance procedures (CSIP CORE-022, CSIP-AUS ALL-18) check that a valid
control the device does not carry out is answered 252, not 253.

How the code reaches the wire: the dispatcher raises one of the exceptions
below; py20305's event processor turns a dispatch failure into the Response
(``response_code_for_dispatch_error``). 252 and 253 are py20305's own classes
(subclassed here), so its mapping gives them; 254 has no such class, and
:func:`install` wraps the processor's mapping so that an exception carrying
``response_code`` is answered with it (a wrapper, no file of py20305 edited).
"""

from __future__ import annotations

import functools
from typing import Any

from inverter_agent.core.commands import RefusalCause

from .maps import REFUSALS

#: IEEE 2030.5-2018 Response status codes (Table 27).
RECEIVED, STARTED, COMPLETED, CANCELLED, SUPERSEDED = 1, 2, 3, 6, 7
NOT_APPLICABLE, INVALID, EXPIRED = 252, 253, 254


def response_code(cause: RefusalCause | str) -> int:
    """The Response status for a refusal cause (maps.REFUSALS; a cause or its value)."""
    return REFUSALS[RefusalCause(cause)]


@functools.cache
def _exception_types() -> dict[int, type[Exception]]:
    from py20305.connectors.control_errors import (
        ControlError,
        DeviceNotConfiguredError,
        InvalidControlValueError,
    )

    class NotApplicable(DeviceNotConfiguredError):  # type: ignore[misc]
        response_code = NOT_APPLICABLE

    class Invalid(InvalidControlValueError):  # type: ignore[misc]
        response_code = INVALID

    class Expired(ControlError):  # type: ignore[misc]
        response_code = EXPIRED

    return {NOT_APPLICABLE: NotApplicable, INVALID: Invalid, EXPIRED: Expired}


def refusal(cause: Any, why: str) -> Exception:
    """The exception the dispatcher raises so that the engine answers ``response_code``."""
    return _exception_types()[response_code(cause)](why)


_installed = False


def install() -> None:
    """Make py20305's event processor answer an exception's ``response_code`` (254)."""
    global _installed
    if _installed:
        return
    from py20305.events import processor
    from py20305.events.response import ResponseCode

    original = processor.response_code_for_dispatch_error

    def code_for(exc: BaseException) -> ResponseCode:
        code = getattr(exc, "response_code", None)
        return ResponseCode(code) if code is not None else original(exc)

    processor.response_code_for_dispatch_error = code_for
    _installed = True
