"""Storage (batteries, hybrid inverters) as the upper layers see it: named readings
and one named control, whatever SunSpec models the device carries.

Models, decoded from pysunspec2's definitions like every other model:

* 124 basic storage controls: WChaMax, the charge / discharge rate window
  (StorCtl_Mod, InWRte, OutWRte, InOutWRte_RvrtTms), MinRsvPct, ChaState, ChaSt;
* 713 DER storage capacity: WHRtg, WHAvail, SoC, SoH, Sta;
* 802 battery base: WHRtg, WChaRteMax, WDisChaRteMax, SoCMin / SoCMax, the
  reserve window SoCRsvMin / SocRsvMax, SoC, ChaSt, State, Evt1, W;
* 714 DER DC ports: the ESS ports' DC power and alarms;
* 120 nameplate: WHRtg, MaxChaRte, MaxDisChaRte (the 124-only devices state
  their capacity and rates there).

Sign convention (SunSpec, kept end to end): battery power is positive while
discharging, negative while charging; so is the inverter's AC ``W`` of a hybrid
that charges from the grid.

The control (:func:`storage_points`) writes model 124's window: the battery's
power stays within ``[-InWRte, +OutWRte]`` percent of ``WChaMax`` while
``StorCtl_Mod`` enables both limits. A charge at ``x`` W is ``InWRte = x`` and
``OutWRte = -x`` (a negative discharge limit forces the charge); a discharge is
the mirror image; a hold is both 0. This is how the public hybrid maps use 124
(Fronius GEN24 Modbus TCP & RTU operating instructions 42,0410,2649, "Basic
Storage Control Model (124)"; both percentages of WChaMax, as there).
``StorCtl_Mod = 0`` releases the window: the device runs its own storage
management again. A device that held a window of its own (an owner's or a home
energy manager's charge / discharge limit) gets that back instead: the caller reads
it once before its first write (:func:`own_window`) and hands it to the release.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hal.reading import GOOD, NOT_IMPLEMENTED, Reading
from hal.sunspec.models import DecodedModel

#: Models that carry storage (read on the "storage" slow period).
STORAGE_MODELS = (124, 713, 802, 714)

Transform = Callable[[Any], Any]


def _ident(v: Any) -> Any:
    return v


#: Plain read-backs of model 124's controls (HAL name -> model 124 point, same name).
READ_POINTS: dict[str, list[tuple[tuple[int, ...], str, Transform]]] = {
    p: [((124,), p, _ident)]
    for p in ("StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms", "WChaGra",
              "WDisChaGra", "MinRsvPct", "ChaGriSet")
}

#: Derived storage readings (:func:`derive`), each from the first model that states it:
#:
#: ===============  =====================================================================
#: StorSoC          state of charge, % of capacity: 713 SoC, 802 SoC, 124 ChaState
#: StorWhRtg        energy capacity, Wh: 713 WHRtg, 802 WHRtg, 120 WHRtg
#: StorWhAvail      usable energy above the reserve, Wh: 713 WHAvail, else from SoC
#: StorWChaMax      most charging power, W: 124 WChaMax, 802 WChaRteMax, 120 MaxChaRte
#: StorWDisChaMax   most discharging power, W: 802 WDisChaRteMax, 120 MaxDisChaRte,
#:                  124 WChaMax; never above 124 WChaMax (OutWRte's base: no more
#:                  can be commanded)
#: StorRsvPct       reserve, % SoC: the highest of 124 MinRsvPct, 802 SoCRsvMin, SoCMin
#: StorSoCMax       highest SoC the device charges to, %: 802 SocRsvMax, SoCMax, else 100
#: StorChaSt        charge status 1 off .. 7 testing: 124 ChaSt, 802 ChaSt
#: StorState        802 State (1 disconnected .. 99 fault)
#: StorW            battery power, W (+ discharge): 802 W, else 714 ESS ports' DCW
#: StorAlarms       tuple of alarm names: 802 Evt1, 713 Sta, 714 ESS DCAlrm
#: StorCtlW         the battery power 124's window now holds, W (None: no window)
#: StorSources      which model each derived value came from
#: ===============  =====================================================================
DERIVED = ("StorSoC", "StorWhRtg", "StorWhAvail", "StorWChaMax", "StorWDisChaMax",
           "StorRsvPct", "StorSoCMax", "StorChaSt", "StorState", "StorW", "StorAlarms",
           "StorCtlW", "StorSources")

#: 802 Evt1 bits worth an alarm (names as the model's symbols).
_EVT1_ALARMS = {0: "communication error", 1: "over temperature", 3: "under temperature",
                5: "over charge current", 7: "over discharge current", 9: "over voltage",
                11: "under voltage", 13: "under SoC", 15: "over SoC", 17: "voltage imbalance",
                19: "temperature imbalance", 21: "contactor error", 22: "fan error",
                24: "ground fault", 25: "open door", 27: "other alarm"}
_714_ALARMS = {0: "ground fault", 1: "input over voltage", 3: "DC disconnect",
               7: "over temperature", 12: "blown fuse", 13: "under temperature",
               15: "arc detection"}
_ESS = 1  # 714 PrtTyp ESS


def has_storage(model_ids: Any) -> bool:
    return any(m in STORAGE_MODELS for m in model_ids)


def _num(m: DecodedModel | None, path: str) -> float | None:
    if m is None:
        return None
    v = m.values.get(path)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return float(v)


def _first(models: Mapping[int, DecodedModel], sources: tuple[tuple[int, str], ...],
           positive: bool = False) -> tuple[float | None, str]:
    for mid, path in sources:
        v = _num(models.get(mid), path)
        if v is not None and (not positive or v > 0):
            return v, f"{mid} {path}"
    return None, ""


def _ess_ports(m: DecodedModel) -> list[str]:
    n = int(m.values.get("NPrt") or 0)
    return [f"Prt[{i}]." for i in range(1, n + 1) if m.values.get(f"Prt[{i}].PrtTyp") == _ESS]


def derive(models: Mapping[int, DecodedModel], now: float) -> dict[str, Reading]:
    """The storage readings of :data:`DERIVED` from decoded models (empty without
    a storage model). A value no model states is unimplemented, never assumed."""
    if not has_storage(models):
        return {}
    src: dict[str, str] = {}
    vals: dict[str, Any] = {}

    def put(name: str, value: Any, source: str) -> None:
        vals[name] = value
        if value is not None:
            src[name] = source

    put("StorSoC", *_first(models, ((713, "SoC"), (802, "SoC"), (124, "ChaState"))))
    put("StorWhRtg", *_first(models, ((713, "WHRtg"), (802, "WHRtg"), (120, "WHRtg")),
                             positive=True))
    put("StorWChaMax", *_first(models, ((124, "WChaMax"), (802, "WChaRteMax"),
                                        (120, "MaxChaRte")), positive=True))
    dis, dis_src = _first(models, ((802, "WDisChaRteMax"), (120, "MaxDisChaRte"),
                                   (124, "WChaMax")), positive=True)
    base = _num(models.get(124), "WChaMax")
    if dis is not None and base is not None and base > 0 and dis > base:
        dis, dis_src = base, "124 WChaMax (the most 124's OutWRte can command)"
    put("StorWDisChaMax", dis, dis_src)
    reserves = [(v, f"{mid} {p}") for mid, p in ((124, "MinRsvPct"), (802, "SoCRsvMin"),
                                                 (802, "SoCMin"))
                if (v := _num(models.get(mid), p)) is not None]
    put("StorRsvPct", *(max(reserves) if reserves else (0.0 if 124 in models or 802 in models
                                                         else None, "none stated: 0")))
    soc_max, soc_max_src = _first(models, ((802, "SocRsvMax"), (802, "SoCMax")), positive=True)
    put("StorSoCMax", soc_max if soc_max is not None else 100.0, soc_max_src or "none stated")
    for name, sources in (("StorChaSt", ((124, "ChaSt"), (802, "ChaSt"))),
                          ("StorState", ((802, "State"),))):
        code, code_src = _first(models, sources)
        put(name, None if code is None else int(code), code_src)
    w, w_src = _first(models, ((802, "W"),))
    if w is None and 714 in models:
        ports = _ess_ports(models[714])
        ws = [_num(models[714], p + "DCW") for p in ports]
        if ports and all(x is not None for x in ws):
            w, w_src = sum(x for x in ws if x is not None), "714 ESS DCW"
    put("StorW", w, w_src)
    wh_avail, wh_src = _first(models, ((713, "WHAvail"),))
    soc, cap, rsv = vals["StorSoC"], vals["StorWhRtg"], vals["StorRsvPct"]
    if wh_avail is None and soc is not None and cap is not None:
        wh_avail, wh_src = max(0.0, (soc - (rsv or 0.0)) / 100.0 * cap), "SoC x WHRtg"
    put("StorWhAvail", wh_avail, wh_src)
    put("StorAlarms", tuple(_alarms(models)), "802 Evt1, 713 Sta, 714 DCAlrm")
    put("StorCtlW", held_w(models), "124 window")
    out = {name: Reading(v, GOOD if v is not None else NOT_IMPLEMENTED, now)
           for name, v in vals.items()}
    out["StorSources"] = Reading(dict(src), GOOD, now)
    return out


def _alarms(models: Mapping[int, DecodedModel]) -> list[str]:
    out = []
    m802 = models.get(802)
    if m802 is not None:
        evt = m802.raw.get("Evt1")
        if isinstance(evt, int):
            out += [f"battery: {name}" for bit, name in _EVT1_ALARMS.items() if evt >> bit & 1]
        if m802.values.get("State") == 99:
            out.append("battery: fault")
    m713 = models.get(713)
    if m713 is not None and m713.values.get("Sta") in (1, 2):
        out.append("storage capacity: " + ("warning" if m713.values["Sta"] == 1 else "error"))
    m714 = models.get(714)
    if m714 is not None:
        for p in _ess_ports(m714):
            alrm = m714.raw.get(p + "DCAlrm")
            if isinstance(alrm, int):
                out += [f"ESS port: {name}" for bit, name in _714_ALARMS.items()
                        if alrm >> bit & 1]
    return out


def held_w(models: Mapping[int, DecodedModel]) -> float | None:
    """The battery power model 124's window holds now (W, + discharge), or None when
    no window holds one power (released, or a range rather than a setpoint)."""
    m = models.get(124)
    if m is None or m.values.get("StorCtl_Mod") != 3:
        return None
    base, i, o = _num(m, "WChaMax"), _num(m, "InWRte"), _num(m, "OutWRte")
    if base is None or i is None or o is None or abs(i + o) > 1e-6:
        return None
    return o / 100.0 * base


#: Model 124's window as the device holds it (what :func:`own_window` keeps).
WINDOW = ("StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms")


def own_window(models: Mapping[int, DecodedModel]) -> dict[str, Any] | None:
    """The device's own 124 window (StorCtl_Mod, InWRte, OutWRte, and
    InOutWRte_RvrtTms where implemented), to be written back when the gateway releases
    the window it set; None when 124 or its StorCtl_Mod is not readable, or a limit
    StorCtl_Mod enables has no readable rate (nothing to put back faithfully)."""
    m = models.get(124)
    mod = None if m is None else m.values.get("StorCtl_Mod")
    if m is None or not isinstance(mod, int) or isinstance(mod, bool):
        return None
    out: dict[str, Any] = {"StorCtl_Mod": mod}
    for p in WINDOW[1:]:
        if (v := _num(m, p)) is not None:
            out[p] = int(v) if p == "InOutWRte_RvrtTms" else v
    if (mod & 1 and "InWRte" not in out) or (mod & 2 and "OutWRte" not in out):
        return None
    return out


def storage_points(w: float | None, models: Mapping[int, DecodedModel],
                   revert_s: int | None = None,
                   restore: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Model 124 points that hold the battery at ``w`` watts (+ discharge, - charge;
    0 holds), or release it (``w`` None: StorCtl_Mod 0). Percentages are of the
    device's WChaMax; a ``w`` beyond it is refused here (ValueError), never clipped
    silently: the caller limits to the device's rates first. ``revert_s`` sets
    InOutWRte_RvrtTms, so a device that stops hearing from the gateway releases the
    window itself. ``restore`` (a release only): the device's own window
    (:func:`own_window`), written back whole instead of StorCtl_Mod 0."""
    m = models.get(124)
    if m is None:
        raise LookupError("the device has no model 124 (basic storage controls)")
    pts: dict[str, Any] = {}
    if revert_s is not None and m.values.get("InOutWRte_RvrtTms", None) is not None:
        pts["InOutWRte_RvrtTms"] = int(revert_s)
    if w is None:
        pts["StorCtl_Mod"] = 0
        pts.update(restore or {})
        return pts
    base = _num(m, "WChaMax")
    if base is None or base <= 0:
        raise ValueError("124 WChaMax is not stated: no base for the charge / discharge rates")
    pct = 100.0 * float(w) / base
    if not -100.0 - 1e-9 <= pct <= 100.0 + 1e-9:
        raise ValueError(f"{w} W is beyond the device's WChaMax {base:g} W")
    pct = max(-100.0, min(100.0, pct))
    pts.update({"InWRte": -pct, "OutWRte": pct, "StorCtl_Mod": 3})
    return pts
