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
DRCT1   WMax                     sum of the inverters' rated W (last known)
DWMX1   FctEna (SP)              plant active-power limit enabled (persisted)
        WMaxSpt (SP, W)          plant active-power limit (persisted)
        FctAct                   the limit holds the inverters below their ratings
        WLimPct (MX)             share given to each answering inverter, % of rating
GGIO1   IntIn1                   inverters answering
        IntIn2                   inverters configured
======  =======================  ==============================================

Data set ``Plant`` (MMXU1 totals, GGIO1 counts, DWMX1.FctAct) with three
unbuffered report control blocks ``urcbPlant01..03``. ``inverter_agent.plant``
has the arithmetic (totals, how the limit is shared).
"""

from __future__ import annotations

from .der_model import _OPT_AC_LN0_M, _OPT_DESC, BEH_ON, _software_version, der_model_spec
from .functions_model import (
    REPORT_FIELDS,
    REPORT_TRIGGERS,
    _asg,
    _beh,
    _spg,
    _sps,
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

#: Writable plant settings: attribute below the plant LD -> PlantLimit field.
WRITABLE = {"DWMX1.FctEna.setVal": "enabled", "DWMX1.WMaxSpt.setMag.f": "w_max"}

PLANT_MEMBERS = ("MMXU1.TotW [MX]", "MMXU1.TotVAr [MX]", "MMXU1.TotVA [MX]",
                 "GGIO1.IntIn1 [ST]", "GGIO1.IntIn2 [ST]", "DWMX1.FctAct [ST]")


def plant_ld_spec(ld_inst: str = DEFAULT_PLANT_LD) -> LogicalDeviceSpec:
    lln0 = LogicalNodeSpec("LLN0", "", (
        DataObjectSpec("Mod", Cdc.ENC, init={"stVal": BEH_ON, "ctlModel": 0}),
        _beh(),
        DataObjectSpec("Health", Cdc.ENS, desc="Ok all inverters answer, Warning some, "
                                                "Alarm none"),
        DataObjectSpec("NamPlt", Cdc.LPL, options=_OPT_DESC | _OPT_AC_LN0_M, init={
            "vendor": "inverter-agent", "swRev": _software_version(), "configRev": "1",
            "d": "plant view of the inverters behind this gateway"}),
    ))
    mmxu = LogicalNodeSpec("MMXU", "1", (
        _beh(),
        DataObjectSpec("TotW", Cdc.MV, desc="sum over the answering inverters, W"),
        DataObjectSpec("TotVAr", Cdc.MV, desc="sum over the answering inverters, var"),
        DataObjectSpec("TotVA", Cdc.MV, desc="sum over the answering inverters, VA"),
    ))
    drct = LogicalNodeSpec("DRCT", "1", (_beh(), _asg("WMax", "W", "sum of rated W")))
    dwmx = LogicalNodeSpec("DWMX", "1", (
        _beh(),
        _spg("FctEna", "plant active-power limit enabled (persisted setting)"),
        _asg("WMaxSpt", "W", "plant active-power limit, W (persisted setting)"),
        _sps("FctAct", "the plant limit holds the inverters below their ratings"),
        DataObjectSpec("WLimPct", Cdc.MV, desc="limit given to each answering inverter, "
                                               "% of its rating"),
    ))
    ggio = LogicalNodeSpec("GGIO", "1", (
        _beh(),
        DataObjectSpec("IntIn1", Cdc.INS, desc="inverters answering"),
        DataObjectSpec("IntIn2", Cdc.INS, desc="inverters configured"),
    ))
    reports = tuple(ReportSpec(f"urcbPlant{i:02d}", "Plant", False, "Plant", REPORT_TRIGGERS,
                               REPORT_FIELDS, buf_tm_ms=50)
                    for i in range(1, PLANT_RCB_INSTANCES + 1))
    return LogicalDeviceSpec(ld_inst, (lln0, mmxu, drct, dwmx, ggio),
                             (DataSetSpec("Plant", PLANT_MEMBERS),), reports)


def site_model_spec(inverter_lds: list[str], plant_ld: str | None = DEFAULT_PLANT_LD,
                    functions: bool = True) -> ModelSpec:
    """One inverter LD per name in ``inverter_lds`` and, if ``plant_ld``, the plant LD."""
    make = functions_model_spec if functions else der_model_spec
    specs = [make(ld) for ld in inverter_lds]
    lds = tuple(ld for spec in specs for ld in spec.logical_devices)
    if plant_ld is not None:
        lds += (plant_ld_spec(plant_ld),)
    return ModelSpec(lds, tuple(b for spec in specs for b in spec.bindings))
