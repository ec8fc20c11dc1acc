"""The table of procedures and the loop that runs them in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from . import constant_pf, enter_service, trip, volt_var
from .common import Procedure, ProcedureResult, RunContext
from .grid import GridSourceRequired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcedureInfo:
    """One runnable procedure: its name on the command line and what it needs."""

    name: str
    clause: str
    run: Procedure
    needs_grid: bool


PROCEDURES: dict[str, ProcedureInfo] = {p.name: p for p in (
    ProcedureInfo(volt_var.NAME, volt_var.CLAUSE, volt_var.run, True),
    ProcedureInfo(constant_pf.NAME, constant_pf.CLAUSE, constant_pf.run, False),
    ProcedureInfo(enter_service.NAME, enter_service.CLAUSE, enter_service.run, True),
    ProcedureInfo(trip.VOLTAGE.name, trip.VOLTAGE.clause, trip.run_voltage, True),
    ProcedureInfo(trip.FREQUENCY.name, trip.FREQUENCY.clause, trip.run_frequency, True),
)}


def parse_procedures(text: str | None) -> list[str]:
    """Comma-separated names (``all`` or None = every one, in table order)."""
    if not text or text.strip() == "all":
        return list(PROCEDURES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROCEDURES]
    if unknown:
        raise ValueError(f"unknown procedure(s) {', '.join(unknown)}; "
                         f"known: {', '.join(PROCEDURES)}")
    return names


def check_grid(names: Sequence[str], has_grid: bool) -> None:
    """Refuse grid-stepping procedures without a controllable grid source."""
    need = [n for n in names if PROCEDURES[n].needs_grid]
    if need and not has_grid:
        raise GridSourceRequired(
            f"{', '.join(need)} step the grid voltage or frequency, which needs a "
            "controllable grid source between the inverter and the mains (a programmable AC "
            "source on the bench; --sim-control HOST:PORT for the simulator, or --simulate). "
            "Without one only these procedures can run: "
            f"{', '.join(n for n in PROCEDURES if not PROCEDURES[n].needs_grid)}")


def run_all(ctx: RunContext, names: Sequence[str]) -> list[ProcedureResult]:
    """Run each named procedure (fresh gateway each time); results in order."""
    check_grid(names, ctx.grid is not None)
    results: list[ProcedureResult] = []
    for name in names:
        info = PROCEDURES[name]
        dead = next((r.error for r in results if r.link_down), None)
        if dead is not None:  # the inverter is not there: do not wait for it again
            results.append(ProcedureResult(name, info.clause, name, error=f"not run: {dead}"))
            continue
        log.info("%s (%s) ...", name, info.clause)
        res = info.run(ctx)
        log.info("%s: %s (%d/%d steps, %.1f s)%s", name, "PASS" if res.passed else "FAIL",
                 sum(s.passed for s in res.steps), len(res.steps), res.duration_s,
                 f": {res.error}" if res.error else "")
        results.append(res)
    return results
