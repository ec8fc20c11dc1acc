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
from inverter_agent.core.site import PlantService, PlantSettingError

from .plant_model import CONTROLS
from .server import MmsServer

log = logging.getLogger(__name__)


def attach_plant(plant: PlantService, server: MmsServer, writable: bool = True) -> None:
    """Serve ``plant``'s LD on ``server`` (before start); writable only with functions."""
    if writable:
        for target, (name, kind) in CONTROLS.items():
            server.set_control(f"{plant.ld}/{target}", _operator(plant, server, name, kind), 1,
                               "write")  # a setting: needs the right to write
    server.add_start_hook(lambda: _show_settings(plant, server))
    plant.publishers.append(lambda now: publish(plant, server, now))


def _operator(plant: PlantService, server: MmsServer, name: str,
              kind: str) -> Callable[[Any, str], int | None]:
    """A plant setting operated as a control: validated and persisted before the
    positive response; refused with AddCause 26 (inconsistent parameters)."""
    write = _writer(plant, server, name)

    def check(value: Any, peer: str) -> int | None:
        if value is None:
            return None  # select
        if kind == "mod":
            if isinstance(value, bool) or value not in (1, 5):
                return 26
            value = value == 1
        return None if write(value, "", peer) else 26
    return check


def _writer(plant: PlantService, server: MmsServer,
            name: str) -> Callable[[Any, str, str], bool]:
    def write(value: Any, _path: str, peer: str) -> bool:
        audit = server.audit
        old = getattr(plant.limit, name)
        try:
            plant.write(name, value, f"mms {peer}")
        except (PlantSettingError, OSError) as exc:
            log.warning("plant setting %s = %r from %s refused: %s", name, value, peer, exc)
            if audit is not None:
                audit.record("setting.write", f"mms {peer}", "refused",
                             f"{plant.ld}/{name}", new=value, reason=str(exc))
            return False
        if audit is not None:
            audit.record("setting.write", f"mms {peer}", "ok", f"{plant.ld}/{name}", old, value)
        return True
    return write


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
