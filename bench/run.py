"""``make bench``: the gateway's performance figures, printed.

Every figure is measured here, on this machine, over loopback and
pseudo-terminals; loops are bounded in count and time. Targets (issue #2):
HAL software overhead per Modbus transaction < 2 ms; MMS throughput with the
agent polling at 10 Hz >= 90 % of the bare server's; agent memory < 60 MB.

    python bench/run.py [--quick] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hal.inverter import Inverter  # noqa: E402
from hal.transport import RetryPolicy, RtuTransport, SerialSettings  # noqa: E402
from inverter_agent.mms import client as mms  # noqa: E402
from simulator import SimProcess  # noqa: E402

RESULTS: list[tuple[str, str, str]] = []


def report(name: str, value: str, note: str = "") -> None:
    RESULTS.append((name, value, note))
    print(f"  {name:<58} {value:>16}  {note}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# --------------------------------------------------------------------------- HAL
def bench_hal(n: int) -> None:
    print("HAL over a pty (RTU framing; a pty has no baud delay, so the wire costs ~0)")
    with SimProcess(pty=True) as sim:
        t = RtuTransport(SerialSettings(sim.pty_path, baud=115200),
                         RetryPolicy(timeout=1.0, retries=0))
        inv = Inverter(t, nameplate_every=10**9)
        inv.connect()
        inv.poll()
        # 1. a small read: per-transaction cost
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            t.read_holding(40000, 2, 1)
        wall = (time.perf_counter() - wall0) / n
        cpu = (time.process_time() - cpu0) / n
        report("transaction round trip, 2 registers (wall)", f"{wall * 1e3:.3f} ms",
               "includes the simulator's own time")
        report("HAL software overhead per transaction (client CPU)", f"{cpu * 1e3:.3f} ms",
               "target < 2 ms")
        # 2. a full poll cycle
        tx0, out0, in0 = t.stats.transactions, t.stats.bytes_out, t.stats.bytes_in
        cycles = max(10, n // 10)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(cycles):
            inv.poll()
        wall = (time.perf_counter() - wall0) / cycles
        cpu = (time.process_time() - cpu0) / cycles
        tx = (t.stats.transactions - tx0) / cycles
        b_out = (t.stats.bytes_out - out0) / cycles
        b_in = (t.stats.bytes_in - in0) / cycles
        report("full poll cycle (models 103+122+123), wall", f"{wall * 1e3:.2f} ms",
               f"{tx:.0f} transactions")
        report("full poll cycle, client CPU", f"{cpu * 1e3:.2f} ms")
        report("bytes on the wire per poll cycle", f"{b_out + b_in:.0f} B",
               f"{b_out:.0f} out / {b_in:.0f} in")
        # Line time: 10 bits a character (8N1), plus the 3.5-character silent
        # interval that ends each frame, for the request and the response.
        for baud in (9600, 115200):
            char = 10 / baud
            line_s = (b_out + b_in) * char + tx * 2 * 3.5 * char
            report(f"poll cycle on the line at {baud} baud", f"{line_s * 1e3:.1f} ms",
                   f"{line_s / 1.0 * 100:.1f} % of a 1 s poll period; "
                   f"{line_s / 0.1 * 100:.0f} % of 100 ms")
        t.close()


# --------------------------------------------------------------------------- processes
class Proc:
    def __init__(self, args: list[str], log: str) -> None:
        self.log = open(log, "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=ROOT)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(8)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def start_agent(sim: SimProcess, tmp: str, period: float, functions: bool = False) -> tuple:
    port = free_port()
    args = [sys.executable, "-m", "inverter_agent.cli", "run", "--modbus-tcp",
            f"127.0.0.1:{sim.tcp_port}", "--mms-port", str(port), "--state-dir",
            os.path.join(tmp, f"state-{port}"), "--poll-period", str(period),
            "--log-level", "warning"]
    if not functions:
        args.append("--no-functions")
    agent = Proc(args, os.path.join(tmp, f"agent-{port}.log"))
    wait_port(port)
    return agent, port


def mms_load(port: int, seconds: float, procs: int = 2) -> float:
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "mms_load.py"), "--port", str(port),
         "--procs", str(procs), "--seconds", str(seconds), "--json"],
        capture_output=True, text=True, timeout=seconds + 60, cwd=ROOT)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not line:
        raise RuntimeError(f"mms_load failed: {out.stdout} {out.stderr}")
    return float(json.loads(line[-1])["reads_per_s"])


def bench_mms(tmp: str, seconds: float) -> None:
    print("MMS throughput (2 reader processes, loopback; the simulator runs in both cases)")
    with SimProcess() as sim:
        port = free_port()
        # The same server as the agent's (function model, settings binding and
        # its handlers), with no agent loop: what the loop costs the readers.
        bare = Proc([sys.executable, "-m", "inverter_agent.mms.functions_server", "--port",
                     str(port), "--state-dir", os.path.join(tmp, "bare-state")],
                    os.path.join(tmp, "bare.log"))
        wait_port(port)
        mms_load(port, 1.0)  # warm-up
        bare_rate = statistics.median(mms_load(port, seconds) for _ in range(3))
        bare.stop()
        report("same server, no agent loop", f"{bare_rate:,.0f} reads/s")
        # For reference: measurements only, no settings handlers (no Python
        # callback per read: the communication-loss heartbeat costs this much).
        port = free_port()
        plain = Proc([sys.executable, "-m", "inverter_agent.mms.demo_server", "--port",
                      str(port)], os.path.join(tmp, "plain.log"))
        wait_port(port)
        mms_load(port, 1.0)
        plain_rate = statistics.median(mms_load(port, seconds) for _ in range(3))
        plain.stop()
        report("measurement-only server, no handlers (reference)", f"{plain_rate:,.0f} reads/s")
        agent, port = start_agent(sim, tmp, 0.1, functions=True)
        time.sleep(1.0)
        mms_load(port, 1.0)
        agent_rate = statistics.median(mms_load(port, seconds) for _ in range(3))
        agent.stop()
        report("agent polling + grid functions at 10 Hz", f"{agent_rate:,.0f} reads/s",
               f"{agent_rate / bare_rate * 100:.0f} % of bare (target >= 90 %)")


def bench_latency(tmp: str, samples: int) -> None:
    print("Change at the simulator -> visible over MMS (agent polling at 10 Hz)")
    with SimProcess("--tau", "0.05") as sim:
        agent, port = start_agent(sim, tmp, 0.1)
        con = mms.connect("127.0.0.1", port)
        ref = "GWINV1/MMXU1.PhV.phsA.cVal.mag.f"
        lat = []
        try:
            for i in range(samples):
                v_pu = 1.0 + 0.01 * ((i % 5) + 1) * (1 if i % 2 else -1)
                want = 240.0 * v_pu
                t0 = time.perf_counter()
                sim.control.set_grid(v_pu=v_pu)
                deadline = t0 + 5
                while time.perf_counter() < deadline:
                    if abs(con.read_value(ref, "MX") - want) < 0.15:
                        lat.append(time.perf_counter() - t0)
                        break
                    time.sleep(0.002)
                time.sleep(0.05)
        finally:
            con.close()
            agent.stop()
        report("median", f"{statistics.median(lat) * 1e3:.0f} ms",
               f"{len(lat)}/{samples} samples; poll period 100 ms")
        report("p95", f"{pct(lat, 0.95) * 1e3:.0f} ms")


def bench_resources(tmp: str, seconds: float) -> None:
    print(f"Agent at 1 Hz polling, grid functions on ({seconds:.0f} s)")
    with SimProcess() as sim:
        agent, _ = start_agent(sim, tmp, 1.0, functions=True)
        time.sleep(3)
        pid = agent.p.pid
        hz = os.sysconf("SC_CLK_TCK")

        def cpu_s() -> float:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / hz

        c0, t0 = cpu_s(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_s(), time.monotonic()
        with open(f"/proc/{pid}/status") as fh:
            status = dict(ln.split(":", 1) for ln in fh if ":" in ln)
        agent.stop()
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        hwm_mb = int(status["VmHWM"].split()[0]) / 1024
        report("resident memory", f"{rss_mb:.1f} MB", f"peak {hwm_mb:.1f} MB (target < 60 MB)")
        report("CPU", f"{(c1 - c0) / (t1 - t0) * 100:.2f} %", "of one core")


# --------------------------------------------------------------------------- functions
def bench_control_cycle(n: int) -> None:
    from inverter_agent.functions import EngineState, Measurements, get_profile, step

    print("Grid functions (pure engine.step, all rule21 functions enabled)")
    s = get_profile("rule21")
    state = EngineState.initial(0.0, in_service=True)
    t, dt = 0.0, 0.1
    t0 = time.perf_counter()
    for i in range(n):
        v = 1.0 + 0.05 * ((i % 40) - 20) / 20
        m = Measurements(valid=True, v_pu=(v, v, v), f_hz=60.0, p_pu=0.8, q_pu=0.0,
                         connected=True)
        _, state, _ = step(s, m, state, t)
        t += dt
    per = (time.perf_counter() - t0) / n
    report("time per control cycle", f"{per * 1e6:.1f} us", f"{n} cycles")


def bench_trip_delay(tmp: str, samples: int) -> None:
    print("Grid step at the simulator -> cease-to-energize command at the inverter")
    for period in (0.1, 0.5):
        delays = []
        with SimProcess("--tau", "0.05") as sim:
            for _ in range(samples):
                # A fresh agent each time: after a trip the controller stays out of
                # service for the enter-service delay (300 s), by design.
                sim.control.reset()
                agent, _ = start_agent(sim, tmp, period, functions=True)
                try:
                    deadline = time.monotonic() + 10
                    while sim.control.get_point(123, "WMaxLim_Ena") != 1:
                        if time.monotonic() > deadline:
                            raise RuntimeError("controller never started")
                        time.sleep(0.05)
                    time.sleep(2 * period)
                    if sim.control.get_point(123, "Conn") != 1:
                        raise RuntimeError("inverter not connected before the step")
                    t0 = time.perf_counter()
                    sim.control.set_grid(v_pu=1.25)  # HV2 / OV2: clearing time 0.16 s
                    deadline = t0 + 5
                    while time.perf_counter() < deadline:
                        if sim.control.get_point(123, "Conn") == 0:
                            delays.append(time.perf_counter() - t0)
                            break
                        time.sleep(0.005)
                finally:
                    agent.stop()
        if delays:
            report(f"must-trip at 1.25 pu, poll period {period * 1e3:.0f} ms (median)",
                   f"{statistics.median(delays) * 1e3:.0f} ms",
                   f"max {max(delays) * 1e3:.0f} ms of {len(delays)}; clearing time 160 ms")
        else:
            report(f"must-trip at 1.25 pu, poll period {period * 1e3:.0f} ms",
                   "not seen", "the agent never commanded Conn=0 within 5 s")


def bench_settings(tmp: str, seconds: float) -> None:
    print("Settings and controls over MMS, agent running its control loop at 10 Hz")
    with SimProcess() as sim:
        agent, port = start_agent(sim, tmp, 0.1, functions=True)
        time.sleep(1.0)
        # Keep TotW moving (the DC input wanders) so the measurement reports fire.
        import threading
        stop = threading.Event()

        def wander() -> None:
            i = 0
            while not stop.wait(0.1):
                i += 1
                sim.control.set_dc(3000.0 + 50.0 * (i % 20))

        mover = threading.Thread(target=wander, daemon=True)
        mover.start()
        try:
            out = subprocess.run(
                [sys.executable, os.path.join(ROOT, "bench", "mms_settings.py"), "--port",
                 str(port), "--seconds", str(seconds), "--json"],
                capture_output=True, text=True, timeout=8 * seconds + 60, cwd=ROOT)
        finally:
            stop.set()
            mover.join(2)
            agent.stop()
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        report("settings bench", "failed", (out.stdout + out.stderr)[-300:])
        return
    r = json.loads(lines[-1])
    for key, value in r.items():
        if isinstance(value, float):
            unit = "ms" if key.endswith("_ms") else "/s" if key.endswith("_per_s") else ""
            report(key, f"{value:,.1f} {unit}".strip())


BENCHES = ("hal", "mms", "latency", "resources", "cycle", "trip", "settings")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES))
    args = ap.parse_args()
    only = set(args.only.split(","))
    q = args.quick
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if "hal" in only:
            bench_hal(100 if q else 1000)
        if "mms" in only:
            bench_mms(tmp, 1.0 if q else 4.0)
        if "latency" in only:
            bench_latency(tmp, 5 if q else 30)
        if "resources" in only:
            bench_resources(tmp, 5.0 if q else 20.0)
        if "cycle" in only:
            bench_control_cycle(2000 if q else 20000)
        if "trip" in only:
            bench_trip_delay(tmp, 2 if q else 5)
        if "settings" in only:
            bench_settings(tmp, 1.0 if q else 3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
