"""What the MMS adapter maps of the core: every registered grid function (or why
not) and every refusal cause (as an IEC 61850-7-2 AddCause). The contract test
reads these for every adapter in the registry."""

from __future__ import annotations

from .binding import ADD_CAUSE as REFUSALS
from .functions_model import NOT_OFFERED, OFFERED

__all__ = ["NOT_OFFERED", "OFFERED", "REFUSALS"]
