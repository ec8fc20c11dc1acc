"""The plant view: several inverters behind one gateway seen and limited as one.

Pure functions, no I/O: the site loop gives each cycle what every inverter
reported and gets back the totals to publish and the share of the plant
active-power limit each inverter is to be held to.

Totals are the sum over the inverters that answered this cycle. When one is
missing the total is of the others, and its quality says so: questionable
(with ``inaccurate``) while some are missing, invalid (``failure``) when none
answers. The number reporting is published with it, so a client can tell
"the plant makes less" from "we see less of the plant".

The plant limit (W) is shared in proportion to rating, i.e. every inverter
that answers gets the same percentage of its own rating. An inverter that
stops answering keeps, in the books, the share it was last given: it may
still be producing up to that (it keeps the last limit written to it), so
that much is reserved and only the rest is shared among the others. An
inverter never reached since start reserves its last known rating, or
nothing if its rating was never read (the gateway cannot limit what it has
never seen; docs/functions.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from hal.reading import Detail, Quality, Validity

QUESTIONABLE_SOME_MISSING = Quality(Validity.QUESTIONABLE, Detail.INACCURATE)
INVALID_NONE_REPORTING = Quality(Validity.INVALID, Detail.FAILURE)
GOOD = Quality()


@dataclass(frozen=True, slots=True)
class InverterView:
    """What one inverter reported this cycle (None: not known)."""

    name: str
    reporting: bool
    w: float | None = None
    var: float | None = None
    va: float | None = None
    w_rtg: float | None = None  # last known rating, kept while it is not reporting


@dataclass(frozen=True, slots=True)
class PlantTotals:
    w: float
    var: float
    va: float
    reporting: int
    configured: int
    w_rtg: float  # sum of the known ratings of all inverters
    quality: Quality


def totals(views: list[InverterView]) -> PlantTotals:
    """Sums over the reporting inverters, with the quality that says how complete they are."""
    live = [v for v in views if v.reporting]
    if not live:
        quality = INVALID_NONE_REPORTING
    elif len(live) < len(views) or any(v.w is None for v in live):
        quality = QUESTIONABLE_SOME_MISSING
    else:
        quality = GOOD

    def total(attr: str) -> float:
        return math.fsum(getattr(v, attr) or 0.0 for v in live)

    return PlantTotals(w=total("w"), var=total("var"), va=total("va"), reporting=len(live),
                       configured=len(views), w_rtg=math.fsum(v.w_rtg or 0.0 for v in views),
                       quality=quality)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Each inverter's cap (% of its rating; None: no plant cap) and the books behind it."""

    caps_pct: dict[str, float | None]
    shares_w: dict[str, float] = field(default_factory=dict)  # W allotted, live or held
    reserved_w: float = 0.0  # held for inverters not answering
    limiting: bool = False  # the limit is below what the plant could make


def allocate(w_max: float | None, views: list[InverterView],
             held_w: Mapping[str, float]) -> Allocation:
    """Share ``w_max`` among ``views``; ``held_w`` is the previous :attr:`Allocation.shares_w`.

    ``w_max`` None (no plant limit) gives no caps and clears the books.
    """
    if w_max is None:
        return Allocation({v.name: None for v in views})
    live = [v for v in views if v.reporting and v.w_rtg]
    reserved = {v.name: held_w.get(v.name, v.w_rtg or 0.0)
                for v in views if v not in live}
    reserved_w = math.fsum(reserved.values())
    available = max(0.0, w_max - reserved_w)
    live_rtg = math.fsum(v.w_rtg or 0.0 for v in live)
    pct = min(100.0, 100.0 * available / live_rtg) if live_rtg > 0 else 0.0
    caps: dict[str, float | None] = {v.name: None for v in views}
    shares = dict(reserved)
    for v in live:
        caps[v.name] = pct
        shares[v.name] = pct / 100.0 * (v.w_rtg or 0.0)
    return Allocation(caps, shares, reserved_w, limiting=pct < 100.0)
