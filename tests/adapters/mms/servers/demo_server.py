"""Serve the DER model on its own, for tests, benchmarks and trying a client.

``python -m tests.adapters.mms.servers.demo_server --port 10102`` serves
:func:`~inverter_agent.adapters.mms.der_model.der_model_spec` until SIGINT/SIGTERM and,
with ``--animate``, publishes a changing TotW (and the rest of a plausible
snapshot) at 10 Hz.

With ``--commands`` it reads JSON commands, one per line, on stdin and answers
one JSON line on stdout, so a test can drive it from another process (clients
must not share the server's process, see ``client``):

* ``{"cmd": "publish", "points": {"W": {"value": 1.5, "validity": 0, "detail": 0,
  "t": 1700000000.123}}}`` -> ``{"ok": true}``
* ``{"cmd": "clients"}`` -> ``{"clients": 1}``
* ``{"cmd": "stop"}`` -> ``{"ok": true}`` and exit.

The first line printed is ``{"ready": <port>}`` once the server listens.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hal.reading import Detail, Quality, Reading, Validity
from inverter_agent.adapters.mms.der_model import DEFAULT_IED_NAME, DEFAULT_LD_INST, der_model_spec
from inverter_agent.adapters.mms.server import MmsServer
from simulator.stopsignals import StopSignals

log = logging.getLogger(__name__)


def demo_snapshot(now: float) -> dict[str, Reading]:
    """A plausible inverter snapshot whose TotW changes with time."""
    w = 5000.0 + 1000.0 * math.sin(now)
    values: dict[str, Any] = {
        "W": w, "VAr": 100.0, "VA": math.hypot(w, 100.0), "PF": 0.99, "Hz": 60.0,
        "PhVphA": 240.0, "PhVphB": 240.5, "PhVphC": 239.5,
        "AphA": w / 720.0, "AphB": w / 720.0, "AphC": w / 720.0,
        "WRtg": 7600.0, "VARtg": 7600.0, "VArRtgQ1": 4000.0, "WMax": 7600.0,
        "St": 4, "link": True, "Mn": "Demo", "Md": "Sim-7600", "SN": "0001", "Vr": "1.0",
    }
    return {name: Reading.good(v, now) for name, v in values.items()}


def _reading(spec: dict[str, Any]) -> Reading:
    quality = Quality(Validity(spec.get("validity", 0)), Detail(spec.get("detail", 0)))
    return Reading(spec.get("value"), quality, float(spec.get("t", time.time())))


Command = Callable[[dict[str, Any]], dict[str, Any]]


def serve_commands(server: MmsServer, extra: Mapping[str, Command] | None = None) -> None:
    """Answer JSON commands from stdin, one reply line each, until "stop" or end of input.

    Built in: publish, clients, stop; ``extra`` adds more by name.
    """
    commands: dict[str, Command] = {
        "publish": lambda cmd: {"ok": server.publish(
            {k: _reading(v) for k, v in cmd["points"].items()})},
        "clients": lambda cmd: {"clients": server.connected_clients()},
        **(extra or {}),
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            name = cmd.get("cmd")
            if name == "stop":
                print(json.dumps({"ok": True}), flush=True)
                return
            handler = commands.get(name)
            reply = handler(cmd) if handler else {"error": f"unknown command {name!r}"}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": str(exc)}
        print(json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10102)
    parser.add_argument("--ied", default=DEFAULT_IED_NAME)
    parser.add_argument("--ld", default=DEFAULT_LD_INST)
    parser.add_argument("--animate", action="store_true", help="publish a changing TotW at 10 Hz")
    parser.add_argument("--max-connections", type=int, default=5)
    parser.add_argument("--commands", action="store_true",
                        help="read JSON commands on stdin (stop at end of input)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop after this long (0: until SIGINT/SIGTERM or 'stop')")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = MmsServer(der_model_spec(args.ld), host=args.host, port=args.port,
                       ied_name=args.ied, max_connections=args.max_connections)
    server.start()
    run_until_stopped(server, animate_hz=10.0 if args.animate else 0.0,
                      commands=(lambda: serve_commands(server)) if args.commands else None,
                      seconds=args.seconds)
    server.stop()
    return 0


def run_until_stopped(server: MmsServer, animate_hz: float,
                      commands: Callable[[], None] | None, seconds: float) -> None:
    """Announce readiness, optionally animate TotW and answer stdin commands, and
    return on SIGTERM / SIGINT, the "stop" command or ``seconds``."""
    # Not an Event set from a signal handler: that can deadlock the main thread
    # (simulator/stopsignals.py); the threads below ask through the same pipe.
    with StopSignals((signal.SIGTERM, signal.SIGINT)) as stop:
        done = threading.Event()  # set by this (main) thread only
        if animate_hz > 0:
            def animate() -> None:
                while not done.wait(1.0 / animate_hz):
                    server.publish(demo_snapshot(time.time()))
            threading.Thread(target=animate, name="demo-publisher", daemon=True).start()
        if commands is not None:
            def serve() -> None:
                commands()  # returns on "stop" or end of stdin
                stop.request()
            threading.Thread(target=serve, name="demo-commands", daemon=True).start()
        print(json.dumps({"ready": server.port}), flush=True)
        try:
            stop.wait(seconds or None)
        finally:
            done.set()


if __name__ == "__main__":
    sys.exit(main())
