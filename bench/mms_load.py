"""MMS read load generator: N reader processes read one object for a bounded time.

    python bench/mms_load.py --host 127.0.0.1 --port 10102 \
        --ref GWINV1/MMXU1.TotW.mag.f --procs 2 --seconds 3

Each reader is its own process with its own libiec61850 (SWIG) connection: the
SWIG wrappers never release the GIL, so threads in one process would collapse
to ~100 reads/s (LIBIEC61850.md). Readers connect first, start together on a
barrier, read in a loop until the time is up (or ``--max-reads``), and the
total reads/s is printed (``--json`` for a machine-readable line). A read
answered with a data-access error counts as an error (``last_error`` is then
-1000 - the MMS DataAccessError code; positive values are IedClientError codes).

Loopback only: the host must resolve to a loopback address.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
from typing import Any

# Run from a checkout without installing: the readers import inverter_agent.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_PROCS = 64
MAX_SECONDS = 600.0


def _fc_code(iec: Any, fc: str) -> int:
    return int(getattr(iec, f"IEC61850_FC_{fc.upper()}"))


def reader(host: str, port: int, ref: str, fc: str, seconds: float, max_reads: int,
           barrier: Any, results: Any) -> None:
    """One reader process: connect, wait for the others, read until time or count is up."""
    import pyiec61850.pyiec61850 as iec

    from inverter_agent.adapters.mms.client import MmsClientError, connect

    try:  # connect() probes the association and retries a dead one (see its docstring)
        connection = connect(host, port, timeout=5)
    except MmsClientError as exc:
        barrier.abort()
        results.put({"error": str(exc), "reads": 0})
        return
    con = connection.handle
    code = _fc_code(iec, fc)
    access_error = iec.MMS_DATA_ACCESS_ERROR  # a read "succeeds" with this value type
    reads = errors = last_error = 0
    try:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            results.put({"error": "another reader could not connect", "reads": 0})
            return
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and (max_reads <= 0 or reads < max_reads):
            value, err = iec.IedConnection_readObject(con, ref, code)
            if not err and iec.MmsValue_getType(value) == access_error:
                err = -iec.MmsValue_getDataAccessError(value) - 1000  # the server said no
            if value is not None:
                iec.MmsValue_delete(value)
            if err:
                errors += 1
                last_error = err
                if errors > 100 and errors > reads:
                    break  # the object does not exist or the server is gone
            else:
                reads += 1
        elapsed = time.perf_counter() - start
    finally:
        connection.close()
    results.put({"reads": reads, "errors": errors, "last_error": last_error, "elapsed": elapsed})


def _check_loopback(host: str) -> None:
    for info in socket.getaddrinfo(host, None):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SystemExit(f"{host} is not a loopback address: this tool stays on loopback")


def run(host: str, port: int, ref: str, fc: str, procs: int, seconds: float,
        max_reads: int = 0) -> dict[str, Any]:
    """Run the readers and return totals (reads, errors, reads_per_s, per_process)."""
    _check_loopback(host)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    workers = [ctx.Process(target=reader, args=(host, port, ref, fc, seconds, max_reads,
                                                barrier, results), daemon=True)
               for _ in range(procs)]
    for w in workers:
        w.start()
    per_process = [results.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.kill()
    failures = [r["error"] for r in per_process if "error" in r]
    if failures:
        raise SystemExit("; ".join(failures))
    reads = sum(r["reads"] for r in per_process)
    elapsed = max(r["elapsed"] for r in per_process)
    return {"host": host, "port": port, "ref": ref, "fc": fc, "procs": procs,
            "seconds": round(elapsed, 3), "reads": reads,
            "errors": sum(r["errors"] for r in per_process),
            "last_error": max(r["last_error"] for r in per_process),
            "reads_per_s": round(reads / elapsed, 1) if elapsed > 0 else 0.0,
            "per_process": [r["reads"] for r in per_process]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10102)
    parser.add_argument("--ref", default="GWINV1/MMXU1.TotW.mag.f")
    parser.add_argument("--fc", default="MX", help="functional constraint of --ref")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-reads", type=int, default=0, help="per process; 0 = no limit")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    if not 1 <= args.procs <= MAX_PROCS:
        parser.error(f"--procs {args.procs} out of range 1..{MAX_PROCS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds {args.seconds} out of range (0, {MAX_SECONDS}]")
    result = run(args.host, args.port, args.ref, args.fc, args.procs, args.seconds,
                 args.max_reads)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['reads']} reads of {args.ref} [{args.fc}] by {args.procs} processes "
              f"in {result['seconds']} s: {result['reads_per_s']:.0f} reads/s total "
              f"({result['errors']} errors; per process {result['per_process']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
