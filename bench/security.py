"""Bench: the gateway refusing a flood of TLS handshakes, and a valid read meanwhile.

A ``functions_server`` over TLS (its own process). Flooders (threads, 40 loopback
addresses) open connections and send garbage where the ClientHello should be; the
figures are the refused handshakes per second that reached the gateway (the rest are
dropped before accept once their address is in penalty), and the latency of an
engineer's association plus read (pure-Python TLS MMS client, another address) during
the flood, against the same without a flood. Bounded: ``seconds`` of flood.

    python bench/security.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "adapters", "mms"))

from conftest import FunctionsServer  # noqa: E402

from inverter_agent.security import certs  # noqa: E402
from tests.security._peers import connect  # noqa: E402

SOURCES = [f"127.0.4.{i}" for i in range(1, 41)]
#: A valid read (LLN0 and its Mod are in every IEC 61850 logical device).
READ = "GWINV1/LLN0.Mod.stVal [ST]"


def _pki(root: str) -> dict[str, str]:
    ca = certs.create_ca(f"{root}/ca")
    key, cert = certs.issue(f"{root}/ca", "gw", f"{root}/srv", server=True, sans=["127.0.0.1"])
    ckey, ccert = certs.issue(f"{root}/ca", "eng1", f"{root}/cli", role="engineer")
    return {"ca": ca, "key": key, "cert": cert, "ckey": ckey, "ccert": ccert}


def _flood(port: int, stop: threading.Event, counts: list[int]) -> None:
    i = 0
    while not stop.is_set():
        socks = []
        for _ in range(50):
            s = socket.socket()
            s.setblocking(False)
            s.bind((SOURCES[i % len(SOURCES)], 0))
            i += 1
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        counts[0] += len(socks)
        pending = set(socks)
        until = time.monotonic() + 0.1
        while pending and time.monotonic() < until:
            _, writable, _ = select.select([], list(pending), [], 0.02)
            for s in writable:
                pending.discard(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    counts[1] += 1
                    try:
                        s.send(b"\x16\x03\x01\x00\x05not TLS")
                    except OSError:
                        pass
        for s in socks:
            s.close()


def _read_latencies(port: int, ctx: ssl.SSLContext, seconds: float) -> list[float]:
    out = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            client = connect(port, "127.0.0.1", ctx, timeout=3)
            try:
                client.read(READ)
            finally:
                client.close()
            out.append(time.monotonic() - t0)
        except Exception:
            out.append(float("inf"))
        time.sleep(0.2)
    return out


def run(seconds: float, report: Callable[[str, str, str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sec-") as tmp:
        pki = _pki(tmp)
        os.makedirs(f"{tmp}/state")
        server = FunctionsServer(f"{tmp}/state", "--tls-cert", pki["cert"], "--tls-key",
                                 pki["key"], "--tls-ca", pki["ca"], "--audit-dir",
                                 f"{tmp}/audit")
        try:
            ctx = ssl.create_default_context(cafile=pki["ca"])
            ctx.check_hostname = False
            ctx.load_cert_chain(pki["ccert"], pki["ckey"])
            idle = _read_latencies(server.port, ctx, min(3.0, seconds / 2))
            stop = threading.Event()
            counts = [0, 0]
            flooder = threading.Thread(target=_flood, args=(server.port, stop, counts),
                                       daemon=True)
            t0 = time.monotonic()
            flooder.start()
            loaded = _read_latencies(server.port, ctx, seconds)
            stop.set()
            flooder.join(timeout=10)
            elapsed = time.monotonic() - t0
        finally:
            server.close()
    finite = [x for x in loaded if x != float("inf")]
    report("TLS: connection attempts while refusing", f"{counts[0] / elapsed:.0f}/s",
           f"{counts[0]} in {elapsed:.1f} s from {len(SOURCES)} addresses")
    report("TLS: refused handshakes that reached the gateway", f"{counts[1] / elapsed:.0f}/s",
           "the rest dropped before accept (address in penalty)")
    report("TLS: associate + read, idle (median)", f"{statistics.median(idle) * 1e3:.0f} ms",
           f"n={len(idle)}")
    if finite:
        report("TLS: associate + read under the flood (median / max)",
               f"{statistics.median(finite) * 1e3:.0f} / {max(finite) * 1e3:.0f} ms",
               f"n={len(loaded)}, failed {len(loaded) - len(finite)}")
    else:
        report("TLS: associate + read under the flood", "all failed", f"n={len(loaded)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    run(args.seconds, lambda n, v, note="": print(f"  {n:<58} {v:>16}  {note}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
