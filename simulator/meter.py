"""A simulated SunSpec meter at the site's point of common coupling (PCC).

The site is a load and the simulated inverters behind one meter: what the
meter sees flowing from the grid is the load minus what the inverters make,

    W_grid = W_load - sum(W_inverter),   VAr_grid = VAr_load - sum(VAr_inverter)

positive = import (the metering convention; see :mod:`hal.meter`), with the
grid's voltages and frequency, the currents they imply, and the import and
export energy counters integrated from it. It is served as a SunSpec meter
model (201-204, 211-214, pysunspec2's definitions) at its own unit id on the
simulation's bus, beside the inverters (``--meter UNIT:MODEL``), and, where
``--meter-tcp`` asks for it, also on a Modbus TCP port of its own.

Profiles from vendors' public meter maps (:data:`PROFILES`):

* ``fronius-213``: a Fronius Smart Meter as the Fronius Datamanager serves it
  over Modbus TCP: float meter model 213 (the Datamanager's default "float"
  SunSpec model type; register F_ModelType 216 switches to 203 "int + SF"), at
  the meter's own Modbus device id 240 (source: Fronius, "Fronius Datamanager
  Modbus TCP & RTU" operating instructions 42,0410,2049, sections "Modbus
  device ID for energy meters" and "Fronius registers: change data type").
* ``solaredge-203``: a SolarEdge energy meter read through a SolarEdge
  inverter: model 203 (int + scale factors) after the inverter's models, and
  exported power reported positive (sources: SolarEdge, "SunSpec Logging in
  SolarEdge Inverters" technical note, meter model register mapping, as
  summarised by github.com/nobrega8/mbmap-library
  maps/solaredge/energy-meter-sunspec.mbmap.json; the sign:
  github.com/WillCodeForCats/solaredge-modbus-multi issue 69). SolarEdge puts
  the meter on the inverter's own unit id after its models; here it is served
  at a unit id of its own, with that sign.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .plant import Commands, Grid, PlantParams
from .registers import RegisterImage

#: Meter models and the phases each one carries.
METER_PHASES = {201: 1, 211: 1, 202: 2, 212: 2, 203: 3, 213: 3, 204: 3, 214: 3}
#: Scale factors of the integer models (20x).
METER_SF = {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "VA_SF": 0, "VAR_SF": 0,
            "PF_SF": -2, "TotWh_SF": 0, "TotVAh_SF": 0, "TotVArh_SF": 0}


@dataclass(frozen=True, slots=True)
class MeterProfile:
    model: int
    unit: int
    #: "import": W positive when the site imports (the metering convention);
    #: "export": the device reports export positive (as SolarEdge's meters do).
    w_positive: str = "import"
    source: str = ""


PROFILES: dict[str, MeterProfile] = {
    "fronius-213": MeterProfile(213, 240, "import",
                                "Fronius Datamanager Modbus TCP & RTU, 42,0410,2049"),
    "solaredge-203": MeterProfile(203, 2, "export",
                                  "SolarEdge SunSpec Logging technical note, meter models"),
}


def parse_meter(text: str) -> tuple[int, int]:
    """``UNIT:MODEL`` (e.g. ``2:203``) for ``--meter``."""
    unit_s, _, model_s = text.partition(":")
    unit, model = int(unit_s), int(model_s or 203)
    if not 1 <= unit <= 247:
        raise ValueError(f"meter unit {unit} outside 1..247")
    if model not in METER_PHASES:
        raise ValueError(f"meter model {model}: one of {sorted(METER_PHASES)}")
    return unit, model


class Meter:
    """The simulated meter: a unit on the bus like an inverter (the simulation steps it
    after them, so it sees their output of the same step)."""

    def __init__(self, image: RegisterImage, params: PlantParams,
                 sources: Callable[[], Iterable[Any]], load_w: float = 1000.0,
                 load_var: float = 0.0, w_positive: str = "import") -> None:
        self.image = image
        self.unit_id = image.unit_id
        self.params = params
        self.model = next(m for m in image.model_ids() if m in METER_PHASES)
        self.sources = sources
        self.load_w = load_w
        self.load_var = load_var
        self.sign = 1.0 if w_positive == "import" else -1.0
        self.w = self.var = 0.0
        # An acc32 of 0 reads as "not implemented" (SunSpec): a meter in service has counted.
        self.wh_imp, self.wh_exp = 1_234_567.0, 765_432.0
        # What the simulation's other controls touch on every unit (kept inert here).
        self.dc_w = 0.0
        self.forced_fault = False
        self.commands = Commands()
        self.local_commands: Commands | None = None
        self.writes: dict[str, int] = {}
        if self.model < 210:
            for name, exp in METER_SF.items():
                if image.find(self.model) is not None and \
                        name in image.find(self.model).layout.slots:  # type: ignore[union-attr]
                    image.set_sf(name, exp, self.model)

    def on_write(self, now: float, changed: list[tuple[int, str]], remote: bool = True) -> None:
        """A meter has nothing to write."""

    def settle(self, now: float, grid: Grid) -> None:
        self.step(now, 0.0, grid)

    def set_load(self, w: float, var: float | None = None) -> None:
        if not math.isfinite(w) or abs(w) > 1e6:
            raise ValueError(f"load {w} W outside -1e6..1e6")
        self.load_w = float(w)
        if var is not None:
            if not math.isfinite(var) or abs(var) > 1e6:
                raise ValueError(f"load {var} var outside -1e6..1e6")
            self.load_var = float(var)

    def step(self, now: float, dt: float, grid: Grid) -> None:
        gen_w = gen_var = 0.0
        for inv in self.sources():
            gen_w += inv.state.w
            gen_var += inv.state.var
        self.w = self.load_w - gen_w
        self.var = self.load_var - gen_var
        if self.w >= 0:
            self.wh_imp += self.w * dt / 3600.0
        else:
            self.wh_exp += -self.w * dt / 3600.0
        self._render(grid)

    def _render(self, grid: Grid) -> None:
        img, mid = self.image, self.model
        n = METER_PHASES[mid]
        volts = list(grid.v[:n]) + [grid.v[-1]] * max(0, n - len(grid.v))
        va = math.hypot(self.w, self.var)
        v_sum = sum(volts) or 1.0
        a_ph = [va / v_sum for _ in volts]  # balanced: the same current on each phase
        pf = 1.0 if va == 0 else abs(self.w) / va * (1 if self.var >= 0 else -1)
        vals: dict[str, Any] = {
            "W": self.sign * self.w, "VAR": self.sign * self.var, "VA": va,
            "PF": pf * (100.0 if mid < 210 else 1.0), "Hz": grid.f_hz,
            "A": sum(a_ph), "PhV": sum(volts) / n, "TotWhImp": self.wh_imp,
            "TotWhExp": self.wh_exp, "Evt": 0,
        }
        for i, ph in enumerate("ABC"[:n]):
            vals[f"Aph{ph}"] = a_ph[i]
            vals[f"PhVph{ph}"] = volts[i]
            vals[f"Wph{ph}"] = self.sign * self.w / n
        if n >= 2:
            ll = _line_to_line(volts)
            vals["PPV"] = sum(ll) / len(ll)
            for name, v in zip(("AB", "BC", "CA"), ll, strict=False):
                vals[f"PPVph{name}"] = vals[f"PhVph{name}"] = v
        for p, v in vals.items():
            if img.has(mid, p):
                img.set(mid, p, v)

    def snapshot(self) -> dict[str, Any]:
        return {"unit": self.unit_id, "base": self.image.base, "models": self.image.model_ids(),
                "meter": {"w": self.w, "var": self.var, "load_w": self.load_w,
                          "load_var": self.load_var, "wh_imp": self.wh_imp,
                          "wh_exp": self.wh_exp, "w_positive":
                          "import" if self.sign > 0 else "export"}}


def _line_to_line(volts: Sequence[float]) -> list[float]:
    if len(volts) == 2:  # split phase: the two legs 180 degrees apart
        return [volts[0] + volts[1]]
    return [math.sqrt(a * a + b * b + a * b) for a, b in zip(volts, [*volts[1:], volts[0]],
                                                              strict=False)]


def make_meter(base: int, model: int, unit: int, params: PlantParams,
               sources: Callable[[], Iterable[Any]], w_positive: str = "import") -> Meter:
    image = RegisterImage(base, [1, model], params.ratings, unit)
    image.set(1, "Md", f"SIM-METER-{model}")
    return Meter(image, params, sources, w_positive=w_positive)


class MeterOnly:
    """A Bus view of a simulation that answers the meter's unit only (its own TCP port)."""

    def __init__(self, bus: Any, unit: int) -> None:
        self.bus = bus
        self.unit = unit

    def has_unit(self, unit: int) -> bool:
        return unit == self.unit

    def serve(self, unit: int, pdu: bytes) -> Any:
        return self.bus.serve(unit, pdu)

    def broadcast(self, pdu: bytes) -> None:
        return None
