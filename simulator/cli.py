"""Command line of the SunSpec inverter simulator (``python -m simulator``).

Startup lines on stdout, one each, flushed, then ``READY``::

    TCP 127.0.0.1:1502
    PTY /dev/pts/7 -> /tmp/x/inv0      (again after every pty_cycle)
    SERIAL /dev/ttyUSB0 9600
    CONTROL 127.0.0.1:40123
    READY

Logs go to stderr. SIGTERM / SIGINT stop it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import registers
from .device import Inverter
from .modbus import Fault
from .plant import PlantParams, Ratings, load_grid_script
from .registers import RegisterImage, parse_models, shuffled
from .server import ModbusRtuServer, ModbusTcpServer
from .simulation import Simulation
from .stopsignals import StopSignals

log = logging.getLogger(__name__)

_print_lock = threading.Lock()


def announce(line: str) -> None:
    """One startup/status line on stdout (what SimProcess waits for)."""
    with _print_lock:
        try:
            print(line, flush=True)
        except (OSError, ValueError):
            pass  # nobody reads stdout any more: keep simulating


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def unit_list(text: str) -> list[int]:
    try:
        units = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected unit ids like 1,2,3, got {text!r}") from None
    if not units or any(not 1 <= u <= 247 for u in units) or len(set(units)) != len(units):
        raise argparse.ArgumentTypeError("unit ids are distinct numbers in 1..247")
    return units


def sf_setting(text: str) -> tuple[int | None, str, int]:
    """``W_SF=-1`` or ``103:W_SF=-1``."""
    name, sep, value = text.partition("=")
    model, _, point = name.rpartition(":")
    try:
        return (int(model) if model else None), point, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [MODEL:]NAME_SF=N, got {text!r}") from None


def fault_arg(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "python -m simulator",
        description="Simulated SunSpec inverter: Modbus TCP and/or RTU (pty or serial), "
                    "a plant that follows model 123/704 controls, and a JSON control "
                    "channel for tests and benches.",
        epilog="Example: python -m simulator --tcp 127.0.0.1:1502 --pty-link /tmp/sim/inv0 "
               "--units 1,2 --control 127.0.0.1:0")
    g = p.add_argument_group("device")
    g.add_argument("--base", type=int, default=40000,
                   help="address of the 'SunS' marker: 40000 (default), 0 or 50000")
    g.add_argument("--models", default=",".join(map(str, registers.DEFAULT_MODELS)),
                   help="model ids in order, common model 1 first (default %(default)s); "
                        "e.g. 1,113,120,121,122,123 or 1,701,702,703,704,705")
    g.add_argument("--profile", metavar="FILE",
                   help="a device profile (simulator/profiles/*.json: register image, "
                        "ratings and quirks, with its source); sets the models, base, unit "
                        "and ratings")
    g.add_argument("--shuffle-seed", type=int, metavar="N",
                   help="put the models after model 1 in a seeded random order")
    g.add_argument("--units", type=unit_list, default=[1], metavar="1,2,3",
                   help="unit ids served, each its own inverter (default 1)")
    g.add_argument("--sf", type=sf_setting, action="append", default=[],
                   metavar="[MODEL:]NAME_SF=N", help="override a scale factor (repeatable)")
    g.add_argument("--pf-units", choices=("pct", "cos"), default="pct",
                   help="PF in models 101-113: percent, as the definition says (default), "
                        "or cos phi as some devices report it")
    g.add_argument("--vv-curves", type=int, default=3, help="model 705 NCrv (default 3)")
    g.add_argument("--vv-points", type=int, default=4, help="model 705 NPt (default 4)")
    r = p.add_argument_group("ratings and plant")
    r.add_argument("--w-rtg", type=float, default=5000.0, help="WRtg, W (default 5000)")
    r.add_argument("--va-rtg", type=float, help="VARtg, VA (default = W rating)")
    r.add_argument("--var-rtg", type=float,
                   help="var capability each way (default 44%% of the VA rating)")
    r.add_argument("--v-nom", type=float, default=240.0,
                   help="nominal volts per phase, line to neutral (default 240)")
    r.add_argument("--f-nom", type=float, default=60.0, help="nominal Hz (default 60)")
    r.add_argument("--phases", type=int, choices=(1, 2, 3),
                   help="phases for model 701 sets (101-113 imply their own; default 3)")
    r.add_argument("--pf-min", type=float, default=0.8, help="lowest |PF| (default 0.8)")
    r.add_argument("--dc", type=float, metavar="W",
                   help="available DC power (default 80%% of the W rating)")
    r.add_argument("--tau", type=float, default=0.5,
                   help="first-order time constant of W and var, s (default 0.5)")
    r.add_argument("--rate", type=float, default=20.0, help="plant steps a second (default 20)")
    r.add_argument("--native-trip", action="store_true",
                   help="the inverter's own protection (0.88-1.10 pu, 58.5-61.2 Hz); off by "
                        "default so the gateway's backup protection can be tested")
    r.add_argument("--reconnect-delay", type=float, default=5.0,
                   help="s in window before a native trip reconnects (default 5)")
    r.add_argument("--grid-script", metavar="FILE",
                   help="grid time series, CSV t,v_pu,f_hz or JSON, held stepwise")
    r.add_argument("--seed", type=int, help="random seed (WinTms, garbage bytes)")
    m = p.add_argument_group("site meter (simulator/meter.py)")
    m.add_argument("--meter", metavar="UNIT:MODEL",
                   help="a SunSpec meter (201-204, 211-214) at the PCC on this unit id: "
                        "site load minus the inverters' output")
    m.add_argument("--meter-profile", metavar="NAME",
                   help="a vendor meter profile (simulator.meter.PROFILES: fronius-213, "
                        "solaredge-203); implies --meter")
    m.add_argument("--meter-load", type=float, default=1000.0, metavar="W",
                   help="site load behind the meter, W (default 1000)")
    m.add_argument("--meter-tcp", type=host_port, metavar="HOST:PORT",
                   help="also serve the meter alone on this Modbus TCP port (its own link)")
    t = p.add_argument_group("transports")
    t.add_argument("--tcp", type=host_port, metavar="HOST:PORT",
                   help="Modbus TCP listen address (port 0: any free port)")
    t.add_argument("--pty-link", metavar="PATH",
                   help="create a pty for Modbus RTU and symlink its slave side here")
    t.add_argument("--serial", metavar="DEVICE", help="Modbus RTU on an existing serial port")
    t.add_argument("--baud", type=int, default=9600,
                   help="RTU baud rate, sets the 3.5-character gap (default 9600)")
    t.add_argument("--emulate-baud", action="store_true",
                   help="on a pty, answer only after the request and the response would "
                        "have taken on a real line at --baud (10 bits a character, the "
                        "3.5-character silence): a pty itself has no baud rate")
    t.add_argument("--fault", type=fault_arg, default=Fault(), metavar="MODE",
                   help="none, silent, exception:N, garbage, truncated, bad_crc, delay:S")
    t.add_argument("--control", default="127.0.0.1:0", metavar="HOST:PORT|off",
                   help="JSON control channel (default 127.0.0.1:0, any free port)")
    p.add_argument("--watch-parent", action="store_true",
                   help="exit when the parent process dies (SimProcess sets it: no orphans)")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def build(args: argparse.Namespace) -> Simulation:
    """The simulation the options describe (nothing started yet)."""
    prof = None
    if args.profile:
        from .profile import load_profile

        prof = load_profile(args.profile)
        ids = list(prof.models)
        args.base, args.units = prof.base, [prof.unit]
        args.pf_units = prof.quirks.pf_units
    else:
        ids = parse_models(args.models)
    if args.shuffle_seed is not None:
        ids = shuffled(ids, args.shuffle_seed)
    phases = next((registers.PHASES[m] for m in ids if m in registers.PHASES), None)
    if phases is not None and args.phases is not None and args.phases != phases:
        raise ValueError(f"--phases {args.phases} contradicts the inverter model's {phases}")
    va = args.va_rtg or args.w_rtg
    ratings = Ratings(w_max=args.w_rtg, va_max=va,
                      var_max_inj=args.var_rtg if args.var_rtg is not None else 0.44 * va,
                      var_max_abs=args.var_rtg if args.var_rtg is not None else 0.44 * va,
                      v_nom=args.v_nom, f_nom=args.f_nom, phases=phases or args.phases or 3,
                      pf_min=args.pf_min)
    if prof is not None:
        from dataclasses import replace as _replace

        ratings = _replace(prof.ratings, phases=phases or prof.ratings.phases)
    params = PlantParams(ratings=ratings, tau_s=args.tau, native_trip=args.native_trip,
                         reconnect_delay_s=args.reconnect_delay)
    counts = {"NCrv": args.vv_curves, "NPt": args.vv_points}

    def make_units() -> dict[int, Inverter]:
        units = {}
        for u in args.units:
            if prof is not None:
                image = RegisterImage(args.base, ids, ratings, u, counts,
                                      raw_models=prof.vendor_models,
                                      end_marker=prof.quirks.end_marker)
            else:
                image = RegisterImage(args.base, ids, ratings, u, counts)
            for model, name, value in args.sf:
                image.set_sf(name, value, model)
            seed = None if args.seed is None else args.seed + u
            units[u] = Inverter(image, params, dc_w=args.dc,
                                pf_percent=args.pf_units == "pct", seed=seed)
            if 124 in ids:  # a hybrid: its battery (simulator/battery.py)
                from .battery import Battery, BatteryParams

                bp = BatteryParams.from_dict(dict(prof.battery or {}) if prof else {})
                units[u].battery = Battery(image, bp)
            if prof is not None:
                from .profile import apply

                units[u].unused_phases_zero = prof.quirks.unused_phases_zero
                units[u].exclusive_reactive_modes = prof.quirks.exclusive_reactive_modes
                units[u].refuse_adoption = prof.quirks.refuse_adoption
                units[u].refuse_adoption_models = set(prof.quirks.refuse_adoption_models)
                apply(prof, image)
        meter = _meter(args, params, lambda: [u for u in units.values()
                                               if isinstance(u, Inverter)])
        if meter is not None:  # last: the simulation steps it after the inverters
            units[meter.unit_id] = meter
        return units

    if not 1.0 <= args.rate <= 1000.0:
        raise ValueError("--rate outside 1..1000")
    sim = Simulation(make_units(), params, rate_hz=args.rate, factory=make_units)
    sim.set_fault(args.fault)
    if args.grid_script:
        sim.run_script(load_grid_script(args.grid_script))
    return sim


def _meter(args: argparse.Namespace, params: PlantParams,
           sources: Callable[[], list[Any]]) -> Any:
    """The site meter the options ask for (simulator/meter.py), or None."""
    if not (getattr(args, "meter", None) or getattr(args, "meter_profile", None)):
        return None
    from .meter import PROFILES, make_meter, parse_meter

    w_positive = "import"
    if args.meter_profile:
        if args.meter_profile not in PROFILES:
            raise ValueError(f"meter profile {args.meter_profile!r}: one of "
                             f"{', '.join(sorted(PROFILES))}")
        prof = PROFILES[args.meter_profile]
        unit, model, w_positive = prof.unit, prof.model, prof.w_positive
        if args.meter:
            unit = parse_meter(args.meter)[0]
    else:
        unit, model = parse_meter(args.meter)
    if unit in args.units:
        raise ValueError(f"meter unit {unit} is an inverter's unit id")
    meter = make_meter(args.base, model, unit, params, sources, w_positive)
    meter.load_w = args.meter_load
    return meter


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the simulator until SIGTERM / SIGINT; the process exit status.

    ``prog`` names the command in ``--help`` (``inverter-agent sim`` when the
    agent's command line delegates here). Must run in the main thread (signals).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not (args.tcp or args.pty_link or args.serial):
        parser.error("give at least one transport: --tcp, --pty-link or --serial")
    if args.pty_link and args.serial:
        parser.error("--pty-link and --serial are exclusive (one RTU port)")
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sim = build(args)
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))
    # Not a threading.Event set from a handler: that can deadlock (stopsignals.py).
    stop = StopSignals((signal.SIGTERM, signal.SIGINT))

    started: list[object] = []
    try:
        sim.start()
        started.append(sim)
        if args.tcp:
            tcp = ModbusTcpServer(*args.tcp, sim)
            tcp.start()
            started.append(tcp)
            announce("TCP {}:{}".format(*tcp.address))
        if getattr(args, "meter_tcp", None):
            from .meter import Meter, MeterOnly

            meter_unit = next(u for u, d in sim.units.items() if isinstance(d, Meter))
            mtcp = ModbusTcpServer(*args.meter_tcp, MeterOnly(sim, meter_unit))
            mtcp.start()
            started.append(mtcp)
            announce("METER-TCP {}:{}".format(*mtcp.address))
        if args.pty_link or args.serial:
            def on_port(device: str, link: str | None) -> None:
                announce(f"PTY {device} -> {link}" if link else f"SERIAL {device} {args.baud}")

            rtu = ModbusRtuServer(sim, baud=args.baud, pty_link=args.pty_link,
                                  device=args.serial, on_port=on_port,
                                  emulate_baud=args.emulate_baud)
            rtu.start()
            started.append(rtu)
            if args.pty_link:
                sim.pty_cycler = rtu.cycle
        if args.control.lower() not in ("off", "none", ""):
            from .control import ControlServer

            ctl = ControlServer(*host_port(args.control), sim)
            ctl.start()
            started.append(ctl)
            announce("CONTROL {}:{}".format(*ctl.address))
        announce("READY")
        log.info("simulating units %s, models %s at base %d", args.units,
                 sim.units[args.units[0]].image.model_ids(), args.base)
        parent = os.getppid()
        while not stop.wait(0.5):
            if args.watch_parent and os.getppid() != parent:
                log.warning("parent process %d is gone: stopping", parent)
                break
        if stop.got:
            log.info("signal %d: stopping", stop.got[0])
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    finally:
        _stop_all(started)
    log.info("stopped")
    return 0


def _stop_all(parts: Sequence[object], deadline_s: float = 3.0) -> None:
    """Stop every part at once, each on its own thread, and wait at most ``deadline_s``.

    Each part's own stop is bounded (its thread join has a timeout), but one after
    the other they add up; side by side the slowest one decides. A part still
    stopping at the deadline is named in the log and left to die with the process
    (its threads are daemons).
    """
    t0 = time.monotonic()
    took: dict[str, float] = {}

    def stop_one(part: object) -> None:
        name = type(part).__name__
        try:
            part.stop()  # type: ignore[attr-defined]
        except Exception:  # keep closing the rest
            log.exception("stopping %s", name)
        took[name] = time.monotonic() - t0

    threads = [threading.Thread(target=stop_one, args=(part,), daemon=True,
                                name=f"stop-{type(part).__name__}") for part in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline_s - (time.monotonic() - t0)))
    late = [t.name[5:] for t in threads if t.is_alive()]
    log.info("parts stopped in %s%s", ", ".join(f"{k} {v:.2f} s" for k, v in took.items()),
             f"; still stopping after {deadline_s:.0f} s: {', '.join(late)}" if late else "")


__all__ = ["main", "build_parser", "build"]
