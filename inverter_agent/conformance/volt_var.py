"""IEEE 1547.1-2020 5.14.4: volt-var mode, characteristic and open-loop response.

Procedure (after 5.14.4.2, one curve, one power level):

1. Settings under test: the profile's volt-var curve, volt-var enabled, the
   other reactive modes off, volt-watt off (it acts in the same voltage range
   and 1547.1 tests one function at a time), autonomous VRef off, and the
   open-loop response time Tr shortened for speed (``Options.vv_response_s``).
2. With the DER in service at nominal voltage, step the grid voltage through
   the curve: V3 - av, V3 + av, (V3 + V4)/2, V4 - av, V4 + av and back, then
   V2 + av, V2 - av, (V1 + V2)/2, V1 + av, V1 - av and back, with
   av = 1.5 x the voltage MRA (1 % of nominal).
3. At each step hold 2 Tr, then read V and Q (mean of the last samples).

Pass criteria per step:

- steady state: Q within Y(X +- 1.5 MRA_X) -+ 1.5 MRA_Y after 2 Tr, X the
  measured voltage, Y the curve, MRA_X 1 % of nominal, MRA_Y 5 % of rated VA;
- open-loop response, for steps whose Q change is at least 2 MRA_Q: Q reaches
  90 % of its change within Tr (+ 1 % time accuracy + one poll period: the
  gateway cannot act on a voltage it has not yet polled). The time is
  interpolated between samples.
"""

from __future__ import annotations

import logging

from inverter_agent.functions.volt_var import QBase

from .common import ProcedureResult, RunContext, Session, Window, run_session
from .evaluate import MRA, judge_curve_point, judge_response, mean, volt_var_test_voltages

log = logging.getLogger(__name__)

NAME = "volt-var"
CLAUSE = "IEEE 1547.1-2020 5.14.4"
TITLE = "Volt-var mode: characteristic and open-loop response time"
K = 1.5  # the 1.5 x MRA of the 5.14.4 criteria
STEADY_WINDOW_S = 0.5  # samples averaged for a steady-state reading


def curve_pct_va(session: Session) -> list[tuple[float, float]]:
    """The curve under test in (V pu, Q % of rated VA), VRef shift and VAr clamp applied."""
    s = session.settings
    vv = s.volt_var
    shift = vv.vref_pu - 1.0
    cap = s.nameplate.var_max_pct
    pts = []
    for p in vv.curve:
        q = p.q_pct if vv.q_base is QBase.RATED_VA else p.q_pct * cap / 100.0
        pts.append((round(p.v_pu + shift, 6), max(-cap, min(cap, q))))
    return pts


def run(ctx: RunContext) -> ProcedureResult:
    """Run 5.14.4 against the inverter in ``ctx``."""
    overrides = {"volt_var.enabled": True, "volt_var.vref_auto": False,
                 "volt_var.response_time_s": ctx.options.vv_response_s,
                 "fixed_pf.enabled": False, "constant_var.enabled": False,
                 "volt_watt.enabled": False}
    result = ProcedureResult(NAME, CLAUSE, TITLE)
    return run_session(ctx, result, overrides, _body)


def _body(se: Session) -> None:
    res, b, opt = se.result, se.bench, se.ctx.options
    tr = se.settings.volt_var.response_time_s
    curve = curve_pct_va(se)
    res.curve = curve
    av = K * MRA.v_pu
    volts = list(opt.vv_voltages) if opt.vv_voltages else volt_var_test_voltages(curve, av)
    res.notes.append(f"av = 1.5 x MRA_V = {av:g} pu; hold 2 Tr = {2 * tr:g} s + "
                     f"{opt.settle_extra_s:g} s per step; steady state = mean of the last "
                     f"{STEADY_WINDOW_S:g} s.")
    res.notes.append("One curve (the profile's) at the available active power; 1547.1 also "
                     "repeats the test for other curves and power levels.")
    res.notes.append(f"Open-loop response judged against Tr x 1.01 + one poll period "
                     f"({se.poll:g} s): the gateway cannot act on a voltage before it polls it. "
                     "The time includes the inverter's own response; gateway_saw_step_s is "
                     "when the gateway first polled the new voltage.")
    se.into_service()
    t_start = b.now()
    hold = 2 * tr + opt.settle_extra_s
    prev = b.between(b.now() - STEADY_WINDOW_S, b.now())
    q_prev = mean([s.q_pct for s in prev])
    q_lines: list[tuple[float, float]] = []
    for i, v_set in enumerate(volts, 1):
        t_step = se.set_grid(v_pu=v_set)
        b.hold(hold)
        t_end = b.now()
        steady = b.between(t_end - STEADY_WINDOW_S, t_end)
        if not steady:
            raise TimeoutError(f"no valid samples at step {i} (V = {v_set} pu)")
        v_meas = mean([s.v_pu for s in steady])
        q_meas = mean([s.q_pct for s in steady])
        step = judge_curve_point(NAME, f"{i:02d} steady state at {v_set:.3f} pu", curve,
                                 v_meas, q_meas, {"v_set_pu": v_set,
                                                  "q_before_pct": round(q_prev, 3)},
                                 {"t_step_s": t_step, "held_s": t_end - t_step}, K)
        res.steps.append(step)
        if step.expected is not None:
            q_lines.extend([(t_step, step.expected), (t_end, step.expected)])
        if step.expected is not None and abs(step.expected - q_prev) >= 2 * MRA.q_pct:
            series = [(s.t, s.q_pct) for s in b.between(t_step - 1.0, t_end)]
            seen = [s.t for s in b.between(t_step, t_end) if abs(s.v_pu - v_set) < MRA.v_pu / 2]
            resp = judge_response(
                NAME, f"{i:02d} open-loop response to {v_set:.3f} pu", series, t_step, q_prev,
                q_meas, tr * (1 + MRA.time_frac) + se.poll,
                "Q reaches 90 % of its change within Tr (+1 % + one poll period)", tr,
                {"v_set_pu": v_set})
            resp.timings["gateway_saw_step_s"] = (seen[0] - t_step) if seen else None
            res.steps.append(resp)
        q_prev = q_meas
    res.windows.append(Window("Volt-var steps: grid voltage and reactive power",
                              t_start - 0.5, b.now(), "v", lines={"q_expected": q_lines}))
