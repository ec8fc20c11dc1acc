"""``make bench``: the gateway's performance figures, printed.

Every figure is measured here, on this machine, over loopback and
pseudo-terminals; loops are bounded in count and time. Targets (issues #2,
#13): HAL software overhead per Modbus transaction < 2 ms; at the default
settings, the backup cease-to-energize command within 0.2 s of a step to
1.25 pu on Modbus TCP and RTU at 115200 baud; MMS reads per second of the
agent >= 0.95 of a bare libiec61850 server serving the same model; agent
memory < 35 MB RSS at the default poll with the functions on and MMS served.

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
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from procstat import (  # noqa: E402  (bench/ is sys.path[0])
    AGENT_IMPORT_PROBE,
    mb,
    proc_cpu_s,
    proc_status,
)

from hal.inverter import Inverter  # noqa: E402
from hal.transport import RetryPolicy, RtuTransport, SerialSettings  # noqa: E402
from inverter_agent.adapters.mms import client as mms  # noqa: E402
from inverter_agent.adapters.mms.server import LIBRARY_MAX_CONNECTIONS  # noqa: E402
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
        report("poll cycle (fast set; a slow model now and then), wall",
               f"{wall * 1e3:.2f} ms", f"{tx:.1f} transactions")
        report("poll cycle, client CPU", f"{cpu * 1e3:.2f} ms")
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
    def __init__(self, args: list[str], log: str, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=ROOT,
                                  env={**os.environ, **(env or {})})

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


def start_agent(sim: SimProcess, tmp: str, period: float | None, functions: bool = False,
                link: list[str] | None = None, env: dict[str, str] | None = None,
                wait: bool = True) -> tuple:
    """``inverter-agent run`` against ``sim`` (TCP unless ``link`` says otherwise);
    ``period`` None: the default (auto)."""
    port = free_port()
    args = [sys.executable, "-m", "inverter_agent.cli", "run",
            *(link or ["--modbus-tcp", f"127.0.0.1:{sim.tcp_port}"]),
            "--mms-port", str(port), "--state-dir", os.path.join(tmp, f"state-{port}"),
            "--log-level", "warning"]
    if period is not None:
        args += ["--poll-period", str(period)]
    if not functions:
        args.append("--no-functions")
    agent = Proc(args, os.path.join(tmp, f"agent-{port}.log"), env=env)
    if wait:
        wait_port(port)
    return agent, port


def mms_load(port: int, seconds: float, procs: int = 2, tries: int = 3) -> float:
    """Reads per second of ``procs`` reader processes (bench/mms_load.py). A run whose
    readers could not associate (the libiec61850 client's "lost right after connect"
    under load, see inverter_agent.adapters.mms.client.connect) is run again, at most ``tries``."""
    for attempt in range(1, tries + 1):
        out = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "mms_load.py"), "--port", str(port),
             "--procs", str(procs), "--seconds", str(seconds), "--json"],
            capture_output=True, text=True, timeout=seconds + 60, cwd=ROOT)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if line:
            break
        if attempt == tries:
            raise RuntimeError(f"mms_load failed: {out.stdout} {out.stderr}")
        print(f"     (port {port}: readers could not associate, run again)", flush=True)
    return float(json.loads(line[-1])["reads_per_s"])


def bench_mms(tmp: str, seconds: float, rounds: int = 4) -> None:
    print("MMS reads/s: the agent (default settings, grid functions on, polling a simulated "
          "inverter) against a bare libiec61850 server serving the same model, one reader "
          "process, alternated in the same run")
    with SimProcess() as sim:
        port_bare = free_port()
        bare = Proc([sys.executable, os.path.join(ROOT, "bench", "bare_server.py"), "--port",
                     str(port_bare)], os.path.join(tmp, "bare.log"))
        agent, port_agent = start_agent(sim, tmp, None, functions=True)
        try:
            wait_port(port_bare)
            time.sleep(3.0)  # the agent has chosen its period and runs its functions
            mms_load(port_bare, 1.0, procs=1)  # warm-up
            mms_load(port_agent, 1.0, procs=1)
            bare_rates, agent_rates = [], []
            for i in range(rounds):  # alternated, the order swapped each round
                pair = [(bare_rates, port_bare), (agent_rates, port_agent)]
                for rates, port in pair if i % 2 == 0 else pair[::-1]:
                    rates.append(mms_load(port, seconds, procs=1))
        finally:
            agent.stop()
            bare.stop()
    bare_rate, agent_rate = statistics.median(bare_rates), statistics.median(agent_rates)
    report("bare libiec61850, same model, no handlers", f"{bare_rate:,.0f} reads/s",
           f"median of {rounds} x {seconds:g} s")
    report("agent at the default poll, functions on", f"{agent_rate:,.0f} reads/s",
           f"median of {rounds} x {seconds:g} s")
    report("agent / bare", f"{agent_rate / bare_rate:.3f}", "target >= 0.95")


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


def chosen_period(state: str, timeout: float = 60.0) -> dict:
    """The status file's automatic poll period once chosen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_status(state) or {}
        auto = st.get("poll_period_auto") or {}
        if auto.get("chosen_s"):
            return auto
        time.sleep(0.1)
    raise RuntimeError(f"no poll period chosen in {state}")


def bench_resources(tmp: str, seconds: float) -> None:
    print(f"Agent at the default poll (auto), grid functions on, MMS served, no client "
          f"({seconds:.0f} s)")
    with SimProcess() as sim:
        agent, port = start_agent(sim, tmp, None, functions=True)
        try:
            auto = chosen_period(os.path.join(tmp, f"state-{port}"))
            time.sleep(2)
            pid = agent.p.pid
            c0, t0 = proc_cpu_s(pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = proc_cpu_s(pid), time.monotonic()
            status = proc_status(pid)
            threads = len(os.listdir(f"/proc/{pid}/task"))
        finally:
            agent.stop()
    rss_mb, hwm_mb = mb(status, "VmRSS"), mb(status, "VmHWM")
    report("poll period chosen (TCP loopback)", f"{auto['chosen_s'] * 1e3:.0f} ms")
    report("resident memory", f"{rss_mb:.1f} MB",
           f"peak {hwm_mb:.1f} MB, {threads} threads (target < 35 MB)")
    report("CPU", f"{(c1 - c0) / (t1 - t0) * 100:.2f} %", "of one core")
    # The IEEE 2030.5 client is imported only with [ieee2030_5] server set: its cost is
    # what importing it adds to a process that already holds the agent's modules (a
    # live server connection adds its own state on top).
    probe = (AGENT_IMPORT_PROBE
             + "a = rss()\n"
             "import inverter_agent.adapters.ieee2030_5.client\n"
             "import inverter_agent.adapters.ieee2030_5.site_view\n"
             "print(round(rss() - a, 1))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    if out.returncode == 0 and out.stdout.strip():
        report("IEEE 2030.5 client on: memory its modules add", f"{out.stdout.strip()} MB",
               "not imported unless [ieee2030_5] server is set")
    else:
        report("IEEE 2030.5 client on: memory its modules add", "not measured",
               (out.stderr.strip().splitlines() or ["?"])[-1][:80])


def bench_alloc(tmp: str, seconds: float, top: int = 8) -> None:
    print("Largest Python allocation sites of the running agent (tracemalloc, default poll, "
          "functions on; tracing adds memory of its own)")
    trace = os.path.join(tmp, "tracemalloc.txt")
    with SimProcess() as sim:
        agent, port = start_agent(sim, tmp, None, functions=True,
                                  env={"INVERTER_AGENT_TRACEMALLOC": trace})
        try:
            chosen_period(os.path.join(tmp, f"state-{port}"))
            time.sleep(seconds)
        finally:
            agent.stop()
    try:
        with open(trace) as fh:
            lines = fh.read().splitlines()
    except OSError:
        report("allocation sites", "not written", "see the agent log")
        return
    report("traced Python memory", lines[0].removeprefix("traced "))
    section = ""
    shown = 0
    for line in lines[1:]:
        if line.startswith("--"):
            section, shown = line.removeprefix("-- by "), 0
            continue
        if section == "filename" and shown < top:
            size, _, rest = line.strip().partition(" KiB")
            where = rest.split("blocks", 1)[-1].strip().replace(ROOT + "/", "")
            report(f"  {where[-56:]}", f"{float(size):,.0f} KiB")
            shown += 1


def bench_startup(tmp: str, trials: int) -> None:
    print("Startup: process start to MMS listening, and to the first good measurement "
          "served (default settings, functions on, simulated inverter over TCP)")
    from inverter_agent.adapters.mms.client import MmsClientError, quality_from_bits

    listen, good = [], []
    with SimProcess() as sim:
        for _ in range(trials):
            t0 = time.perf_counter()
            agent, port = start_agent(sim, tmp, None, functions=True, wait=False)
            try:
                wait_port(port)
                listen.append(time.perf_counter() - t0)
                con = mms.connect("127.0.0.1", port, timeout=5)
                try:
                    deadline = time.perf_counter() + 20
                    while time.perf_counter() < deadline:
                        try:
                            leaves = con.read("GWINV1/MMXU1.TotW", "MX")
                        except MmsClientError:
                            leaves = {}
                        if leaves and quality_from_bits(leaves["q"]).good:
                            good.append(time.perf_counter() - t0)
                            break
                        time.sleep(0.005)
                finally:
                    con.close()
            finally:
                agent.stop()
    report("process start -> MMS listening (median)", f"{statistics.median(listen) * 1e3:.0f} ms",
           f"max {max(listen) * 1e3:.0f} ms of {len(listen)}")
    if good:
        report("process start -> first good poll served (median)",
               f"{statistics.median(good) * 1e3:.0f} ms",
               f"max {max(good) * 1e3:.0f} ms of {len(good)}")


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


def bench_view(tmp: str, n: int) -> None:
    """What the adapter interface costs the control loop: building the cycle's view and
    handing it to every enabled adapter (MMS here), per cycle, on the simulated inverter."""
    from inverter_agent import config
    from inverter_agent.app import App

    print("The cycle view: built and published to the adapters, per cycle (MMS on)")
    with SimProcess() as sim:
        cfg = config.load(None, {"inverter.modbus_tcp": f"127.0.0.1:{sim.tcp_port}",
                                 "agent.poll_period": 0.05, "mms.port": free_port(),
                                 "agent.state_dir": os.path.join(tmp, "view")})
        app = App(cfg)
        app.start()
        try:
            cycle, publish = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                app.runner.cycle()
                t1 = time.perf_counter()
                app.publish()
                t2 = time.perf_counter()
                cycle.append(t1 - t0)
                publish.append(t2 - t1)
        finally:
            app.stop()
    report("view + publish per cycle", f"{pct(publish, 0.5) * 1e6:.0f} us p50",
           f"p95 {pct(publish, 0.95) * 1e6:.0f} us; the poll and functions take "
           f"{pct(cycle, 0.5) * 1e3:.2f} ms p50; {n} cycles")


#: Links of the backup-trip bench: name, simulator arguments, pty or not, baud.
TRIP_LINKS = (("Modbus TCP", (), False, None),
              ("RTU 115200 baud", ("--baud", "115200", "--emulate-baud"), True, 115200),
              ("RTU 9600 baud", ("--baud", "9600", "--emulate-baud"), True, 9600))


def bench_trip_delay(tmp: str, trials: int) -> None:
    print("Grid step to 1.25 pu at the simulator -> cease-to-energize (Conn = 0) at the "
          f"inverter, default settings (poll period auto), {trials} trials per link; RTU on a "
          "pty with the simulator holding each answer for its time on the line")
    for name, sim_args, pty, baud in TRIP_LINKS:
        delays, periods = [], []
        with SimProcess("--tau", "0.05", *sim_args, pty=pty) as sim:
            link = (["--modbus-rtu", sim.pty_path, "--baud", str(baud)] if pty else None)
            for _ in range(trials):
                # A fresh agent each time: after a trip the controller stays out of
                # service for the enter-service delay (300 s), by design.
                sim.control.reset()
                agent, port = start_agent(sim, tmp, None, functions=True, link=link)
                try:
                    auto = chosen_period(os.path.join(tmp, f"state-{port}"))
                    periods.append(auto["chosen_s"])
                    deadline = time.monotonic() + 20
                    while sim.control.get_point(123, "WMaxLim_Ena") != 1:
                        if time.monotonic() > deadline:
                            raise RuntimeError("controller never started")
                        time.sleep(0.05)
                    time.sleep(max(0.5, 3 * auto["chosen_s"]))
                    if sim.control.get_point(123, "Conn") != 1:
                        raise RuntimeError("inverter not connected before the step")
                    t0 = time.perf_counter()
                    sim.control.set_grid(v_pu=1.25)  # HV2 / OV2: clearing time 0.16 s
                    deadline = t0 + 5
                    while time.perf_counter() < deadline:
                        if sim.control.get_point(123, "Conn") == 0:
                            delays.append(time.perf_counter() - t0)
                            break
                        time.sleep(0.002)
                finally:
                    agent.stop()
        period = statistics.median(periods) if periods else float("nan")
        report(f"{name}: poll period chosen", f"{period * 1e3:.0f} ms",
               (auto.get("reason", "")[:90] if periods else ""))
        if delays:
            target = "target <= 200 ms" if baud != 9600 else "what the wire allows"
            report(f"{name}: step -> Conn=0, median / max",
                   f"{statistics.median(delays) * 1e3:.0f} / {max(delays) * 1e3:.0f} ms",
                   f"{len(delays)}/{trials} trials; {target}; worst case stated by the "
                   f"agent {auto['worst_trip_latency_s'] * 1e3:.0f} ms")
        else:
            report(f"{name}: step -> Conn=0", "not seen", "no Conn=0 within 5 s")


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
            report(key, f"{value:,.1f} {unit}".strip(), _settings_floor(key, value))


#: Floors of the settings bench (were sanity asserts of tests/adapters/mms/test_bench.py):
#: an MMS client writes, is refused and operates more than 5 times a second, and a
#: report follows a change within half a second (median).
SETTINGS_FLOORS = {"writes_per_s": 5.0, "refused_writes_per_s": 5.0, "operates_per_s": 5.0,
                   "report_latency_median_ms": 500.0}


def _settings_floor(key: str, value: float) -> str:
    floor = SETTINGS_FLOORS.get(key)
    if floor is None:
        return ""
    below = value < floor if key.endswith("_per_s") else value > floor
    return f"{'MISSED ' if below else ''}target {'>' if key.endswith('_per_s') else '<'} " \
        f"{floor:g}{' ms' if key.endswith('_ms') else '/s'}"


# ------------------------------------------------------------------ site scaling
def read_status(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(state_dir, "status.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def status_after(state_dir: str, t: float, timeout: float = 30.0) -> dict:
    """The first status file written after wall-clock time ``t``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_status(state_dir)
        if st is not None and st["time"] >= t:
            return st
        time.sleep(0.1)
    raise RuntimeError(f"no status written after {t} in {state_dir}")


def rtu_wire_s(nbytes: float, frames: float, baud: int, bits: int = 10) -> float:
    """Seconds on an RS-485 line: every byte 10 bits (8N1), plus the 3.5-character
    silence that ends every RTU frame (1.75 ms fixed above 19200 baud)."""
    gap = 3.5 * bits / baud if baud <= 19200 else 0.00175
    return nbytes * bits / baud + frames * gap


def bench_site(tmp: str, seconds: float) -> None:
    print("Poll cycle against inverters on one RS-485 bus (simulated units on a pty, grid "
          "functions on, 1 s period)")
    for n in (1, 4, 16):
        units = ",".join(str(u) for u in range(1, n + 1))
        with SimProcess("--units", units, pty=True) as sim:
            state = os.path.join(tmp, f"site-{n}")
            port = free_port()
            agent = Proc([sys.executable, "-m", "inverter_agent.cli", "run", "--modbus-rtu",
                          sim.pty_path, "--baud", "115200", "--units", units, "--mms-port",
                          str(port), "--state-dir", state, "--poll-period", "1.0",
                          "--log-level", "warning"], os.path.join(tmp, f"site-{n}.log"))
            try:
                wait_port(port)
                # Windows of about 5 s: skip the first (discovery), take the next ones.
                first = status_after(state, time.time() + 1)
                end = time.time() + seconds
                st = status_after(state, end, timeout=seconds + 20)
            finally:
                agent.stop()
        invs = st.get("inverters") or {st["ld"]: st}  # one inverter: no site
        up = sum(1 for i in invs.values() if i["link_up"])
        wire = next(iter(invs.values()))["modbus_bytes"]
        wire0 = next(iter((first.get("inverters") or {"": first}).values()))["modbus_bytes"]
        cycles = st["cycles"] - first["cycles"]
        per_cycle = (wire["bytes_out"] + wire["bytes_in"] - wire0["bytes_out"]
                     - wire0["bytes_in"]) / max(1, cycles)
        frames = 2 * (wire["transactions"] - wire0["transactions"]) / max(1, cycles)
        report(f"{n:>2} inverter(s): cycle on the pty, p50 / p95",
               f"{st['recent_p50_poll_s'] * 1e3:.1f} / {st['recent_p95_poll_s'] * 1e3:.1f} ms",
               f"{up}/{n} up, {st['overruns']} overruns")
        report(f"{n:>2} inverter(s): bytes per cycle on the bus", f"{per_cycle:,.0f} B",
               f"{frames:.0f} frames")
        for baud in (9600, 115200):
            w = rtu_wire_s(per_cycle, frames, baud)
            report(f"{n:>2} inverter(s): time on the wire per cycle at {baud}",
                   f"{w * 1e3:,.0f} ms", f"shortest poll period ~{w * 1.25:.2f} s "
                   "(plus each inverter's own turnaround)")


def knock(port: int, stop: threading.Event, count: list[int]) -> None:
    """A client the server has no room for: connect, be refused, try again (bounded)."""
    for _ in range(10_000):
        if stop.is_set():
            return
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(1)
                s.recv(16)  # the library closes a connection it has no room for
        except OSError:
            pass
        count[0] += 1
        stop.wait(0.2)


def bench_clients(tmp: str, seconds: float) -> None:
    print("Poll cycle against MMS clients reading flat out (one inverter, 10 Hz, functions on)")
    # The bundled libiec61850 takes at most 5 associations (LIBRARY_MAX_CONNECTIONS):
    # beyond that, 5 read flat out and the others knock (connect, refused, again).
    cfg = os.path.join(tmp, "clients.toml")
    with open(cfg, "w") as fh:
        fh.write(f"[mms]\nmax_connections = {LIBRARY_MAX_CONNECTIONS}\n")
    with SimProcess() as sim:
        for n in (1, 4, 16):
            readers, knockers = min(n, LIBRARY_MAX_CONNECTIONS), max(0, n - LIBRARY_MAX_CONNECTIONS)
            state = os.path.join(tmp, f"clients-{n}")
            port = free_port()
            agent = Proc([sys.executable, "-m", "inverter_agent.cli", "run", "--config", cfg,
                          "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--mms-port", str(port),
                          "--state-dir", state, "--poll-period", "0.1", "--log-level",
                          "warning"], os.path.join(tmp, f"clients-{n}.log"))
            try:
                wait_port(port)
                before = status_after(state, time.time() + 1)
                load = subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "bench", "mms_load.py"), "--port",
                     str(port), "--procs", str(readers), "--seconds", str(seconds + 8),
                     "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                stop = threading.Event()
                knocks = [0]
                threads = [threading.Thread(target=knock, args=(port, stop, knocks))
                           for _ in range(knockers)]
                time.sleep(2.0)  # the readers associate first
                for t in threads:
                    t.start()
                # A window that starts once every reader is connected and reading.
                st = status_after(state, time.time() + seconds, timeout=seconds + 30)
                out, err = load.communicate(timeout=seconds + 90)
                stop.set()
                for t in threads:
                    t.join(5)
            finally:
                agent.stop()
            line = [ln for ln in out.splitlines() if ln.startswith("{")]
            rate = json.loads(line[-1])["reads_per_s"] if line else float("nan")
            if knockers:
                print(f"     ({readers} associated reading, {knockers} refused and retrying "
                      f"every 0.2 s: {knocks[0]} attempts)")
            report(f"{n:>2} MMS client(s): cycle p50 / p95 / max",
                   f"{st['recent_p50_poll_s'] * 1e3:.1f} / {st['recent_p95_poll_s'] * 1e3:.1f}"
                   f" / {st['recent_max_poll_s'] * 1e3:.1f} ms",
                   f"{rate:,.0f} reads/s served; overruns {st['overruns'] - before['overruns']}"
                   f" in {st['recent_polls']} cycles")


# ------------------------------------------------------------- cost of communication
def bench_cost(tmp: str, seconds: float) -> None:
    scan, write_every = 4.0, 15.0
    print(f"Bytes on the wire per level of service (the agent's own kernel counters; one "
          f"client each, {scan:g} s scan, a setting write every {write_every:g} s, reports "
          f"on change + {scan:g} s integrity; agent at 1 s, functions on)")
    with SimProcess() as sim:
        agent, port = start_agent(sim, tmp, 1.0, functions=True)
        state = os.path.join(tmp, f"state-{port}")
        clients = []
        try:
            t0 = time.time()
            for level in ("monitoring", "settings", "reports"):
                clients.append(subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "bench", "mms_cost.py"), "--port",
                     str(port), "--level", level, "--seconds", str(seconds + 15), "--scan",
                     str(scan), "--write-every", str(write_every)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
            # Steady state: from a status after every client is associated and has
            # shown its level, to one `seconds` later (association cost excluded).
            first = status_after(state, t0 + 8, timeout=40)
            last = status_after(state, first["time"] + seconds, timeout=seconds + 30)
            for c in clients:
                c.communicate(timeout=seconds + 60)
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
            agent.stop()
    before = {c["peer"]: c for c in first["wire"]["clients"]}
    span = last["time"] - first["time"]
    for c in last["wire"]["clients"]:
        b = before.get(c["peer"])
        if b is None:
            continue
        wire = c["wire_in"] + c["wire_out"] - b["wire_in"] - b["wire_out"]
        payload = c["bytes_in"] + c["bytes_out"] - b["bytes_in"] - b["bytes_out"]
        per_day = wire / span * 86400
        report(f"{c['level']}: bytes per day on the wire (in + out)",
               f"{per_day / 1e6:,.2f} MB", f"{per_day * 30 / 1e6:,.0f} MB/month; "
               f"{payload / max(1, wire) * 100:.0f} % of it MMS payload, the rest IP/TCP "
               f"headers (Ethernet framing not counted)")
    for level, t in last["wire"]["levels"].items():
        if t["connections"]:
            report(f"{level}: agent's own figure incl. association, per client-day",
                   f"{(t['bytes_per_day_per_client'] or 0) / 1e6:,.2f} MB",
                   f"over {t['connected_s']:.0f} s of connection")


def bench_ieee2030_5(tmp: str, seconds: float, samples: int) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_ieee2030_5", os.path.join(ROOT, "bench", "ieee2030_5.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.run(tmp, seconds, samples, report)


BENCHES = ("hal", "trip", "mms", "resources", "alloc", "startup", "latency", "cycle", "view",
           "settings", "site", "clients", "cost", "corpus", "fuzz", "security", "ieee2030_5",
           "dnp3", "native", "timing")


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
        if "trip" in only:
            bench_trip_delay(tmp, 3 if q else 10)
        if "mms" in only:
            bench_mms(tmp, 1.0 if q else 3.0)
        if "resources" in only:
            bench_resources(tmp, 5.0 if q else 20.0)
        if "alloc" in only:
            bench_alloc(tmp, 3.0 if q else 8.0)
        if "startup" in only:
            bench_startup(tmp, 3 if q else 10)
        if "latency" in only:
            bench_latency(tmp, 5 if q else 30)
        if "cycle" in only:
            bench_control_cycle(2000 if q else 20000)
        if "view" in only:
            bench_view(tmp, 200 if q else 2000)
        if "settings" in only:
            bench_settings(tmp, 1.0 if q else 3.0)
        if "site" in only:
            bench_site(tmp, 6.0 if q else 12.0)
        if "clients" in only:
            bench_clients(tmp, 6.0 if q else 10.0)
        if "cost" in only:
            bench_cost(tmp, 20.0 if q else 60.0)
        if "corpus" in only:  # bench/corpus.py: one row per device profile
            import corpus
            corpus.corpus(report)
        if "fuzz" in only:
            import corpus
            corpus.fuzz(report, 2000 if q else 100_000)
        if "security" in only:
            print("MMS over TLS refusing a handshake flood (bench/security.py)")
            import importlib.util

            spec = importlib.util.spec_from_file_location(
                "bench_security", os.path.join(ROOT, "bench", "security.py"))
            assert spec is not None and spec.loader is not None
            bench_security = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(bench_security)
            bench_security.run(4.0 if q else 10.0, report)
        if "ieee2030_5" in only:
            bench_ieee2030_5(tmp, 30.0 if q else 60.0, 3 if q else 5)
        if "dnp3" in only:  # bench/dnp3_bench.py
            import dnp3_bench  # not "dnp3": that is dnp3py's package
            dnp3_bench.run(tmp, 3 if q else 9, 5 if q else 20, report, Proc, wait_port)
        if "native" in only:  # bench/native_bench.py: native against immediate steering
            import native_bench
            native_bench.run(30.0 if q else 120.0, report, Proc, wait_port, free_port)
        if "timing" in only:  # bench/timing_bench.py: targets that were timed test asserts
            import timing_bench
            timing_bench.run(tmp, 6 if q else 30, 2 if q else 5, report, Proc, wait_port,
                             free_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
