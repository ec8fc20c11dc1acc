"""One MMS client with one level of service, for the cost-of-communication bench.

    python bench/mms_cost.py --port 10102 --level monitoring --seconds 60 --scan 4

* ``monitoring``: reads the measurements (MMXU1, one request for all of its
  MX values) every ``--scan`` seconds.
* ``settings``: the same, and every ``--write-every`` seconds reads the
  active-power limit setting and writes it back (accepted, validated and
  persisted like any setting write; it changes nothing at the inverter).
* ``reports``: enables the unbuffered report block ``urcbMeas01`` (data
  change, quality change, integrity every ``--scan`` seconds) and listens.

It runs for a bounded time, prints one JSON line with what it did, and exits.
Loopback only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LD = "GWINV1"
MAX_SECONDS = 900.0


def monitoring(host: str, port: int, seconds: float, scan: float,
               write_every: float | None) -> dict[str, Any]:
    from inverter_agent.adapters.mms import client as mms

    reads = writes = 0
    ref = f"{LD}/DCTE1.VHiLim.setMag.f"
    with mms.connect(host, port, timeout=5) as con:
        end = time.monotonic() + seconds
        next_scan = next_write = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_scan:
                con.read(f"{LD}/MMXU1", "MX")
                reads += 1
                next_scan += scan
            if write_every is not None and now >= next_write:
                con.write_float(ref, "SP", float(con.read_value(ref, "SP")))
                writes += 1
                next_write += write_every
            due = min(next_scan, end, next_write if write_every is not None else end)
            time.sleep(max(0.0, due - time.monotonic()))
    return {"reads": reads, "writes": writes}


def reports(host: str, port: int, seconds: float, scan: float) -> dict[str, Any]:
    from open61850.mms import MmsClient, ObjectName, is_report
    from open61850.mms import rcb as rcbs

    got = [0]

    def on_report(message: Any) -> None:
        if is_report(message):
            got[0] += 1

    with MmsClient.connect(host, port, timeout=5) as client:
        client.add_report_listener(on_report)
        rcb = ObjectName("LLN0$RP$urcbMeas01", LD)
        rcbs.enable(client, rcb, rcbs.RcbSettings(intg_pd_ms=int(scan * 1000),
                                                  general_interrogation=False))
        time.sleep(seconds)
        rcbs.disable(client, rcb)
    return {"reports": got[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--level", choices=("monitoring", "settings", "reports"), required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scan", type=float, default=4.0, help="seconds between scans")
    ap.add_argument("--write-every", type=float, default=15.0)
    args = ap.parse_args()
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback:
        ap.error("loopback only")
    seconds = min(args.seconds, MAX_SECONDS)
    if args.level == "reports":
        out = reports(args.host, args.port, seconds, args.scan)
    else:
        out = monitoring(args.host, args.port, seconds, args.scan,
                         args.write_every if args.level == "settings" else None)
    print(json.dumps({"level": args.level, **out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
