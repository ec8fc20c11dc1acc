"""Control channel: newline-delimited JSON over loopback TCP.

One JSON object a line in, one JSON object a line out. Every answer has
``"ok"``; failures carry ``"error"``. Commands (optional keys in brackets):

* ``{"cmd": "ping"}``
* ``{"cmd": "reset"}``: as started (default controls and scale factors, nominal
  grid, no script, no fault, steady output; native_trip and ratings stay).
* ``{"cmd": "state" [, "unit": 1]}``: grid, faults and per unit the plant
  (W, var, PF, St...), the effective commands and the control registers.
* ``{"cmd": "set_grid", "v_pu": 1.05, "f_hz": 60.0}``; also ``"v"`` (volts,
  every phase), ``"phases_v"`` / ``"phases_pu"`` (one value a phase). Stops a script.
* ``{"cmd": "script", "rows": [[t, v_pu, f_hz], ...] [, "loop": true]}`` or
  ``{"cmd": "script", "file": "grid.csv"}``: stepwise grid time series from now.
* ``{"cmd": "set_dc", "w": 3000 [, "unit": 1]}``: available DC power.
* ``{"cmd": "fault", "mode": "silent" [, "unit": 1]}``: ``none``, ``silent``,
  ``exception:N``, ``garbage``, ``truncated``, ``bad_crc``, ``delay:SECONDS``,
  ``pty_cycle`` (a one-off, same as the command below). Without ``unit`` the
  mode applies to every unit and clears per-unit modes.
* ``{"cmd": "pty_cycle" [, "down_s": 1.0]}``: the pty goes away and comes back.
* ``{"cmd": "set_sf", "point": "W_SF", "value": -1 [, "unit": 1, "model": 103]}``
* ``{"cmd": "set_point", "model": 123, "point": "Conn", "value": 0 [, "unit": 1]}``
  and ``{"cmd": "get_point", "model": 103, "point": "W" [, "unit": 1]}``:
  engineering values, bypassing Modbus checks (bench shortcuts).
* ``{"cmd": "inverter_fault", "on": true [, "unit": 1]}``: St FAULT, output 0.
* ``{"cmd": "native_trip", "on": true}``: the inverter's own protection window.
* ``{"cmd": "local_mode", "on": true [, "unit": 1]}``: the inverter ignores remote
  setpoints (they still land in its registers) and keeps its present output.
* ``{"cmd": "set_load", "w": 2500 [, "var": 300]}``: the site load behind the
  simulated meter (``--meter``; simulator/meter.py).
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any

from .modbus import Fault
from .plant import GridScript, load_grid_script
from .server import TrackingServer
from .simulation import Simulation

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20


def _unit(req: dict[str, Any]) -> int | None:
    u = req.get("unit")
    return None if u is None else int(u)


def _cmd_fault(sim: Simulation, req: dict[str, Any]) -> dict[str, Any]:
    mode = str(req.get("mode", ""))
    if mode.split(":")[0] == "pty_cycle":
        return _cmd_pty_cycle(sim, req)
    sim.set_fault(Fault.parse(mode), _unit(req))
    return {"faults": sim.faults()}


def _cmd_pty_cycle(sim: Simulation, req: dict[str, Any]) -> dict[str, Any]:
    down = float(req.get("down_s", 1.0))
    if not 0.0 <= down <= 60.0:
        raise ValueError("down_s outside 0..60")
    return {"pty": sim.pty_cycle(down)}


def _cmd_script(sim: Simulation, req: dict[str, Any]) -> dict[str, Any]:
    if "file" in req:
        script = load_grid_script(str(req["file"]))
    else:
        script = GridScript.from_rows(req["rows"], bool(req.get("loop", False)))
    sim.run_script(script)
    return {"rows": len(script.rows), "duration": script.duration}


def _cmd_set_grid(sim: Simulation, req: dict[str, Any]) -> dict[str, Any]:
    g = sim.set_grid(v_pu=req.get("v_pu"), f_hz=req.get("f_hz"), v=req.get("v"),
                     phases_v=req.get("phases_v"), phases_pu=req.get("phases_pu"))
    return {"v": list(g.v), "f_hz": g.f_hz}


def _keys(d: dict[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in d.items()}


COMMANDS: dict[str, Callable[[Simulation, dict[str, Any]], dict[str, Any]]] = {
    "ping": lambda sim, req: {},
    "state": lambda sim, req: sim.state(_unit(req)),
    "reset": lambda sim, req: sim.reset() or {},
    "set_grid": _cmd_set_grid,
    "script": _cmd_script,
    "set_dc": lambda sim, req: sim.set_dc(float(req["w"]), _unit(req)) or {},
    "fault": _cmd_fault,
    "pty_cycle": _cmd_pty_cycle,
    "set_sf": lambda sim, req: {"models": _keys(sim.set_sf(
        str(req["point"]), int(req["value"]), _unit(req),
        None if req.get("model") is None else int(req["model"])))},
    "set_point": lambda sim, req: sim.set_point(
        int(req["model"]), str(req["point"]), req["value"], _unit(req)) or {},
    "get_point": lambda sim, req: {"values": _keys(sim.get_point(
        int(req["model"]), str(req["point"]), _unit(req)))},
    "inverter_fault": lambda sim, req: sim.set_inverter_fault(
        bool(req.get("on", True)), _unit(req)) or {},
    "native_trip": lambda sim, req: sim.set_native_trip(bool(req.get("on", True))) or {},
    "local_mode": lambda sim, req: sim.set_local_mode(
        bool(req.get("on", True)), _unit(req)) or {},
}


def _cmd_set_load(sim: Simulation, req: dict[str, Any]) -> dict[str, Any]:
    from .meter import Meter

    meters = [u for u in sim.units.values() if isinstance(u, Meter)]
    if not meters:
        raise ValueError("no meter (start with --meter UNIT:MODEL)")
    with sim.lock:
        for m in meters:
            m.set_load(float(req["w"]), None if req.get("var") is None else float(req["var"]))
    return {"load_w": meters[0].load_w, "load_var": meters[0].load_var}


COMMANDS["set_load"] = _cmd_set_load


def execute(sim: Simulation, line: str) -> dict[str, Any]:
    """Run one command line; always returns an answer object."""
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise ValueError("a command is a JSON object")
        cmd = req.get("cmd")
        handler = COMMANDS.get(str(cmd))
        if handler is None:
            raise ValueError(f"unknown cmd {cmd!r}; one of {', '.join(sorted(COMMANDS))}")
        log.info("control: %s", line.strip()[:200])
        return {"ok": True, **handler(sim, req)}
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, TimeoutError) as exc:
        log.info("control: %s refused: %s", line.strip()[:200], exc)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        with self.server.clients_lock:
            self.server.clients.add(self.request)
        try:
            while True:
                line = self.rfile.readline(MAX_LINE)
                if not line:
                    return
                if not line.strip():
                    continue
                answer = execute(self.server.sim, line.decode("utf-8", errors="replace"))
                self.wfile.write(json.dumps(answer).encode() + b"\n")
                self.wfile.flush()
        except OSError:
            return
        finally:
            with self.server.clients_lock:
                self.server.clients.discard(self.request)


class _Server(TrackingServer):
    def __init__(self, address: tuple[str, int], sim: Simulation) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class ControlServer:
    """The JSON control channel on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str, port: int, sim: Simulation) -> None:
        self._srv = _Server((host, port), sim)
        self._thread = threading.Thread(target=self._srv.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name="control",
                                        daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._srv.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        with self._srv.clients_lock:
            for sock in list(self._srv.clients):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=2)
