"""The IEC 61850 model the gateway serves for one inverter (IEC 61850-7-420 Ed.2).

Logical device ``<IED name><ld_inst>`` (default ``GWINV1``) whose namespace is
IEC 61850-7-420:2019A (``LLN0.NamPlt.ldNs``), which carries 7-4 (LLN0, LPHD,
MMXU) and the DER classes (DECP, DINV, DGEN). Internal point names are
SunSpec point names (models 1, 101-103, 120, 121) plus ``link``, the
gateway's own "inverter link is up" flag.

==========  ========================  =====  ==============================================
Point       Data object               CDC    Value
==========  ========================  =====  ==============================================
W           MMXU1.TotW                MV     mag.f, W (engineering units from the HAL)
VAr         MMXU1.TotVAr              MV     mag.f, var
VA          MMXU1.TotVA               MV     mag.f, VA
PF          MMXU1.TotPF               MV     mag.f, power factor as a fraction (sign as SunSpec)
Hz          MMXU1.Hz                  MV     mag.f, Hz
PhVphA      MMXU1.PhV.phsA            WYE    cVal.mag.f, V (phase to neutral)
PhVphB      MMXU1.PhV.phsB            WYE    cVal.mag.f, V (phase to neutral)
PhVphC      MMXU1.PhV.phsC            WYE    cVal.mag.f, V (phase to neutral)
AphA        MMXU1.A.phsA              WYE    cVal.mag.f, A
AphB        MMXU1.A.phsB              WYE    cVal.mag.f, A
AphC        MMXU1.A.phsC              WYE    cVal.mag.f, A
VNom        DECP1.VRef                ASG    setMag.f, V (model 121 VRef: nominal voltage)
WRtg        DINV1.WRtg                ASG    setMag.f, W (model 120 WRtg; FC SP, no q/t)
WRtg        DGEN1.WMaxRtg             ASG    setMag.f, W (model 120 WRtg; FC SP, no q/t)
VARtg       DINV1.VARtg               ASG    setMag.f, VA (model 120)
VArRtgQ1    DINV1.VArRtg              ASG    setMag.f, var (model 120, quadrant 1)
PhVphC      DINV1.ACTyp               ENG    setVal 3 three phases when phase C is reported, else 1
OutPFSet    DINV1.OutPFSet            ASG    setMag.f, power factor set in the inverter (model 123)
WH          MMTR1.TotWh               BCR    actVal, Wh (models 101-103 WH)
WMax        DGEN1.WMax                ASG    setMag.f, W (model 121 WMax)
VArMaxQ1    DGEN1.VArMax              ASG    setMag.f, var (model 121 VArMaxQ1)
WAval       DGEN1.AvlUpW              MV     mag.f, W (model 122 WAval: active power available)
St          DGEN1.DEROpSt             ENS    stVal = ST_TO_DEROPST[St] (DERStateKind)
St          DGEN1.Health              ENS    stVal 3 Alarm when St is 7 (FAULT), else 1 Ok
health      LLN0.Health               ENS    stVal 1 Ok, 2 Warning (caveats), 3 Alarm (link down,
                                             or the functions stand aside: see status)
link        LPHD1.PhyHealth           ENS    stVal 1 Ok if the link is up, 3 Alarm if not
Mn          LPHD1.PhyNam.vendor       DPL    model 1 manufacturer (string, no q/t)
Md          LPHD1.PhyNam.model        DPL    model 1 model
SN          LPHD1.PhyNam.serNum       DPL    model 1 serial number
Vr          LPHD1.PhyNam.swRev        DPL    model 1 firmware version
==========  ========================  =====  ==============================================

Mandatory objects the SunSpec inverter gives no value for are served as the
standard requires them and say so: status (DINV1.InvDCLosAlm, InvGriLosAlm,
DGEN1.GnOpSt, OpTmsRs) stays q invalid; fixed settings carry what the
gateway knows (DGEN1.DERTyp and PhsConnTyp 98 "not known", DECP1.RefFrm false,
the ORG references InEcpRef / OutEcpRef point at DECP1); ratings with no
SunSpec point (DGEN1.VMax, VMaxRtg) read 0 (7-3 gives settings no quality).
Fixed at start (q good): LLN0.Mod, every Beh = 1 (on), the name plate,
LPHD1.Proxy = true (the LD stands for the inverter behind the gateway).
"""

from __future__ import annotations

import enum
from typing import Any

from hal.inverter import OperatingState

from .model import (
    SI_UNIT,
    Binding,
    Cdc,
    DataObjectSpec,
    LogicalDeviceSpec,
    LogicalNodeSpec,
    ModelSpec,
)

DEFAULT_LD_INST = "INV1"
DEFAULT_IED_NAME = "GW"

# libiec61850 cdc.h option bits (not imported from the SWIG module so this table stays data).
_OPT_UNIT = 1 << 6
_OPT_DESC = 1 << 2
_OPT_AC_LN0_M = 1 << 24
_OPT_DPL = (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20)  # hwRev, swRev, serNum, model


class Health(enum.IntEnum):
    """HealthKind (IEC 61850-7-3 / 7-4)."""

    OK = 1
    WARNING = 2
    ALARM = 3


#: The HAL's operating state (numbered as SunSpec models 101-103 ``St``).
SunSpecSt = OperatingState


#: SunSpec St -> DGEN.DEROpSt (7-420 Ed.2 DERStateKind); 98 = not applicable or not known.
ST_TO_DEROPST: dict[int, int] = {
    int(SunSpecSt.OFF): 3,            # disconnected and available
    int(SunSpecSt.SLEEPING): 3,       # disconnected and available (no PV)
    int(SunSpecSt.STARTING): 2,       # starting up
    int(SunSpecSt.MPPT): 6,           # running
    int(SunSpecSt.THROTTLED): 6,      # running
    int(SunSpecSt.SHUTTING_DOWN): 8,  # stopping
    int(SunSpecSt.FAULT): 11,         # failed
    int(SunSpecSt.STANDBY): 4,        # disconnected and authorized
}
DEROPST_UNKNOWN = 98

#: Namespace of every logical device (LLN0.NamPlt.ldNs): 7-420 Ed.2, which depends on 7-4.
LD_NS = "IEC 61850-7-420:2019A"
#: Namespace of the gateway's private data objects (their ``dataNs``, IEC 61850-7-1).
EXT_NS = "inverter-agent:2026A"
#: Every function LN refers to the electrical connection point it acts at.
ECP_REF = "{ld}/DECP1"

BEH_ON = 1


def health_from_link(up: Any) -> int:
    return int(Health.OK if up else Health.ALARM)


def deropst_from_st(st: Any) -> int:
    return ST_TO_DEROPST.get(int(st), DEROPST_UNKNOWN)


def health_from_st(st: Any) -> int:
    return int(Health.ALARM if int(st) == SunSpecSt.FAULT else Health.OK)


def ac_type_from_phase_c(v: Any) -> int:
    """ACSystemKind: 3 three phases when the inverter reports a phase C voltage, else 1."""
    return 3 if v else 1


def _beh() -> DataObjectSpec:
    return DataObjectSpec("Beh", Cdc.ENS, init={"stVal": BEH_ON}, enum="BehaviourModeKind")


def _mv(name: str, desc: str = "") -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.MV, desc=desc)


def _asg(name: str, unit: str, desc: str = "", init: float | None = None) -> DataObjectSpec:
    values: dict[str, Any] = {"units.SIUnit": SI_UNIT[unit]}
    if init is not None:
        values["setMag.f"] = init
    return DataObjectSpec(name, Cdc.ASG, options=_OPT_UNIT, init=values, desc=desc)


def fixed(name: str, cdc: Cdc, value: Any, desc: str = "", enum: str = "") -> DataObjectSpec:
    """A read-only setting with a fixed value (ENG / SPG / VSG / ORG)."""
    attr = {Cdc.ENG: "setVal", Cdc.SPG: "setVal", Cdc.VSG: "setVal", Cdc.ORG: "setSrcRef"}[cdc]
    return DataObjectSpec(name, cdc, init={attr: value}, desc=desc, enum=enum)


def ecp_ref(name: str = "InEcpRef") -> DataObjectSpec:
    return fixed(name, Cdc.ORG, ECP_REF, "electrical connection point: DECP1")


def _software_version() -> str:
    # The installed distribution's METADATA, read directly: importlib.metadata brings
    # email, csv and zipfile along (~3 MB of a small board's memory).
    import glob
    import os
    import sys

    for folder in sys.path:
        for meta in glob.glob(os.path.join(folder or ".", "inverter_agent-*.dist-info",
                                           "METADATA")):
            with open(meta, encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
    return "unknown"


def lln0(description: str) -> LogicalNodeSpec:
    return LogicalNodeSpec("LLN0", "", (
        DataObjectSpec("Mod", Cdc.ENC, init={"stVal": BEH_ON, "ctlModel": 0},
                       enum="BehaviourModeKind"),
        _beh(),
        DataObjectSpec("Health", Cdc.ENS, enum="HealthKind"),
        DataObjectSpec("NamPlt", Cdc.LPL, options=_OPT_DESC | _OPT_AC_LN0_M, ex={"ldNs": LD_NS},
                       init={"vendor": "inverter-agent", "swRev": _software_version(),
                             "configRev": "1", "d": description, "ldNs": LD_NS}),
    ))


def decp(*extra: DataObjectSpec) -> LogicalNodeSpec:
    """The electrical connection point of the inverter (7-420 DECP)."""
    return LogicalNodeSpec("DECP", "1", (
        _beh(),
        fixed("ElcRefId", Cdc.VSG, "inverter AC terminals", "electrical reference"),
        _asg("VRef", "V", "nominal voltage (SunSpec model 121 VRef)"),
        fixed("RefFrm", Cdc.SPG, False, "reference frame: false (not in the area EPS frame)"),
        *extra,
    ))


def lphd_spec() -> LogicalNodeSpec:
    """The physical device behind a logical device, through this gateway (a proxy)."""
    return LogicalNodeSpec("LPHD", "1", (
        DataObjectSpec("PhyNam", Cdc.DPL, options=_OPT_DPL),
        DataObjectSpec("PhyHealth", Cdc.ENS, enum="HealthKind"),
        DataObjectSpec("Proxy", Cdc.SPS, init={"stVal": True}),
    ))


def der_model_spec(ld_inst: str = DEFAULT_LD_INST) -> ModelSpec:
    """The served model for one inverter in logical device ``ld_inst``."""
    lphd = lphd_spec()
    mmxu = LogicalNodeSpec("MMXU", "1", (
        _beh(), _mv("TotW"), _mv("TotVAr"), _mv("TotVA"), _mv("TotPF"), _mv("Hz"),
        DataObjectSpec("PhV", Cdc.WYE), DataObjectSpec("A", Cdc.WYE),
    ))
    dinv = LogicalNodeSpec("DINV", "1", (
        _beh(),
        fixed("ACTyp", Cdc.ENG, 1, "AC system: 1 single phase, 3 three phases",
              "ACSystemKind"),
        DataObjectSpec("InvDCLosAlm", Cdc.SPS, desc="DC source lost (not reported: invalid)"),
        DataObjectSpec("InvGriLosAlm", Cdc.SPS, desc="grid lost (not reported: invalid)"),
        _asg("WRtg", "W"), _asg("VARtg", "VA"), _asg("VArRtg", "VAr"),
        _asg("OutPFSet", "dimensionless", "power factor set in the inverter (model 123 "
                                          "OutPFSet)"),
    ))
    mmtr = LogicalNodeSpec("MMTR", "1", (
        _beh(), DataObjectSpec("TotWh", Cdc.BCR, desc="energy delivered, Wh (model 101-103 "
                                                      "WH)"),
    ))
    from . import storage_model  # storage (DSTO, DBAT): storage_model.py

    ld = LogicalDeviceSpec(ld_inst, (lln0("SunSpec Modbus inverter gateway"), lphd, mmxu,
                                     mmtr, decp(), dinv, dgen(), *storage_model.storage_lns()))
    return ModelSpec((ld,), bindings(ld_inst) + storage_model.bindings(ld_inst))


def dgen(*extra: DataObjectSpec) -> LogicalNodeSpec:
    """DER unit state, ratings and operational settings (7-420 DGEN)."""
    return LogicalNodeSpec("DGEN", "1", (
        _beh(),
        DataObjectSpec("Health", Cdc.ENS, desc="3 Alarm: the inverter reports FAULT",
                       enum="HealthKind"),
        ecp_ref("OutEcpRef"),
        fixed("PhsConnTyp", Cdc.ENG, 98, "phase connection: 98 not known", "PhaseKind"),
        fixed("DERTyp", Cdc.ENG, 98, "DER type: 98 not known", "DERUnitKind"),
        DataObjectSpec("DEROpSt", Cdc.ENS, enum="DERStateKind"),
        _asg("WMax", "W", "maximum active power (SunSpec model 121 WMax)"),
        _asg("WRmp", "dimensionless", "ramp rate, % of WMax per s"),
        _asg("VArMax", "VAr", "maximum reactive power (model 121 VArMaxQ1)"),
        _mv("AvlUpW", "active power available (model 123 / 702 WAval), W"),
        _asg("VMax", "V", "no SunSpec source: 0"),
        _asg("WMaxRtg", "W", "rated maximum active power (model 120 WRtg)"),
        _asg("VMaxRtg", "V", "no SunSpec source: 0"),
        DataObjectSpec("GnOpSt", Cdc.ENS, desc="not reported: invalid",
                       enum="DERGeneratorStateKind"),
        DataObjectSpec("OpTmsRs", Cdc.INS, desc="not reported: invalid"),
        *extra,
    ))


#: (point, target below the LD, converter) -- the table in the module docstring.
POINT_TABLE: tuple[tuple[str, str, Any], ...] = (
    ("W", "MMXU1.TotW", None),
    ("VAr", "MMXU1.TotVAr", None),
    ("VA", "MMXU1.TotVA", None),
    ("PF", "MMXU1.TotPF", None),
    ("Hz", "MMXU1.Hz", None),
    ("PhVphA", "MMXU1.PhV.phsA", None),
    ("PhVphB", "MMXU1.PhV.phsB", None),
    ("PhVphC", "MMXU1.PhV.phsC", None),
    ("AphA", "MMXU1.A.phsA", None),
    ("AphB", "MMXU1.A.phsB", None),
    ("AphC", "MMXU1.A.phsC", None),
    ("VNom", "DECP1.VRef", None),
    ("WRtg", "DINV1.WRtg", None),
    ("WRtg", "DGEN1.WMaxRtg", None),
    ("VARtg", "DINV1.VARtg", None),
    ("VArRtgQ1", "DINV1.VArRtg", None),
    ("PhVphC", "DINV1.ACTyp", ac_type_from_phase_c),
    ("OutPFSet", "DINV1.OutPFSet", None),
    ("WH", "MMTR1.TotWh", None),
    ("WMax", "DGEN1.WMax", None),
    ("VArMaxQ1", "DGEN1.VArMax", None),
    ("WAval", "DGEN1.AvlUpW", None),
    ("St", "DGEN1.DEROpSt", deropst_from_st),
    ("St", "DGEN1.Health", health_from_st),
    ("health", "LLN0.Health", None),
    ("link", "LPHD1.PhyHealth", health_from_link),
    ("Mn", "LPHD1.PhyNam.vendor", None),
    ("Md", "LPHD1.PhyNam.model", None),
    ("SN", "LPHD1.PhyNam.serNum", None),
    ("Vr", "LPHD1.PhyNam.swRev", None),
)

#: Internal point names the DER model consumes.
POINTS: frozenset[str] = frozenset(p for p, _, _ in POINT_TABLE)


def bindings(ld_inst: str = DEFAULT_LD_INST) -> tuple[Binding, ...]:
    return tuple(Binding(p, f"{ld_inst}/{t}", c) for p, t, c in POINT_TABLE)
