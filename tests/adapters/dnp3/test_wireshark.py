"""The outstation's frames, as Wireshark's DNP3 dissector reads them.

A live capture on loopback (``tshark -i lo``, capture filter on the outstation's
port) of one end-to-end exchange with dnp3py's master: an integrity poll, a
direct operate accepted and one refused. tshark must find the DNP3 frames of all
three, every link header and data chunk CRC good, and no malformed frame and no
expert warning or error.

Needs tshark (Debian's; ``make system-deps`` installs it) and the right to
capture (root or CAP_NET_RAW, as in CI): skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import OUT_OF_RANGE, SUCCESS

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(
    TSHARK is None, reason="tshark not installed (make system-deps installs it, as root)")

#: DNP3 application function codes (IEEE 1815 table 4-1).
READ, DIRECT_OPERATE, RESPONSE = 1, 5, 129


def tshark_read(cap: Path, port: int, display_filter: str, *fields: str) -> list[str]:
    """Lines tshark prints for the frames of ``cap`` matching ``display_filter``,
    the outstation's port decoded as DNP3."""
    args = [str(TSHARK), "-r", str(cap), "-d", f"tcp.port=={port},dnp3", "-Y", display_filter]
    if fields:
        args += ["-T", "fields", *(a for f in fields for a in ("-e", f))]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def functions_seen(cap: Path, port: int) -> list[int]:
    return [int(f) for line in tshark_read(cap, port, "dnp3.al.func", "dnp3.al.func")
            for f in line.split(",")]


@contextlib.contextmanager
def capture(port: int, cap: Path) -> Iterator[subprocess.Popen[str]]:
    """tshark capturing the outstation's port on loopback, until the block ends
    (bounded to 60 s by tshark itself)."""
    if os.geteuid() != 0:
        pytest.skip("capturing on lo needs root or CAP_NET_RAW (CI runs as root)")
    proc = subprocess.Popen(
        [str(TSHARK), "-q", "-i", "lo", "-f", f"tcp port {port}", "-a", "duration:60",
         "-w", str(cap)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # readline returns "" at EOF: bounded
            line = proc.stderr.readline()
            seen.append(line)
            if "Capture started" in line or not line:
                break
        if not any("Capture started" in s for s in seen):
            pytest.skip(f"tshark could not capture on lo: {''.join(seen).strip()!r}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_wireshark_finds_no_malformed_frame_and_no_crc_error(gateway, master, tmp_path):
    cap = tmp_path / "dnp3.pcapng"
    with capture(gateway.port, cap):
        master.integrity_poll()
        assert master.direct_operate_analog(88, 800) == SUCCESS  # 80.0 %
        assert master.direct_operate_analog(88, 1500) == OUT_OF_RANGE
        # dumpcap writes what it has read as it goes: wait (bounded) until the last
        # exchange is in the file rather than stop it with frames still in its buffer
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if cap.exists() and functions_seen(cap, gateway.port).count(RESPONSE) >= 3:
                break
            time.sleep(0.2)
    functions = functions_seen(cap, gateway.port)
    assert functions.count(READ) >= 1, functions
    assert functions.count(DIRECT_OPERATE) == 2, functions
    assert functions.count(RESPONSE) >= 3, functions
    # every link header and every data chunk's CRC checked by the dissector, and good
    crcs = tshark_read(cap, gateway.port, "dnp3", "dnp.hdr.CRC.status",
                       "dnp.data_chunk.CRC.status")
    rows = [(line.split("\t") + [""])[:2] for line in crcs]
    # a segment may carry several frames: one status each, comma-separated
    headers = [h for hdr, _ in rows for h in hdr.split(",")]
    assert headers and set(headers) == {"1"}, rows  # 1: PROTO_CHECKSUM_E_GOOD
    chunks = [c for _, chunk in rows for c in chunk.split(",") if c]  # none in a link reset
    assert chunks and set(chunks) == {"1"}, rows
    # TCP's own analysis (a duplicate ACK, a retransmission, a D-SACK telling of a
    # segment received twice, all on a loaded machine) is the kernel's, not the
    # outstation's: every other warning counts
    bad = tshark_read(cap, gateway.port,
                      "_ws.malformed || (_ws.expert.severity >= warning"
                      " && !(tcp.analysis.flags || tcp.options.sack.dsack))"
                      " || dnp3.hdr.CRC.incorrect || dnp3.data_chunk.CRC.incorrect")
    assert bad == [], bad
