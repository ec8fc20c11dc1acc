"""The plant view over MMS: the plant logical device bound to the core's PlantService.

The plant limit and its allocation live in the core (``site.PlantService``);
this binding serves them: write handlers for the plant settings (validated and
persisted by the service before the MMS response), the settings shown at
start, and the totals and caps published after every cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hal.reading import Reading
from inverter_agent.core.commands import CommandRefused
from inverter_agent.core.site import PlantService

from .binding import ADD_CAUSE
from .plant_model import CONTROLS
from .server import MmsServer

log = logging.getLogger(__name__)


#: The core's plant-limit command: ``write(name, value, who)``; raises CommandRefused.
PlantWrite = Callable[[str, Any, str], Any]


def attach_plant(plant: PlantService, server: MmsServer, write: PlantWrite | None = None) -> None:
    """Serve ``plant``'s LD on ``server`` (before start); writable through the core's
    ``write`` (validated, persisted and audited there), read-only without it."""
    if write is not None:
        for target, (name, kind) in CONTROLS.items():
            server.set_control(f"{plant.ld}/{target}", _operator(write, name, kind), 1,
                               "write")  # a setting: needs the right to write
    server.add_start_hook(lambda: _show_settings(plant, server))
    plant.publishers.append(lambda now: publish(plant, server, now))


def _operator(write: PlantWrite, name: str, kind: str) -> Callable[[Any, str], int | None]:
    """A plant setting operated as a control: validated and persisted before the
    positive response; a refused one answers the cause's AddCause (:data:`ADD_CAUSE`:
    26 inconsistent parameters for a bad value)."""

    def check(value: Any, peer: str) -> int | None:
        if value is None:
            return None  # select
        if kind == "mod":
            if isinstance(value, bool) or value not in (1, 5):
                return 26
            value = value == 1
        try:
            write(name, value, f"mms {peer}")
        except CommandRefused as exc:
            log.warning("plant setting %s = %r from %s refused: %s", name, value, peer, exc)
            return ADD_CAUSE[exc.cause]
        return None
    return check


def _settings(plant: PlantService) -> dict[str, Any]:
    # Operated settings (APC / Mod) land in the model only when shown.
    mod = 1 if plant.limit.enabled else 5
    return {f"{plant.ld}/DWMX1.Mod": mod, f"{plant.ld}/DWMX1.Beh": mod,
            f"{plant.ld}/DWMX1.WMaxSpt": plant.limit.w_max}


def _show_settings(plant: PlantService, server: MmsServer) -> None:
    server.update(_settings(plant))


def publish(plant: PlantService, server: MmsServer, now: float) -> None:
    t, alloc = plant.totals, plant.allocation
    if t is None:
        return
    ld = plant.ld
    health = 1 if t.reporting == t.configured else (2 if t.reporting else 3)
    live_caps = [c for c in alloc.caps_pct.values() if c is not None]
    server.update({
        f"{ld}/MMXU1.TotW": Reading(t.w, t.quality, now),
        f"{ld}/MMXU1.TotVAr": Reading(t.var, t.quality, now),
        f"{ld}/MMXU1.TotVA": Reading(t.va, t.quality, now),
        f"{ld}/LLN0.Health": health,
        f"{ld}/DECP1.WRtg": t.w_rtg,
        f"{ld}/DWMX1.LimAct": bool(plant.limit.enabled and alloc.limiting),
        f"{ld}/DWMX1.ReqWMaxPct": min(live_caps) if live_caps else 100.0,
        f"{ld}/GGIO1.IntIn1": t.reporting,
        f"{ld}/GGIO1.IntIn2": t.configured,
        **_settings(plant),
    }, now)
