"""``make bench`` section "native": Modbus writes per hour and bytes on the wire with
the device's own functions programmed (``[functions] steering = "auto"``) against
immediate steering (``"immediate"``), on the same 1547 profile (the simulator's
1547-native-protection: 701-712 with 705, 707-711) and the same grid: a voltage
script stepping every 10 s through 1.00, 1.05, 0.95, 1.07, 1.00, 0.93 pu.

Counted by a relay between the agent and the simulator that parses every Modbus
TCP frame (MBAP header): write transactions (function 6 and 16) and the bytes of
every frame both ways (TCP/IP headers not counted). The agent polls at 0.25 s;
counting starts once the first program is in (steady state), so the figures are
per hour of running, not of starting.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from typing import Any

from simulator import SimProcess
from simulator.profile import PROFILE_DIR

SCRIPT = [[0, 1.0, 60.0], [10, 1.05, 60.0], [20, 0.95, 60.0], [30, 1.07, 60.0],
          [40, 1.0, 60.0], [50, 0.93, 60.0], [60, 1.0, 60.0]]


class Relay:
    """A counting Modbus TCP relay: one upstream connection per client."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.lock = threading.Lock()
        self.counts = {"frames": 0, "writes": 0, "bytes": 0, "write_bytes": 0}
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def close(self) -> None:
        self._stop.set()
        self.srv.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            last_fc: list[int] = [0]
            for a, b, req in ((client, up, True), (up, client, False)):
                threading.Thread(target=self._pump, args=(a, b, req, last_fc),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool,
              last_fc: list[int]) -> None:
        buf = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                buf += data
                while len(buf) >= 8:
                    n = 6 + int.from_bytes(buf[4:6], "big")
                    if len(buf) < n:
                        break
                    frame, buf = buf[:n], buf[n:]
                    fc = frame[7] & 0x7F
                    with self.lock:
                        self.counts["frames"] += 1
                        self.counts["bytes"] += n
                        if fc in (6, 16):
                            self.counts["write_bytes"] += n
                            if request:
                                self.counts["writes"] += 1
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def _one(mode: str, seconds: float, tmp: str, proc: Any, wait_port: Any,
         free_port: Any) -> dict[str, float]:
    profile = str(PROFILE_DIR / "1547-native-protection.json")
    with SimProcess("--profile", profile, "--tau", "0.2", "--seed", "1") as sim:
        relay = Relay(("127.0.0.1", sim.tcp_port))
        cfg = os.path.join(tmp, f"native-{mode}.toml")
        with open(cfg, "w") as fh:
            fh.write(f'[functions]\nsteering = "{mode}"\n')
        port = free_port()
        agent = proc([sys.executable, "-m", "inverter_agent.cli", "run", "--modbus-tcp",
                      f"127.0.0.1:{relay.port}", "--mms-port", str(port), "--state-dir",
                      os.path.join(tmp, f"state-native-{mode}"), "--poll-period", "0.25",
                      "--config", cfg, "--log-level", "warning"],
                     os.path.join(tmp, f"agent-native-{mode}.log"))
        try:
            wait_port(port)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the first program (or the first writes)
                if sum(sim.control.unit_state(1)["writes"].values()) > 0:
                    break
                time.sleep(0.2)
            time.sleep(3.0)
            sim.control.script(SCRIPT, loop=True)
            a, t0 = relay.snapshot(), time.monotonic()
            time.sleep(seconds)
            b, span = relay.snapshot(), time.monotonic() - t0
        finally:
            agent.stop()
            relay.close()
    per_h = 3600.0 / span
    return {k: (b[k] - a[k]) * per_h for k in a} | {"span": span}


def run(seconds: float, report: Any, proc: Any, wait_port: Any, free_port: Any) -> None:
    print(f"Native against immediate steering, same 1547 profile and voltage script "
          f"({seconds:g} s each, poll 0.25 s; counted by a Modbus TCP relay)")
    with tempfile.TemporaryDirectory(prefix="bench-native-") as tmp:
        res = {m: _one(m, seconds, tmp, proc, wait_port, free_port)
               for m in ("auto", "immediate")}
    for m, r in res.items():
        name = "native (auto)" if m == "auto" else "immediate"
        report(f"{name}: Modbus write transactions per hour", f"{r['writes']:,.0f}",
               f"{r['write_bytes'] / 1e3:,.1f} kB/h of write frames")
        report(f"{name}: Modbus bytes per hour on the wire (frames)",
               f"{r['bytes'] / 1e6:,.2f} MB", f"{r['frames']:,.0f} frames/h (reads and "
               "writes, both ways)")
