"""The conformance report: ``report.json`` (everything) and ``report.html`` (to read).

``report.json`` holds every step (inputs, expected, measured, tolerance band,
pass / fail, timings), the settings each procedure ran with and the layers of
overrides, the recorded samples, the grid steps, the gateway's events and the
software version. ``report.html`` is self-contained (inline CSS and SVG, no
scripts, no external files): per procedure its plots (the volt-var curve with
its tolerance band and the measured points; time series of the grid quantity,
P, Q and energizing with the step and clearing-time markers) and a table of
steps.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from .bench import Sample
from .common import ProcedureResult, Window
from .evaluate import MRA, curve_band
from .svg import FAIL_COLOUR, PALETTE, PASS_COLOUR, Chart, span

log = logging.getLogger(__name__)


def software_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit."""
    try:
        version = importlib.metadata.version("inverter-agent")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    commit = None
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=False)
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": "inverter-agent", "version": version, "git": commit}


def build(results: Sequence[ProcedureResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The report.json document."""
    return {
        "report": "inverter-agent conformance (IEEE 1547.1-2020 style procedures)",
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software": software_version(),
        "passed": bool(results) and all(r.passed for r in results),
        **meta,
        "accuracy_mra": {"v_pu": MRA.v_pu, "f_hz": MRA.f_hz, "p_pct_rated_va": MRA.p_pct,
                         "q_pct_rated_va": MRA.q_pct, "time_fraction": MRA.time_frac,
                         "source": "IEEE 1547-2018 Table 3 (steady state)"},
        "procedures": [r.as_dict() for r in results],
    }


def write(out_dir: str, results: Sequence[ProcedureResult], meta: dict[str, Any]) -> dict:
    """Write report.json and report.html into ``out_dir``; the JSON document."""
    os.makedirs(out_dir, exist_ok=True)
    doc = build(results, meta)
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=str)
    with open(os.path.join(out_dir, "report.html"), "w", encoding="utf-8") as fh:
        fh.write(render_html(results, doc))
    return doc


# ---------------------------------------------------------------- plots


def volt_var_chart(res: ProcedureResult) -> Chart:
    """The curve under test, its 5.14.4 tolerance band, the measured points."""
    pts = [s for s in res.steps if "v_measured_pu" in s.inputs and s.measured is not None]
    xs = [p[0] for p in res.curve] + [s.inputs["v_measured_pu"] for s in pts]
    lo_x, hi_x = min(xs) - 0.03, max(xs) + 0.03
    ys = [p[1] for p in res.curve] + [s.measured for s in pts if s.measured is not None]
    y_rng = span(ys + [max(ys) + 10, min(ys) - 10], 0.02)
    c = Chart((lo_x, hi_x), y_rng, "Volt-var characteristic (5.14.4)", "V (pu)",
              "Q (% rated VA, + inject)", width=720, height=360)
    grid = [lo_x + (hi_x - lo_x) * i / 300 for i in range(301)]
    bands = [curve_band(res.curve, x, MRA.v_pu, MRA.q_pct) for x in grid]
    c.band([(x, b[2]) for x, b in zip(grid, bands, strict=True)],
           [(x, b[1]) for x, b in zip(grid, bands, strict=True)], PALETTE[0],
           label="tolerance band")
    curve = [(lo_x, res.curve[0][1]), *res.curve, (hi_x, res.curve[-1][1])]
    c.line(curve, PALETTE[0], 2.0, label="curve under test")
    c.points([(s.inputs["v_measured_pu"], s.measured) for s in pts],
             [PASS_COLOUR if s.passed else FAIL_COLOUR for s in pts],
             titles=[f"{s.step}: V {s.inputs['v_measured_pu']:.4f} pu, Q {s.measured:.2f} % "
                     f"({'pass' if s.passed else 'FAIL'})" for s in pts])
    c.legend("measured, pass", PASS_COLOUR)
    c.legend("measured, fail", FAIL_COLOUR)
    return c


#: Margins (top, right, bottom, left) of the panels under the first one: no title row.
LOWER = (22, 16, 40, 64)


def _in(samples: Sequence[Sample], w: Window) -> list[Sample]:
    return [s for s in samples if w.t_from <= s.t <= w.t_to and s.valid]


def window_charts(res: ProcedureResult, w: Window) -> list[Chart]:
    """Stacked time series for one window: grid quantity, P, Q, energizing."""
    ss = _in(res.samples, w)
    t0 = w.markers[0][0] if w.markers else w.t_from
    x_rng = (w.t_from - t0, w.t_to - t0)
    xl = f"time (s) from {w.markers[0][1] if w.markers else 'start'}"

    def rel(pts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(t - t0, y) for t, y in pts]

    def markers(c: Chart, labels: bool = False) -> None:
        for t, label in w.markers:
            c.vline(t - t0, FAIL_COLOUR if "clearing" in label else "#555",
                    label if labels else "")

    v = w.quantity == "v"
    key = "v_pu" if v else "f_hz"
    grid_cmd = [(g["t_s"], g[key]) for g in res.grid_steps]
    before = [p for p in grid_cmd if p[0] <= w.t_from]
    cmd = ([(w.t_from, before[-1][1])] if before else []) + \
        [p for p in grid_cmd if w.t_from < p[0] <= w.t_to]
    if cmd:
        cmd.append((w.t_to, cmd[-1][1]))
    meas = [(s.t, s.v_pu if v else s.f_hz) for s in ss]
    top = Chart(x_rng, span([y for _, y in meas + cmd], 0.1, 0.01 if v else 0.05),
                w.title, xl, "V (pu)" if v else "f (Hz)", height=200)
    top.line(rel(cmd), PALETTE[3], 1.2, "5 3", "grid source setpoint", steps=True)
    top.line(rel(meas), PALETTE[0], 1.5, label="measured by the inverter")
    markers(top, labels=True)
    p = Chart(x_rng, span([s.p_pct for s in ss] + [0, 100], 0.05), "", xl, "P (% rated W)",
              height=150, margin=LOWER)
    if "soft_start_line" in w.lines:
        p.line(rel(w.lines["soft_start_line"]), PALETTE[3], 1.2, "5 3", "soft-start line")
    p.line(rel([(s.t, s.p_pct) for s in ss]), PALETTE[1], 1.5, label="P")
    markers(p)
    q = Chart(x_rng, span([s.q_pct for s in ss] + [y for _, y in w.lines.get("q_expected", [])]
                          + [-5, 5], 0.08), "", xl, "Q (% rated VA)", height=150,
              margin=LOWER)
    exp = w.lines.get("q_expected", [])
    for i in range(0, len(exp) - 1, 2):
        q.line(rel(exp[i:i + 2]), PALETTE[3], 1.2, "5 3",
               "expected Q" if i == 0 else None)
    q.line(rel([(s.t, s.q_pct) for s in ss]), PALETTE[2], 1.5, label="Q")
    markers(q)
    e = Chart(x_rng, (-0.2, 1.2), "", xl, "energizing", height=120, margin=LOWER)
    e.line(rel([(s.t, 0.0 if s.ceased else 1.0) for s in ss]), PALETTE[0], 1.5,
           label="energizing (1) / ceased (0)", steps=True)
    markers(e)
    return [top, p, q, e]


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.85em;margin:0.8em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0} .pass{color:#1a9641;font-weight:bold} .fail{color:#d7191c;font-weight:bold}
.badge{padding:2px 8px;border-radius:4px;color:#fff} .bp{background:#1a9641} .bf{background:#d7191c}
pre{background:#f7f7f7;padding:0.6em;font-size:0.8em;overflow:auto;max-height:30em}
.note{font-size:0.9em;color:#444} figure{margin:0.5em 0}
figcaption{font-weight:bold;font-size:0.95em}
figure svg{display:block}
"""


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(str(v))


def _badge(ok: bool) -> str:
    return f'<span class="badge {"bp" if ok else "bf"}">{"PASS" if ok else "FAIL"}</span>'


def _steps_table(res: ProcedureResult) -> str:
    rows = ["<table><tr><th>step</th><th>result</th><th>measured</th><th>expected</th>"
            "<th>band</th><th>unit</th><th>criterion</th><th>timings (s)</th></tr>"]
    for s in res.steps:
        band = f"[{_num(s.low)}, {_num(s.high)}]"
        tim = ", ".join(f"{escape(k)} {_num(v)}" for k, v in s.timings.items() if v is not None)
        note = f'<br/><span class="note">{escape(s.note)}</span>' if s.note else ""
        rows.append(f"<tr><td>{escape(s.step)}</td>"
                    f'<td class="{"pass" if s.passed else "fail"}">'
                    f'{"pass" if s.passed else "FAIL"}</td><td>{_num(s.measured)}</td>'
                    f"<td>{_num(s.expected)}</td><td>{band}</td><td>{escape(s.unit)}</td>"
                    f"<td>{escape(s.criterion)}{note}</td><td>{tim}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _section(res: ProcedureResult) -> str:
    out = [f'<h2 id="{escape(res.name)}">{escape(res.clause)}: {escape(res.title)} '
           f"{_badge(res.passed)}</h2>",
           f'<p class="note">{sum(s.passed for s in res.steps)} of {len(res.steps)} steps '
           f"passed, {res.duration_s:.1f} s.</p>"]
    if res.error:
        out.append(f'<p class="fail">Not completed: {escape(res.error)}</p>')
    for n in res.notes:
        out.append(f'<p class="note">{escape(n)}</p>')
    try:
        if res.curve:
            c = volt_var_chart(res)
            out.append(f"<figure><figcaption>{escape(c.title)}</figcaption>{c.to_svg()}"
                       "</figure>")
        for w in res.windows:
            out.append(f"<figure><figcaption>{escape(w.title)}</figcaption>"
                       + "\n".join(c.to_svg() for c in window_charts(res, w)) + "</figure>")
    except (ValueError, ZeroDivisionError, IndexError) as exc:  # a plot must not lose a report
        log.warning("%s: plot failed: %s", res.name, exc)
        out.append(f'<p class="fail">plot failed: {escape(str(exc))}</p>')
    out.append(_steps_table(res))
    over = json.dumps(res.overrides, indent=1)
    out.append(f"<details><summary>Overrides of the profile</summary><pre>{escape(over)}"
               "</pre></details>")
    out.append("<details><summary>Settings under test (complete)</summary><pre>"
               f"{escape(json.dumps(res.settings, indent=1))}</pre></details>")
    if res.events:
        ev = "\n".join(f"{e['t_s']:9.3f}  {e['kind']}: {e['detail']}" for e in res.events)
        out.append(f"<details><summary>Gateway events</summary><pre>{escape(ev)}</pre>"
                   "</details>")
    return "\n".join(out)


def _device(d: dict[str, Any] | None) -> str:
    """The device as its SunSpec model 1 names it."""
    if not d:
        return "not identified (no SunSpec model 1 read)"
    name = " ".join(v for v in (d.get("Mn"), d.get("Md")) if v) or "unnamed"
    extra = [f"serial {d['SN']}" if d.get("SN") else "", f"firmware {d['Vr']}" if d.get("Vr")
             else ""]
    return ", ".join([name, *(e for e in extra if e)])


def _pairs(value: Any) -> str:
    """A mapping as ``key value, ...`` (no raw JSON in the header)."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_num(v) if isinstance(v, float) else v}"
                         for k, v in value.items() if v is not None)
    return str(value)


def render_html(results: Sequence[ProcedureResult], doc: dict[str, Any]) -> str:
    """The self-contained HTML report."""
    sw = doc["software"]
    period = f"{_num(doc.get('poll_period_s'))} s"
    if doc.get("poll_period_auto"):
        period += " (chosen by the gateway for this link)"
    head = [("Result", _badge(doc["passed"])),
            ("Device under test", escape(_device(doc.get("device")))),
            ("Inverter link", escape(str(doc.get("link", "")))),
            ("Grid source", escape(_pairs(doc.get("grid_source")))),
            ("Inverter ratings", escape(_pairs(doc.get("inverter")))),
            ("Profile", escape(str(doc.get("profile", "")))),
            ("Poll period", escape(period)),
            ("Software", escape(f"{sw['package']} {sw['version']} ({sw['git'] or 'no git'})")),
            ("Generated", escape(doc["generated"]))]
    summary = ["<table><tr><th>procedure</th><th>clause</th><th>result</th><th>steps</th>"
               "<th>time (s)</th></tr>"]
    for r in results:
        summary.append(f'<tr><td><a href="#{escape(r.name)}">{escape(r.name)}</a></td>'
                       f"<td>{escape(r.clause)}</td><td>{_badge(r.passed)}</td>"
                       f"<td>{sum(s.passed for s in r.steps)}/{len(r.steps)}</td>"
                       f"<td>{r.duration_s:.1f}</td></tr>")
    summary.append("</table>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"/>',
        "<title>Conformance report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>Inverter conformance report (IEEE 1547.1-2020 style)</h1>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in head) + "</table>",
        '<p class="note">The device under test is the gateway with its inverter: the gateway '
        "runs the grid functions and steers the inverter; measurements are the inverter's own, "
        "polled by the gateway once a poll period. Tolerances: IEEE 1547-2018 Table 3 "
        "(V 1 % of nominal, f 10 mHz, P and Q 5 % of rated VA, time 1 %). These are "
        "1547.1-style procedures for a bench check, not a certification test.</p>",
        *summary, *(_section(r) for r in results), "</body></html>"]
    return "\n".join(parts)
