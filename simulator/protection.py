"""The simulated inverter's own protection: must-trip and momentary cessation run
from its SunSpec 707-710 settings (DER Trip LV, HV, LF, HF).

Written from the model definitions and IEEE 1547-2018 6.4 / 6.5, not from the
gateway's functions, so that a test of the gateway's programming checks it
against a separate reading of the same text:

- of each enabled model (``Ena`` 1) the curve set in use (set 1) counts;
- every ``MustTrip`` point has its own timer, running while the value is beyond
  the point (below it for 707 / 709, above it for 708 / 710: the lowest phase
  voltage, the highest, or the frequency); when a timer reaches the point's
  ``Tms`` the device trips (ceases to energize and opens);
- while the value is beyond any ``MomCess`` point the device ceases to energize
  without tripping, and resumes as soon as it is back;
- ``MayTrip`` permits a trip and never forces one: this device does not use it.

A trip holds until no must-trip point has been beyond for ``reconnect_s`` (the
plant's reconnect delay), then the device returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Trip model -> (its x point, True when the value trips *above* the points).
TRIP_MODELS = {707: ("V", False), 708: ("V", True), 709: ("Hz", False), 710: ("Hz", True)}


def _points(image: Any, mid: int, curve: str, x: str) -> list[tuple[float, float]]:
    n = int(image.get(mid, f"Crv[1].{curve}.ActPt") or 0)
    out = []
    for i in range(1, n + 1):
        xv = image.get(mid, f"Crv[1].{curve}.Pt[{i}].{x}")
        tv = image.get(mid, f"Crv[1].{curve}.Pt[{i}].Tms")
        if xv is not None and tv is not None:
            out.append((float(xv), float(tv)))
    return out


@dataclass(slots=True)
class Protection:
    """Timers and state of the device's own protection (one per simulated inverter)."""

    #: (model, point index) -> since when the value has been beyond that must-trip point.
    since: dict[tuple[int, int], float] = field(default_factory=dict)
    #: Which point tripped the device ("708 MustTrip 120.0 % 0.16 s"), or None.
    tripped: str | None = None
    #: The momentary-cessation point the value is beyond now, or None.
    ceased: str | None = None
    #: Seconds beyond the threshold when the last trip fired (for tests), and trip count.
    last_trip_after_s: float | None = None
    trips: int = 0
    _clear_since: float | None = None

    @property
    def off(self) -> bool:
        """The device ceases to energize now (tripped or in momentary cessation)."""
        return self.tripped is not None or self.ceased is not None

    def step(self, image: Any, now: float, v_pct: tuple[float, ...], f_hz: float,
             reconnect_s: float) -> None:
        """Advance to ``now`` with phase voltages in % of nominal and the frequency."""
        ceased = None
        beyond_any = False
        for mid, (x, above) in TRIP_MODELS.items():
            if image.find(mid) is None or image.get(mid, "Ena") != 1:
                for key in [k for k in self.since if k[0] == mid]:
                    del self.since[key]
                continue
            if x == "V":
                value = max(v_pct) if above else min(v_pct)
                unit = "%"
            else:
                value, unit = f_hz, "Hz"

            def beyond(limit: float, value: float = value, above: bool = above) -> bool:
                return value > limit if above else value < limit

            for i, (limit, tms) in enumerate(_points(image, mid, "MustTrip", x)):
                key = (mid, i)
                if not beyond(limit):
                    self.since.pop(key, None)
                    continue
                beyond_any = True
                t0 = self.since.setdefault(key, now)
                if self.tripped is None and now - t0 >= tms:
                    self.tripped = f"{mid} MustTrip {limit} {unit} {tms} s"
                    self.last_trip_after_s = now - t0
                    self.trips += 1
            for limit, _ in _points(image, mid, "MomCess", x):
                if ceased is None and beyond(limit):
                    ceased = f"{mid} MomCess {limit} {unit}"
        self.ceased = ceased
        if self.tripped is None:
            self._clear_since = None
        elif beyond_any:
            self._clear_since = None
        else:
            if self._clear_since is None:
                self._clear_since = now
            if now - self._clear_since >= reconnect_s:
                self.tripped = None
                self._clear_since = None

    def snapshot(self) -> dict[str, Any]:
        return {"tripped": self.tripped, "ceased": self.ceased, "trips": self.trips,
                "last_trip_after_s": self.last_trip_after_s}
