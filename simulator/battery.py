"""The simulated battery of a hybrid inverter: SoC, rates, reserve and model 124's window.

Models it renders (whichever the image carries): 124 basic storage controls,
713 DER storage capacity, 802 battery base and the storage points of 120
nameplate (WHRtg, AhrRtg, MaxChaRte, MaxDisChaRte).

Behaviour (SunSpec sign convention: battery power ``w`` positive discharging,
negative charging; the inverter's AC W is the PV power plus ``w``):

* with no window (124 ``StorCtl_Mod`` 0) the battery idles at 0 W: the site has
  no load model, so there is nothing for its own management to follow;
* ``StorCtl_Mod`` bit 0 bounds the charge by ``InWRte`` % of ``WChaMax``, bit 1
  the discharge by ``OutWRte`` %; a negative bound forces the other direction
  (the window ``[-InWRte, +OutWRte]``, as the Fronius GEN24 manual describes
  model 124), so ``InWRte = -x``, ``OutWRte = x`` holds a discharge of x %;
* the device's own limits always hold: the charge / discharge rate ratings, no
  discharge at or below the reserve (the higher of 124 MinRsvPct and 802
  SoCRsvMin), no charge at or above the highest SoC, the ramp gradients
  WChaGra / WDisChaGra (% of WChaMax per second), charging from PV only when
  ``ChaGriSet`` is 0 (PV), a discharge never beyond the AC power limit's
  headroom, nor beyond the AC rating with the PV power (a limit never forces a
  discharge), nothing while ceased or tripped;
* ``InOutWRte_RvrtTms`` > 0: the window is released (``StorCtl_Mod`` 0) when it
  has not been rewritten for that long;
* the SoC integrates the battery power over the capacity ``WHRtg``.

Time is an argument, never read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Scale factors the simulated storage models report (exponents of ten).
STORAGE_SF: dict[int, dict[str, int]] = {
    120: {"WHRtg_SF": 0, "AhrRtg_SF": 0, "MaxChaRte_SF": 0, "MaxDisChaRte_SF": 0},
    124: {"WChaMax_SF": 0, "WChaDisChaGra_SF": 0, "VAChaMax_SF": 0, "MinRsvPct_SF": -1,
          "ChaState_SF": -1, "StorAval_SF": -1, "InBatV_SF": -1, "InOutWRte_SF": -1},
    713: {"WH_SF": 0, "Pct_SF": -1},
    802: {"AHRtg_SF": 0, "WHRtg_SF": 0, "WChaDisChaMax_SF": 0, "DisChaRte_SF": 0,
          "SoC_SF": -1, "DoD_SF": -1, "SoH_SF": -1, "V_SF": -1, "CellV_SF": -3, "A_SF": -1,
          "AMax_SF": -1, "W_SF": 0},
}
BATTERY_MODELS = (124, 713, 802)


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """The battery of a profile (``"battery"`` key) or of ``--models`` with 124."""

    wh_rtg: float = 10000.0
    w_cha_max: float = 5000.0
    w_discha_max: float = 5000.0
    soc_pct: float = 50.0  # at start
    reserve_pct: float = 10.0
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    v_bat: float = 400.0
    gra_pct_s: float = 100.0  # WChaGra / WDisChaGra at start
    tau_s: float = 0.3

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatteryParams:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown battery key {unknown[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        p = cls(**{k: float(v) for k, v in d.items()})
        if p.wh_rtg <= 0 or p.w_cha_max <= 0 or p.w_discha_max <= 0 or p.v_bat <= 0:
            raise ValueError("battery wh_rtg, w_cha_max, w_discha_max, v_bat must be > 0")
        if not 0 <= p.soc_min_pct <= p.reserve_pct <= p.soc_max_pct <= 100:
            raise ValueError("battery: 0 <= soc_min_pct <= reserve_pct <= soc_max_pct <= 100")
        return p


class Battery:
    """The battery behind one simulated inverter's register image."""

    def __init__(self, image: Any, params: BatteryParams) -> None:
        self.image = image
        self.params = params
        self.soc = float(params.soc_pct)
        self.w = 0.0
        self._revert_at: float | None = None
        self.install()

    def _has(self, mid: int) -> bool:
        return self.image.find(mid) is not None

    def install(self) -> None:
        """Scale factors, ratings and start-up controls into the image."""
        img, p = self.image, self.params
        for mid, sfs in STORAGE_SF.items():
            if not self._has(mid):
                continue
            for name, exp in sfs.items():
                if img.has(mid, name):
                    img.set_sf(name, exp, mid)
        ahr = p.wh_rtg / p.v_bat
        if self._has(120):
            for k, v in {"DERTyp": 82, "WHRtg": p.wh_rtg, "AhrRtg": ahr,
                         "MaxChaRte": p.w_cha_max, "MaxDisChaRte": p.w_discha_max}.items():
                img.set(120, k, v)
        if self._has(124):
            for k, v in {"WChaMax": p.w_cha_max, "WChaGra": p.gra_pct_s,
                         "WDisChaGra": p.gra_pct_s, "StorCtl_Mod": 0, "MinRsvPct": p.reserve_pct,
                         "InWRte": 100.0, "OutWRte": 100.0, "InOutWRte_WinTms": 0,
                         "InOutWRte_RvrtTms": 0, "InOutWRte_RmpTms": 0, "ChaGriSet": 1,
                         "VAChaMax": p.w_cha_max}.items():
                img.set(124, k, v)
            pm = img.find(124)
            pm.validators.update({  # type: ignore[attr-defined]
                "InWRte": lambda v: -100.0 <= v <= 100.0,
                "OutWRte": lambda v: -100.0 <= v <= 100.0,
                "MinRsvPct": lambda v: 0.0 <= v <= 100.0,
                "WChaMax": lambda v: 0.0 <= v <= p.w_cha_max,
                "WChaGra": lambda v: v >= 0.0, "WDisChaGra": lambda v: v >= 0.0})
        if self._has(802):
            for k, v in {"AHRtg": ahr, "WHRtg": p.wh_rtg, "WChaRteMax": p.w_cha_max,
                         "WDisChaRteMax": p.w_discha_max, "SoCMax": 100.0,
                         "SoCMin": p.soc_min_pct, "SocRsvMax": p.soc_max_pct,
                         "SoCRsvMin": p.reserve_pct, "LocRemCtl": 0, "Typ": 4, "AlmRst": 0,
                         "SetOp": 1, "SetInvState": 3, "Evt1": 0, "Evt2": 0, "EvtVnd1": 0,
                         "EvtVnd2": 0, "NCyc": 0, "SoH": 100.0,
                         "AChaMax": p.w_cha_max / p.v_bat,
                         "ADisChaMax": p.w_discha_max / p.v_bat}.items():
                img.set(802, k, v)
        self.render()

    # --- controls ---------------------------------------------------------

    def _get(self, mid: int, path: str, default: Any = None) -> Any:
        return self.image.get(mid, path, default) if self._has(mid) else default

    def reserve(self) -> float:
        return max(float(self._get(124, "MinRsvPct", 0.0) or 0.0),
                   float(self._get(802, "SoCRsvMin", 0.0) or 0.0), self.params.soc_min_pct)

    def soc_max(self) -> float:
        return min(float(self._get(802, "SocRsvMax", 100.0) or 100.0), self.params.soc_max_pct)

    def on_write(self, now: float, changed: list[tuple[int, str]]) -> None:
        window = {"StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms"}
        if any(m == 124 and p in window for m, p in changed):
            tms = self._get(124, "InOutWRte_RvrtTms", 0) or 0
            self._revert_at = now + tms if tms > 0 and self._get(124, "StorCtl_Mod") else None

    def window(self) -> tuple[float, float]:
        """The battery power 124's window allows now: (lowest, highest), W."""
        p = self.params
        lo, hi = -p.w_cha_max, p.w_discha_max
        mod = int(self._get(124, "StorCtl_Mod", 0) or 0)
        base = float(self._get(124, "WChaMax", p.w_cha_max) or 0.0)
        if mod & 1:
            lo = -float(self._get(124, "InWRte", 100.0) or 0.0) / 100.0 * base
        if mod & 2:
            hi = float(self._get(124, "OutWRte", 100.0) or 0.0) / 100.0 * base
        return lo, hi

    def target(self, pv_w: float, w_limit: float | None, energize: bool,
               ac_max: float | None = None) -> float:
        """The battery power the device heads for now (its own limits applied)."""
        p = self.params
        if not energize:
            return 0.0
        lo, hi = self.window()
        w = min(max(0.0, lo), hi)  # idle (0) moved into the window
        w = max(-p.w_cha_max, min(p.w_discha_max, w))
        if w > 0 and self.soc <= self.reserve():
            w = 0.0
        if w < 0 and self.soc >= self.soc_max():
            w = 0.0
        if w < 0 and self._get(124, "ChaGriSet", 1) == 0:
            w = max(w, -max(0.0, pv_w))  # charge from PV only
        caps = [c for c in (w_limit, ac_max) if c is not None]
        if w > 0 and caps:  # the AC output (PV + battery) stays within limit and rating
            w = min(w, max(0.0, min(caps) - max(0.0, pv_w)))
        return w

    def step(self, now: float, dt: float, pv_w: float, w_limit: float | None,
             energize: bool, ac_max: float | None = None) -> float:
        """Advance by ``dt``: reversion, ramp, first-order response, SoC; the battery W."""
        if self._revert_at is not None and now >= self._revert_at and self._has(124):
            self.image.set(124, "StorCtl_Mod", 0)
            self._revert_at = None
        t = self.target(pv_w, w_limit, energize, ac_max)
        p = self.params
        k = 1.0 - math.exp(-dt / p.tau_s) if dt > 0 else 0.0
        step = (t - self.w) * k
        gra = self._get(124, "WDisChaGra" if t > self.w else "WChaGra", p.gra_pct_s)
        base = float(self._get(124, "WChaMax", p.w_cha_max) or p.w_cha_max)
        if gra and gra > 0 and dt > 0:
            most = gra / 100.0 * base * dt
            step = max(-most, min(most, step))
        self.w = 0.0 if not energize else self.w + step
        if abs(self.w) < 1.0 and t == 0.0:
            self.w = 0.0
        self.soc -= self.w * dt / 3600.0 / p.wh_rtg * 100.0
        self.soc = max(0.0, min(100.0, self.soc))
        self.render()
        return self.w

    # --- rendering -----------------------------------------------------------

    def cha_st(self) -> int:
        if self.w < -1.0:
            return 4  # CHARGING
        if self.w > 1.0:
            return 3  # DISCHARGING
        if self.soc <= self.reserve():
            return 2  # EMPTY
        if self.soc >= self.soc_max():
            return 5  # FULL
        return 6  # HOLDING

    def render(self) -> None:
        img, p = self.image, self.params
        rsv = self.reserve()
        avail_pct = max(0.0, self.soc - rsv)
        if self._has(124):
            img.set(124, "ChaState", self.soc)
            img.set(124, "StorAval", avail_pct / 100.0 * p.wh_rtg / p.v_bat)
            img.set(124, "InBatV", p.v_bat)
            img.set(124, "ChaSt", self.cha_st())
        if self._has(713):
            for k, v in {"WHRtg": p.wh_rtg, "WHAvail": avail_pct / 100.0 * p.wh_rtg,
                         "SoC": self.soc, "SoH": 100.0, "Sta": 0}.items():
                img.set(713, k, v)
        if self._has(802):
            for k, v in {"SoC": self.soc, "DoD": 100.0 - self.soc, "ChaSt": self.cha_st(),
                         "State": 3, "V": p.v_bat, "A": self.w / p.v_bat, "W": self.w}.items():
                img.set(802, k, v)

    def snapshot(self) -> dict[str, Any]:
        lo, hi = self.window()
        return {"soc": self.soc, "w": self.w, "reserve": self.reserve(),
                "soc_max": self.soc_max(), "window": [lo, hi], "wh_rtg": self.params.wh_rtg}
