"""Why the core refuses a command, in words no protocol owns.

Every adapter maps :class:`RefusalCause` to its own error: MMS to an
IEC 61850-7-2 AddCause, IEEE 2030.5 to a Response status, DNP3 to a command
status. The core never raises a protocol's code, and an adapter never invents
a cause the core did not give.
"""

from __future__ import annotations

import enum


class RefusalCause(enum.StrEnum):
    """The protocol-neutral reasons a command is refused; nothing changed."""

    #: No such setting or control, or not on this device.
    NOT_SUPPORTED = "not-supported"
    #: Out of range, wrong type, not finite, a curve with a gap.
    INVALID_VALUE = "invalid-value"
    #: Valid alone but not with what is in force (two reactive modes at once).
    CONFLICT = "conflict"
    #: The client's role does not carry this right.
    NOT_AUTHORIZED = "not-authorized"
    #: Valid, but the gateway will not carry it out now (standing aside, link down).
    BLOCKED = "blocked"
    #: A scheduled command whose window has already ended.
    EXPIRED = "expired"


class CommandRefused(Exception):
    """A command refused whole: ``cause`` for the protocol, ``detail`` for people."""

    def __init__(self, cause: RefusalCause, detail: str) -> None:
        super().__init__(detail)
        self.cause = RefusalCause(cause)
        self.detail = detail
        #: Set once the core has written the refusal to the audit log.
        self.audited = False
