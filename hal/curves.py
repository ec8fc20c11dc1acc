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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hal.sunspec.device import SunSpecDevice

log = logging.getLogger(__name__)

#: Reference of the var axis, named as the 705 DeptRef symbols say.
Q_REFS = {"w_max": 0, "var_max": 1, "var_aval": 2, "va_max": 3}
_Q_REF_NAMES = {v: k for k, v in Q_REFS.items()}
VOLT_VAR_MODEL = 705
#: Reference of the power axis, named as the 706 DeptRef symbols say.
W_REFS = {"w_max": 0, "w_aval": 1}
_W_REF_NAMES = {v: k for k, v in W_REFS.items()}
VOLT_WATT_MODEL = 706


class CurveError(Exception):
    """The device cannot hold or adopt the curve."""


def _close(a: tuple[tuple[float, float], ...], b: tuple[tuple[float, float], ...],
           v_tol: float, y_tol: float) -> bool:
    """Same points within the tolerances."""
    return len(a) == len(b) and all(abs(p[0] - q[0]) <= v_tol and abs(p[1] - q[1]) <= y_tol
                                    for p, q in zip(a, b, strict=True))


@dataclass(frozen=True, slots=True)
class Curve:
    """A curve function in device terms: ``points`` are (V in percent of nominal, the
    output in percent of ``ref``), ``ref`` named as the model's DeptRef symbols say."""

    points: tuple[tuple[float, float], ...]
    ref: str = ""
    response_time_s: float = 5.0
    enabled: bool = True

    def close_to(self, other: Curve, v_tol: float = 0.11, y_tol: float = 0.11,
                 t_tol: float = 0.6) -> bool:
        """Equal within register resolution (the device rounds to its scale factors)."""
        return (type(self) is type(other) and self.enabled == other.enabled
                and self.ref == other.ref
                and abs(self.response_time_s - other.response_time_s) <= t_tol
                and _close(self.points, other.points, v_tol, y_tol))


@dataclass(frozen=True, slots=True)
class VoltVarCurve(Curve):
    """Volt-var (705): Q in percent of ``ref`` (``Q_REFS``), injecting positive."""

    ref: str = "va_max"


@dataclass(frozen=True, slots=True)
class VoltWattCurve(Curve):
    """Volt-watt (706): W in percent of ``ref`` (``W_REFS``)."""

    ref: str = "w_max"
    response_time_s: float = 10.0


#: Per curve function: its model, the name of its output point, its reference symbols.
CURVE_MODELS = {"volt_var": (VOLT_VAR_MODEL, "Var", Q_REFS),
                "volt_watt": (VOLT_WATT_MODEL, "W", W_REFS)}


def supports_volt_var(device: SunSpecDevice) -> bool:
    return device.has(VOLT_VAR_MODEL)


def _read_curve(device: SunSpecDevice, model: int, y: str, refs: dict[int, str]
                ) -> tuple[tuple[tuple[float, float], ...], str, float, bool]:
    """Curve 1 of a 705 / 706 model: its points (V, ``y``), reference, response time, Ena."""
    m = device.read_models([model])[model]
    v = m.values
    n = int(v.get("Crv[1].ActPt") or 0)
    pts = tuple((float(v[f"Crv[1].Pt[{i}].V"]), float(v[f"Crv[1].Pt[{i}].{y}"]))
                for i in range(1, n + 1)
                if v.get(f"Crv[1].Pt[{i}].V") is not None
                and v.get(f"Crv[1].Pt[{i}].{y}") is not None)
    return (pts, refs.get(m.raw.get("Crv[1].DeptRef"), "?"),
            float(v.get("Crv[1].RspTms") or 0.0), m.raw.get("Ena") == 1)


def _write_curve(device: SunSpecDevice, model: int, what: str, y: str, curve: Curve,
                 refs: dict[str, int], adopt_timeout_s: float) -> None:
    """Program a curve into a writable curve k, adopt it, switch the function on or off."""
    if curve.ref not in refs:
        raise CurveError(f"unknown {what} reference {curve.ref!r}")
    points_, enabled = curve.points, curve.enabled
    m = device.read_models([model])[model]
    n_pt = int(m.raw.get("NPt") or 0)
    n_crv = int(m.raw.get("NCrv") or 0)
    if len(points_) > n_pt:
        raise CurveError(f"the device holds {n_pt} points a curve, not {len(points_)}")
    k = 1 if m.raw.get("Crv[1].ReadOnly") != 1 else 2
    if k > n_crv:
        raise CurveError(f"the device's only {what} curve is read-only")
    points = _curve_points(k, y, curve, refs)
    if m.raw.get("RvrtTms"):  # a reversion pending from a temporary curve: this one holds
        points["RvrtTms"] = 0
    if enabled:
        write_and_adopt(device, model, k, points, f"{what} curve", adopt_timeout_s, m.values)
    device.write_points(model, {"Ena": int(enabled)})
    log.info("unit %d: %s curve %s %s", device.unit, what,
             "programmed and enabled:" if enabled else "disabled", points_)


def _curve_points(k: int, y: str, curve: Curve, refs: dict[str, int]) -> dict[str, object]:
    """The registers of curve ``k`` holding ``curve``."""
    c = f"Crv[{k}]."
    points: dict[str, object] = {c + "ActPt": len(curve.points), c + "DeptRef": refs[curve.ref],
                                 c + "RspTms": curve.response_time_s}
    for i, (x, y_val) in enumerate(curve.points, start=1):
        points[f"{c}Pt[{i}].V"] = x
        points[f"{c}Pt[{i}].{y}"] = y_val
    return points


#: The largest 705 / 706 RvrtTms (uint32 seconds; 0 means no reversion).
RVRT_MAX_S = 0xFFFFFFFE


def revert_slots(device: SunSpecDevice, model: int) -> tuple[int, int] | None:
    """Two writable curves besides curve 1 (the one in use) for a temporary curve and the
    curve the device reverts to (RvrtCrv), or None: too few, or no RvrtTms."""
    m = device.read_models([model])[model]
    if m.raw.get("RvrtTms") is None or m.raw.get("RvrtCrv") is None:
        return None
    free = [k for k in range(2, int(m.raw.get("NCrv") or 0) + 1)
            if m.raw.get(f"Crv[{k}].ReadOnly") != 1]
    return (free[0], free[1]) if len(free) >= 2 else None


def write_with_revert(device: SunSpecDevice, model: int, y: str, temporary: Curve,
                      persisted: Curve, refs: dict[str, int], revert_s: float,
                      adopt_timeout_s: float = 5.0) -> bool:
    """Program ``persisted`` as the curve the device reverts to (RvrtCrv) and adopt
    ``temporary`` with RvrtTms = ``revert_s`` (bounded by the register's range), so the
    device itself goes back when no one re-arms the timer (a gateway gone). False: the
    device has no two free curves or no RvrtTms (nothing written)."""
    slots = revert_slots(device, model)
    if slots is None:
        return False
    if temporary.ref not in refs or persisted.ref not in refs:
        raise CurveError(f"unknown reference {temporary.ref!r} / {persisted.ref!r}")
    n_pt = int(device.read_models([model])[model].raw.get("NPt") or 0)
    if max(len(temporary.points), len(persisted.points)) > n_pt:
        raise CurveError(f"the device holds {n_pt} points a curve")
    back, temp = slots
    points = {**_curve_points(back, y, persisted, refs), **_curve_points(temp, y, temporary, refs),
              "RvrtCrv": back, "RvrtTms": rearm_seconds(revert_s)}
    device.write_points(model, points)
    adopt(device, model, temp, "temporary curve", adopt_timeout_s)
    device.write_points(model, {"Ena": int(temporary.enabled)})
    log.info("unit %d: %d temporary curve adopted, reverting to curve %d in %d s",
             device.unit, model, back, points["RvrtTms"])
    return True


def rearm_seconds(revert_s: float) -> int:
    """``revert_s`` as a 705 / 706 RvrtTms: whole seconds, at least 1, at most the range."""
    return int(min(max(1.0, revert_s), RVRT_MAX_S) + 0.999)


def rearm_revert(device: SunSpecDevice, model: int, revert_s: float) -> None:
    """Re-arm the reversion timer of an adopted temporary curve (705 / 706 RvrtTms)."""
    device.write_points(model, {"RvrtTms": rearm_seconds(revert_s)})


#: Point prefixes of the set in use (705 / 706 / 707-710 curve 1, 711 control set 1).
SET_IN_USE = ("Crv[1].", "Ctl[1].")
#: Model points written with a program that are written back, as set 1's are, when it
#: is not taken (RvrtTms 0 ends a pending reversion of the curve in use).
WRITTEN_BACK = ("RvrtTms",)


def write_and_adopt(device: SunSpecDevice, model: int, k: int, points: Mapping[str, Any],
                    what: str, timeout_s: float, held: Mapping[str, Any],
                    req: str = "AdptCrvReq", rslt_point: str = "AdptCrvRslt") -> None:
    """Write ``points`` into curve (or control / curve set) ``k`` and adopt it.

    ``k`` 1 is the set in use (a device whose set 1 is writable): when the write fails
    part way or the adoption is refused, set 1's points as ``held`` (the model read
    before) are written back, so the device is never left running a half-written set;
    so is a pending reversion timer (RvrtTms) the program had set to 0, for any ``k``.
    A ValueError (a value the registers cannot carry) is raised before anything is
    written. The exception is raised again either way."""
    before = {p: held[p] for p in points if held.get(p) is not None and (
        (k == 1 and p.startswith(SET_IN_USE)) or p in WRITTEN_BACK)}
    try:
        device.write_points(model, points)
        adopt(device, model, k, what, timeout_s, req=req, rslt_point=rslt_point)
    except ValueError:
        raise  # refused before anything was written
    except Exception:
        if before:
            _write_back(device, model, before, what)
        raise


def _write_back(device: SunSpecDevice, model: int, before: Mapping[str, Any],
                what: str) -> None:
    """One attempt to put set 1 back as it was; never raises (the caller's error stands)."""
    try:
        device.write_points(model, before)
    except Exception as exc:
        log.error("unit %d: %d %s not taken, and writing set 1 back failed (it may hold "
                  "part of the program): %s", device.unit, model, what, exc)
        return
    log.warning("unit %d: %d %s not taken: set 1 written back as it was", device.unit,
                model, what)


def adopt(device: SunSpecDevice, model: int, k: int, what: str, timeout_s: float,
          req: str = "AdptCrvReq", rslt_point: str = "AdptCrvRslt") -> None:
    """Ask the device to adopt curve (or control / curve set) ``k`` and wait for its
    result: COMPLETED returns, FAILED or no answer within ``timeout_s`` raises."""
    device.write_points(model, {req: k})
    deadline = time.monotonic() + timeout_s
    while True:
        rslt = device.read_models([model])[model].raw.get(rslt_point)
        if rslt == 1:
            return
        if rslt == 2:
            raise CurveError(f"the device refused to adopt {what} {k}")
        if time.monotonic() > deadline:
            raise CurveError(f"{what} {k} not adopted within {timeout_s} s")
        time.sleep(0.05)


def read_volt_var(device: SunSpecDevice) -> VoltVarCurve:
    """The curve the device uses now (curve 1) and whether the function is on."""
    pts, ref, rsp, ena = _read_curve(device, VOLT_VAR_MODEL, "Var", _Q_REF_NAMES)
    return VoltVarCurve(points=pts, ref=ref, response_time_s=rsp, enabled=ena)


def enable_volt_var(device: SunSpecDevice, on: bool) -> None:
    """Switch the device's volt-var function on or off with the curve it holds (705 Ena)."""
    device.write_points(VOLT_VAR_MODEL, {"Ena": int(on)})


def write_volt_var(device: SunSpecDevice, curve: VoltVarCurve,
                   adopt_timeout_s: float = 5.0) -> None:
    """Program ``curve``, adopt it, and switch the function on or off."""
    _write_curve(device, VOLT_VAR_MODEL, "volt-var", "Var", curve, Q_REFS, adopt_timeout_s)


def supports_volt_watt(device: SunSpecDevice) -> bool:
    return device.has(VOLT_WATT_MODEL)


def read_volt_watt(device: SunSpecDevice) -> VoltWattCurve:
    """The volt-watt curve the device uses now (706 curve 1) and whether it is on."""
    pts, ref, rsp, ena = _read_curve(device, VOLT_WATT_MODEL, "W", _W_REF_NAMES)
    return VoltWattCurve(points=pts, ref=ref, response_time_s=rsp, enabled=ena)


def enable_volt_watt(device: SunSpecDevice, on: bool) -> None:
    """Switch the device's volt-watt function on or off with the curve it holds (706 Ena)."""
    device.write_points(VOLT_WATT_MODEL, {"Ena": int(on)})


def write_volt_watt(device: SunSpecDevice, curve: VoltWattCurve,
                    adopt_timeout_s: float = 5.0) -> None:
    """Program a volt-watt curve into 706, adopt it, and switch the function on or off."""
    _write_curve(device, VOLT_WATT_MODEL, "volt-watt", "W", curve, W_REFS, adopt_timeout_s)
