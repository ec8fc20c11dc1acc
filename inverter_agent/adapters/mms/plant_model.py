"""Several inverters behind one gateway: one logical device each, plus the plant.

:func:`site_model_spec` puts one inverter logical device per inverter (the
same model as a lone inverter, ``INV1``, ``INV2`` ...) and a plant logical
device (default ``PLANT``) side by side in one server:

======  =======================  ==============================================
LN      Data object              Meaning
======  =======================  ==============================================
LLN0    Health                   Ok: all inverters answer; Warning: some do not;
                                 Alarm: none does
MMXU1   TotW, TotVAr, TotVA      sums over the inverters that answer this cycle;
                                 q questionable+inaccurate while some are missing
DECP1   WRtg                     sum of the inverters' rated W (last known)
DWMX1   Mod (CO, ENC)            plant active-power limit on (1) / off (5) (persisted)
        WMaxSpt (CO, APC, W)     plant active-power limit (persisted)
        LimAct *                 the limit holds the inverters below their ratings
        ReqWMaxPct * (MX)        share given to each answering inverter, % of rating
GGIO1   IntIn1                   inverters answering
        IntIn2                   inverters configured
======  =======================  ==============================================

(* private, ``dataNs`` = the gateway's namespace.) Data set ``Plant`` (MMXU1
totals, GGIO1 counts, DWMX1.LimAct) with three
unbuffered report control blocks ``urcbPlant01..03``. ``inverter_agent.core.plant``
has the arithmetic (totals, how the limit is shared).
"""

from __future__ import annotations

import dataclasses

from .der_model import EXT_NS, _asg, _beh, decp, der_model_spec, ecp_ref, lln0
from .functions_model import (
    REPORT_FIELDS,
    REPORT_TRIGGERS,
    _mod,
    _spg,
    functions_model_spec,
)
from .model import (
    Cdc,
    DataObjectSpec,
    DataSetSpec,
    LogicalDeviceSpec,
    LogicalNodeSpec,
    ModelSpec,
    ReportSpec,
)

DEFAULT_PLANT_LD = "PLANT"
PLANT_RCB_INSTANCES = 3

#: Plant settings operated as controls: object below the plant LD -> (PlantLimit field,
#: kind): ``mod`` ENC 1 on / 5 off, ``float`` APC ctlVal in W.
CONTROLS = {"DWMX1.Mod": ("enabled", "mod"), "DWMX1.WMaxSpt": ("w_max", "float")}

PLANT_MEMBERS = ("MMXU1.TotW [MX]", "MMXU1.TotVAr [MX]", "MMXU1.TotVA [MX]",
                 "GGIO1.IntIn1 [ST]", "GGIO1.IntIn2 [ST]", "DWMX1.LimAct [ST]")


def plant_ld_spec(ld_inst: str = DEFAULT_PLANT_LD, writable: bool = True) -> LogicalDeviceSpec:
    """The plant LD; not ``writable`` (no functions): its settings are status-only."""
    ctl = 1 if writable else 0  # direct-with-normal-security, or status-only
    mmxu = LogicalNodeSpec("MMXU", "1", (
        _beh(),
        DataObjectSpec("TotW", Cdc.MV, desc="sum over the answering inverters, W"),
        DataObjectSpec("TotVAr", Cdc.MV, desc="sum over the answering inverters, var"),
        DataObjectSpec("TotVA", Cdc.MV, desc="sum over the answering inverters, VA"),
    ))
    ecp = decp(_asg("WRtg", "W", "sum of the inverters' rated W"))
    dwmx = LogicalNodeSpec("DWMX", "1", (
        _beh(), dataclasses.replace(_mod("plant active-power limit"), ctl_model=ctl),
        ecp_ref(),
        _spg("RmpRteUse", "ramp rates: each inverter's own"),
        DataObjectSpec("WMaxSpt", Cdc.APC, ctl_model=ctl,
                       desc="plant active-power limit, W (persisted setting)"),
        DataObjectSpec("LimAct", Cdc.SPS, ns=EXT_NS,
                       desc="the plant limit holds the inverters below their ratings"),
        DataObjectSpec("ReqWMaxPct", Cdc.MV, ns=EXT_NS,
                       desc="limit given to each answering inverter, % of its rating"),
    ))
    ggio = LogicalNodeSpec("GGIO", "1", (
        _beh(),
        DataObjectSpec("IntIn1", Cdc.INS, desc="inverters answering"),
        DataObjectSpec("IntIn2", Cdc.INS, desc="inverters configured"),
    ))
    reports = tuple(ReportSpec(f"urcbPlant{i:02d}", "Plant", False, "Plant", REPORT_TRIGGERS,
                               REPORT_FIELDS, buf_tm_ms=50)
                    for i in range(1, PLANT_RCB_INSTANCES + 1))
    base = lln0("plant view of the inverters behind this gateway")
    health = DataObjectSpec("Health", Cdc.ENS, enum="HealthKind",
                            desc="Ok all inverters answer, Warning some, Alarm none")
    plant_lln0 = LogicalNodeSpec("LLN0", "", tuple(health if d.name == "Health" else d
                                                   for d in base.data_objects))
    return LogicalDeviceSpec(ld_inst, (plant_lln0, mmxu, ecp, dwmx, ggio),
                             (DataSetSpec("Plant", PLANT_MEMBERS),), reports)


def site_model_spec(inverter_lds: list[str], plant_ld: str | None = DEFAULT_PLANT_LD,
                    functions: bool = True) -> ModelSpec:
    """One inverter LD per name in ``inverter_lds`` and, if ``plant_ld``, the plant LD."""
    make = functions_model_spec if functions else der_model_spec
    specs = [make(ld) for ld in inverter_lds]
    lds = tuple(ld for spec in specs for ld in spec.logical_devices)
    if plant_ld is not None:
        lds += (plant_ld_spec(plant_ld, writable=functions),)
    return ModelSpec(lds, tuple(b for spec in specs for b in spec.bindings))
