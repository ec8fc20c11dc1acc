"""IEEE 1547.1-2020 5.4 (voltage) and 5.5 (frequency) trip: clearing-time tests.

Procedure, for each must-trip / clearing-time region of the settings under
test whose clearing time is at most ``Options.max_clearing_s``:

1. Bring the DER into service at nominal voltage and frequency.
2. Step the grid from nominal across the region's threshold by 2 MRA
   (voltage 2 % of nominal, frequency 20 mHz): over thresholds upwards, under
   thresholds downwards. (1547.1 starts just inside the threshold; here the
   step starts from nominal because just inside a threshold can be another
   region, e.g. Rule 21 HV1 momentary cessation below HV2.)
3. Record until the clearing time + 1 s, then return the grid to nominal and
   watch one more second.

Pass criteria:

- cease to energize within the clearing time, judged with an allowance of one
  poll period: the gateway is BACKUP protection (the inverter's own certified
  protection is the primary) and it sees the grid once a poll period, so its
  trip timing resolution is the poll period. Judged on observations: no
  sample may show the DER energizing later than clearing time + allowance.
  The measured time is the first sample from which the DER stays ceased; the
  resolution (gap to the last energizing sample) is reported with it.
- trip, not momentary cessation: the DER stays ceased for 1 s after the grid
  returns to nominal (the enter-service delay governs reconnection).

"Ceased" is what the inverter reports (operating state not energizing) or,
where it does not report one, output below 2 % of rated. Whichever acted
first, the inverter's own protection or the gateway's backup, is what the
terminals show; the time of the gateway's own trip command (its event log) is
reported beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from inverter_agent.functions.ride_through import Region, RideThroughSettings

from .common import ProcedureResult, RunContext, Session, Window, run_session
from .evaluate import MRA, StepResult, cease_timing, judge_cease

log = logging.getLogger(__name__)

AFTER_CLEARING_S = 1.0
STAY_OUT_S = 1.0


@dataclass(frozen=True)
class TripKind:
    name: str
    clause: str
    title: str
    quantity: str  # "v" or "f"
    mra: float
    unit: str


VOLTAGE = TripKind("voltage-trip", "IEEE 1547.1-2020 5.4", "Voltage trip: clearing time",
                   "v", MRA.v_pu, "pu")
FREQUENCY = TripKind("frequency-trip", "IEEE 1547.1-2020 5.5", "Frequency trip: clearing time",
                     "f", MRA.f_hz, "Hz")


def regions_to_test(rt: RideThroughSettings, max_clearing_s: float,
                    names: tuple[str, ...] | None) -> list[tuple[Region, int]]:
    """(region, +1 over / -1 under) with a clearing time, short ones or the named ones."""
    out = []
    for regions, sign in ((rt.over, 1), (rt.under, -1)):
        for reg in regions:
            if reg.clearing_time_s is None:
                continue
            if names is not None:
                if reg.name in names:
                    out.append((reg, sign))
            elif reg.clearing_time_s <= max_clearing_s:
                out.append((reg, sign))
    return out


def run_voltage(ctx: RunContext) -> ProcedureResult:
    """Run 5.4 against the inverter in ``ctx``."""
    return _run(ctx, VOLTAGE)


def run_frequency(ctx: RunContext) -> ProcedureResult:
    """Run 5.5 against the inverter in ``ctx``."""
    return _run(ctx, FREQUENCY)


def _run(ctx: RunContext, kind: TripKind) -> ProcedureResult:
    table = "voltage_ride_through" if kind.quantity == "v" else "frequency_ride_through"
    overrides = {f"{table}.enabled": True}
    return run_session(ctx, ProcedureResult(kind.name, kind.clause, kind.title), overrides,
                       lambda se: _body(se, kind))


def _body(se: Session, kind: TripKind) -> None:
    res, b, opt = se.result, se.bench, se.ctx.options
    rt = (se.settings.voltage_ride_through if kind.quantity == "v"
          else se.settings.frequency_ride_through)
    regions = regions_to_test(rt, opt.max_clearing_s, opt.trip_regions)
    skipped = [r.name for r in rt.over + rt.under if r.clearing_time_s is not None
               and r not in [x for x, _ in regions]]
    allowance = se.poll
    res.notes.append(
        f"Allowance {allowance:g} s = one poll period: the gateway is backup protection and "
        f"sees the grid once a poll period (its trip margin is {rt.trip_margin_s:g} s). The "
        "inverter's own protection is the primary and may act first.")
    if skipped:
        res.notes.append(f"Not stepped (clearing time above {opt.max_clearing_s:g} s): "
                         f"{', '.join(skipped)}; name them with --trip-regions to test them.")
    if not regions:
        raise ValueError(f"no {kind.name} region to test (enabled: {rt.enabled})")
    f_nom = se.settings.nameplate.f_nom_hz
    for reg, sign in regions:
        se.into_service()
        target = round(reg.threshold + sign * 2 * kind.mra, 6)
        t_step = (se.set_grid(v_pu=target) if kind.quantity == "v"
                  else se.set_grid(f_hz=target))
        clearing = float(reg.clearing_time_s or 0.0)
        b.hold(clearing + AFTER_CLEARING_S)
        t_back = se.set_grid(v_pu=1.0) if kind.quantity == "v" else se.set_grid(f_hz=f_nom)
        b.hold(STAY_OUT_S)
        t_end = b.now()
        series = [(s.t if s.t_read is None else s.t_read, s.t, s.ceased)
                  for s in b.between(t_step - 0.5, t_back)]
        timing = cease_timing(series, t_step)
        trips = se.events_of("trip", t_step)
        inputs = {"region": reg.name, "threshold": reg.threshold, "step_to": target,
                  "unit": kind.unit, "mode": reg.mode.value,
                  "ride_through_s": reg.ride_through_s}
        step = judge_cease(kind.name, f"{reg.name} cease to energize ({target:g} {kind.unit})",
                           timing, clearing, allowance, inputs)
        step.timings["gateway_trip_command_s"] = (trips[0] - t_step) if trips else None
        step.timings["t_step_s"] = t_step
        res.steps.append(step)
        after = b.between(t_back, t_end)
        exported = [s.t - t_back for s in after if not s.ceased]
        res.steps.append(StepResult(
            kind.name, f"{reg.name} stays out after the grid returns", bool(after) and
            not exported, float(len(exported)), 0.0, None, 0.0, "energizing samples",
            f"trip, not momentary cessation: no energizing sample in the {STAY_OUT_S:g} s "
            "after the grid returned to nominal", inputs,
            {"t_back_s": t_back, "first_energizing_s": exported[0] if exported else None}))
        res.windows.append(Window(
            f"{reg.name}: step to {target:g} {kind.unit}, clearing time {clearing:g} s",
            t_step - 0.5, t_end, kind.quantity,
            markers=[(t_step, "step"), (t_step + clearing, f"clearing {clearing:g} s"),
                     (t_step + clearing + allowance, "+ allowance"), (t_back, "grid back")]))
