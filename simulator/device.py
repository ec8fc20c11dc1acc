"""One simulated inverter: its register image, its control logic and its plant.

The control logic reads what the Modbus master wrote (model 123 immediate
controls, model 704 DER AC controls, 703 enter service, 121/702 settings),
applies the time behaviour those models define (WinTms random window, RvrtTms
reversion, RmpTms ramp of the power limit; 704 reversion to the *Rvrt values;
705 / 706 reversion to curve RvrtCrv after RvrtTms),
and hands :class:`plant.Commands` to the plant. Measurements go back into the
inverter model present (101-103, 111-113 or 701) and into 122 status.

Time is an argument (``now``, seconds on any monotonic clock), never read here.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from . import plant
from .plant import Commands, Grid, OpState, PlantParams, PlantState
from .protection import TRIP_MODELS, Protection
from .registers import PHASES, RegisterImage

log = logging.getLogger(__name__)

_EPOCH_2000 = 946684800  # SunSpec Tms counts seconds from 2000-01-01 UTC


@dataclass(slots=True)
class _Timed123:
    """One model 123 control with its window / reversion / ramp timers."""

    name: str
    points: tuple[str, ...]  # writes to these trigger the control
    win: str | None
    rvrt: str
    rmp: str | None
    pending_at: float | None = None
    revert_at: float | None = None
    active: dict[str, Any] = field(default_factory=dict)
    ramp: tuple[float, float, float, float] | None = None  # from, to, t0, duration


_GROUPS_123 = (
    ("conn", ("Conn",), "Conn_WinTms", "Conn_RvrtTms", None),
    ("wmax", ("WMaxLimPct", "WMaxLim_Ena"), "WMaxLimPct_WinTms", "WMaxLimPct_RvrtTms",
     "WMaxLimPct_RmpTms"),
    ("pf", ("OutPFSet", "OutPFSet_Ena"), "OutPFSet_WinTms", "OutPFSet_RvrtTms", None),
    ("var", ("VArWMaxPct", "VArMaxPct", "VArAvalPct", "VArPct_Mod", "VArPct_Ena"),
     "VArPct_WinTms", "VArPct_RvrtTms", None),
)
# what reversion does (SunSpec 123: the control returns to its default)
_REVERT_123 = {"conn": {"Conn": 1}, "wmax": {"WMaxLim_Ena": 0}, "pf": {"OutPFSet_Ena": 0},
               "var": {"VArPct_Ena": 0}}

# model 704: group prefix -> (value points, their reversion points)
_GROUPS_704 = {
    "PFWInj": (("PFWInj.PF", "PFWInj.Ext"), ("PFWInjRvrt.PF", "PFWInjRvrt.Ext")),
    "PFWAbs": (("PFWAbs.PF", "PFWAbs.Ext"), ("PFWAbsRvrt.PF", "PFWAbsRvrt.Ext")),
    "WMaxLimPct": (("WMaxLimPct",), ("WMaxLimPctRvrt",)),
    "WSet": (("WSet", "WSetPct"), ("WSetRvrt", "WSetPctRvrt")),
    "VarSet": (("VarSet", "VarSetPct"), ("VarSetRvrt", "VarSetPctRvrt")),
}


class Inverter:
    """A simulated inverter at one Modbus unit id."""

    def __init__(self, image: RegisterImage, params: PlantParams, dc_w: float | None = None,
                 pf_percent: bool = True, seed: int | None = None) -> None:
        self.image = image
        self.unit_id = image.unit_id
        self.params = params
        r = params.ratings
        self.dc_w = 0.8 * r.w_max if dc_w is None else dc_w
        self.pf_percent = pf_percent
        self.state = PlantState()
        self.commands = Commands()
        self.forced_fault = False
        #: Profile quirk: phases the device lacks read 0 instead of the sentinel.
        self.unused_phases_zero = False
        #: Profile quirk: one reactive mode at a time (a selector-style device): enabling
        #: a 704 PF or var setpoint switches 705 volt-var off, and 705 Ena on switches
        #: them off.
        self.exclusive_reactive_modes = False
        #: Profile quirk: every 705 AdptCrvReq ends in AdptCrvRslt FAILED.
        self.refuse_adoption = False
        #: Profile quirk: adoption refused by these models only (e.g. {708}).
        self.refuse_adoption_models: set[int] = set()
        #: The device's own must-trip / momentary cessation (707-710).
        self.protection = Protection()
        #: Master writes per point ("704/VarSetPct" -> count), for the control channel.
        self.writes: dict[str, int] = {}
        # Local mode: the inverter's own panel has taken control. Writes still
        # land in the registers (as on real devices) but the output keeps
        # following the commands frozen when local mode began.
        self.local_commands: Commands | None = None
        self._rng = random.Random(seed)
        self._g123 = {name: _Timed123(name, pts, win, rv, rmp)
                      for name, pts, win, rv, rmp in _GROUPS_123}
        self._rvrt704: dict[str, float] = {}  # group -> revert time
        #: 705 / 706: the curve last adopted, and when the device reverts to RvrtCrv.
        self._adopted: dict[int, int] = {}
        self._rvrt_crv: dict[int, float] = {}
        #: The battery of a hybrid (simulator/battery.py), attached by the builder.
        self.battery: Any = None
        # a device may offer both the legacy and the 1547 measurement model: fill each
        self.inverter_models = [m for m in image.model_ids() if m in plant_models()]
        if image.find(123) is not None:
            for g in self._g123.values():
                g.active = {p: image.get(123, p) for p in g.points}

    # --- writes from the master --------------------------------------------

    def on_write(self, now: float, changed: list[tuple[int, str]], remote: bool = True) -> None:
        """React to a Modbus write that landed in the image (``remote`` False: a change
        the device made itself, from its panel)."""
        for mid, path in changed:
            log.info("unit %d: %d/%s <- %s", self.unit_id, mid, path, self.image.get(mid, path))
            if remote:
                self.writes[f"{mid}/{path}"] = self.writes.get(f"{mid}/{path}", 0) + 1
        if self.exclusive_reactive_modes:
            self._select_reactive_mode(changed)
        paths123 = {p for m, p in changed if m == 123}
        for g in self._g123.values():
            if paths123 & set(g.points):
                win = self.image.get(123, g.win, 0) if g.win else 0
                # WinTms: the command takes effect at a random moment in the window
                g.pending_at = now + (self._rng.uniform(0, win) if win else 0.0)
        paths704 = {p for m, p in changed if m == 704}
        for grp, (vals, _) in _GROUPS_704.items():
            if paths704 & {f"{grp}Ena", *vals}:
                tms = self.image.get(704, f"{grp}RvrtTms", 0) or 0
                if tms > 0:
                    self._rvrt704[grp] = now + tms
                else:
                    self._rvrt704.pop(grp, None)
        if self.battery is not None:
            self.battery.on_write(now, changed)
        for mid in (705, 706, *TRIP_MODELS):
            if (mid, "AdptCrvReq") in changed:
                self._adopt(mid)
        for mid in (705, 706):
            if {(mid, "AdptCrvReq"), (mid, "RvrtTms")} & set(changed):
                self._arm_curve_revert(now, mid)
        if (711, "AdptCtlReq") in changed:
            self._adopt_711()
        self._update_123(now)

    # --- model 705: curve adoption and the volt-var function itself ----------

    def _select_reactive_mode(self, changed: list[tuple[int, str]]) -> None:
        """A selector-style device runs one reactive mode: the last one switched on."""
        img = self.image
        if img.find(705) is None or img.find(704) is None:
            return
        enables_704 = ("VarSetEna", "PFWInjEna", "PFWAbsEna")
        if any(m == 704 and p in enables_704 and img.get(704, p) == 1 for m, p in changed):
            if img.get(705, "Ena") == 1:
                img.set(705, "Ena", 0)
                log.info("unit %d: a 704 reactive setpoint switched 705 volt-var off",
                         self.unit_id)
        elif (705, "Ena") in changed and img.get(705, "Ena") == 1:
            for p in enables_704:
                img.set(704, p, 0)

    def _adopt(self, mid: int) -> None:
        """AdptCrvReq = k copies curve k into curve 1, the active (read-only) curve
        (705 volt-var, 706 volt-watt)."""
        img = self.image
        k = int(img.get(mid, "AdptCrvReq") or 0)
        n_crv = int(img.get(mid, "NCrv" if mid in (705, 706) else "NCrvSet") or 0)
        if self.refuse_adoption or mid in self.refuse_adoption_models:
            img.set(mid, "AdptCrvReq", 0)
            img.set(mid, "AdptCrvRslt", 2)  # FAILED
            log.info("unit %d: %d adoption of curve %d refused", self.unit_id, mid, k)
            return
        if not 1 <= k <= n_crv:
            img.set(mid, "AdptCrvRslt", 2)  # FAILED
            return
        if k != 1:
            n_pt = int(img.get(mid, "NPt") or 0)
            if mid == 705:
                names = ["ActPt", "DeptRef", "Pri", "VRef", "VRefAuto", "VRefAutoEna",
                         "VRefAutoTms", "RspTms"]
                y = "Var"
            elif mid == 706:
                names, y = ["ActPt", "DeptRef", "RspTms"], "W"
            if mid in (705, 706):
                names += [f"Pt[{i}].{x}" for i in range(1, n_pt + 1) for x in ("V", y)]
            else:  # a trip curve set: its three curves
                x = TRIP_MODELS[mid][0]
                names = [f"{c}.{n}" for c in ("MustTrip", "MayTrip", "MomCess")
                         for n in ("ActPt", *(f"Pt[{i}].{p}" for i in range(1, n_pt + 1)
                                              for p in (x, "Tms")))]
            for name in names:
                img.set(mid, f"Crv[1].{name}", img.get(mid, f"Crv[{k}].{name}"))
        img.set(mid, "AdptCrvReq", 0)
        img.set(mid, "AdptCrvRslt", 1)  # COMPLETED
        self._adopted[mid] = k
        log.info("unit %d: %d adopted curve %d", self.unit_id, mid, k)

    def _arm_curve_revert(self, now: float, mid: int) -> None:
        """705 / 706 RvrtTms: a curve adopted (or the timer written) while RvrtTms > 0
        and the curve in use is not RvrtCrv holds RvrtTms seconds, then the device adopts
        RvrtCrv itself; 0 means no reversion."""
        img = self.image
        tms = int(img.get(mid, "RvrtTms", 0) or 0)
        back = int(img.get(mid, "RvrtCrv", 0) or 0)
        k = self._adopted.get(mid)
        if tms > 0 and 1 <= back <= int(img.get(mid, "NCrv") or 0) and k not in (None, back):
            self._rvrt_crv[mid] = now + tms
        else:
            self._rvrt_crv.pop(mid, None)
            img.set(mid, "RvrtRem", 0)

    def _update_curve_revert(self, now: float) -> None:
        for mid, t_end in list(self._rvrt_crv.items()):
            rem = t_end - now
            if rem <= 0:
                del self._rvrt_crv[mid]
                self.image.set(mid, "AdptCrvReq", int(self.image.get(mid, "RvrtCrv")))
                self._adopt(mid)
                log.info("unit %d: %d reverted to curve %d", self.unit_id, mid,
                         self._adopted.get(mid, 0))
                rem = 0
            self.image.set(mid, "RvrtRem", math.ceil(rem))

    def _adopt_711(self) -> None:
        """AdptCtlReq = k copies control set k into set 1, the one in use (711)."""
        img = self.image
        k = int(img.get(711, "AdptCtlReq") or 0)
        ok = 1 <= k <= int(img.get(711, "NCtl") or 0) and not self.refuse_adoption \
            and 711 not in self.refuse_adoption_models
        if ok and k != 1:
            for name in ("DbOf", "DbUf", "KOf", "KUf", "RspTms", "PMin"):
                img.set(711, f"Ctl[1].{name}", img.get(711, f"Ctl[{k}].{name}"))
        img.set(711, "AdptCtlReq", 0)
        img.set(711, "AdptCtlRslt", 1 if ok else 2)  # COMPLETED / FAILED
        log.info("unit %d: 711 adoption of set %d %s", self.unit_id, k,
                 "completed" if ok else "refused")

    def _freq_droop_711(self, cmd: Commands, grid: Grid) -> Commands:
        """Over-frequency droop from 711 set 1 while Ena (IEEE 1547-2018 6.5.2.7):
        p = max(p_pre - (f - (f_nom + dbOF)) / (f_nom * kOF), p_min), per unit of
        WMax, p_pre the power available before the excursion."""
        img, r = self.image, self.params.ratings
        if img.find(711) is None or img.get(711, "Ena") != 1:
            return cmd
        db, k = img.get(711, "Ctl[1].DbOf"), img.get(711, "Ctl[1].KOf")
        if db is None or not k:
            return cmd
        over = grid.f_hz - (r.f_nom + db)
        if over <= 0:
            return cmd
        w_max = cmd.w_max if cmd.w_max is not None else r.w_max
        p_pre = min(self.dc_w * r.efficiency, w_max) / w_max
        p_min = (img.get(711, "Ctl[1].PMin") or 0) / 100.0
        lim = max(p_pre - over / (r.f_nom * k), p_min) * w_max
        return replace(cmd, w_limit=lim if cmd.w_limit is None else min(cmd.w_limit, lim))

    def _active_curve(self, mid: int, y: str) -> list[tuple[float, float]]:
        """Curve 1 of 705 / 706 as (V %, ``y``) points while the function is on, else []."""
        img = self.image
        if img.find(mid) is None or img.get(mid, "Ena") != 1:
            return []
        n = int(img.get(mid, "Crv[1].ActPt") or 0)
        pts = [(img.get(mid, f"Crv[1].Pt[{i}].V"), img.get(mid, f"Crv[1].Pt[{i}].{y}"))
               for i in range(1, n + 1)]
        return [(v, q) for v, q in pts if v is not None and q is not None]

    def _volt_watt_706(self, cmd: Commands, grid: Grid) -> Commands:
        """Run the adopted volt-watt curve when 706 is enabled: the lower limit wins."""
        r = self.params.ratings
        pts = self._active_curve(706, "W")
        if not pts:
            return cmd
        v_pct = max(grid.v) / r.v_nom * 100.0  # the highest phase governs
        w_max = cmd.w_max if cmd.w_max is not None else r.w_max
        lim = _interp(pts, v_pct) / 100.0 * w_max
        return replace(cmd, w_limit=lim if cmd.w_limit is None else min(cmd.w_limit, lim))

    def _volt_var_705(self, cmd: Commands, grid: Grid) -> Commands:
        """Run the adopted volt-var curve when 705 is enabled and no other reactive
        command holds (a var or PF setpoint wins, as on most devices)."""
        img, r = self.image, self.params.ratings
        if cmd.pf is not None or cmd.var is not None or cmd.var_aval_pct is not None:
            return cmd
        pts = self._active_curve(705, "Var")
        if not pts:
            return cmd
        v_pct = sum(grid.v) / len(grid.v) / r.v_nom * 100.0
        q_pct = _interp(pts, v_pct)
        ref = img.get(705, "Crv[1].DeptRef")
        base = {0: r.w_max, 1: r.var_max_inj, 3: r.va_max}.get(ref, r.var_max_inj)
        return replace(cmd, var=q_pct / 100.0 * base)

    def _update_123(self, now: float) -> None:
        if self.image.find(123) is None:
            return
        for g in self._g123.values():
            if g.pending_at is not None and now >= g.pending_at:
                g.pending_at = None
                old = self._wmax_pct(g.active) if g.name == "wmax" else 0.0
                g.active = {p: self.image.get(123, p) for p in g.points}
                rvrt = self.image.get(123, g.rvrt, 0) or 0
                g.revert_at = now + rvrt if rvrt > 0 else None
                if g.name == "wmax":
                    rmp = self.image.get(123, g.rmp, 0) if g.rmp else 0
                    cur = self._ramped(g, now, old)
                    g.ramp = (cur, self._wmax_pct(g.active), now, float(rmp)) if rmp else None
            if g.revert_at is not None and now >= g.revert_at:
                g.revert_at = None
                log.info("unit %d: 123 %s reverts after %s s", self.unit_id, g.name, g.rvrt)
                for p, v in _REVERT_123[g.name].items():
                    self.image.set(123, p, v)
                    g.active[p] = v
                g.ramp = None

    @staticmethod
    def _wmax_pct(active: dict[str, Any]) -> float:
        if active.get("WMaxLim_Ena") == 1 and active.get("WMaxLimPct") is not None:
            return float(active["WMaxLimPct"])
        return 100.0

    @staticmethod
    def _ramped(g: _Timed123, now: float, default: float) -> float:
        if g.ramp is None:
            return default
        a, b, t0, dur = g.ramp
        if dur <= 0 or now >= t0 + dur:
            return b
        return a + (b - a) * (now - t0) / dur

    def _update_704(self, now: float) -> None:
        if self.image.find(704) is None:
            return
        for grp, t_end in list(self._rvrt704.items()):
            rem = t_end - now
            if rem <= 0:
                del self._rvrt704[grp]
                vals, rvrts = _GROUPS_704[grp]
                self.image.set(704, f"{grp}Ena", self.image.get(704, f"{grp}EnaRvrt", 0))
                for v, rv in zip(vals, rvrts, strict=True):
                    self.image.set(704, v, self.image.get(704, rv))
                log.info("unit %d: 704 %s reverted", self.unit_id, grp)
                rem = 0
            self.image.set(704, f"{grp}RvrtRem", math.ceil(rem))

    # --- from registers to commands ------------------------------------------

    def _commands(self, now: float) -> Commands:
        img, r = self.image, self.params.ratings
        w_max = r.w_max
        if img.find(121) is not None:
            w_max = img.get(121, "WMax", w_max)
        if img.find(702) is not None:
            w_max = min(w_max, img.get(702, "WMax", w_max))
        connect = True
        limits: list[float] = []
        pf = var = var_aval = None
        if img.find(123) is not None:
            g = self._g123
            connect = g["conn"].active.get("Conn") != 0
            pct = self._ramped(g["wmax"], now, self._wmax_pct(g["wmax"].active))
            if pct < 100.0 or g["wmax"].active.get("WMaxLim_Ena") == 1:
                limits.append(pct / 100.0 * w_max)
            if g["pf"].active.get("OutPFSet_Ena") == 1:
                pf = g["pf"].active.get("OutPFSet")
            a = g["var"].active
            if a.get("VArPct_Ena") == 1:
                mod = a.get("VArPct_Mod")
                if mod == 1:
                    var = (a.get("VArWMaxPct") or 0) / 100.0 * w_max
                elif mod == 2:
                    pct_v = a.get("VArMaxPct") or 0
                    cap = (img.get(121, "VArMaxQ1", r.var_max_inj) if pct_v >= 0 else
                           abs(img.get(121, "VArMaxQ4", -r.var_max_abs))) \
                        if img.find(121) else (r.var_max_inj if pct_v >= 0 else r.var_max_abs)
                    var = pct_v / 100.0 * cap
                elif mod == 3:
                    var_aval = a.get("VArAvalPct") or 0
        if img.find(703) is not None and img.get(703, "ES") == 0:
            connect = False
        if img.find(704) is not None:
            if img.get(704, "WMaxLimPctEna") == 1:
                limits.append(img.get(704, "WMaxLimPct", 100.0) / 100.0 * w_max)
            if img.get(704, "WSetEna") == 1:
                limits.append(img.get(704, "WSet", 0) if img.get(704, "WSetMod") == 1
                              else img.get(704, "WSetPct", 0) / 100.0 * w_max)
            if img.get(704, "PFWInjEna") == 1:
                mag = img.get(704, "PFWInj.PF", 1.0)
                pf = -mag if img.get(704, "PFWInj.Ext") == 1 else mag
                var = var_aval = None
            if img.get(704, "VarSetEna") == 1 and pf is None:
                mod = img.get(704, "VarSetMod")
                pct_v = img.get(704, "VarSetPct", 0) or 0
                var_aval = None
                if mod == 4:
                    var = img.get(704, "VarSet", 0)
                elif mod == 2:
                    var, var_aval = None, pct_v
                else:
                    base = {0: w_max, 3: r.va_max}.get(
                        mod, r.var_max_inj if pct_v >= 0 else r.var_max_abs)
                    var = pct_v / 100.0 * base
        return Commands(connect=connect and not self.forced_fault,
                        w_limit=min(limits) if limits else None, pf=pf, var=var,
                        var_aval_pct=var_aval, w_max=w_max)

    # --- the clock tick -------------------------------------------------------

    def settle(self, now: float, grid: Grid) -> None:
        """Start in steady state (a simulator that boots at full output spares tests a wait)."""
        self.commands = self._commands(now)
        w, var, st, _ = plant.targets(self.params, self.state, grid, self.dc_w, self.commands)
        self.state = replace(self.state, w=w, var=var, st=st)
        self.step(now, 0.0, grid)

    def step(self, now: float, dt: float, grid: Grid) -> None:
        """Advance controls and plant by ``dt`` and render the measurements."""
        self._update_123(now)
        self._update_704(now)
        self._update_curve_revert(now)
        self.commands = self.local_commands or self._freq_droop_711(self._volt_watt_706(
            self._volt_var_705(self._commands(now), grid), grid), grid)
        v_nom = self.params.ratings.v_nom
        if self.image.find(702) is not None:
            v_nom = self.image.get(702, "VNom") or v_nom
        self.protection.step(self.image, now, tuple(100.0 * v / v_nom for v in grid.v),
                             grid.f_hz, self.params.reconnect_delay_s)
        if self.protection.off:  # its own trip or momentary cessation: output stops
            self.commands = replace(self.commands, connect=False)
        self.state = plant.step(self.params, self.state, grid, self.dc_w, self.commands, dt)
        if self.protection.off:  # at once (the bridge stops), not along the plant's lag
            self.state = replace(self.state, w=0.0, var=0.0)
        if self.forced_fault:
            self.state = replace(self.state, st=OpState.FAULT, w=0.0, var=0.0)
        if self.battery is None:
            self._render(plant.measure(self.params, self.state, grid))
            return
        # A hybrid: the AC output is the PV power plus the battery's (+ discharge).
        energize = (self.commands.connect and not self.state.tripped
                    and self.state.st not in (OpState.OFF, OpState.FAULT, OpState.STANDBY))
        bat = self.battery.step(now, dt, self.state.w, self.commands.w_limit, energize,
                                self.commands.w_max or self.params.ratings.w_max)
        ac = replace(self.state, w=self.state.w + bat)
        if abs(bat) > 1.0 and ac.st == OpState.SLEEPING:
            ac = replace(ac, st=OpState.MPPT)  # no PV, but the battery runs the bridge
        pv, self.state = self.state, ac
        self._render(plant.measure(self.params, ac, grid))
        self.state = pv

    def _render(self, m: plant.Measurements) -> None:
        for mid in self.inverter_models:
            if mid == 701:
                self._render_701(m)
            else:
                self._render_1xx(mid, m)
        self._render_122()

    def _render_1xx(self, mid: int, m: plant.Measurements) -> None:
        img, s = self.image, self.state
        pf = m.pf * (100.0 if self.pf_percent else 1.0)
        vals: dict[str, Any] = {
            "A": m.a, "W": m.w, "Hz": m.hz, "VA": m.va, "VAr": m.var, "PF": pf,
            "WH": s.wh, "DCA": m.dc_a, "DCV": m.dc_v, "DCW": m.dc_w,
            "TmpCab": 30.0 + 10.0 * m.va / self.params.ratings.va_max,
            "St": int(s.st), "Evt1": 0, "Evt2": 0,
        }
        for i, ph in enumerate("ABC"[:len(m.v_ph)]):
            vals[f"Aph{ph}"] = m.a_ph[i]
            vals[f"PhVph{ph}"] = m.v_ph[i]
        if self.unused_phases_zero:
            for ph in "ABC"[len(m.v_ph):]:
                vals[f"Aph{ph}"] = vals[f"PhVph{ph}"] = 0.0
        for name, v in zip(("PPVphAB", "PPVphBC", "PPVphCA"), m.v_ll, strict=False):
            vals[name] = v
        if mid in (111, 112, 113):
            vals["WH"] = float(int(s.wh))
        for p, v in vals.items():
            if img.has(mid, p):
                img.set(mid, p, v)

    def _render_701(self, m: plant.Measurements) -> None:
        img, s = self.image, self.state
        n = len(m.v_ph)
        on = s.st not in (OpState.OFF, OpState.STANDBY, OpState.SLEEPING, OpState.FAULT)
        # 701 signs PF with active power (its definition); excitation shows in Var
        pf701 = math.copysign(abs(m.w) / m.va, m.w) if m.va > 1e-9 else 1.0
        vals: dict[str, Any] = {
            "St": 1 if on else 0, "InvSt": int(s.st) - 1, "ConnSt": 1 if on else 0,
            "W": m.w, "VA": m.va, "Var": m.var, "PF": pf701, "A": m.a,
            "LNV": sum(m.v_ph) / n, "Hz": m.hz, "TotWhInj": int(s.wh), "TotWhAbs": 0,
            "TotVarhInj": int(s.varh_inj), "TotVarhAbs": int(s.varh_abs),
            "TmpCab": 30.0 + 10.0 * m.va / self.params.ratings.va_max,
            "ThrotPct": (100.0 * (1 - m.w / s.w_avail)
                         if s.st == OpState.THROTTLED and s.w_avail > 0 else 0)}
        if m.v_ll:
            vals["LLV"] = sum(m.v_ll) / len(m.v_ll)
        for i in range(n):
            ph = f"L{i + 1}"
            vals.update({f"W{ph}": m.w / n, f"VA{ph}": m.va / n, f"Var{ph}": m.var / n,
                         f"PF{ph}": pf701, f"A{ph}": m.a_ph[i], f"V{ph}": m.v_ph[i],
                         f"TotWhInj{ph}": int(s.wh / n)})
        for name, v in zip(("VL1L2", "VL2L3", "VL3L1"), m.v_ll, strict=False):
            vals[name] = v
        if self.unused_phases_zero:
            for i in range(n, 3):
                vals[f"VL{i + 1}"] = vals[f"AL{i + 1}"] = vals[f"WL{i + 1}"] = 0.0
        for p, v in vals.items():
            if img.has(701, p):
                img.set(701, p, v)

    def _render_122(self) -> None:
        img, s = self.image, self.state
        if img.find(122) is not None:
            connected = s.st in (OpState.MPPT, OpState.THROTTLED, OpState.STARTING)
            c = self.commands
            act = (1 if c.w_limit is not None else 0) | \
                  (2 if c.var is not None or c.var_aval_pct is not None else 0) | \
                  (4 if c.pf is not None else 0)
            vals = {"PVConn": (1 if connected else 0) | (2 if self.dc_w > 0 else 0)
                    | (4 if s.w > 1.0 else 0),
                    "ECPConn": 1 if connected else 0, "ActWh": int(s.wh),
                    "ActVArhQ1": int(s.varh_inj), "ActVArhQ4": int(s.varh_abs),
                    "VArAval": s.var_avail, "WAval": s.w_avail, "StActCtl": act,
                    "Tms": max(0, int(time.time()) - _EPOCH_2000)}
            for p, v in vals.items():
                img.set(122, p, v)

    # --- for the control channel ----------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plant state, effective commands and the control registers, as plain JSON data."""
        img, s, c = self.image, self.state, self.commands
        controls: dict[str, Any] = {}
        for mid in (121, 123, 124, 703, 704, 702):
            pm = img.find(mid)
            if pm is not None:
                controls[str(mid)] = {p: img.get(mid, p) for p, sl in pm.layout.slots.items()
                                      if sl.point.writable or sl.point.type.name == "sunssf"}
        return {
            "unit": self.unit_id, "base": img.base, "models": img.model_ids(),
            "plant": {"w": s.w, "var": s.var, "va": math.hypot(s.w, s.var),
                      "pf": plant.signed_pf(s.w, s.var), "st": s.st.name, "st_code": int(s.st),
                      "wh": s.wh, "dc_w": self.dc_w, "w_avail": s.w_avail,
                      "tripped": s.tripped, "fault": self.forced_fault},
            "effective": {"connect": c.connect, "w_limit": c.w_limit, "pf": c.pf,
                          "var": c.var, "var_aval_pct": c.var_aval_pct, "w_max": c.w_max},
            "controls": controls,
            "writes": dict(self.writes),
            **({"battery": self.battery.snapshot()} if self.battery is not None else {}),
            "protection": self.protection.snapshot(),
        }


def _interp(points: list[tuple[float, float]], x: float) -> float:
    points = sorted(points)
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def plant_models() -> tuple[int, ...]:
    """Inverter measurement models the plant renders into."""
    return (*PHASES, 701)
