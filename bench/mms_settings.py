"""MMS settings benchmark: validated writes/s, operates/s, report latency.

    python bench/mms_settings.py --seconds 2            # spawns its own server
    python bench/mms_settings.py --port 102 --seconds 2 # against a running agent

Phases, one after the other, each ``--seconds`` long:

1. validated writes: DVVR1.RspTmms alternates 5000 / 6000 ms; every accepted write
   goes through the validator and is persisted (fsync) before the response;
2. refused writes: DCTE1.VLoLim = 200 % (above VHiLim), refused by the
   validator, nothing persisted;
3. operates: DWMX1.WMaxLimPct (APC, direct-with-normal-security, the temporary
   active-power limit) 90 % / 100 %;
4. report latency: an open61850 client enables urcbMeas01 and, for each report
   carrying MMXU1.TotW, takes receive time minus the value's t (the publisher
   stamps t when it publishes; same host clock). The spawned server publishes
   at ``--rate`` Hz; against an agent the agent's own cycle publishes.

Against a running agent the benchmark restores what it changed (RspTmms and the
temporary limit, released with DGEN1.RlsCmd). The libiec61850 client runs in this process and the
server in another (LIBIEC61850.md). Loopback only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LD = "GWINV1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(state_dir: str, port: int, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.adapters.mms.servers.functions_server",
         "--state-dir", state_dir, "--port", str(port), "--animate", str(rate), "--commands"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if json.loads(line or "{}").get("ready") != port:
        raise SystemExit(f"server did not start: {line!r}")
    return proc


def _rate(seconds: float, action: Any) -> tuple[float, int]:
    count = errors = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            action(count)
            count += 1
        except Exception:
            errors += 1
            if errors > 100 and errors > count:
                break
    return count / (time.perf_counter() - start), errors


def report_latency(host: str, port: int, seconds: float) -> list[float]:
    """Seconds from a TotW value's t to its report's arrival, for ``seconds``."""
    from open61850.data import StructureData, TimestampData
    from open61850.mms import MmsClient, ObjectName, decode_report, is_report
    from open61850.mms import rcb as rcbs

    latencies: list[float] = []
    lock = threading.Lock()

    def on_report(message: Any) -> None:
        now = time.time()
        if not is_report(message):
            return
        for entry in decode_report(message).entries:
            value = entry.value
            if entry.index == 0 and isinstance(value, StructureData):  # TotW: mag, q, t
                stamp = next((m for m in value.members if isinstance(m, TimestampData)), None)
                if stamp is not None:
                    with lock:
                        latencies.append(now - stamp.value.timestamp())

    with MmsClient.connect(host, port, timeout=5) as client:
        client.add_report_listener(on_report)
        rcb = ObjectName("LLN0$RP$urcbMeas01", LD)
        rcbs.enable(client, rcb, rcbs.RcbSettings(intg_pd_ms=None, general_interrogation=False))
        time.sleep(seconds)
        rcbs.disable(client, rcb)
    return latencies


def run(host: str, port: int, seconds: float) -> dict[str, Any]:
    from inverter_agent.adapters.mms import client as mms_client

    out: dict[str, Any] = {}
    with mms_client.connect(host, port) as con:
        rsp = f"{LD}/DVVR1.RspTmms.setVal"
        original = con.read_value(rsp, "SP")
        out["writes_per_s"], out["write_errors"] = _rate(
            seconds, lambda i: con.write_int(rsp, "SP", 5000 + 1000 * (i % 2)))
        con.write_int(rsp, "SP", original)

        def refused(_: int) -> None:
            try:
                con.write_float(f"{LD}/DCTE1.VLoLim.setMag.f", "SP", 200.0)
            except mms_client.MmsClientError:
                return
            raise RuntimeError("an invalid write was accepted")
        out["refused_writes_per_s"], out["refused_errors"] = _rate(seconds, refused)

        out["operates_per_s"], out["operate_errors"] = _rate(
            seconds, lambda i: con.operate(f"{LD}/DWMX1.WMaxLimPct", 90.0 + 10 * (i % 2)))
        con.operate(f"{LD}/DGEN1.RlsCmd", True)  # release the temporary limit again
    latencies = sorted(report_latency(host, port, seconds))
    out["reports"] = len(latencies)
    if latencies:
        out["report_latency_median_ms"] = statistics.median(latencies) * 1000
        out["report_latency_p99_ms"] = latencies[min(len(latencies) - 1,
                                                     int(0.99 * len(latencies)))] * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="a running server (0: spawn one)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=20.0, help="spawned server publish rate")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback:
            raise ValueError
    except (OSError, ValueError):
        print(f"error: {args.host} is not a loopback address", file=sys.stderr)
        return 2
    if not 0 < args.seconds <= 600:
        print("error: --seconds must be in (0, 600]", file=sys.stderr)
        return 2
    proc = None
    with tempfile.TemporaryDirectory() as state_dir:
        port = args.port
        if not port:
            port = _free_port()
            proc = _spawn(state_dir, port, args.rate)
        try:
            result = run(args.host, port, args.seconds)
        finally:
            if proc is not None:
                assert proc.stdin is not None
                proc.stdin.write('{"cmd": "stop"}\n')
                proc.stdin.flush()
                proc.wait(timeout=10)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"validated writes:  {result['writes_per_s']:8.0f} /s (persisted, fsync)")
        print(f"refused writes:    {result['refused_writes_per_s']:8.0f} /s")
        print(f"operates:          {result['operates_per_s']:8.0f} /s")
        if result["reports"]:
            print(f"report latency:    median {result['report_latency_median_ms']:.1f} ms, "
                  f"p99 {result['report_latency_p99_ms']:.1f} ms ({result['reports']} reports)")
        else:
            print("report latency:    no reports received")
    return 0


if __name__ == "__main__":
    sys.exit(main())
