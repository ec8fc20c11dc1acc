"""Storage in the core: does the gateway understand the battery well enough to command
it, and what every adapter sees of it (:class:`~inverter_agent.core.view.StorageView`).

First, do no harm, for storage only: a state of charge or a capacity that is
missing or implausible, or rates the device does not state, mean no storage
command (the device manages its battery itself) and an alarm that names what is
wrong; the grid functions run on. Charging (negative W) is normal operation:
it raises nothing here, and nothing in the plausibility of the AC measurements.

Pure: no I/O, no clock. The HAL's storage names are those of ``hal/storage.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hal.reading import NOT_IMPLEMENTED, Reading
from inverter_agent.core.plausibility import _num  # a good, finite number, or None
from inverter_agent.core.view import StorageView
from inverter_agent.functions.set_active_power import StorageState, available

#: A capacity outside this (Wh) is a misread or a wrong scale factor, not a battery.
WH_RANGE = (1.0, 1e9)
#: A state of charge is a percentage.
SOC_RANGE = (0.0, 100.0)


def present(s: Mapping[str, Reading]) -> bool:
    """The device carries a storage model (the HAL derived storage readings)."""
    return "StorSoC" in s


def controllable(s: Mapping[str, Reading]) -> bool:
    """The device takes a battery power command (model 124 is in its chain)."""
    return "StorCtl_Mod" in s


def assess(s: Mapping[str, Reading], w_rtg: float | None
           ) -> tuple[StorageState | None, str | None]:
    """The battery as the set-active-power function needs it, or None with why not.

    The reason is None when there is nothing to command (no model 124), so no alarm
    for a device that only reports its storage."""
    if not present(s) or not controllable(s):
        return None, None
    problems = []
    soc = _num(s, "StorSoC")
    if soc is None:
        problems.append("state of charge missing (the device reports none)")
    elif not SOC_RANGE[0] <= soc <= SOC_RANGE[1]:
        problems.append(f"state of charge {soc:g} % implausible (0..100 %)")
    wh = _num(s, "StorWhRtg")
    if wh is None:
        problems.append("energy capacity missing (no WHRtg in 713, 802 or 120)")
    elif not WH_RANGE[0] <= wh <= WH_RANGE[1]:
        problems.append(f"energy capacity {wh:g} Wh implausible")
    cha, dis = _num(s, "StorWChaMax"), _num(s, "StorWDisChaMax")
    if cha is None or dis is None or cha <= 0 or dis <= 0:
        problems.append("charge / discharge rate not stated")
    rsv, top = _num(s, "StorRsvPct"), _num(s, "StorSoCMax")
    if rsv is None or top is None or not 0.0 <= rsv < top <= 100.0:
        problems.append(f"reserve {rsv} % / highest SoC {top} % implausible")
    if w_rtg is None or w_rtg <= 0:
        problems.append("the inverter's rated W is unknown")
    if problems:
        return None, "storage not understood: " + "; ".join(problems)
    assert soc is not None and wh is not None and cha is not None and dis is not None
    assert rsv is not None and top is not None and w_rtg is not None
    return StorageState(soc, wh, cha, dis, rsv, top, w_rtg), None


NO_STORAGE = "this DER has no storage (no SunSpec 124 / 713 / 802)"
NO_POWER_COMMAND = "the battery takes no power command (no SunSpec 124)"


def commanded(bats: Iterable[StorageView]) -> tuple[bool, str | None]:
    """(the batteries are ones the core commands, why not): what every protocol asks
    before it takes a storage command, for one inverter or a whole site."""
    bats = list(bats)
    if not bats:
        return False, NO_STORAGE
    why = [b.problem for b in bats if b.problem]
    if why:
        return False, "; ".join(why)
    if not all(b.controllable for b in bats):
        return False, NO_POWER_COMMAND
    return True, None


def is_command(path: str, value: Any) -> bool:
    """Whether a settings change commands the battery: any set-active-power setting,
    but switching the mode off (always taken)."""
    return path.startswith("set_active_power.") and not (
        path == "set_active_power.enabled" and not value)


def storage_view(s: Mapping[str, Reading], w_rtg: float | None = None,
                 setpoint_w: float | None = None, setpoint_cause: str = "",
                 problem: str | None = None, reserve_pct: float = 0.0) -> StorageView | None:
    """The battery of one snapshot as every adapter sees it; None without storage.

    ``setpoint_w`` / ``setpoint_cause`` / ``problem`` are the controller's (what it
    commands and why not); ``reserve_pct`` the site's reserve on top of the device's."""
    if not present(s):
        return None
    state, why = assess(s, w_rtg if w_rtg else 1.0)
    cha_w = dis_w = None
    if state is not None:
        cha_w, dis_w = available(state, reserve_pct)

    def r(name: str) -> Reading:
        got = s.get(name)
        return got if got is not None else Reading(None, NOT_IMPLEMENTED, 0.0)

    def code(name: str) -> int | None:
        v = _num(s, name)
        return None if v is None else int(v)

    alarms: Any = s.get("StorAlarms")
    return StorageView(
        soc_pct=r("StorSoC"), wh_rtg=r("StorWhRtg"), wh_avail=r("StorWhAvail"),
        w=r("StorW"), w_cha_max=r("StorWChaMax"), w_dis_max=r("StorWDisChaMax"),
        reserve_pct=r("StorRsvPct"), soc_max_pct=r("StorSoCMax"),
        avail_cha_w=cha_w, avail_dis_w=dis_w, cha_st=code("StorChaSt"),
        state=code("StorState"),
        alarms=tuple(alarms.value) if alarms is not None and alarms.value else (),
        controllable=controllable(s), setpoint_w=setpoint_w, setpoint_cause=setpoint_cause,
        problem=problem if problem is not None else why)
