"""The site meter over MMS: the point of common coupling as its own logical device.

Which logical node. IEC 61850-7-420 Edition 2 (2019A4 NSD) models electrical
connection points (ECPs) as their own LN classes: ``DECP`` (a DER's own
connection point, the inverter terminals the inverter LD already serves) and
``DPCC``, "point of common coupling", a ``PhysicalElectricalConnectionPointLN``
whose two mandatory data objects of its own say where the site meets the area
EPS (``AreaEpsEcpId``, VSG) and the most active power allowed there
(``AreaEpsWMax``, ASG). An ECP LN carries settings and references, not
measurements; what is measured at it is a measurement LN of IEC 61850-7-4:
``MMXU`` (W, var, VA, PF, Hz, phase voltages and currents) and ``MMTR`` (the
energy counters, ``DmdWh`` / ``SupWh``). So the meter is served as one logical
device (``[meter] name``, default ``SITE``) holding ``DPCC1`` with the ``MMXU1``
and ``MMTR1`` that measure at it, rather than an MMXU inside an inverter's LD (it
does not measure the inverter) or a private LN (the Edition 2 class exists).

======  =====================  ================================================
LN      Data object            Meaning
======  =====================  ================================================
LLN0    Health                 Ok; Alarm: the meter's link is down, or an export
                               limit falls back to a generation limit
LPHD1   PhyHealth              Ok while the meter answers, else Alarm
MMXU1   TotW, TotVAr           the meter's W / var, **positive when the site imports**
                               (power flowing from the area EPS into the site);
                               exporting reads negative
        TotVA, TotPF, Hz       VA, power factor (-1..1), frequency
        PhV.phsA..C, A.phsA..C line-to-neutral voltages, currents
MMTR1   DmdWh                  energy imported from the area EPS, Wh (TotWhImp)
        SupWh                  energy exported to the area EPS, Wh (TotWhExp)
DPCC1   ElcRefId, RefFrm       "site connection point (site meter)", false
        VRef                   the first inverter's nominal voltage
        AreaEpsEcpId           "area EPS"
        AreaEpsWMax            the export limit in force at this point, W (0 when
                               none is in force)
======  =====================  ================================================

Every measurement carries the core's quality: invalid when the meter's link is
down (old data) or a value is implausible (``core/meter.py``).
"""

from __future__ import annotations

from typing import Any

from .der_model import _asg, _beh, _mv, fixed, lln0, lphd_spec
from .model import (
    Binding,
    Cdc,
    DataObjectSpec,
    LogicalDeviceSpec,
    LogicalNodeSpec,
    ModelSpec,
)

DEFAULT_PCC_LD = "SITE"

#: (meter reading, target below the LD): hal.meter's names, import positive.
POINT_TABLE: tuple[tuple[str, str], ...] = (
    ("W", "MMXU1.TotW"), ("VAr", "MMXU1.TotVAr"), ("VA", "MMXU1.TotVA"),
    ("PF", "MMXU1.TotPF"), ("Hz", "MMXU1.Hz"),
    ("PhVphA", "MMXU1.PhV.phsA"), ("PhVphB", "MMXU1.PhV.phsB"), ("PhVphC", "MMXU1.PhV.phsC"),
    ("AphA", "MMXU1.A.phsA"), ("AphB", "MMXU1.A.phsB"), ("AphC", "MMXU1.A.phsC"),
    ("TotWhImp", "MMTR1.DmdWh"), ("TotWhExp", "MMTR1.SupWh"),
)


def pcc_ld_spec(ld_inst: str = DEFAULT_PCC_LD) -> LogicalDeviceSpec:
    """The point-of-common-coupling LD (the table in the module docstring)."""
    lphd = lphd_spec()
    mmxu = LogicalNodeSpec("MMXU", "1", (
        _beh(),
        _mv("TotW", "active power at the PCC, W: positive = import from the area EPS"),
        _mv("TotVAr", "reactive power at the PCC, var: positive = import"),
        _mv("TotVA", "apparent power at the PCC, VA"),
        _mv("TotPF", "power factor at the PCC"), _mv("Hz", "frequency at the PCC"),
        DataObjectSpec("PhV", Cdc.WYE), DataObjectSpec("A", Cdc.WYE),
    ))
    mmtr = LogicalNodeSpec("MMTR", "1", (
        _beh(),
        DataObjectSpec("DmdWh", Cdc.BCR, desc="energy imported from the area EPS, Wh"),
        DataObjectSpec("SupWh", Cdc.BCR, desc="energy exported to the area EPS, Wh"),
    ))
    dpcc = LogicalNodeSpec("DPCC", "1", (
        _beh(),
        fixed("ElcRefId", Cdc.VSG, "site connection point (site meter)",
              "electrical reference"),
        _asg("VRef", "V", "nominal voltage (the first inverter's)"),
        fixed("RefFrm", Cdc.SPG, False, "reference frame: false"),
        fixed("AreaEpsEcpId", Cdc.VSG, "area EPS", "the area EPS this point couples to"),
        _asg("AreaEpsWMax", "W", "export limit in force at this point, W (0: none)"),
    ))
    return LogicalDeviceSpec(ld_inst, (lln0("site meter at the point of common coupling"),
                                       lphd, mmxu, mmtr, dpcc))


def with_pcc(spec: ModelSpec, ld_inst: str = DEFAULT_PCC_LD) -> ModelSpec:
    """``spec`` (the inverters, the plant) with the PCC LD beside them."""
    return ModelSpec((*spec.logical_devices, pcc_ld_spec(ld_inst)),
                     (*spec.bindings, *pcc_bindings(ld_inst)))


def pcc_bindings(ld_inst: str = DEFAULT_PCC_LD) -> tuple[Binding, ...]:
    return tuple(Binding(p, f"{ld_inst}/{t}") for p, t in POINT_TABLE)


def pcc_values(ld_inst: str, site: Any, v_nom: float | None) -> dict[str, Any]:
    """The PCC LD's non-measurement values for one cycle's ``SiteMeterView``."""
    limit = site.export_limit.get("limit_w")
    out: dict[str, Any] = {
        f"{ld_inst}/LLN0.Health": site.health,
        f"{ld_inst}/LPHD1.PhyHealth": 1 if site.link_up else 3,
        f"{ld_inst}/DPCC1.AreaEpsWMax": float(limit) if limit is not None else 0.0,
    }
    if v_nom is not None:
        out[f"{ld_inst}/DPCC1.VRef"] = float(v_nom)
    return out
