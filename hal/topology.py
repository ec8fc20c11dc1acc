"""Which phases the inverter has, from its own models.

SunSpec says it in the model id (101 / 111 single phase, 102 / 112 split
phase, 103 / 113 three phase) and, for the IEEE 1547-2018 models, in 701
``ACType`` (0 single, 1 split, 2 three phase). Many devices fill the phases
they do not have with 0 rather than the unimplemented sentinel, so a phase the
topology does not name is reported unimplemented whatever its registers hold.

When the models disagree, or 701 gives no ``ACType`` (or a code the
definition does not list) and no 10x / 11x model says otherwise, the topology
is unknown and the reason says why: the upper layers must not guess.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from hal.sunspec.models import DecodedModel


class AcType(enum.Enum):
    """AC wiring of the inverter."""

    SINGLE = "single"
    SPLIT = "split"
    THREE = "three"


#: The phases (A, B, C in the classic point names) each wiring has.
PHASES: dict[AcType, tuple[str, ...]] = {
    AcType.SINGLE: ("A",),
    AcType.SPLIT: ("A", "B"),
    AcType.THREE: ("A", "B", "C"),
}

_BY_MODEL = {101: AcType.SINGLE, 111: AcType.SINGLE, 102: AcType.SPLIT, 112: AcType.SPLIT,
             103: AcType.THREE, 113: AcType.THREE}
#: Model 701 ACType codes (its definition's symbols).
_ACTYPE_701 = {0: AcType.SINGLE, 1: AcType.SPLIT, 2: AcType.THREE}


@dataclass(frozen=True, slots=True)
class Topology:
    """The wiring, or None with the reason it is not known."""

    ac_type: AcType | None
    reason: str = ""

    @property
    def phases(self) -> tuple[str, ...]:
        return PHASES[self.ac_type] if self.ac_type is not None else ()


def topology(model_ids: list[int] | tuple[int, ...],
             models: Mapping[int, DecodedModel]) -> Topology:
    """The device's wiring from the model ids it lists and 701's ``ACType``."""
    said: dict[str, AcType] = {}
    for mid in model_ids:
        if mid in _BY_MODEL:
            said[f"model {mid}"] = _BY_MODEL[mid]
    m701 = models.get(701)
    if m701 is not None:
        code = m701.raw.get("ACType")
        if code is not None and code in _ACTYPE_701:
            said["701 ACType"] = _ACTYPE_701[code]
        elif code is not None:
            if not said:
                return Topology(None, f"701 ACType {code} is not a code the model defines "
                                      "(0 single, 1 split, 2 three phase)")
        elif not said:
            return Topology(None, "701 ACType not implemented and no 10x/11x model")
    elif 701 in model_ids and not said:
        return Topology(None, "701 not read yet")
    kinds = set(said.values())
    if not kinds:
        return Topology(None, "no inverter model (10x, 11x or 701)")
    if len(kinds) > 1:
        return Topology(None, "models disagree on the wiring: " + ", ".join(
            f"{k} {v.value}" for k, v in sorted(said.items())))
    return Topology(kinds.pop())
