"""``inverter-agent conformance``: run 1547.1-style procedures and write a report.

Examples::

    # the one-command demo: start a simulated inverter and test it
    inverter-agent conformance --simulate --out ./conformance-report

    # a simulator started elsewhere, its control channel as the grid source
    inverter-agent conformance --modbus-tcp 127.0.0.1:1502 --sim-control 127.0.0.1:40123

    # a real inverter without a controllable grid: only constant PF can run
    inverter-agent conformance --modbus-rtu /dev/ttyUSB0 --baud 19200 \\
        --procedures constant-pf

Exit status: 0 every step passed, 1 some step failed or a procedure could not
finish, 2 bad arguments or a refused run (e.g. grid-stepping procedures
without a grid source).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from inverter_agent.functions import PROFILES, SettingsError, get_profile

from .bench import Link
from .common import Options, RunContext, build_settings
from .grid import GridSource, GridSourceRequired, SimGridSource, sim_grid_source
from .report import write
from .runner import PROCEDURES, parse_procedures, run_all

log = logging.getLogger(__name__)

#: Plant time constant of the simulator ``--simulate`` starts (s): a fast inverter,
#: so the timing the report shows is mostly the gateway's.
SIM_TAU_S = "0.1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inverter-agent conformance",
        description="Run IEEE 1547.1-2020 style procedures (volt-var 5.14.4, constant PF "
                    "5.14.3, enter service 5.6.2, voltage trip 5.4, frequency trip 5.5) "
                    "against a connected inverter with the gateway's own controller, and "
                    "write report.json and report.html.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    link = p.add_argument_group("inverter link")
    link.add_argument("--modbus-tcp", metavar="HOST:PORT", help="inverter over Modbus TCP")
    link.add_argument("--modbus-rtu", metavar="DEVICE", help="inverter over Modbus RTU")
    link.add_argument("--baud", type=int, help="RTU baud rate (default 9600)")
    link.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    link.add_argument("--nominal-voltage", type=float,
                      help="line-to-neutral volts (default: the inverter's VNom)")
    grid = p.add_argument_group("grid source")
    grid.add_argument("--sim-control", metavar="HOST:PORT",
                      help="the simulator's control channel, used as the grid source")
    grid.add_argument("--simulate", action="store_true",
                      help="start a simulated inverter and use its link and grid (demo)")
    run = p.add_argument_group("what to run")
    run.add_argument("--procedures", default="all",
                     help=f"comma-separated: {','.join(PROCEDURES)} (default all)")
    run.add_argument("--profile", default="rule21", choices=sorted(PROFILES),
                     help="settings profile under test (default rule21)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting under test, e.g. enter_service.delay_s=300 "
                          "(VALUE is JSON; repeatable; applied after the procedure's own)")
    run.add_argument("--poll-period", type=_period, default=None,
                     help="gateway poll period, s (0.05..1.0), or auto: the period the "
                          "gateway itself chooses for the link (measured round trips and "
                          "baud rate, as `run` does); default auto over RTU, 0.1 over TCP")
    run.add_argument("--vv-response-time", type=float, default=Options.vv_response_s,
                     help="volt-var open-loop response time under test, s (default %(default)s)")
    run.add_argument("--vv-voltages", metavar="V,V,...",
                     help="volt-var test voltages in pu instead of the 5.14.4 sequence")
    run.add_argument("--es-delay", type=float, default=Options.es_delay_s,
                     help="enter-service delay under test, s (default %(default)s)")
    run.add_argument("--es-ramp", type=float, default=Options.es_ramp_s,
                     help="enter-service ramp time under test, s (default %(default)s)")
    run.add_argument("--max-clearing", type=float, default=Options.max_clearing_s,
                     help="step trip regions with clearing times up to this, s "
                          "(default %(default)s)")
    run.add_argument("--trip-regions", help="comma-separated region names to step instead "
                                            "(e.g. HV2,LV3,HF2,LF2)")
    p.add_argument("--out", default="./conformance-report", help="report directory")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    return p


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c.d=true"]`` -> ``{"a.b": 1, "c.d": True}`` (JSON values, else text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. volt_var.enabled=false")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status (0 all passed, 1 failures, 2 refused)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        names = parse_procedures(args.procedures)
        user = parse_sets(args.sets)
        base = get_profile(args.profile)
        build_settings(base, user)  # a bad --set fails here, before anything starts
        if args.poll_period is None:  # the gateway's own link timing over serial
            args.poll_period = "auto" if args.modbus_rtu else 0.1
        if args.poll_period != "auto" and not 0.05 <= args.poll_period <= 1.0:
            raise ValueError("--poll-period must be within 0.05..1.0 s, or auto")
        if args.simulate and (args.modbus_tcp or args.modbus_rtu or args.sim_control):
            raise ValueError("--simulate starts its own inverter: drop --modbus-* and "
                             "--sim-control")
        if not args.simulate and bool(args.modbus_tcp) == bool(args.modbus_rtu):
            raise ValueError("give exactly one of --modbus-tcp, --modbus-rtu (or --simulate)")
        options = Options(
            vv_response_s=args.vv_response_time,
            vv_voltages=tuple(float(v) for v in args.vv_voltages.split(","))
            if args.vv_voltages else None,
            es_delay_s=args.es_delay,
            es_ramp_s=args.es_ramp, max_clearing_s=args.max_clearing,
            trip_regions=tuple(r.strip() for r in args.trip_regions.split(","))
            if args.trip_regions else None)
        if not args.simulate:
            grid = sim_grid_source(args.sim_control, base.nameplate.f_nom_hz) \
                if args.sim_control else None
            from .runner import check_grid
            check_grid(names, grid is not None)
    except (ValueError, SettingsError, GridSourceRequired) as exc:
        print(f"inverter-agent conformance: {exc}", file=sys.stderr)
        return 2
    if args.simulate:
        from simulator import SimProcess

        with SimProcess("--tau", SIM_TAU_S) as sim:
            link = Link(modbus_tcp=f"127.0.0.1:{sim.tcp_port}", unit=1)
            grid_src = SimGridSource(sim.control, base.nameplate.f_nom_hz)
            return _run(args, names, base, user, options, link, grid_src,
                        {"simulated_inverter": f"python -m simulator --tau {SIM_TAU_S}"})
    link = Link(args.modbus_tcp, args.modbus_rtu, args.baud, args.unit)
    return _run(args, names, base, user, options, link, grid, {})


def _period(text: str) -> float | str:
    return "auto" if text == "auto" else float(text)


def _run(args: argparse.Namespace, names: list[str], base: Any, user: dict[str, Any],
         options: Options, link: Link, grid: GridSource | None,
         extra: dict[str, Any]) -> int:
    ctx = RunContext(link=link, grid=grid, profile=args.profile, base=base, out_dir=args.out,
                     poll_period=args.poll_period, options=options, user_overrides=user,
                     nominal_voltage=args.nominal_voltage)
    t0 = time.monotonic()
    try:
        results = run_all(ctx, names)
    finally:
        if grid is not None:
            grid.close()
    ratings = next((r.ratings for r in results if r.ratings), None)
    device = next((r.device for r in results if r.device), None)
    period = next((r.poll_period_s for r in results if r.poll_period_s), None)
    meta = {
        "link": link.describe(), "grid_source": grid.describe() if grid else None,
        "profile": args.profile, "device": device,
        "poll_period_s": period if args.poll_period == "auto" else args.poll_period,
        "poll_period_auto": args.poll_period == "auto",
        "options": dataclasses.asdict(options), "operator_overrides": user,
        "procedures_requested": names, "duration_s": round(time.monotonic() - t0, 2),
        "inverter": ratings, **extra}
    doc = write(args.out, results, meta)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<15} {r.clause:<24} "
              f"{sum(s.passed for s in r.steps)}/{len(r.steps)} steps  {r.duration_s:5.1f} s"
              + (f"  ({r.error})" if r.error else ""))
    print(f"report: {args.out}/report.html ({'PASS' if doc['passed'] else 'FAIL'})")
    return 0 if doc["passed"] else 1
