"""A flood of refused connection attempts cannot flush the audit log (issue 14, finding 3).

An engineer writes a setting over TLS; then 10,000 connection attempts that can only be
refused (garbage where a TLS ClientHello should be, from 40 loopback addresses) hit the
gateway: those that reach the library fail their handshake, the rest are refused before
accept once their address is in penalty. The write's audit entry is still there, with
``audit_bytes`` at its 4 KiB minimum too, the chain verifies, and the flood added a bounded
number of (aggregated, unprotected) entries. Plus the retention rules on their own.
"""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from inverter_agent.security.audit import AuditLog, RefusalAggregator, verify

from .test_tls_roles import SETTING, Pki, SecureServer, TlsClient

pytestmark = pytest.mark.timeout(150)

ATTEMPTS = 10_000
SOURCES = [f"127.0.3.{i}" for i in range(1, 41)]
FLOOD_SECONDS = 40.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("pki")))


def _flood(port: int, attempts: int, batch: int = 100) -> tuple[int, int]:
    """Non-blocking connects in batches; each connected socket gets garbage instead of a
    ClientHello and is closed. Returns (attempts made, attempts that connected)."""
    made = connected = 0
    deadline = time.monotonic() + FLOOD_SECONDS
    while made < attempts and time.monotonic() < deadline:
        socks = []
        for j in range(min(batch, attempts - made)):
            s = socket.socket()
            s.setblocking(False)
            s.bind((SOURCES[(made + j) % len(SOURCES)], 0))
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        made += len(socks)
        pending = set(socks)
        wait_until = time.monotonic() + 0.1
        while pending and time.monotonic() < wait_until:
            _, writable, _ = select.select([], list(pending), [], 0.02)
            for s in writable:
                pending.discard(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected += 1
                    try:
                        s.send(b"\x16\x03\x01\x00\x05hello, not TLS")
                    except OSError:
                        pass
        for s in socks:
            s.close()
    return made, connected


@pytest.mark.parametrize("audit_bytes", [4 << 20, 4096])
def test_refused_flood_leaves_an_earlier_authenticated_write_in_place(pki, tmp_path,
                                                                      audit_bytes):
    server = SecureServer(str(tmp_path), "--tls-cert", pki.server_cert, "--tls-key",
                          pki.server_key, "--tls-ca", pki.ca, "--audit-bytes",
                          str(audit_bytes))
    try:
        client = TlsClient(pki, "eng1", server.port)
        try:
            assert client.error == 0
            assert client.write_float(SETTING, 0.95) == 0
        finally:
            client.close()
        time.sleep(0.3)
        write = [e for e in server.audit() if e["action"] == "setting.write"]
        assert write, server.audit()
        made, connected = _flood(server.port, ATTEMPTS)
        assert made == ATTEMPTS, made
        assert connected > 200  # many reached the gateway (the rest: refused before accept)
        time.sleep(1.0)  # let the library work through its backlog
        # The gateway still serves an authenticated client right after.
        after = TlsClient(pki, "eng1", server.port)
        assert after.error == 0
        after.close()
    finally:
        assert server.close() == 0  # stop writes the open windows' summaries
    log = AuditLog(server.audit_dir, max_bytes=audit_bytes)
    entries = log.entries()
    assert any(e["seq"] == write[-1]["seq"] and e["action"] == "setting.write"
               for e in entries), "the authenticated write's entry was rotated away"
    assert verify(log).ok
    flood = [e for e in entries if e.get("protect") is False]
    # At most two per address, kind and window, pooled beyond 32 keys: bounded whatever
    # the number of attempts.
    assert 1 <= len(flood) <= 150, len(flood)
    assert sum(e.get("count", 1) for e in flood) >= connected // 2
    assert any("refusals from" in e.get("summary", "") for e in flood)


# --- the rules on their own --------------------------------------------------------------

def test_unprotected_entries_never_push_out_a_protected_one(tmp_path):
    log = AuditLog(str(tmp_path), max_bytes=4096, keep=2)
    first = log.record("setting.write", "cert CN=eng1 role=engineer", "ok", "fixed_pf.pf",
                       0.9, 0.95)
    for i in range(3000):
        log.record("mms.tls", f"10.0.0.{i % 200}", "refused", reason="x", protect=False)
    assert any(e["seq"] == first["seq"] for e in log.entries())
    assert verify(log).ok
    files = os.listdir(tmp_path)
    assert len([f for f in files if f.startswith("audit.jsonl")]) <= 4 * 2 + 1


def _files(folder) -> int:
    return len([f for f in os.listdir(folder) if f.startswith("audit.jsonl")])


def test_acknowledged_or_old_entries_may_go(tmp_path):
    log = AuditLog(str(tmp_path), max_bytes=4096, keep=2)
    first = log.record("setting.write", "engineer", "ok", "fixed_pf.pf", 0.9, 0.95)
    for i in range(60):
        log.record("setting.write", "engineer", "ok", "fixed_pf.pf", i, i + 1)
    assert _files(tmp_path) > 3  # young and unread: kept beyond keep
    assert any(e["seq"] == first["seq"] for e in log.entries())
    ack = log.acknowledge("operator alice")
    assert ack["action"] == "audit.ack" and log.acknowledged() == ack["seq"]
    for i in range(20):
        log.record("setting.write", "engineer", "ok", "fixed_pf.pf", i, i + 1)
    assert _files(tmp_path) <= 3  # read and acknowledged: rotation may drop them now
    assert not any(e["seq"] == first["seq"] for e in log.entries())
    assert verify(log).ok
    old = AuditLog(str(tmp_path / "old"), max_bytes=4096, keep=2, retain_s=0)
    for i in range(60):
        old.record("setting.write", "engineer", "ok", "fixed_pf.pf", i, i + 1)
    assert _files(tmp_path / "old") <= 3  # older than retain_s: not protected


def test_past_hard_keep_the_oldest_goes_and_the_log_says_so(tmp_path):
    log = AuditLog(str(tmp_path), max_bytes=4096, keep=1, hard_keep=2)
    for i in range(200):  # all protected, all young
        log.record("setting.write", "engineer", "ok", "fixed_pf.pf", i, i + 1)
    dropped = [e for e in log.entries() if e["action"] == "audit.dropped"]
    assert dropped and dropped[0]["protected_entries"] > 0
    assert len([f for f in os.listdir(tmp_path) if f.startswith("audit.jsonl")]) <= 3
    assert verify(log).ok


def test_refusals_are_aggregated_per_peer_and_window(tmp_path):
    log = AuditLog(str(tmp_path))
    agg = RefusalAggregator(log, window_s=60, max_keys=4)
    for i in range(1000):
        agg.refused(f"10.0.0.{i % 10}:{40000 + i}", "mms.tls", "bad certificate")
    agg.flush()
    entries = log.entries()
    assert all(e["protect"] is False for e in entries)
    firsts = [e for e in entries if e["count"] == 1]
    assert len(firsts) == 4  # the first four addresses; the rest pooled
    pooled = [e for e in entries if e["who"] == "*"]
    assert len(pooled) == 1 and pooled[0]["peers"] == 6
    assert sum(e["count"] for e in entries) == 1000
    assert len(entries) == 4 + 4 + 1
    assert "refusals from 10.0.0.1 in" in " ".join(e["summary"] for e in entries)


def test_audit_command_acknowledges_an_intact_chain_only(tmp_path):
    import subprocess
    import sys

    log = AuditLog(str(tmp_path))
    log.record("setting.write", "engineer", "ok", "fixed_pf.pf", 0.9, 0.95)
    log.record("mms.tls", "10.0.0.9", "refused", reason="x", protect=False, count=3,
               summary="3 refusals from 10.0.0.9 in 5 s: x")
    run = [sys.executable, "-m", "inverter_agent.cli", "audit", "--state-dir", str(tmp_path)]
    r = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "setting.write" in r.stdout and "10.0.0.9" not in r.stdout
    r = subprocess.run([*run, "--refusals", "--ack"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "3 refusals from 10.0.0.9" in r.stdout
    assert "acknowledged up to entry 2" in r.stdout  # the write, then the ack itself
    assert AuditLog(str(tmp_path)).acknowledged() == 2
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace("0.95", "0.99")  # tampered: no acknowledgement
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    r = subprocess.run([*run, "--ack"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "BROKEN" in r.stdout and "acknowledged" not in r.stdout
