"""One precedence for every rating the upper layers convert with.

A device may state the same rating in several models: 120 nameplate (what it
is built for), 121 basic settings (what it is set to), 702 (IEEE 1547-2018
ratings ``*Rtg`` and settings). The settings bound what the device will do
now, so they come first; then the 1547-2018 rating, then the legacy nameplate:

=========  =====================================================================
VNom       702 VNom, 121 VRef, 702 VNomRtg                  (V, as the device states it)
WMax       702 WMax, 121 WMax, 702 WMaxRtg, 120 WRtg        (W)
VAMax      702 VAMax, 121 VAMax, 702 VAMaxRtg, 120 VARtg    (VA)
VArMaxInj  702 VarMaxInj, 121 VArMaxQ1, 702 VarMaxInjRtg, 120 VArRtgQ1  (var, injecting)
VArMaxAbs  702 VarMaxAbs, 121 VArMaxQ4, 702 VarMaxAbsRtg, 120 VArRtgQ4  (var, absorbing,
           as a positive magnitude; 121 and 120 state it negative)
=========  =====================================================================

A value that is unimplemented, zero, negative or not finite at one level is
"not stated there" and the next level decides (devices commonly leave an
unconfigured setting at 0). None of the levels stating it: the rating is
unknown, and the caller must not assume one. A configured nominal voltage, if
any, overrides the device's (the agent applies that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hal.sunspec.models import DecodedModel

#: rating -> ordered (model, point, sign) sources.
PRECEDENCE: dict[str, tuple[tuple[int, str, int], ...]] = {
    "VNom": ((702, "VNom", 1), (121, "VRef", 1), (702, "VNomRtg", 1)),
    "WMax": ((702, "WMax", 1), (121, "WMax", 1), (702, "WMaxRtg", 1), (120, "WRtg", 1)),
    "VAMax": ((702, "VAMax", 1), (121, "VAMax", 1), (702, "VAMaxRtg", 1), (120, "VARtg", 1)),
    "VArMaxInj": ((702, "VarMaxInj", 1), (121, "VArMaxQ1", 1), (702, "VarMaxInjRtg", 1),
                  (120, "VArRtgQ1", 1)),
    "VArMaxAbs": ((702, "VarMaxAbs", 1), (121, "VArMaxQ4", -1), (702, "VarMaxAbsRtg", 1),
                  (120, "VArRtgQ4", -1)),
}


@dataclass(frozen=True, slots=True)
class Rating:
    value: float | None
    source: str  # "702 VNomRtg", or "" when unknown


def resolve(models: Mapping[int, DecodedModel]) -> dict[str, Rating]:
    """Every rating of :data:`PRECEDENCE` from the decoded models."""
    out: dict[str, Rating] = {}
    for name, sources in PRECEDENCE.items():
        out[name] = Rating(None, "")
        for mid, point, sign in sources:
            m = models.get(mid)
            if m is None:
                continue
            v = m.values.get(point)
            if not isinstance(v, int | float) or isinstance(v, bool):
                continue
            v = float(v) * sign
            if math.isfinite(v) and v > 0:
                out[name] = Rating(v, f"{mid} {point}")
                break
    return out
