"""IEEE 2030.5 DERControlBase -> the core's :class:`UtilityControl`, refusing absurd values.

Pure functions over the JSON form py20305 relays (``control_base``: snake-case
opMod names, values as IEEE 2030.5 encodes them). Every value is checked
against the range IEEE 2030.5-2018 gives its type; a control with any value
out of range is refused as a whole (:class:`ControlRejected`), never clamped:
a server that sends 250 % or a NaN has a bug, and guessing what it meant could
harm the grid or the inverter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inverter_agent.arbitration import UtilityControl

#: opMod functions this gateway applies. Others (fixed W, target W/var/V, ride-through
#: curves, watt-var...) are reported unsupported: a ride-through curve from a server
#: would relax the protection the gateway runs (docs/arbitration.md, protection first).
SUPPORTED = ("op_mod_connect", "op_mod_energize", "op_mod_max_lim_w", "op_mod_fixed_pfinject_w",
             "op_mod_fixed_pfabsorb_w", "op_mod_fixed_var")
#: DERUnitRefType 2: %setMaxVar (IEEE 2030.5-2018 Table "DERUnitRefType").
REF_SET_MAX_VAR = 2


class ControlRejected(ValueError):
    """A control the gateway refuses; the message says which value and why."""


def _enabled(v: Any) -> bool:
    return v is not None and not (isinstance(v, Mapping) and v.get("disabled") is True)


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or v != int(v) or not lo <= v <= hi:
        raise ControlRejected(f"{name} = {v!r}: allowed {lo}..{hi}")
    return int(v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ControlRejected(f"{name} = {v!r}: a boolean")
    return v


def _unwrap(v: Any) -> Any:
    """py20305's JSON form wraps simple types ({"value": -2} for a PowerOfTenMultiplier)."""
    return v.get("value") if isinstance(v, Mapping) else v


def _pf(name: str, v: Mapping[str, Any]) -> tuple[float, bool]:
    displacement = _int(f"{name}.displacement", _unwrap(v.get("displacement")), 0, 0xFFFF)
    multiplier = _int(f"{name}.multiplier", _unwrap(v.get("multiplier", 0)), -9, 9)
    pf = displacement * 10.0 ** multiplier
    if not 0.0 < pf <= 1.0:
        raise ControlRejected(f"{name} = {pf!r}: a power factor 0 < PF <= 1")
    # PowerFactorWithExcitation.excitation: true when absorbing reactive power (under-excited).
    absorbing = _unwrap(v.get("excitation", False))
    if not isinstance(absorbing, bool):
        raise ControlRejected(f"{name}.excitation = {absorbing!r}: a boolean")
    return round(pf, 4), absorbing


def control_from_base(base: Mapping[str, Any] | None) -> UtilityControl:
    """The core's control for a DERControlBase; raises ControlRejected.

    ``opModMaxLimW`` is a PerCent of setMaxW in hundredths (0..10000);
    ``opModFixedVar`` a SignedPerCent (hundredths, -10000..10000) of setMaxVar.
    """
    if base is None:
        return UtilityControl()
    unsupported = sorted(k for k, v in base.items()
                         if k.startswith("op_mod_") and k not in SUPPORTED and _enabled(v))
    if unsupported:
        raise ControlRejected(f"not supported by this gateway: {', '.join(unsupported)}")
    fields: dict[str, Any] = {}
    if _enabled(base.get("op_mod_connect")):
        fields["connect"] = _bool("opModConnect", base["op_mod_connect"])
    if _enabled(base.get("op_mod_energize")):
        fields["energize"] = _bool("opModEnergize", base["op_mod_energize"])
    lim = base.get("op_mod_max_lim_w")
    if _enabled(lim):
        value = lim.get("value") if isinstance(lim, Mapping) else lim
        fields["p_limit_pct"] = _int("opModMaxLimW", value, 0, 10000) / 100.0
    inject, absorb = base.get("op_mod_fixed_pfinject_w"), base.get("op_mod_fixed_pfabsorb_w")
    if _enabled(inject):
        if not isinstance(inject, Mapping):
            raise ControlRejected(f"opModFixedPFInjectW = {inject!r}: a PowerFactorWithExcitation")
        fields["fixed_pf"] = _pf("opModFixedPFInjectW", inject)
    elif _enabled(absorb):
        # Storage charging PF; a PV inverter never absorbs active power: refuse it.
        raise ControlRejected("opModFixedPFAbsorbW: this DER does not absorb active power")
    var = base.get("op_mod_fixed_var")
    if _enabled(var):
        if not isinstance(var, Mapping):
            raise ControlRejected(f"opModFixedVar = {var!r}: a FixedVar")
        ref = _int("opModFixedVar.refType", _unwrap(var.get("ref_type")), 0, 255)
        if ref != REF_SET_MAX_VAR:
            raise ControlRejected(f"opModFixedVar.refType = {ref}: only {REF_SET_MAX_VAR} "
                                  "(%setMaxVar) is supported")
        raw = var.get("value")
        raw = raw.get("value") if isinstance(raw, Mapping) else raw
        fields["fixed_var_pct"] = _int("opModFixedVar.value", raw, -10000, 10000) / 100.0
    if "fixed_pf" in fields and "fixed_var_pct" in fields:
        raise ControlRejected("opModFixedPFInjectW and opModFixedVar together: one reactive "
                              "mode at a time (IEEE 1547-2018 5.3.1)")
    return UtilityControl(**fields)
