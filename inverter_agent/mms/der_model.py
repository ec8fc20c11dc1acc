"""The IEC 61850 model the gateway serves for one inverter.

Logical device ``<IED name><ld_inst>`` (default ``GWINV1``) with names from
IEC 61850-7-4 (LLN0, LPHD, MMXU) and IEC 61850-7-420 / 61850-90-7 (ZINV,
DGEN, DRCT). Internal point names are SunSpec point names (models 1, 101-103,
120, 121) plus ``link``, the gateway's own "inverter link is up" flag.

=========  =======================  =====  ==============================================
Point      Data object              CDC    Value
=========  =======================  =====  ==============================================
W          MMXU1.TotW               MV     mag.f, W (engineering units from the HAL)
VAr        MMXU1.TotVAr             MV     mag.f, var
VA         MMXU1.TotVA              MV     mag.f, VA
PF         MMXU1.TotPF              MV     mag.f, power factor as a fraction (the HAL turns
                                           model 101-103 Pct into a fraction; sign as SunSpec)
Hz         MMXU1.Hz                 MV     mag.f, Hz
PhVphA     MMXU1.PhV.phsA           WYE    cVal.mag.f, V (phase to neutral)
PhVphB     MMXU1.PhV.phsB           WYE    cVal.mag.f, V
PhVphC     MMXU1.PhV.phsC           WYE    cVal.mag.f, V
AphA       MMXU1.A.phsA             WYE    cVal.mag.f, A
AphB       MMXU1.A.phsB             WYE    cVal.mag.f, A
AphC       MMXU1.A.phsC             WYE    cVal.mag.f, A
WRtg       ZINV1.WRtg               ASG    setMag.f, W (model 120 nameplate; FC SP, no q/t)
VARtg      ZINV1.VARtg              ASG    setMag.f, VA (model 120 apparent power rating)
VArRtgQ1   ZINV1.VarRtg             ASG    setMag.f, var (model 120, quadrant 1 rating)
WMax       DRCT1.WMax               ASG    setMag.f, W (model 121 setting)
St         DGEN1.DEROpSt            ENS    stVal = ST_TO_DEROPST[St] (see below)
St         DGEN1.Alm                SPS    stVal = St == 7 (FAULT)
health     LLN0.Health              ENS    stVal 1 Ok, 2 Warning (caveats), 3 Alarm (link down,
                                           or the functions stand aside: see status)
link       LPHD1.PhyHealth          ENS    same as LLN0.Health
Mn         LPHD1.PhyNam.vendor      DPL    model 1 manufacturer (string, no q/t)
Md         LPHD1.PhyNam.model       DPL    model 1 model
SN         LPHD1.PhyNam.serNum      DPL    model 1 serial number
Vr         LPHD1.PhyNam.swRev       DPL    model 1 firmware version
=========  =======================  =====  ==============================================

Fixed at start (q good, t = start time): LLN0.Mod and every LN's Beh = 1 (on),
LLN0.NamPlt (this gateway), LPHD1.Proxy = true (the LD stands for the inverter
behind the gateway), ASG units. Every other data point starts invalid (t =
start time) until the first snapshot that carries it; ASG and DPL have no q in
7-3, so an unpublished rating reads 0 and an unpublished name plate "".

DGEN1.DEROpSt: the 7-420:2021 enumeration is not public, so DEROpSt carries
the SunSpec St code unchanged (1 OFF, 2 SLEEPING, 3 STARTING, 4 MPPT,
5 THROTTLED, 6 SHUTTING_DOWN, 7 FAULT, 8 STANDBY) through ``ST_TO_DEROPST``;
change that one table once the standard's codes are confirmed.
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


#: SunSpec St -> DGEN.DEROpSt code (identity until 7-420:2021 codes are confirmed).
ST_TO_DEROPST: dict[int, int] = {int(s): int(s) for s in SunSpecSt}

BEH_ON = 1


def health_from_link(up: Any) -> int:
    return int(Health.OK if up else Health.ALARM)


def deropst_from_st(st: Any) -> int:
    return ST_TO_DEROPST.get(int(st), 0)


def fault_from_st(st: Any) -> bool:
    return int(st) == SunSpecSt.FAULT


def _beh() -> DataObjectSpec:
    return DataObjectSpec("Beh", Cdc.ENS, init={"stVal": BEH_ON})


def _mv(name: str) -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.MV)


def _asg(name: str, unit: str) -> DataObjectSpec:
    return DataObjectSpec(name, Cdc.ASG, options=_OPT_UNIT, init={"units.SIUnit": SI_UNIT[unit]})


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


def der_model_spec(ld_inst: str = DEFAULT_LD_INST) -> ModelSpec:
    """The served model for one inverter in logical device ``ld_inst``."""
    lln0 = LogicalNodeSpec("LLN0", "", (
        DataObjectSpec("Mod", Cdc.ENC, init={"stVal": BEH_ON, "ctlModel": 0}),
        _beh(),
        DataObjectSpec("Health", Cdc.ENS),
        DataObjectSpec("NamPlt", Cdc.LPL, options=_OPT_DESC | _OPT_AC_LN0_M, init={
            "vendor": "inverter-agent", "swRev": _software_version(), "configRev": "1",
            "d": "SunSpec Modbus inverter gateway"}),
    ))
    lphd = LogicalNodeSpec("LPHD", "1", (
        DataObjectSpec("PhyNam", Cdc.DPL, options=_OPT_DPL),
        DataObjectSpec("PhyHealth", Cdc.ENS),
        DataObjectSpec("Proxy", Cdc.SPS, init={"stVal": True}),
    ))
    mmxu = LogicalNodeSpec("MMXU", "1", (
        _beh(), _mv("TotW"), _mv("TotVAr"), _mv("TotVA"), _mv("TotPF"), _mv("Hz"),
        DataObjectSpec("PhV", Cdc.WYE), DataObjectSpec("A", Cdc.WYE),
    ))
    zinv = LogicalNodeSpec("ZINV", "1", (
        _beh(), _asg("WRtg", "W"), _asg("VARtg", "VA"), _asg("VarRtg", "VAr"),
    ))
    dgen = LogicalNodeSpec("DGEN", "1", (
        _beh(), DataObjectSpec("DEROpSt", Cdc.ENS), DataObjectSpec("Alm", Cdc.SPS),
    ))
    drct = LogicalNodeSpec("DRCT", "1", (_beh(), _asg("WMax", "W")))
    ld = LogicalDeviceSpec(ld_inst, (lln0, lphd, mmxu, zinv, dgen, drct))
    return ModelSpec((ld,), bindings(ld_inst))


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
    ("WRtg", "ZINV1.WRtg", None),
    ("VARtg", "ZINV1.VARtg", None),
    ("VArRtgQ1", "ZINV1.VarRtg", None),
    ("WMax", "DRCT1.WMax", None),
    ("St", "DGEN1.DEROpSt", deropst_from_st),
    ("St", "DGEN1.Alm", fault_from_st),
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
