"""Native curve functions of the inverter: program them, read them back.

Some inverters run grid functions themselves from a programmed curve (IEEE
1547-2018 SunSpec model 705 for volt-var). Programming the curve and checking
it now and then is an alternative to steering the output every cycle with
immediate controls; it keeps working if the gateway stops.

Model 705 holds several curves; curve 1 is the one in use and is often
read-only. A new curve is written into a writable curve k and adopted with
``AdptCrvReq = k``; the device reports ``AdptCrvRslt`` (completed / failed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from hal.sunspec.device import SunSpecDevice

log = logging.getLogger(__name__)

#: Reference of the var axis, named as the 705 DeptRef symbols say.
Q_REFS = {"w_max": 0, "var_max": 1, "var_aval": 2, "va_max": 3}
_Q_REF_NAMES = {v: k for k, v in Q_REFS.items()}
VOLT_VAR_MODEL = 705


class CurveError(Exception):
    """The device cannot hold or adopt the curve."""


@dataclass(frozen=True, slots=True)
class VoltVarCurve:
    """A volt-var curve in device terms.

    ``points`` are (V in percent of nominal, Q in percent of ``q_ref``),
    injecting positive.
    """

    points: tuple[tuple[float, float], ...]
    q_ref: str = "va_max"
    response_time_s: float = 5.0
    enabled: bool = True

    def close_to(self, other: VoltVarCurve, v_tol: float = 0.11, q_tol: float = 0.11,
                 t_tol: float = 0.6) -> bool:
        """Equal within register resolution (the device rounds to its scale factors)."""
        return (self.enabled == other.enabled and self.q_ref == other.q_ref
                and len(self.points) == len(other.points)
                and abs(self.response_time_s - other.response_time_s) <= t_tol
                and all(abs(a[0] - b[0]) <= v_tol and abs(a[1] - b[1]) <= q_tol
                        for a, b in zip(self.points, other.points, strict=True)))


def supports_volt_var(device: SunSpecDevice) -> bool:
    return device.has(VOLT_VAR_MODEL)


def read_volt_var(device: SunSpecDevice) -> VoltVarCurve:
    """The curve the device uses now (curve 1) and whether the function is on."""
    m = device.read_models([VOLT_VAR_MODEL])[VOLT_VAR_MODEL]
    v = m.values
    n = int(v.get("Crv[1].ActPt") or 0)
    pts = tuple((float(v[f"Crv[1].Pt[{i}].V"]), float(v[f"Crv[1].Pt[{i}].Var"]))
                for i in range(1, n + 1)
                if v.get(f"Crv[1].Pt[{i}].V") is not None
                and v.get(f"Crv[1].Pt[{i}].Var") is not None)
    return VoltVarCurve(points=pts, q_ref=_Q_REF_NAMES.get(m.raw.get("Crv[1].DeptRef"), "?"),
                        response_time_s=float(v.get("Crv[1].RspTms") or 0.0),
                        enabled=m.raw.get("Ena") == 1)


def enable_volt_var(device: SunSpecDevice, on: bool) -> None:
    """Switch the device's volt-var function on or off with the curve it holds (705 Ena)."""
    device.write_points(VOLT_VAR_MODEL, {"Ena": int(on)})


def write_volt_var(device: SunSpecDevice, curve: VoltVarCurve,
                   adopt_timeout_s: float = 5.0) -> None:
    """Program ``curve``, adopt it, and switch the function on or off."""
    m = device.read_models([VOLT_VAR_MODEL])[VOLT_VAR_MODEL]
    n_pt = int(m.raw.get("NPt") or 0)
    n_crv = int(m.raw.get("NCrv") or 0)
    if len(curve.points) > n_pt:
        raise CurveError(f"the device holds {n_pt} points a curve, not {len(curve.points)}")
    if curve.q_ref not in Q_REFS:
        raise CurveError(f"unknown var reference {curve.q_ref!r}")
    k = 1 if m.raw.get("Crv[1].ReadOnly") != 1 else 2
    if k > n_crv:
        raise CurveError("the device's only volt-var curve is read-only")
    c = f"Crv[{k}]."
    points: dict[str, object] = {c + "ActPt": len(curve.points),
                                 c + "DeptRef": Q_REFS[curve.q_ref],
                                 c + "RspTms": curve.response_time_s}
    for i, (v_pct, q_pct) in enumerate(curve.points, start=1):
        points[f"{c}Pt[{i}].V"] = v_pct
        points[f"{c}Pt[{i}].Var"] = q_pct
    if curve.enabled:
        device.write_points(VOLT_VAR_MODEL, points)
        device.write_points(VOLT_VAR_MODEL, {"AdptCrvReq": k})
        deadline = time.monotonic() + adopt_timeout_s
        while True:
            rslt = device.read_models([VOLT_VAR_MODEL])[VOLT_VAR_MODEL].raw.get("AdptCrvRslt")
            if rslt == 1:
                break
            if rslt == 2:
                raise CurveError(f"the device refused to adopt curve {k}")
            if time.monotonic() > deadline:
                raise CurveError(f"curve {k} not adopted within {adopt_timeout_s} s")
            time.sleep(0.05)
    device.write_points(VOLT_VAR_MODEL, {"Ena": int(curve.enabled)})
    log.info("unit %d: volt-var curve %s %s", device.unit,
             "programmed and enabled:" if curve.enabled else "disabled", curve.points)
