"""``make bench`` part: DNP3 bytes per day, direct-operate-to-setpoint latency, and the
outstation's memory cost.

The gateway (``inverter-agent run``, [dnp3] enabled, poll period 1 s, functions on)
against the simulated inverter; dnp3py's master (MIT) on loopback, on one TCP
connection held open as a SCADA master holds it.

Bytes: the kernel's own counters of the outstation's end of that connection
(``NETLINK_SOCK_DIAG``, ``adapters/_shared/wirestats.py``: payload plus IP/TCP
headers, as the MMS and 2030.5 figures; Ethernet framing not counted). Measured:
the bytes of each integrity poll (class 0-3 read, its response, confirms and ACKs;
the mean of several), and the bytes of a window of real time in which the master
reads class 1 events every 10 s (the events, the empty answers, any link keep-alive
and the ACKs, whatever the outstation sent in that window). The day is the window's
rate times 86400 s plus 144 integrity polls (one per 10 min). Class 1 here holds the
phase currents (deadband 0.5 A) and the communication error: what changes in the
window is what the simulator's plant does at its seed, a steady sunny hour, not a
cloudy day, where the currents cross their deadband more often.

Latency: AO88 (active power limit, x0.1 %) by direct operate, BO17 latched on once
before; the time from sending the operate to the limit in force at the simulated
inverter (its control port), alternating two values, each sent at a random point
of the agent's 1 s cycle.

Memory: the agent's RSS 8 s after it starts, with and without [dnp3] enabled
(same config otherwise; with DNP3 also after the session), and the import cost
of the adapter and py1815 in a fresh interpreter that already has the agent's own
modules.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procstat import AGENT_IMPORT_PROBE, mb, proc_status  # bench/ is sys.path[0]

from inverter_agent.adapters._shared.wirestats import sample_tcp
from simulator import SimProcess, wait_until

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
CLASS1_S, INTEGRITY_S = 10.0, 600.0
SETTLE_S = 8.0  # the agent running, polling the inverter, before its RSS is read
OUTSTATION, MASTER = 1024, 1
Report = Callable[..., None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """``inverter-agent run`` with a config file; [dnp3] on or off. ``proc`` and
    ``wait_port``: bench/run.py's process wrapper and port wait."""

    def __init__(self, sim: SimProcess, tmp: str, dnp3: bool, proc: Any,
                 wait_port: Callable[[int], None]) -> None:
        self.dnp3_port, self.mms_port = _free_port(), _free_port()
        state = os.path.join(tmp, f"state-dnp3-{self.mms_port}")
        conf = os.path.join(tmp, f"agent-{self.mms_port}.toml")
        with open(conf, "w") as fh:
            fh.write(f"[dnp3]\nenabled = {'true' if dnp3 else 'false'}\n"
                     f"port = {self.dnp3_port}\n")
        self.proc = proc(
            [sys.executable, "-m", "inverter_agent.cli", "run", "--config", conf,
             "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--mms-port", str(self.mms_port),
             "--state-dir", state, "--poll-period", "1", "--log-level", "warning"],
            os.path.join(tmp, f"agent-{self.mms_port}.log"))
        wait_port(self.dnp3_port if dnp3 else self.mms_port)

    def rss_mb(self) -> float:
        return mb(proc_status(self.proc.p.pid), "VmRSS")

    def stop(self) -> None:
        self.proc.stop()


def _wire(port: int, peer_port: int) -> int:
    """Bytes both ways on the wire so far on the master's connection (kernel counters)."""
    (c,) = [c for (_, p), c in sample_tcp(port, (socket.AF_INET,)).items() if p == peer_port]
    return c.wire_in + c.wire_out


async def _session(port: int, sim: SimProcess, class_polls: int, integrity: int,
                   samples: int) -> dict:
    from dnp3.master.config import MasterConfig
    from dnp3.master.master import Master
    from dnp3.master.tcp_runner import MasterTcpRunner

    master = Master(config=MasterConfig(address=MASTER, outstation_address=OUTSTATION,
                                        response_timeout=5.0))
    runner = MasterTcpRunner(master=master, host="127.0.0.1", port=port, response_timeout=5.0)
    await runner.open()
    loop = asyncio.get_running_loop()
    try:
        await runner.integrity_poll()  # the startup read, and the buffered events
        await runner.class_poll()
        mine = [p for (_, p) in sample_tcp(port, (socket.AF_INET,))]
        assert len(mine) == 1, mine
        peer = mine[0]
        per_integrity = []
        for _ in range(integrity):
            before = _wire(port, peer)
            await runner.integrity_poll()
            await asyncio.sleep(0.3)  # let the last ACK (delayed ACK) be counted here
            per_integrity.append(_wire(port, peer) - before)
        # class 1 every 10 s, in real time
        start, t0 = _wire(port, peer), loop.time()
        polls = []
        for k in range(class_polls):
            await asyncio.sleep(max(0.0, t0 + k * CLASS1_S - loop.time()))
            before = _wire(port, peer)
            await runner.class_poll(class_1=True, class_2=False, class_3=False)
            polls.append(_wire(port, peer) - before)
        await asyncio.sleep(max(0.0, t0 + class_polls * CLASS1_S - loop.time()))
        window_s, window_b = loop.time() - t0, _wire(port, peer) - start
        # latency: direct operate -> the limit at the simulated inverter
        await runner.request(master.build_direct_operate(
            master.command_builder().latch_on(17).build_direct_operate()))
        latencies, answered = [], []
        phase = random.Random(1)
        for i in range(samples):
            # sent at a random point of the agent's cycle: back-to-back operates would
            # each land just after the cycle that applied the last one (a full period)
            await asyncio.sleep(phase.uniform(0.0, 1.0))
            pct = (50, 70)[i % 2]
            want = 5000 * pct / 100
            t_start = time.perf_counter()
            await runner.request(master.build_direct_operate(
                master.command_builder().add_analog(88, pct * 10).build_direct_operate()))
            answered.append(time.perf_counter() - t_start)
            deadline = t_start + 15
            while time.perf_counter() < deadline:
                w = sim.control.state()["units"]["1"]["effective"]["w_limit"]
                if w is not None and abs(w - want) < 1:
                    latencies.append(time.perf_counter() - t_start)
                    break
                await asyncio.sleep(0.005)
        await runner.request(master.build_direct_operate(
            master.command_builder().latch_off(17).build_direct_operate()))
    finally:
        await runner.close()
    return {"integrity": per_integrity, "window_s": window_s, "window_b": window_b,
            "polls": polls, "latencies": latencies, "answered": answered}


def _import_cost() -> float:
    probe = AGENT_IMPORT_PROBE + (
        "before = rss()\n"
        "import py1815, inverter_agent.adapters.dnp3.adapter\n"
        "print(rss() - before)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=True)
    return float(out.stdout.split()[-1])


def run(tmp: str, class_polls: int, samples: int, report: Report, proc: Any,
        wait_port: Callable[[int], None]) -> None:
    print(f"DNP3 outstation (dnp3py's master on one held TCP connection; agent at 1 s, "
          f"functions on): {class_polls} class 1 polls at {CLASS1_S:g} s in real time")
    with SimProcess("--seed", "3") as sim:
        agent = Agent(sim, tmp, True, proc, wait_port)
        try:
            wait_until(lambda: sim.control.state()["units"]["1"]["plant"]["w"] > 0, timeout=20)
            time.sleep(SETTLE_S)
            rss_rest = agent.rss_mb()
            r = asyncio.run(asyncio.wait_for(
                _session(agent.dnp3_port, sim, class_polls, 3, samples),
                timeout=class_polls * CLASS1_S + samples * 20 + 60))
            rss_after = agent.rss_mb()
        finally:
            agent.stop()
        plain = Agent(sim, tmp, False, proc, wait_port)
        try:
            time.sleep(SETTLE_S)
            rss_off = plain.rss_mb()
        finally:
            plain.stop()
    integrity = statistics.mean(r["integrity"])
    class1_rate = r["window_b"] / r["window_s"]
    day = class1_rate * DAY + integrity * DAY / INTEGRITY_S
    report("DNP3: bytes per integrity poll (class 0-3 read)", f"{integrity:,.0f} B",
           f"mean of {len(r['integrity'])}: {r['integrity']}")
    report("DNP3: bytes per class 1 poll", f"{statistics.mean(r['polls']):,.0f} B",
           f"min / max {min(r['polls'])} / {max(r['polls'])} over {len(r['polls'])}")
    report("DNP3: bytes per day, 10 s class 1 + 10 min integrity", f"{day / 1e6:,.2f} MB",
           f"{r['window_b']:,} B in {r['window_s']:.0f} s of class 1 polling x 86400 s"
           f" + 144 x {integrity:,.0f} B; IP/TCP headers in, Ethernet not")
    lat = r["latencies"]
    if lat:
        report("DNP3: direct operate -> setpoint at the inverter, p50 / max",
               f"{statistics.median(lat) * 1e3:.0f} / {max(lat) * 1e3:.0f} ms",
               f"{len(lat)}/{samples} samples; agent poll period 1 s; the operate answered"
               f" (persisted) in p50 {statistics.median(r['answered']) * 1e3:.0f} ms")
    else:
        report("DNP3: direct operate -> setpoint at the inverter", "no sample", "")
    report("DNP3: agent RSS with / without [dnp3] enabled",
           f"{rss_rest:.1f} / {rss_off:.1f} MB",
           f"difference {rss_rest - rss_off:+.1f} MB, each {SETTLE_S:g} s after start; "
           f"{rss_after:.1f} MB with DNP3 after the session")
    report("DNP3: import cost of the adapter and py1815", f"{_import_cost():.1f} MB",
           "RSS growth in a fresh interpreter holding the agent's modules")
