"""Plant model of the simulated inverter: grid, DC source and AC output.

Everything here is a pure function of (params, state, inputs, dt): no clock, no
registers, no threads. The device layer (``simulator.device``) turns register
values into :class:`Commands`, calls :func:`step` at a fixed rate with the time
step it measured, and renders :func:`measure` back into registers.

Sign conventions (generator reference frame, the inverter is the generator):

* ``w`` > 0: active power injected into the grid.
* ``var`` > 0: reactive power injected (over-excited, capacitive, "leading"
  from the grid's point of view); ``var`` < 0: absorbed (under-excited).
* Signed power factor: ``|pf| = |W| / VA``, and its sign tells over- from
  under-excitation: ``pf`` > 0 over-excited (var >= 0), ``pf`` < 0
  under-excited (var < 0). Unity is reported as +1. This is the convention the
  legacy SunSpec models (``OutPFSet`` in 123, ``PF`` in 101-103/111-113) are
  read and written with here; the IEEE 1547 models carry the excitation in a
  separate ``Ext`` enum and model 701 signs PF with active power, as its
  definition says.
"""

from __future__ import annotations

import csv
import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path


class OpState(enum.IntEnum):
    """Operating state, numbered as the ``St`` enum of SunSpec models 101-113."""

    OFF = 1
    SLEEPING = 2
    STARTING = 3
    MPPT = 4
    THROTTLED = 5
    SHUTTING_DOWN = 6
    FAULT = 7
    STANDBY = 8


@dataclass(frozen=True, slots=True)
class Ratings:
    """Nameplate of the simulated inverter (model 120 / 702)."""

    w_max: float = 5000.0
    va_max: float = 5000.0
    var_max_inj: float = 2200.0  # 44 % of VA rating, Rule 21 minimum capability
    var_max_abs: float = 2200.0  # magnitude; reported negative in quadrants 3/4
    v_nom: float = 240.0  # per phase, line to neutral
    f_nom: float = 60.0
    phases: int = 3  # 1 single, 2 split (180 degrees apart), 3 three-phase
    pf_min: float = 0.8  # lowest |PF| the inverter can hold
    dc_v: float = 400.0
    efficiency: float = 0.97

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {self.phases}")
        if not 0.0 < self.pf_min <= 1.0:
            raise ValueError(f"pf_min must be in (0, 1], not {self.pf_min}")
        for name in ("w_max", "va_max", "v_nom", "f_nom"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def a_max(self) -> float:
        """Rated current per phase at nominal voltage (10 % headroom for low voltage)."""
        return 1.1 * self.va_max / (self.phases * self.v_nom)


@dataclass(frozen=True, slots=True)
class PlantParams:
    """Dynamics and the optional native protection of the inverter."""

    ratings: Ratings = Ratings()
    tau_s: float = 0.5  # first-order time constant of W and var
    native_trip: bool = False  # the gateway's backup protection is tested with this off
    v_min_pu: float = 0.88  # Rule 21 / 1547 continuous operation window
    v_max_pu: float = 1.10
    f_min_hz: float = 58.5
    f_max_hz: float = 61.2
    reconnect_delay_s: float = 5.0  # after the grid returns to the window

    def __post_init__(self) -> None:
        if self.tau_s <= 0:
            raise ValueError(f"tau_s must be > 0, not {self.tau_s}")


@dataclass(frozen=True, slots=True)
class Grid:
    """Grid at the point of connection: per-phase volts (L-N) and frequency."""

    v: tuple[float, ...]
    f_hz: float

    @classmethod
    def nominal(cls, ratings: Ratings, v_pu: float = 1.0, f_hz: float | None = None) -> Grid:
        return cls((ratings.v_nom * v_pu,) * ratings.phases,
                   ratings.f_nom if f_hz is None else f_hz)


@dataclass(frozen=True, slots=True)
class Commands:
    """What the inverter has (effectively) been told to do, in engineering units.

    At most one reactive mode applies; :func:`targets` gives ``pf`` precedence
    over the var modes, the way most legacy devices resolve both being enabled.
    """

    connect: bool = True
    w_limit: float | None = None  # W; None: no limit below the available power
    pf: float | None = None  # signed, see module docstring
    var: float | None = None  # var, absolute setpoint
    var_aval_pct: float | None = None  # percent of the var available at this moment
    w_max: float | None = None  # WMax setting (121/702); None: rating


@dataclass(frozen=True, slots=True)
class PlantState:
    w: float = 0.0
    var: float = 0.0
    wh: float = 0.0  # energy injected, Wh (accumulates)
    varh_inj: float = 0.0
    varh_abs: float = 0.0
    st: OpState = OpState.STARTING
    grid_ok_s: float = 0.0  # time the grid has been inside the window (native trip)
    tripped: bool = False
    w_avail: float = 0.0
    var_avail: float = 0.0


def grid_in_window(params: PlantParams, grid: Grid) -> bool:
    v_nom = params.ratings.v_nom
    return (all(params.v_min_pu * v_nom <= v <= params.v_max_pu * v_nom for v in grid.v)
            and params.f_min_hz <= grid.f_hz <= params.f_max_hz)


def var_available(ratings: Ratings, w: float, positive: bool) -> float:
    """Reactive power the inverter can still give at active power ``w`` (magnitude)."""
    cap = ratings.var_max_inj if positive else ratings.var_max_abs
    head = math.sqrt(max(ratings.va_max ** 2 - w ** 2, 0.0))
    return min(cap, head)


def targets(params: PlantParams, state: PlantState, grid: Grid, dc_w: float,
            cmd: Commands) -> tuple[float, float, OpState, float]:
    """Where W and var head now: ``(w_target, var_target, state, w_available)``."""
    r = params.ratings
    w_max = r.w_max if cmd.w_max is None else max(0.0, min(cmd.w_max, r.w_max))
    w_avail = max(0.0, min(dc_w * r.efficiency, w_max))
    if not cmd.connect:
        return 0.0, 0.0, OpState.OFF, w_avail
    if state.tripped:
        return 0.0, 0.0, OpState.STANDBY, w_avail
    if w_avail <= 0.0:
        return 0.0, 0.0, OpState.SLEEPING, 0.0
    w = w_avail
    throttled = False
    if cmd.w_limit is not None and cmd.w_limit < w_avail:
        w = max(0.0, cmd.w_limit)
        throttled = True
    var = 0.0
    if cmd.pf is not None:
        pf = max(min(abs(cmd.pf), 1.0), r.pf_min)
        var = math.copysign(w * math.tan(math.acos(pf)), cmd.pf)
        cap = r.var_max_inj if var >= 0 else r.var_max_abs
        if abs(var) > cap:  # hold the PF: give up active power, not the angle
            w *= cap / abs(var)
            var = math.copysign(cap, var)
            throttled = True
    elif cmd.var is not None or cmd.var_aval_pct is not None:
        if cmd.var is not None:
            var = cmd.var
        else:
            pct = cmd.var_aval_pct or 0.0
            var = pct / 100.0 * var_available(r, w, pct >= 0)
        cap = r.var_max_inj if var >= 0 else r.var_max_abs
        var = max(-cap, min(cap, var))
    s = math.hypot(w, var)
    if s > r.va_max:
        if cmd.pf is not None:  # keep the angle
            w, var = w * r.va_max / s, var * r.va_max / s
        else:  # var priority: trim active power
            w = math.sqrt(max(r.va_max ** 2 - var ** 2, 0.0))
        throttled = True
    return w, var, (OpState.THROTTLED if throttled else OpState.MPPT), w_avail


def step(params: PlantParams, state: PlantState, grid: Grid, dc_w: float, cmd: Commands,
         dt: float) -> PlantState:
    """Advance the plant by ``dt`` seconds: protection, first-order response, energy."""
    if dt < 0:
        raise ValueError("dt must be >= 0")
    tripped, grid_ok_s = state.tripped, state.grid_ok_s
    if params.native_trip:
        if grid_in_window(params, grid):
            grid_ok_s += dt
            if tripped and grid_ok_s >= params.reconnect_delay_s:
                tripped = False
        else:
            tripped, grid_ok_s = True, 0.0
    else:
        tripped, grid_ok_s = False, 0.0
    state = replace(state, tripped=tripped, grid_ok_s=grid_ok_s)
    w_t, var_t, st, w_avail = targets(params, state, grid, dc_w, cmd)
    if tripped:
        # protection opens the contactor: no ramp down
        w, var = 0.0, 0.0
    else:
        k = 1.0 - math.exp(-dt / params.tau_s)
        w = state.w + (w_t - state.w) * k
        var = state.var + (var_t - state.var) * k
        if w_t == 0.0 and var_t == 0.0 and math.hypot(w, var) < 0.01 * params.ratings.va_max:
            w = var = 0.0  # the bridge stops switching: output is exactly zero, not a tail
    hours = dt / 3600.0
    return replace(
        state, w=w, var=var, st=st, w_avail=w_avail,
        var_avail=var_available(params.ratings, w, True) if st != OpState.OFF else 0.0,
        wh=state.wh + max(w, 0.0) * hours,
        varh_inj=state.varh_inj + max(var, 0.0) * hours,
        varh_abs=state.varh_abs + max(-var, 0.0) * hours,
    )


@dataclass(frozen=True, slots=True)
class Measurements:
    """What the inverter's meter shows (engineering units)."""

    w: float
    var: float
    va: float
    pf: float  # signed per the module convention
    a: float  # total of the phase currents
    a_ph: tuple[float, ...]
    v_ph: tuple[float, ...]
    v_ll: tuple[float, ...]  # AB, BC, CA (three-phase); AB only for split phase
    hz: float
    dc_w: float
    dc_v: float
    dc_a: float


def signed_pf(w: float, var: float) -> float:
    va = math.hypot(w, var)
    if va < 1e-9:
        return 1.0
    return math.copysign(abs(w) / va, var if var != 0 else 1.0)


def measure(params: PlantParams, state: PlantState, grid: Grid) -> Measurements:
    r = params.ratings
    va = math.hypot(state.w, state.var)
    n = len(grid.v)
    a_ph = tuple((va / n) / v if v > 1.0 else 0.0 for v in grid.v)
    if n == 3:
        # 120 degrees apart: |Va - Vb| = sqrt(Va^2 + Vb^2 + Va Vb)
        pairs = ((0, 1), (1, 2), (2, 0))
        v_ll = tuple(math.sqrt(grid.v[i] ** 2 + grid.v[j] ** 2 + grid.v[i] * grid.v[j])
                     for i, j in pairs)
    elif n == 2:
        v_ll = (grid.v[0] + grid.v[1],)  # split phase: 180 degrees apart
    else:
        v_ll = ()
    dc_w = max(state.w, 0.0) / r.efficiency
    return Measurements(
        w=state.w, var=state.var, va=va, pf=signed_pf(state.w, state.var), a=sum(a_ph),
        a_ph=a_ph, v_ph=grid.v, v_ll=v_ll, hz=grid.f_hz, dc_w=dc_w,
        dc_v=r.dc_v if state.st not in (OpState.SLEEPING,) else 0.0,
        dc_a=dc_w / r.dc_v,
    )


# --- grid time series -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class GridScript:
    """Grid voltage (pu) and frequency over time, held stepwise between rows.

    ``rows`` are ``(t_s, v_pu, f_hz)`` sorted by time; before the first row
    the first row applies, after the last row the last one holds (or the
    script starts over when ``loop``).
    """

    rows: tuple[tuple[float, float, float], ...]
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("a grid script needs at least one row")
        last = -math.inf
        for t, v_pu, f_hz in self.rows:
            if t < last:
                raise ValueError(f"grid script times must not decrease (t={t} after {last})")
            if not (0.0 <= v_pu <= 2.0 and 40.0 <= f_hz <= 70.0):
                raise ValueError(f"grid script row ({t}, {v_pu}, {f_hz}) is out of range "
                                 "(v_pu 0..2, f_hz 40..70)")
            last = t

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]], loop: bool = False) -> GridScript:
        parsed = []
        for i, row in enumerate(rows):
            if len(row) != 3:
                raise ValueError(f"grid script row {i}: expected [t, v_pu, f_hz], got {row!r}")
            parsed.append((float(row[0]), float(row[1]), float(row[2])))
        return cls(tuple(parsed), loop)

    @property
    def duration(self) -> float:
        return self.rows[-1][0]

    def at(self, t: float) -> tuple[float, float]:
        """``(v_pu, f_hz)`` at ``t`` seconds after the script started."""
        if self.loop and self.duration > 0:
            t = t % self.duration
        current = self.rows[0]
        for row in self.rows:
            if row[0] > t:
                break
            current = row
        return current[1], current[2]


def load_grid_script(path: str | Path) -> GridScript:
    """Read a grid script: CSV ``t,v_pu,f_hz`` (header optional) or JSON.

    JSON is either a list of ``[t, v_pu, f_hz]`` rows or an object with
    ``rows`` and optional ``loop``.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        if isinstance(data, dict):
            return GridScript.from_rows(data["rows"], bool(data.get("loop", False)))
        return GridScript.from_rows(data)
    rows = []
    for rec in csv.reader(line for line in text.splitlines()
                          if line.strip() and not line.lstrip().startswith("#")):
        try:
            rows.append([float(x) for x in rec])
        except ValueError:
            if rows:  # only the first line may be a header
                raise ValueError(f"{p}: bad grid script row {rec!r}") from None
    return GridScript.from_rows(rows)
