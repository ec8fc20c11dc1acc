"""Grid sources: what a conformance procedure steps (IEEE 1547.1-2020 4.x test setup).

Every grid-stepping procedure (5.14.4 volt-var, 5.4 / 5.5 trip, 5.6.2 enter
service) needs a *controllable* grid at the inverter's terminals: the test
changes the voltage or frequency and watches the DER respond. On the bench that
is a programmable AC source (grid simulator) between the inverter and the
mains; with the simulated inverter it is the simulator's control channel.

:class:`GridSource` is the interface a procedure uses. :class:`SimGridSource`
implements it over :class:`simulator.SimControl`. A programmable AC source is
added by writing one more class with the same three methods (its SCPI or
Modbus commands), nothing else changes. Without a grid source a real inverter
can only be tested with procedures that do not step the grid (the runner
refuses the others, see :class:`GridSourceRequired`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class GridSourceRequired(RuntimeError):
    """A procedure steps the grid but no controllable grid source was given."""


@dataclass(frozen=True, slots=True)
class GridStep:
    """When a grid change was made, on the monotonic clock.

    ``t_sent`` is just before the command left, ``t_done`` when the source
    confirmed it. The change took effect in between; procedures time responses
    from ``t_sent`` (conservative: a response looks slower, never faster).
    """

    v_pu: float
    f_hz: float
    t_sent: float
    t_done: float

    @property
    def latency_s(self) -> float:
        return self.t_done - self.t_sent


class GridSource(Protocol):
    """A controllable grid at the DER terminals (balanced phases)."""

    name: str

    def set(self, v_pu: float | None = None, f_hz: float | None = None) -> GridStep:
        """Apply a voltage (pu of the DER nominal) and/or frequency; when it happened."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the report says about the source (model, address, accuracy)."""
        ...

    def close(self) -> None:
        """Release the source (leave it at nominal if it can)."""
        ...


class SimGridSource:
    """The simulated inverter's grid, over its JSON control channel.

    ``control`` is a :class:`simulator.SimControl` (or anything with
    ``set_grid(v_pu=..., f_hz=...)``). The simulator applies a change at its
    next plant step (at most one plant period, 50 ms at the default rate).
    """

    name = "simulator"

    def __init__(self, control: Any, f_nom_hz: float = 60.0) -> None:
        self.control = control
        self.f_nom_hz = f_nom_hz
        self.v_pu = 1.0
        self.f_hz = f_nom_hz

    def set(self, v_pu: float | None = None, f_hz: float | None = None) -> GridStep:
        v = self.v_pu if v_pu is None else float(v_pu)
        f = self.f_hz if f_hz is None else float(f_hz)
        t_sent = time.monotonic()
        self.control.set_grid(v_pu=v, f_hz=f)
        t_done = time.monotonic()
        self.v_pu, self.f_hz = v, f
        log.info("grid: %.4f pu, %.3f Hz (%.1f ms)", v, f, 1000 * (t_done - t_sent))
        return GridStep(v, f, t_sent, t_done)

    def describe(self) -> dict[str, Any]:
        addr = (getattr(self.control, "host", None), getattr(self.control, "port", None))
        return {"type": self.name, "control": f"{addr[0]}:{addr[1]}",
                "note": "simulated grid: exact voltage and frequency, applied at the "
                        "simulator's next plant step"}

    def close(self) -> None:
        try:
            self.set(v_pu=1.0, f_hz=self.f_nom_hz)
        except Exception as exc:  # leaving: the report is already written
            log.warning("could not return the simulated grid to nominal: %s", exc)


def sim_grid_source(address: str, f_nom_hz: float = 60.0) -> SimGridSource:
    """A :class:`SimGridSource` on the simulator control channel ``HOST:PORT``."""
    from simulator import SimControl

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--sim-control: expected HOST:PORT, got {address!r}")
    return SimGridSource(SimControl(host, int(port)), f_nom_hz)
