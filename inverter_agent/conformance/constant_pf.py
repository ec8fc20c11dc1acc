"""IEEE 1547.1-2020 5.14.3: constant power factor mode.

Procedure (after 5.14.3.2, at the available active power):

1. Settings under test: constant power factor enabled at unity, the other
   reactive modes off.
2. With the DER in service, change the power factor setting (as a utility
   write would) to the minimum injecting PF, the minimum absorbing PF, a PF
   halfway to unity absorbing, then unity again.
3. After each change wait until Q has covered 90 % of its change (at most
   10 s) and then ``Options.pf_settle_s`` more; read P and Q.

Pass criteria per setting:

- response: Q reaches 90 % of its step within 10 s (interpolated between samples);
- steady state: Q within Qset +- 1.5 MRA_Q, where Qset is the Q that gives the
  commanded PF at the measured P and MRA_Q is 5 % of rated VA.

This procedure changes settings, not the grid: it runs without a grid source.
"""

from __future__ import annotations

import dataclasses
import logging

from .common import ProcedureResult, RunContext, Session, Window, run_session
from .evaluate import MRA, StepResult, judge_response, mean, pf_q_pct

log = logging.getLogger(__name__)

NAME = "constant-pf"
CLAUSE = "IEEE 1547.1-2020 5.14.3"
TITLE = "Constant power factor mode"
K = 1.5
RESPONSE_LIMIT_S = 10.0  # 5.14.3: 90 % of the Q step within 10 s
STEADY_WINDOW_S = 1.0


def run(ctx: RunContext) -> ProcedureResult:
    """Run 5.14.3 against the inverter in ``ctx``."""
    overrides = {"volt_var.enabled": False, "constant_var.enabled": False,
                 "fixed_pf.enabled": True, "fixed_pf.pf": 1.0, "fixed_pf.absorbing": False}
    return run_session(ctx, ProcedureResult(NAME, CLAUSE, TITLE), overrides, _body)


def pf_steps(pf_min_inj: float, pf_min_abs: float) -> list[tuple[float, bool]]:
    """(pf, absorbing) settings stepped through: minimum each way, a midpoint, unity."""
    mid = round((1.0 + pf_min_abs) / 2, 4)
    return [(pf_min_inj, False), (pf_min_abs, True), (mid, True), (1.0, False)]


def _body(se: Session) -> None:
    res, b, opt = se.result, se.bench, se.ctx.options
    se.into_service()
    ratings = b.ratings
    assert ratings is not None  # in service implies valid samples
    w_to_va = ratings.w_rtg / ratings.va_rtg
    t_start = b.now()
    pf_settings = se.settings.fixed_pf
    window = Window("Constant PF steps: reactive power against its setpoint", t_start - 0.5,
                    t_start, "v")
    q_prev = mean([s.q_pct for s in b.between(b.now() - STEADY_WINDOW_S, b.now())])
    for i, (pf, absorbing) in enumerate(pf_steps(pf_settings.pf_min_injecting,
                                                  pf_settings.pf_min_absorbing), 1):
        new = dataclasses.replace(se.settings, fixed_pf=dataclasses.replace(
            pf_settings, pf=pf, absorbing=absorbing))
        t_step = b.now()
        b.apply_settings(new)
        window.markers.append((t_step, f"PF {'-' if absorbing else ''}{pf:g}"))
        p_now = b.latest()
        p_va = (p_now.p_pct if p_now else 0.0) * w_to_va
        q_target = pf_q_pct(p_va, pf, absorbing)
        change = q_target - q_prev
        if abs(change) > 1e-6:
            level = q_prev + 0.9 * change
            b.wait_until(lambda s, lv=level, up=change > 0: s.q_pct >= lv if up
                         else s.q_pct <= lv, RESPONSE_LIMIT_S)
        b.hold(opt.pf_settle_s)
        t_end = b.now()
        steady = b.between(t_end - STEADY_WINDOW_S, t_end)
        if not steady:
            raise TimeoutError(f"no valid samples after PF step {i}")
        p_meas_va = mean([s.p_pct for s in steady]) * w_to_va
        q_meas = mean([s.q_pct for s in steady])
        q_set = pf_q_pct(p_meas_va, pf, absorbing)
        lo, hi = q_set - K * MRA.q_pct, q_set + K * MRA.q_pct
        window.lines.setdefault("q_expected", []).extend([(t_step, q_set), (t_end, q_set)])
        label = f"{pf:g} {'absorbing' if absorbing else 'injecting'}"
        inputs = {"pf": pf, "absorbing": absorbing, "p_measured_pct_va": round(p_meas_va, 3)}
        series = [(s.t, s.q_pct) for s in b.between(t_step - 1.0, t_end)]
        res.steps.append(judge_response(
            NAME, f"{i:02d} response to PF {label}", series, t_step, q_prev, q_meas,
            RESPONSE_LIMIT_S, "Q reaches 90 % of its step within 10 s", inputs=inputs))
        res.steps.append(StepResult(
            NAME, f"{i:02d} steady state at PF {label}", lo <= q_meas <= hi, q_meas, q_set, lo,
            hi, "% rated VA", "Q within Qset +- 1.5 MRA_Q", inputs,
            {"t_step_s": t_step, "held_s": t_end - t_step}))
        q_prev = q_meas
    window.t_to = b.now()
    res.windows.append(window)
