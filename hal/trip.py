"""The inverter's own must-trip and momentary-cessation settings (SunSpec 707-710).

IEEE 1547-2018 devices carry their certified protection themselves and take its
settings in four models: 707 low voltage, 708 high voltage (points ``V`` in
percent of nominal), 709 low frequency, 710 high frequency (points ``Hz``).
Each holds ``NCrvSet`` curve sets of three curves of up to ``NPt`` points
(``V`` or ``Hz``, ``Tms`` seconds):

- ``MustTrip``: beyond a point's value for its ``Tms``, the device trips;
- ``MayTrip``: beyond it for its ``Tms``, the device is permitted to trip;
- ``MomCess``: beyond a point's value the device ceases to energize without
  tripping (momentary cessation); ``Tms`` is how long it rides through so.

As for 705, curve set 1 is the one in use and is often read-only: a new set is
written into a writable set k and adopted with ``AdptCrvReq = k``; the device
reports ``AdptCrvRslt`` (completed / failed).

The HAL never writes ``Ena`` 0 here: a gateway never disables the device's own
protection. ``MayTrip`` is written equal to ``MustTrip``, so no permitted trip
lies inside a region the settings ask the device to ride through.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hal.curves import CurveError, _close, write_and_adopt
from hal.sunspec.device import SunSpecDevice

log = logging.getLogger(__name__)

#: Model -> (what it guards, the name of its x point).
TRIP_MODELS = {707: ("low voltage", "V"), 708: ("high voltage", "V"),
               709: ("low frequency", "Hz"), 710: ("high frequency", "Hz")}

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class TripCurve:
    """One 707-710 curve set in device terms: (V % of nominal or Hz, seconds) points.

    ``enabled``: the device's ``Ena`` (the function on); never written False.
    """

    must_trip: Points
    mom_cess: Points = ()
    enabled: bool = True

    def close_to(self, other: object, x_tol: float = 0.011, t_tol: float = 0.011) -> bool:
        """Equal within register resolution, in any point order (the device may keep
        its points in another order; the curve is the same)."""
        def same(a: Points, b: Points) -> bool:
            return _close(tuple(sorted(a)), tuple(sorted(b)), x_tol, t_tol)
        return (isinstance(other, TripCurve) and self.enabled == other.enabled
                and same(self.must_trip, other.must_trip)
                and same(self.mom_cess, other.mom_cess))

    @property
    def points(self) -> dict[str, Points]:
        """Both curves, as an alarm or event shows them."""
        return {"must_trip": self.must_trip, "mom_cess": self.mom_cess}


def _curve(values: Mapping[str, Any], prefix: str, x: str) -> Points:
    n = int(values.get(f"{prefix}.ActPt") or 0)
    out = []
    for i in range(1, n + 1):
        xv, tv = values.get(f"{prefix}.Pt[{i}].{x}"), values.get(f"{prefix}.Pt[{i}].Tms")
        if xv is not None and tv is not None:
            out.append((float(xv), float(tv)))
    return tuple(out)


def read_trip(device: SunSpecDevice, model: int) -> TripCurve:
    """The curve set the device uses now (set 1) and whether the function is on."""
    _, x = TRIP_MODELS[model]
    m = device.read_models([model])[model]
    return TripCurve(must_trip=_curve(m.values, "Crv[1].MustTrip", x),
                     mom_cess=_curve(m.values, "Crv[1].MomCess", x),
                     enabled=m.raw.get("Ena") == 1)


def write_trip(device: SunSpecDevice, model: int, curve: TripCurve,
               adopt_timeout_s: float = 5.0) -> None:
    """Program ``curve`` into a writable curve set, adopt it, and keep the function on.

    Raises :class:`CurveError` when the device cannot hold it (more points than
    its ``NPt``, no writable set, a value its registers cannot carry) or refuses
    to adopt it; nothing is then switched off.
    """
    what, x = TRIP_MODELS[model]
    if not curve.must_trip:
        raise CurveError(f"{what} trip: no must-trip point (the device's own is kept)")
    m = device.read_models([model])[model]
    n_pt = int(m.raw.get("NPt") or 0)
    n_set = int(m.raw.get("NCrvSet") or 0)
    longest = max(len(curve.must_trip), len(curve.mom_cess))
    if longest > n_pt:
        raise CurveError(f"the device holds {n_pt} {what} trip points a curve, not {longest}")
    k = 1 if m.raw.get("Crv[1].ReadOnly") != 1 else 2
    if k > n_set:
        raise CurveError(f"the device's only {what} trip curve set is read-only")
    points: dict[str, object] = {}
    for name, pts in (("MustTrip", curve.must_trip), ("MayTrip", curve.must_trip),
                      ("MomCess", curve.mom_cess)):
        c = f"Crv[{k}].{name}."
        points[c + "ActPt"] = len(pts)
        for i, (xv, tv) in enumerate(pts, start=1):
            points[f"{c}Pt[{i}].{x}"] = xv
            points[f"{c}Pt[{i}].Tms"] = tv
    try:  # set 1 (the set in use, when writable) is written back if not adopted
        write_and_adopt(device, model, k, points, f"{what} trip curve set", adopt_timeout_s,
                        m.values)
    except ValueError as exc:  # a value outside what the device's registers carry
        raise CurveError(f"{what} trip: {exc}") from None
    if m.raw.get("Ena") != 1:
        device.write_points(model, {"Ena": 1})
    held = read_trip(device, model)
    if not held.close_to(TripCurve(curve.must_trip, curve.mom_cess, True)):
        raise CurveError(f"{what} trip: the device holds {held.points} after adopting "
                         f"{curve.points} (its resolution or ranges)")
    log.info("unit %d: %s trip programmed: must trip %s, momentary cessation %s",
             device.unit, what, curve.must_trip, curve.mom_cess)
