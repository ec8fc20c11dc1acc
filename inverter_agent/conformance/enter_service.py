"""IEEE 1547.1-2020 5.6.2: enter service after a trip (delay and soft-start ramp).

Procedure:

1. Settings under test: the profile's enter-service window with the delay
   and ramp time shortened for speed (``Options.es_delay_s``, ``es_ramp_s``)
   and no randomized delay, so the times can be judged.
2. With the DER in service, trip it: step the voltage across the over-voltage
   region with the shortest clearing time (+2 MRA) and wait until it ceases.
3. Step to a voltage inside the trip thresholds but above the enter-service
   window (where there is room): the DER must stay out.
4. Step back to nominal (the window) and record for delay + ramp + 2 s.

Pass criteria:

- no export before 98.5 % of the delay (5.6.2): no sample exporting (output
  above 2 % of rated, or the inverter energizing) earlier;
- the DER enters service at all, within delay x 1.01 + 1 s + 2 poll periods;
- rated power not reached before the ramp time (5.6.2): no sample at or
  above 100 % - MRA_P before the ramp time has elapsed;
- the soft-start line is followed: output never above the linear ramp from
  the entry time by more than 1.5 MRA_P;
- the output is back within 1.5 MRA_P of its pre-trip value at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .bench import CEASED_PCT, Sample
from .common import ProcedureResult, RunContext, Session, Window, run_session
from .evaluate import MRA, StepResult, mean, ramp_excess, within

log = logging.getLogger(__name__)

NAME = "enter-service"
CLAUSE = "IEEE 1547.1-2020 5.6.2"
TITLE = "Enter service: delay and soft-start ramp after a trip"
K = 1.5
EARLY_FRAC = 0.985
OUT_OF_WINDOW_S = 1.5


def run(ctx: RunContext) -> ProcedureResult:
    """Run 5.6.2 against the inverter in ``ctx``."""
    o = ctx.options
    overrides = {"enter_service.enabled": True, "enter_service.delay_s": o.es_delay_s,
                 "enter_service.ramp_time_s": o.es_ramp_s,
                 "enter_service.random_delay_s": 0.0, "voltage_ride_through.enabled": True}
    return run_session(ctx, ProcedureResult(NAME, CLAUSE, TITLE), overrides, _body)


def _body(se: Session) -> None:
    res, b = se.result, se.bench
    es = se.settings.enter_service
    rt = se.settings.voltage_ride_through
    over = [r for r in rt.over if r.clearing_time_s is not None]
    if not over:
        raise ValueError("enter-service test trips the DER on over-voltage: the settings "
                         "have no over-voltage clearing time")
    trip_region = min(over, key=lambda r: r.clearing_time_s or 0.0)
    before = se.into_service()
    recent = b.between(b.now() - 1.0, b.now())
    p_before = mean([s.p_pct for s in recent]) if recent else before.p_pct
    t_trip = se.set_grid(v_pu=trip_region.threshold + 2 * MRA.v_pu)
    if b.wait_until(lambda s: s.ceased, (trip_region.clearing_time_s or 0) + 3.0) is None:
        raise TimeoutError(f"the DER did not cease after stepping into {trip_region.name}")
    b.hold(0.5)
    window = Window(f"Trip ({trip_region.name}), out-of-window hold, return and soft start",
                    t_trip - 0.5, t_trip, "v", markers=[(t_trip, f"trip {trip_region.name}")])
    lowest_over = min(r.threshold for r in rt.over)
    v_out = es.v_high_pu + 2 * MRA.v_pu
    if rt.enabled and v_out < lowest_over - MRA.v_pu:
        t_out = se.set_grid(v_pu=v_out)
        b.hold(OUT_OF_WINDOW_S)
        seen = b.between(t_out, b.now())
        exported = [s for s in seen if exporting(s)]
        res.steps.append(StepResult(
            NAME, f"stays out at {v_out:g} pu (above the window)", bool(seen) and not exported,
            float(len(exported)), 0.0, None, 0.0, "exporting samples",
            "no export while the voltage is outside the enter-service window",
            {"v_pu": v_out, "window_high_pu": es.v_high_pu}, {"t_step_s": t_out}))
        window.markers.append((t_out, f"{v_out:g} pu"))
    t_ret = se.set_grid(v_pu=1.0)
    delay, ramp = es.delay_s, es.ramp_time_s
    b.hold(delay + ramp + 2.0)
    t_end = b.now()
    window.markers += [(t_ret, "window"), (t_ret + EARLY_FRAC * delay, "98.5 % delay"),
                       (t_ret + delay, "delay")]
    steps, t_entry = judge(b.between(t_ret, t_end), t_ret, delay, ramp, p_before, se.poll,
                           inputs={"window_v_pu": [es.v_low_pu, es.v_high_pu],
                                   "window_f_hz": [es.f_low_hz, es.f_high_hz]})
    res.steps.extend(steps)
    if t_entry is not None:
        window.markers.append((t_entry + ramp, "ramp time"))
        window.lines["soft_start_line"] = [(t_entry, 0.0), (t_entry + ramp, 100.0)]
    window.t_to = t_end
    res.windows.append(window)


def exporting(s: Sample) -> bool:
    """Exporting: the inverter energizing, or output above the ceased threshold."""
    return not s.ceased or s.p_pct > CEASED_PCT


def judge(samples: Sequence[Sample], t_ret: float, delay: float, ramp: float,
          p_before: float, poll: float,
          inputs: dict[str, Any] | None = None) -> tuple[list[StepResult], float | None]:
    """The 5.6.2 pass / fail steps from the samples after the grid returned at ``t_ret``.

    Pure. Returns the steps and the entry time (bench s) the ramp line starts
    from: the last sample before the DER energized again (lenient by one sample).
    """
    inputs = {"delay_s": delay, "ramp_time_s": ramp, **(inputs or {})}
    steps: list[StepResult] = []
    samples = [s for s in samples if s.t >= t_ret]
    t_end = samples[-1].t if samples else t_ret
    first = next((s.t for s in samples if exporting(s) and s.p_pct > CEASED_PCT), None)
    early = [s for s in samples if s.t < t_ret + EARLY_FRAC * delay and exporting(s)]
    measured = None if first is None else first - t_ret
    steps.append(StepResult(
        NAME, "no export before 98.5 % of the delay", bool(samples) and not early, measured,
        delay, EARLY_FRAC * delay, None, "s", "first export at or after 98.5 % of the delay",
        inputs, {"first_export_s": measured,
                 "first_early_sample_s": (early[0].t - t_ret) if early else None}))
    late_limit = delay * (1 + MRA.time_frac) + 1.0 + 2 * poll
    steps.append(StepResult(
        NAME, "enters service after the delay", measured is not None and measured <= late_limit,
        measured, delay, None, late_limit, "s",
        "exports again within the delay (+1 %, +1 s for the first ramp step, +2 polls)",
        inputs, {"first_export_s": measured}))
    if first is None:
        return steps, None
    # The ramp line starts at the last sample before entry: the last one the inverter
    # reported not energizing, or (no state reported) the last one below the threshold.
    before = [s for s in samples if s.t < first]
    off = [s.t for s in before if s.energizing is False] if any(
        s.energizing is not None for s in before) else [s.t for s in before]
    t_entry = off[-1] if off else first
    during = [(s.t, s.p_pct) for s in samples if s.t < t_entry + ramp * (1 - MRA.time_frac)]
    rated_at = next((t - t_entry for t, p in during if p >= 100.0 - MRA.p_pct), None)
    steps.append(StepResult(
        NAME, "rated power not reached before the ramp time", rated_at is None,
        max((p for _, p in during), default=0.0), None, None, 100.0 - MRA.p_pct,
        "% rated W", "output below rated - MRA_P until the ramp time has elapsed", inputs,
        {"t_entry_s": t_entry - t_ret, "rated_reached_s": rated_at},
        note="" if p_before >= 100.0 - MRA.p_pct else
        f"available power {p_before:.1f} % is below rated: this check cannot fail here; "
        "the ramp-line check below is the meaningful one"))
    excess, at = ramp_excess([(s.t, s.p_pct) for s in samples], t_entry, ramp)
    steps.append(StepResult(
        NAME, "output follows the soft-start ramp", excess <= K * MRA.p_pct, excess, 0.0, None,
        K * MRA.p_pct, "% points over the ramp line",
        "output never above the linear ramp from entry (0 -> 100 % over the ramp time) by "
        "more than 1.5 MRA_P", inputs,
        {"t_entry_s": t_entry - t_ret, "worst_at_s": None if at is None else at - t_ret}))
    final = mean([s.p_pct for s in samples if s.t >= t_end - 1.0])
    steps.append(StepResult(
        NAME, "back to the pre-trip output", within(final, p_before - K * MRA.p_pct,
                                                    p_before + K * MRA.p_pct), final,
        p_before, p_before - K * MRA.p_pct, p_before + K * MRA.p_pct, "% rated W",
        "output within 1.5 MRA_P of its pre-trip value after delay + ramp + 2 s", inputs, {}))
    return steps, t_entry
