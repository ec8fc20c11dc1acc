"""The simulation: inverters on one bus, the grid they share, the clock, the faults.

One lock guards every register image and plant: a Modbus request and a plant
step never interleave, so a multi-register read (WH, a 32-bit value) is
always consistent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from . import modbus
from .device import Inverter
from .modbus import Fault
from .plant import Grid, GridScript, PlantParams

log = logging.getLogger(__name__)


class Simulation:
    """Inverters at several unit ids behind one Modbus server, and the grid they see."""

    def __init__(self, units: dict[int, Inverter], params: PlantParams,
                 rate_hz: float = 20.0, clock: Callable[[], float] = time.monotonic,
                 factory: Callable[[], dict[int, Inverter]] | None = None) -> None:
        if not units:
            raise ValueError("at least one unit")
        self.units = units
        self._factory = factory
        self.params = params
        self.rate_hz = rate_hz
        self._clock = clock
        self.lock = threading.RLock()
        self.grid = Grid.nominal(params.ratings)
        self._script: GridScript | None = None
        self._script_t0 = 0.0
        self._faults: dict[int | None, Fault] = {None: Fault()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plant", daemon=True)
        self._last = clock()
        self.pty_cycler: Callable[[float], str] | None = None

    # --- the Bus the transports use ----------------------------------------------

    def has_unit(self, unit: int) -> bool:
        return unit in self.units

    def fault_for(self, unit: int) -> Fault:
        return self._faults.get(unit, self._faults[None])

    def serve(self, unit: int, pdu: bytes) -> tuple[bytes | None, Fault]:
        """Answer one request to ``unit``: the response PDU (None: say nothing) and the fault."""
        fault = self.fault_for(unit)
        if fault.kind == "silent":
            return None, fault
        if fault.kind == "exception":
            return modbus.exception_pdu(pdu[0], fault.code), fault
        with self.lock:
            inv = self.units[unit]
            now = self._clock()

            def write(address: int, values: Sequence[int]) -> None:
                changed = inv.image.write(address, values)
                inv.on_write(now, changed)

            try:
                resp = modbus.handle_pdu(pdu, inv.image.read, write)
            except ValueError:
                return None, fault
        if resp[0] & 0x80:
            log.debug("unit %d: request %s -> exception %d", unit, pdu.hex(), resp[1])
        return resp, fault

    def broadcast(self, pdu: bytes) -> None:
        """Unit 0: every unit executes a write; nobody answers; reads are ignored."""
        if not pdu or pdu[0] not in modbus.WRITE_CODES:
            return
        for unit in self.units:
            if self.fault_for(unit).executes:
                self.serve(unit, pdu)

    # --- clock ------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self._last = now = self._clock()
            for inv in self.units.values():
                inv.settle(now, self.grid)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        next_t = self._clock()
        while not self._stop.is_set():
            next_t += period
            try:
                self.step()
            except Exception:  # a bug in one step must not freeze the device
                log.exception("plant step failed")
            delay = next_t - self._clock()
            if delay < -1.0:  # fell far behind (suspend, debugger): do not catch up
                next_t = self._clock()
            self._stop.wait(max(0.0, delay))

    def step(self) -> None:
        with self.lock:
            now = self._clock()
            dt = max(0.0, min(now - self._last, 1.0))
            self._last = now
            if self._script is not None:
                v_pu, f_hz = self._script.at(now - self._script_t0)
                self.grid = Grid.nominal(self.params.ratings, v_pu, f_hz)
            for inv in self.units.values():
                inv.step(now, dt, self.grid)

    # --- control channel operations -----------------------------------------------

    def _units(self, unit: int | None) -> list[Inverter]:
        if unit is None:
            return list(self.units.values())
        if unit not in self.units:
            raise KeyError(f"no unit {unit}; units are {sorted(self.units)}")
        return [self.units[unit]]

    def set_grid(self, v_pu: float | None = None, f_hz: float | None = None,
                 v: float | None = None, phases_v: Sequence[float] | None = None,
                 phases_pu: Sequence[float] | None = None) -> Grid:
        """Set the grid now (stops a running script). Volts are per phase, line to neutral."""
        r = self.params.ratings
        with self.lock:
            cur = self.grid
            volts = cur.v
            if phases_v is not None or phases_pu is not None:
                vals = [float(x) * (r.v_nom if phases_v is None else 1.0)
                        for x in (phases_pu if phases_v is None else phases_v) or ()]
                if len(vals) != r.phases:
                    raise ValueError(f"{r.phases} phase values expected, got {len(vals)}")
                volts = tuple(vals)
            elif v is not None:
                volts = (float(v),) * r.phases
            elif v_pu is not None:
                volts = (float(v_pu) * r.v_nom,) * r.phases
            f = cur.f_hz if f_hz is None else float(f_hz)
            if any(not 0.0 <= x <= 2.0 * r.v_nom for x in volts) or not 40.0 <= f <= 70.0:
                raise ValueError(f"grid out of range: volts {volts} (0..{2 * r.v_nom}), "
                                 f"f {f} (40..70)")
            self._script = None
            self.grid = Grid(volts, f)
            log.info("grid set to %s V, %.3f Hz", ", ".join(f"{x:.1f}" for x in volts), f)
            return self.grid

    def run_script(self, script: GridScript) -> None:
        with self.lock:
            self._script = script
            self._script_t0 = self._clock()
            log.info("grid script: %d rows over %.1f s%s", len(script.rows), script.duration,
                     " (looping)" if script.loop else "")

    def reset(self) -> None:
        """Back to the start: fresh images (default controls and scale factors), nominal
        grid, no script, no fault, plant in steady state."""
        if self._factory is None:
            raise RuntimeError("this simulation cannot be reset (no factory)")
        with self.lock:
            self.units = self._factory()
            self._script = None
            self._faults = {None: Fault()}
            self.grid = Grid.nominal(self.params.ratings)
            now = self._clock()
            for inv in self.units.values():
                inv.params = self.params
                inv.settle(now, self.grid)
        log.info("reset")

    def set_dc(self, w: float, unit: int | None = None) -> None:
        if not 0.0 <= w <= 10.0 * self.params.ratings.w_max:
            raise ValueError(f"DC power {w} outside 0..{10 * self.params.ratings.w_max}")
        with self.lock:
            for inv in self._units(unit):
                inv.dc_w = float(w)

    def set_fault(self, fault: Fault, unit: int | None = None) -> None:
        with self.lock:
            if unit is None:
                self._faults = {None: fault}
            else:
                self._units(unit)
                self._faults[unit] = fault
        log.log(logging.INFO if fault.kind == "none" else logging.WARNING, "fault %s on %s",
                fault, "all units" if unit is None else f"unit {unit}")

    def faults(self) -> dict[str, str]:
        return {("*" if k is None else str(k)): str(v) for k, v in self._faults.items()}

    def set_sf(self, point: str, value: int, unit: int | None = None,
               model: int | None = None) -> dict[int, list[int]]:
        with self.lock:
            return {inv.unit_id: inv.image.set_sf(point, int(value), model)
                    for inv in self._units(unit)}

    def set_point(self, model: int, point: str, value: Any, unit: int | None = None) -> None:
        """Store an engineering value as if the device set it itself (no range checks)."""
        with self.lock:
            for inv in self._units(unit):
                inv.image.set(model, point, value)
                inv.on_write(self._clock(), [(model, point)], remote=False)

    def get_point(self, model: int, point: str, unit: int | None = None) -> dict[int, Any]:
        with self.lock:
            return {inv.unit_id: inv.image.get(model, point) for inv in self._units(unit)}

    def set_inverter_fault(self, on: bool, unit: int | None = None) -> None:
        with self.lock:
            for inv in self._units(unit):
                inv.forced_fault = bool(on)

    def set_local_mode(self, on: bool, unit: int | None = None) -> None:
        """Freeze the commands the plant follows (remote setpoints then have no effect)."""
        with self.lock:
            for inv in self._units(unit):
                inv.local_commands = inv.commands if on else None

    def set_native_trip(self, on: bool) -> None:
        with self.lock:
            self.params = replace(self.params, native_trip=bool(on))
            for inv in self.units.values():
                inv.params = self.params

    def state(self, unit: int | None = None) -> dict[str, Any]:
        with self.lock:
            g = self.grid
            r = self.params.ratings
            return {
                "grid": {"v": list(g.v), "v_pu": [x / r.v_nom for x in g.v], "f_hz": g.f_hz,
                         "script": self._script is not None},
                "faults": self.faults(),
                "native_trip": self.params.native_trip,
                "units": {str(inv.unit_id): inv.snapshot() for inv in self._units(unit)},
            }

    def pty_cycle(self, down_s: float = 1.0) -> str:
        if self.pty_cycler is None:
            raise RuntimeError("no pty to cycle (start with --pty-link)")
        return self.pty_cycler(down_s)

