"""Storage as IEC 61850-7-420 Edition 2 logical nodes, from the core's ``StorageView``.

========  =======================================================================
DSTO1     the storage unit (7-420 DER_StorageLN): SoC (SocEffWhPct, % of its
          effective capacity), SocWh, EffWh (capacity), AvlChaW / AvlDschW (power it
          can take / give now), SocLoAlm (at the reserve), ChaWMax / DschWMax and the
          ratings ChaWMaxRtg / DschWMaxRtg / WhRtg, UseWhMinPct (reserve), UseWhMaxPct
          (highest SoC), DEROpSt, Health (3: the device's storage alarms, or the
          battery not understood: no storage command); EqSto points at DBAT1
DBAT1     the battery (7-420 StorageUnitLN): Watt (battery power, + discharge),
          BatSt (on), ChaSt / DschSt (charging / discharging), SocPro (802 State SOC
          PROTECTION), BatTyp (98 not known: no SunSpec point the HAL reads)
DWGC1     set active power (the function LN: see ``functions_model``)
========  =======================================================================

Why DWGC for "set active power": it is 7-420 Ed.2's active-power function LN with
nothing beyond ActivePowerLN (ReqW, WSpt / WSptPct), i.e. a commanded active power
(+ generating / discharging, - absorbing / charging), enabled by its Mod like the
other function LNs; DAGC adds WMinAvl / WMaxAvl for automatic generation control
(following a regulation signal within a band), which this function is not; DWMX is
a limit (a ceiling, never a setpoint); DSTO.WSpt (DER_StateAbstractLN) is a state
control of the unit with no Mod, no ramp settings, no SoC use window.

ZBAT (7-4) is the station battery of the IED's own DC supply (BatHi / BatLo,
Vol, Amp of a substation battery), not a DER's storage: the 7-420 DBAT says
what ZBAT would, for the battery behind the inverter, so ZBAT is not served.

Sign convention: 7-420's and SunSpec's alike (+ discharging, - charging).
"""

from __future__ import annotations

from typing import Any

from hal.reading import GOOD, NOT_IMPLEMENTED, Reading
from inverter_agent.core.view import StorageView

from .der_model import _asg, _beh, _mv, ecp_ref, fixed
from .functions_model import _sps
from .model import LD_PLACEHOLDER, Binding, Cdc, DataObjectSpec, LogicalNodeSpec

#: ChaSt (SunSpec 124 / 802: 1 off, 2 empty, 3 discharging, 4 charging, 5 full,
#: 6 holding, 7 testing) -> DERStateKind (6 running, 3 disconnected and available).
CHAST_TO_DEROPST = {1: 3, 2: 6, 3: 6, 4: 6, 5: 6, 6: 6, 7: 2}
#: 802 State 99 FAULT -> DERStateKind 11 failed; 1 DISCONNECTED -> 3.
STATE_TO_DEROPST = {99: 11, 1: 3}


def storage_lns() -> tuple[LogicalNodeSpec, ...]:
    """DSTO1 and DBAT1 (served whether or not the functions run)."""
    dsto = LogicalNodeSpec("DSTO", "1", (
        _beh(),
        DataObjectSpec("Health", Cdc.ENS, enum="HealthKind",
                       desc="3 Alarm: storage alarms, or not understood (no storage command)"),
        fixed("EqSto", Cdc.ORG, f"{LD_PLACEHOLDER}/DBAT1", "the storage equipment: DBAT1"),
        ecp_ref("OutEcpRef"),
        fixed("PhsConnTyp", Cdc.ENG, 98, "phase connection: 98 not known", "PhaseKind"),
        fixed("DERTyp", Cdc.ENG, 98, "DER type: 98 not known", "DERUnitKind"),
        DataObjectSpec("DEROpSt", Cdc.ENS, enum="DERStateKind",
                       desc="from ChaSt / 802 State: 6 running, 3 off, 11 failed"),
        _sps("SocLoAlm", "state of charge at or below the reserve"),
        _mv("SocWh", "energy stored, Wh (SoC x capacity)"),
        _mv("SocEffWhPct", "state of charge, % of the effective capacity (713 / 802 SoC, "
                           "124 ChaState)"),
        _mv("AvlDschW", "discharge power available now, W (0 at the reserve)"),
        _mv("AvlChaW", "charge power available now, W (0 when full)"),
        _mv("EffWh", "effective energy capacity, Wh (713 / 802 / 120 WHRtg)"),
        _asg("ChaWMaxRtg", "W", "charge rate rating, W"),
        _asg("DschWMaxRtg", "W", "discharge rate rating, W"),
        _asg("WhRtg", "Wh", "energy capacity rating, Wh"),
        _asg("ChaWMax", "W", "most charging power, W (124 WChaMax / 802 WChaRteMax)"),
        _asg("DschWMax", "W", "most discharging power, W"),
        _asg("UseWhMaxPct", "dimensionless", "highest state of charge used, %"),
        _asg("UseWhMinPct", "dimensionless", "reserve: lowest state of charge used, %"),
    ))
    dbat = LogicalNodeSpec("DBAT", "1", (
        _beh(),
        _sps("SocPro", "state-of-charge protection (802 State 5)"),
        _sps("ChaSt", "charging"),
        _sps("DschSt", "discharging"),
        _sps("BatSt", "battery on (not off, not disconnected, not failed)"),
        _mv("Watt", "battery power, W (+ discharge, - charge; 802 W / 714 ESS port)"),
        fixed("BatTyp", Cdc.ENG, 98, "battery type: 98 not known", "BatteryTypeKind"),
    ))
    return dsto, dbat


#: (point of :func:`storage_readings`, target below the LD).
POINT_TABLE: tuple[tuple[str, str], ...] = (
    ("sto.health", "DSTO1.Health"),
    ("sto.opst", "DSTO1.DEROpSt"),
    ("sto.soc_lo", "DSTO1.SocLoAlm"),
    ("sto.soc_wh", "DSTO1.SocWh"),
    ("sto.soc_pct", "DSTO1.SocEffWhPct"),
    ("sto.avail_dis_w", "DSTO1.AvlDschW"),
    ("sto.avail_cha_w", "DSTO1.AvlChaW"),
    ("sto.wh_rtg", "DSTO1.EffWh"),
    ("sto.w_cha_max", "DSTO1.ChaWMaxRtg"),
    ("sto.w_dis_max", "DSTO1.DschWMaxRtg"),
    ("sto.wh_rtg", "DSTO1.WhRtg"),
    ("sto.w_cha_max", "DSTO1.ChaWMax"),
    ("sto.w_dis_max", "DSTO1.DschWMax"),
    ("sto.soc_max_pct", "DSTO1.UseWhMaxPct"),
    ("sto.reserve_pct", "DSTO1.UseWhMinPct"),
    ("sto.soc_pro", "DBAT1.SocPro"),
    ("sto.charging", "DBAT1.ChaSt"),
    ("sto.discharging", "DBAT1.DschSt"),
    ("sto.on", "DBAT1.BatSt"),
    ("sto.w", "DBAT1.Watt"),
)


def bindings(ld_inst: str) -> tuple[Binding, ...]:
    return tuple(Binding(p, f"{ld_inst}/{t}") for p, t in POINT_TABLE)


def function_bindings(ld_inst: str) -> tuple[Binding, ...]:
    """The set-active-power function's status (served with the functions model)."""
    return (Binding("sto.setpoint_w", f"{ld_inst}/DWGC1.ReqW"),)


def storage_readings(sto: StorageView | None, t: float) -> dict[str, Reading]:
    """The storage points for one cycle (empty without storage: DSTO / DBAT stay invalid,
    as every object with no source does)."""
    if sto is None:
        return {}

    def val(x: Any) -> Reading:
        return Reading(x, GOOD if x is not None else NOT_IMPLEMENTED, t)

    soc, wh = sto.soc_pct, sto.wh_rtg
    stated = soc.quality.good and wh.quality.good and soc.value is not None \
        and wh.value is not None
    rsv = sto.reserve_pct.value if sto.reserve_pct.quality.good else None
    code = sto.cha_st
    opst = STATE_TO_DEROPST.get(sto.state or 0) or (
        CHAST_TO_DEROPST.get(code) if code is not None else None)
    unhealthy = bool(sto.alarms) or sto.problem is not None
    w = sto.w if sto.w.quality.good else None
    return {
        "sto.health": val(3 if unhealthy else 1),
        "sto.opst": val(opst if opst is not None else 98),
        "sto.soc_lo": val(None if not soc.quality.good or rsv is None
                          else soc.value <= rsv),
        "sto.soc_wh": val(soc.value / 100.0 * wh.value if stated else None),
        "sto.soc_pct": soc, "sto.wh_rtg": wh,
        "sto.avail_dis_w": val(sto.avail_dis_w), "sto.avail_cha_w": val(sto.avail_cha_w),
        "sto.w_cha_max": sto.w_cha_max, "sto.w_dis_max": sto.w_dis_max,
        "sto.soc_max_pct": sto.soc_max_pct, "sto.reserve_pct": sto.reserve_pct,
        "sto.soc_pro": val(None if sto.state is None else sto.state == 5),
        "sto.charging": val(None if code is None else code == 4),
        "sto.discharging": val(None if code is None else code == 3),
        "sto.on": val(None if code is None and sto.state is None
                      else (sto.state not in (1, 99) and code != 1)),
        "sto.w": w if w is not None else val(None),
        "sto.setpoint_w": val(sto.setpoint_w),
    }
