"""An export limit at the point of common coupling (PCC), held with a site meter.

Pure: the measurements and the limit in, the generation cap out; time is the
caller's. The meter counts W positive when the site imports (``hal.meter``),
so

    export = -W_site,   site load = W_site + W_generation,

and export <= limit exactly when generation <= limit + load. The cap on the
generation is therefore ``limit + load`` (never below 0, never above what the
inverters are rated for), recomputed every cycle from the meter's and the
inverters' readings of that cycle: as the load changes, so does the cap, and
the export stays at the limit. It is one more ceiling on the inverters' active
power: every other limit (the generation limit, volt-watt, a plant limit)
combines with it and the lowest wins, so it never lifts one.

Without a usable measurement (no meter, a meter reading not good, an inverter
whose output is not known) the load cannot be credited, and the limit is
applied as a generation limit: export = generation - load <= generation <=
limit. It can only err on the safe side (export below the limit by the site's
own load), and the caller raises an alarm saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: How an export limit is being held.
NONE, CLOSED_LOOP, FALLBACK = "none", "closed_loop", "generation_limit"


@dataclass(frozen=True, slots=True)
class ExportCap:
    """The generation cap (W, all the site's inverters together) an export limit asks."""

    limit_w: float | None
    cap_w: float | None
    mode: str
    load_w: float | None = None
    reason: str = ""


def export_cap(limit_w: float | None, site_w: float | None, gen_w: float | None,
               gen_max_w: float | None = None, margin_w: float = 0.0,
               why_invalid: str | None = None, step_w: float = 0.0) -> ExportCap:
    """The generation cap for an export limit ``limit_w`` (W; None: no export limit).

    ``site_w``: the meter's W this cycle (import positive), None if not good;
    ``gen_w``: the inverters' W together, None if any is not known;
    ``gen_max_w``: their ratings together (the cap's upper bound), None if unknown;
    ``margin_w``: held below the limit (measurement and response lag);
    ``why_invalid``: why the meter's data is not usable, if the caller knows;
    ``step_w``: the cap is rounded down to a multiple of it, so a load that wanders a
    little does not rewrite the inverters' limit every cycle (rounded down: the export
    stays at or below the limit, by less than one step).
    """
    if limit_w is None:
        return ExportCap(None, None, NONE)
    if site_w is None or gen_w is None or why_invalid is not None:
        why = why_invalid or ("no good meter reading" if site_w is None
                              else "an inverter's output is not known")
        return ExportCap(limit_w, max(0.0, limit_w), FALLBACK, None,
                         f"{why}: the export limit {limit_w:g} W is applied as a generation "
                         "limit (export stays below it by the site's own load)")
    load = site_w + gen_w
    cap = max(0.0, limit_w + load - margin_w)
    if gen_max_w is not None and gen_max_w > 0:
        cap = min(cap, gen_max_w)
    if step_w > 0:
        cap = math.floor(cap / step_w) * step_w
    return ExportCap(limit_w, cap, CLOSED_LOOP, load,
                     f"export limit {limit_w:g} W held at the connection point: load "
                     f"{load:.0f} W, generation cap {cap:.0f} W")
