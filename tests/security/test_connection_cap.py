"""The connection cap cannot be used to lock everyone out (issue 14, finding 5).

Three peers send malformed MMS frames (over TLS also malformed handshakes) and
reconnect in a tight loop, leaving old connections open; a fourth, well-behaved
client (another loopback address) must associate within 2 s every time, plain and
TLS. Also: a half-open connection is released within a second; over TLS, a silent
peer in the handshake no longer stalls everybody; with roles, the last slot is kept
for an engineer.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator

import pytest

from inverter_agent.security import certs

from ._peers import MalformedPeer, associate_within, connect, corpus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "adapters", "mms"))
from conftest import FunctionsServer, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)

GOOD = "127.0.0.1"
FUZZERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LIMIT_S = 2.0
FUZZ_SECONDS = 9.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("pki"))
    ca = certs.create_ca(f"{root}/ca")
    key, cert = certs.issue(f"{root}/ca", "gw", f"{root}/srv", server=True,
                            sans=["127.0.0.1"])
    out = {"ca": ca, "key": key, "cert": cert}
    for cn, role in (("eng1", "engineer"), ("view1", "viewer"), ("view2", "viewer"),
                     ("view3", "viewer"), ("view4", "viewer"), ("view5", "viewer")):
        out[cn] = certs.issue(f"{root}/ca", cn, f"{root}/cli", role=role)  # type: ignore
    return out


def _ctx(pki, cn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.check_hostname = False  # host names: test_cert_validation
    key, cert = pki[cn]
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(params=["plain", "tls"])
def server(request, pki, tmp_path) -> Iterator[tuple[FunctionsServer, str]]:
    args = [] if request.param == "plain" else [
        "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-ca", pki["ca"]]
    s = FunctionsServer(str(tmp_path), *args)
    try:
        yield s, request.param
    finally:
        assert s.close() == 0


def test_malformed_reconnecting_peers_do_not_lock_out_a_well_behaved_client(pki, server):
    srv, mode = server
    frames = corpus()
    fuzz_ctx = _ctx(pki, "view1") if mode == "tls" else None  # insiders: valid certs
    good_ctx = _ctx(pki, "eng1") if mode == "tls" else None
    peers = [MalformedPeer(srv.port, src, frames, seed=i, ctx=fuzz_ctx,
                           seconds=FUZZ_SECONDS) for i, src in enumerate(FUZZERS)]
    for p in peers:
        p.start()
    times: list[float] = []
    try:
        time.sleep(0.3)  # let them get going
        t_end = time.monotonic() + FUZZ_SECONDS - 1.5
        while time.monotonic() < t_end:
            times.append(associate_within(srv.port, GOOD, good_ctx, LIMIT_S))
            time.sleep(0.2)
    finally:
        for p in peers:
            p.stop.set()
        for p in peers:
            p.join(timeout=15)
    attempts = sum(p.attempts for p in peers)
    assert attempts > 30, attempts  # the peers really were hammering
    assert len(times) >= 5, times
    assert max(times) < LIMIT_S, (mode, [round(t, 2) for t in times])


def test_a_half_open_connection_is_released_within_a_second(server):
    srv, mode = server
    half = socket.create_connection(("127.0.0.1", srv.port), source_address=("127.0.0.5", 0))
    try:
        half.sendall(b"\x03\x00\x00\x16\x11\xe0")  # half a COTP connect, then silence
        half.settimeout(3)
        t0 = time.monotonic()
        try:
            data = half.recv(100)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - t0
        # closed by the gateway at its 1 s deadline (1 s of room for a loaded machine;
        # a connection never released meets the 3 s socket timeout instead)
        assert data == b"" and elapsed < 2.0, (data, elapsed)
    finally:
        half.close()
    assert wait_until(lambda: srv.command({"cmd": "clients"})["clients"] == 0, timeout=2)


def test_a_silent_tls_peer_no_longer_stalls_every_handshake(pki, tmp_path):
    s = FunctionsServer(str(tmp_path), "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                        "--tls-ca", pki["ca"])
    try:
        silent = socket.create_connection(("127.0.0.1", s.port),
                                          source_address=("127.0.0.6", 0))
        try:
            time.sleep(0.1)  # the library's only thread is now in that handshake
            elapsed = associate_within(s.port, GOOD, _ctx(pki, "eng1"), LIMIT_S)
            # it waited for the 1 s handshake deadline at most: within issue 14's 2 s
            assert elapsed < LIMIT_S, elapsed
        finally:
            silent.close()
    finally:
        assert s.close() == 0


def test_the_last_slot_is_kept_for_an_engineer(pki, tmp_path):
    s = FunctionsServer(str(tmp_path), "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                        "--tls-ca", pki["ca"])
    viewers = []
    try:
        for i in range(4):  # four of five slots, from four addresses
            viewers.append(connect(s.port, f"127.0.0.{10 + i}", _ctx(pki, f"view{i + 1}"),
                                   timeout=3))
        with pytest.raises((OSError, ConnectionError, ssl.SSLError, ValueError, Exception)):
            connect(s.port, "127.0.0.20", _ctx(pki, "view5"), timeout=3).close()
        engineer = connect(s.port, GOOD, _ctx(pki, "eng1"), timeout=3)
        engineer.close()
    finally:
        for v in viewers:
            v.close()
        assert s.close() == 0
