"""What every conformance procedure shares: its context, its result, its setup.

A procedure gets a :class:`RunContext` (the inverter link, the grid source,
the profile and options) and returns a :class:`ProcedureResult` (the settings
it used, the judged :class:`~.evaluate.StepResult` steps, the recorded samples
and what the report should plot). Each procedure runs its own
:class:`~.bench.Bench`, so the gateway's engine starts fresh for each one.

Settings under test = the profile, then the overrides the procedure needs
(isolation of the function under test, shorter times for speed), then the
operator's ``--set`` overrides. All three layers are recorded.

Getting the DER into service before a procedure uses *preconditioning*
settings: the settings under test with the enter-service delay and ramp cut to
at most :data:`PRECONDITION_ES_S` (a DER that a previous procedure tripped
would otherwise wait the profile's 300 s). The settings under test are applied
once the DER is in service.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inverter_agent.functions import Settings, settings_from_dict, settings_to_dict

from .bench import SAMPLE_COLUMNS, Bench, InverterUnreachable, Link, Sample
from .evaluate import StepResult
from .grid import GridSource, GridSourceRequired, GridStep

log = logging.getLogger(__name__)

#: Enter-service delay and ramp (s) used only to bring the DER into service.
PRECONDITION_ES_S = 1.0


@dataclass(frozen=True)
class Options:
    """Tunables of the procedures (test time vs coverage), all recorded in the report.

    Attributes:
        vv_response_s: volt-var open-loop response time under test (1547 Table 8 allows
            1-90 s; short for speed).
        vv_voltages: explicit volt-var test voltages (pu); None = the 5.14.4 sequence.
        pf_settle_s: seconds to hold after the 90 % point of a PF step.
        es_delay_s / es_ramp_s: enter-service delay and soft-start ramp under test.
        max_clearing_s: trip regions with a longer clearing time are not stepped.
        trip_regions: explicit region names to step (None = every short one).
        settle_extra_s: extra hold after 2 Tr before a volt-var steady-state reading.
    """

    vv_response_s: float = 1.0
    vv_voltages: tuple[float, ...] | None = None
    pf_settle_s: float = 2.0
    es_delay_s: float = 4.0
    es_ramp_s: float = 4.0
    max_clearing_s: float = 2.0
    trip_regions: tuple[str, ...] | None = None
    settle_extra_s: float = 0.5


@dataclass
class RunContext:
    """Everything a procedure needs; ``user_overrides`` is the ``--set`` dict."""

    link: Link
    grid: GridSource | None
    profile: str
    base: Settings
    out_dir: str
    poll_period: float | str = 0.1
    options: Options = Options()
    user_overrides: dict[str, Any] = field(default_factory=dict)
    nominal_voltage: float | None = None


@dataclass
class Window:
    """A stretch of the recording to plot as a time series (bench seconds)."""

    title: str
    t_from: float
    t_to: float
    quantity: str = "v"  # "v" or "f": which grid quantity the top panel shows
    markers: list[tuple[float, str]] = field(default_factory=list)
    lines: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass
class ProcedureResult:
    """One procedure's outcome; :meth:`as_dict` is its report.json entry."""

    name: str
    clause: str
    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    preconditioning: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    grid_steps: list[dict[str, float]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ratings: dict[str, Any] | None = None
    #: The device under test (model 1 Mn, Md, SN, Vr) and the poll period it ran at.
    device: dict[str, str] | None = None
    poll_period_s: float | None = None
    error: str | None = None
    link_down: bool = False
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.steps) and all(s.passed for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "clause": self.clause, "title": self.title,
            "passed": self.passed, "error": self.error,
            "duration_s": round(self.duration_s, 2), "inverter_ratings": self.ratings,
            "steps_passed": sum(s.passed for s in self.steps), "steps_total": len(self.steps),
            "overrides": self.overrides, "preconditioning": self.preconditioning,
            "settings": self.settings, "notes": self.notes,
            "steps": [s.as_dict() for s in self.steps],
            "grid_steps": self.grid_steps, "events": self.events,
            "curve": [list(p) for p in self.curve],
            "windows": [dataclasses.asdict(w) for w in self.windows],
            "samples": {"columns": SAMPLE_COLUMNS, "rows": [s.as_row() for s in self.samples]},
        }


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} (the form ``settings_from_dict`` takes)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def build_settings(base: Settings, *layers: Mapping[str, Any]) -> Settings:
    """``base`` with each layer of dotted overrides applied in turn (validated)."""
    s = base
    for layer in layers:
        if layer:
            s = settings_from_dict(nest(layer), base=s)
    return s


def preconditioning(settings: Settings) -> tuple[Settings, dict[str, Any]]:
    """Settings that bring the DER into service quickly (see module docstring)."""
    es = settings.enter_service
    over = {"enter_service.enabled": True, "enter_service.random_delay_s": 0.0,
            "enter_service.delay_s": min(es.delay_s, PRECONDITION_ES_S),
            "enter_service.ramp_time_s": min(es.ramp_time_s, PRECONDITION_ES_S)}
    return build_settings(settings, over), over


class Session:
    """One procedure's bench, settings and result, with the common steps."""

    def __init__(self, ctx: RunContext, result: ProcedureResult,
                 overrides: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.result = result
        merged = {**overrides, **ctx.user_overrides}
        self.settings = build_settings(ctx.base, merged)
        self.pre_settings, pre = preconditioning(self.settings)
        result.overrides = {"procedure": dict(overrides), "operator": dict(ctx.user_overrides)}
        result.preconditioning = pre
        result.settings = settings_to_dict(self.settings)
        state = os.path.join(ctx.out_dir, "state", result.name)
        self.bench = Bench(ctx.link, self.pre_settings, state, ctx.poll_period,
                           nominal_voltage=ctx.nominal_voltage)

    @property
    def poll(self) -> float:
        return self.bench.period

    def grid(self) -> GridSource:
        if self.ctx.grid is None:
            raise GridSourceRequired(f"{self.result.name} steps the grid: give a grid source")
        return self.ctx.grid

    def set_grid(self, v_pu: float | None = None, f_hz: float | None = None) -> float:
        """Step the grid; the step time on the bench clock (when the command left)."""
        step: GridStep = self.grid().set(v_pu=v_pu, f_hz=f_hz)
        t = self.bench.at(step.t_sent)
        self.result.grid_steps.append({"t_s": round(t, 4), "v_pu": step.v_pu,
                                       "f_hz": step.f_hz,
                                       "latency_s": round(step.latency_s, 4)})
        return t

    def nominal(self) -> None:
        if self.ctx.grid is not None:
            self.set_grid(v_pu=1.0, f_hz=self.settings.nameplate.f_nom_hz)

    def into_service(self, timeout: float = 30.0) -> Sample:
        """Nominal grid, preconditioning settings, wait in service, then settings under test."""
        self.nominal()
        self.bench.apply_settings(self.pre_settings)
        s = self.bench.wait_in_service(timeout)
        self.bench.apply_settings(self.settings)
        return s

    def bench_time(self, wall: float) -> float:
        """A wall-clock time (event log) on the bench clock."""
        return self.bench.from_wall(wall)

    def events_of(self, kind: str, after: float) -> list[float]:
        """Bench times of gateway events of ``kind`` after bench time ``after``."""
        return [self.bench_time(e["time"]) for e in self.bench.event_log()
                if e.get("kind") == kind and self.bench_time(e["time"]) >= after]

    def finish(self) -> None:
        self.result.samples = list(self.bench.samples)
        r = self.bench.ratings
        self.result.ratings = dataclasses.asdict(r) if r is not None else None
        self.result.device = dict(self.bench.identity) or None
        self.result.poll_period_s = self.bench.period
        self.result.events = [
            {"t_s": round(self.bench_time(e["time"]), 4), "kind": e.get("kind"),
             "detail": e.get("detail", "")} for e in self.bench.event_log()]


Procedure = Callable[[RunContext], ProcedureResult]


def run_session(ctx: RunContext, result: ProcedureResult, overrides: Mapping[str, Any],
                body: Callable[[Session], None]) -> ProcedureResult:
    """Start the bench, run ``body``, always stop and record; errors become the result."""
    t0 = time.monotonic()
    session: Session | None = None
    try:
        session = Session(ctx, result, copy.deepcopy(dict(overrides)))
        with session.bench:
            try:
                body(session)
            finally:
                session.finish()
    except InverterUnreachable as exc:
        log.error("%s: %s", result.name, exc)
        result.error = f"inverter unreachable: {exc}"
        result.link_down = True
    except (TimeoutError, RuntimeError, ValueError, OSError) as exc:
        log.error("%s: %s", result.name, exc)
        result.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in a procedure must not cost the others or the report
        log.exception("%s failed", result.name)
        result.error = f"internal error {type(exc).__name__}: {exc}"
    finally:
        if ctx.grid is not None:
            try:
                ctx.grid.set(v_pu=1.0, f_hz=(session.settings.nameplate.f_nom_hz
                                             if session else 60.0))
            except Exception as exc:  # the report matters more than a tidy grid
                log.warning("grid back to nominal failed: %s", exc)
        result.duration_s = time.monotonic() - t0
    return result
