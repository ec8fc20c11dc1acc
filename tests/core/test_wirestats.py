"""Per-client wire bytes from the kernel (sock_diag) and the ledger that books them.

The sampler is tested against real loopback connections carrying known byte
counts; the ledger with counters and times given exactly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import pytest

from inverter_agent.adapters._shared.wirestats import (
    IPV4_HEADER,
    IPV6_HEADER,
    TcpCounters,
    WireLedger,
    counters_from_tcp_info,
    parse_peer,
    sample_tcp,
)

T = TypeVar("T")

TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_CLOSE_WAIT = 1, 5, 8


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")


def _until(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float = 3.0) -> T:
    """``fetch()`` until ``done`` holds of it, at most ``timeout`` s (and 600 tries)."""
    deadline = time.monotonic() + timeout
    value = fetch()
    for _ in range(600):
        if done(value) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
        value = fetch()
    return value


@contextmanager
def _listener(host: str = "127.0.0.1", family: int = socket.AF_INET,
              dual_stack: bool = False) -> Iterator[socket.socket]:
    with socket.socket(family) as srv:
        if dual_stack:
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.bind((host, 0))
        srv.listen(64)
        srv.settimeout(5)
        yield srv


def _connect(stack: ExitStack, srv: socket.socket,
             host: str) -> tuple[socket.socket, socket.socket]:
    """A connected (client, server side) pair, both closed with ``stack``."""
    client = stack.enter_context(socket.create_connection((host, srv.getsockname()[1]), 5))
    server_side = stack.enter_context(srv.accept()[0])
    server_side.settimeout(5)
    return client, server_side


def _send(sender: socket.socket, receiver: socket.socket, count: int) -> None:
    """``count`` bytes from ``sender``, all read by ``receiver`` (so it acknowledges them)."""
    thread = threading.Thread(target=sender.sendall, args=(b"\x5a" * count,), daemon=True)
    thread.start()
    got = 0
    for _ in range(count + 1):  # every recv returns at least one byte
        if got >= count:
            break
        chunk = receiver.recv(1 << 20)
        assert chunk, "connection closed early"
        got += len(chunk)
    thread.join(5)
    assert got == count and not thread.is_alive()


def _peer_key(client: socket.socket) -> tuple[str, int]:
    """The key sample_tcp uses for this client: its address as the server sees it."""
    ip, port = client.getsockname()[:2]
    return ip, port


def _timestamps(sock: socket.socket) -> bool:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
    return bool(info[5] & 1)  # tcpi_options & TCPI_OPT_TIMESTAMPS


def _settled(port: int, expected: dict[tuple[str, int], tuple[int, int]],
             ) -> dict[tuple[str, int], TcpCounters]:
    """Samples until every expected peer shows (bytes_in, bytes_out): acks take a moment."""
    def done(sample: dict[tuple[str, int], TcpCounters]) -> bool:
        return all(key in sample and (sample[key].bytes_in, sample[key].bytes_out) == want
                   for key, want in expected.items())
    return _until(lambda: sample_tcp(port), done)


# --- sampler ------------------------------------------------------------------------------------
def test_an_idle_server_has_no_connections():
    with _listener() as srv:
        assert sample_tcp(srv.getsockname()[1]) == {}


def _exchange_and_check(host: str, family: int, ip_header: int, listen_host: str | None = None,
                        dual_stack: bool = False) -> None:
    sizes = [(0, 0), (1, 2), (1234, 98765), (200_000, 7), (40_000, 300_000)]
    with _listener(listen_host or host, family, dual_stack) as srv, ExitStack() as stack:
        port = srv.getsockname()[1]
        expected = {}
        ends = []
        for up, down in sizes:
            client, server_side = _connect(stack, srv, host)
            _send(client, server_side, up)
            _send(server_side, client, down)
            expected[_peer_key(client)] = (up, down)
            ends.append(server_side)
        sample = _settled(port, expected)
        assert set(sample) == set(expected)
        header = ip_header + 20 + (12 if _timestamps(ends[0]) else 0)
        for key, (up, down) in expected.items():
            c = sample[key]
            assert (c.bytes_in, c.bytes_out) == (up, down), key
            assert c.bytes_sent == down  # nothing retransmitted on loopback
            assert c.segs_in > 0 and c.segs_out >= (1 if down else 0)
            assert c.header_bytes == header
            assert c.wire_in == up + c.segs_in * header > up
            assert c.wire_out == down + c.segs_out * header
            assert c.state == TCP_ESTABLISHED
        # a connection that carried data has more segments than one with none
        assert sample[list(expected)[4]].segs_out > sample[list(expected)[0]].segs_out


def test_payload_bytes_per_ipv4_client_both_directions():
    _exchange_and_check("127.0.0.1", socket.AF_INET, IPV4_HEADER)


@needs_ipv6
def test_payload_bytes_per_ipv6_client_both_directions():
    _exchange_and_check("::1", socket.AF_INET6, IPV6_HEADER)


@needs_ipv6
def test_ipv4_clients_of_a_dual_stack_listener_are_dotted_ipv4_with_ipv4_headers():
    _exchange_and_check("127.0.0.1", socket.AF_INET6, IPV4_HEADER, listen_host="::",
                        dual_stack=True)


def test_only_connections_on_the_asked_local_port_are_reported():
    # sample_tcp does no port filtering of its own: this checks the kernel's
    # (idiag_sport in the request). The clients' own sockets, whose *remote*
    # port is the server's, must not be reported either.
    with _listener() as mine, _listener() as other, ExitStack() as stack:
        ours = [_connect(stack, mine, "127.0.0.1")[0] for _ in range(3)]
        for _ in range(5):
            _connect(stack, other, "127.0.0.1")
        sample = sample_tcp(mine.getsockname()[1])
        assert set(sample) == {_peer_key(c) for c in ours}
        assert len(sample_tcp(other.getsockname()[1])) == 5
        # a client's socket is found by *its* local port, with the server as peer
        assert set(sample_tcp(ours[0].getsockname()[1])) == {mine.getsockname()[:2]}


def test_ipv4_only_request_leaves_ipv6_clients_out():
    if not _has_ipv6():
        pytest.skip("no IPv6 loopback here")
    with _listener("::", socket.AF_INET6, dual_stack=True) as srv, ExitStack() as stack:
        v4 = _connect(stack, srv, "127.0.0.1")[0]
        v6 = _connect(stack, srv, "::1")[0]
        port = srv.getsockname()[1]
        assert set(sample_tcp(port)) == {_peer_key(v4), _peer_key(v6)}
        # a dual-stack listener's IPv4 clients are AF_INET6 sockets
        assert set(sample_tcp(port, (socket.AF_INET6,))) == {_peer_key(v4), _peer_key(v6)}
        assert sample_tcp(port, (socket.AF_INET,)) == {}


def test_the_fin_is_not_counted_as_a_byte():
    # The kernel's counters follow sequence numbers, in which a FIN is one byte.
    with _listener() as srv, ExitStack() as stack:
        port = srv.getsockname()[1]
        client, server_side = _connect(stack, srv, "127.0.0.1")
        _send(client, server_side, 300)
        _send(server_side, client, 400)
        client.shutdown(socket.SHUT_WR)  # the client's FIN: server side in CLOSE_WAIT
        assert server_side.recv(10) == b""
        key = _peer_key(client)
        got = _until(lambda: sample_tcp(port), lambda s: s[key].state == TCP_CLOSE_WAIT)
        assert got[key].state == TCP_CLOSE_WAIT
        assert (got[key].bytes_in, got[key].bytes_out) == (300, 400)

        client2, server2 = _connect(stack, srv, "127.0.0.1")
        _send(client2, server2, 5)
        _send(server2, client2, 6)
        server2.shutdown(socket.SHUT_WR)  # the server's FIN, acked: FIN_WAIT2
        assert client2.recv(10) == b""
        key2 = _peer_key(client2)
        got = _until(lambda: sample_tcp(port), lambda s: s[key2].state == TCP_FIN_WAIT2)
        assert got[key2].state == TCP_FIN_WAIT2
        assert (got[key2].bytes_in, got[key2].bytes_out) == (5, 6)


def test_closed_connections_leave_the_sample():
    with _listener() as srv:
        port = srv.getsockname()[1]
        with ExitStack() as stack:
            client, server_side = _connect(stack, srv, "127.0.0.1")
            _send(client, server_side, 10)
            assert len(sample_tcp(port)) == 1
        # both ends closed: the server side ends in TIME_WAIT or gone, neither reported
        assert _until(lambda: sample_tcp(port), lambda s: not s) == {}


def test_sample_agrees_with_the_sockets_own_tcp_info():
    with _listener() as srv, ExitStack() as stack:
        client, server_side = _connect(stack, srv, "127.0.0.1")
        _send(client, server_side, 4321)
        _send(server_side, client, 8765)
        key = _peer_key(client)
        port = srv.getsockname()[1]
        _settled(port, {key: (4321, 8765)})

        def both() -> tuple[TcpCounters | None, TcpCounters | None]:
            own = server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
            return counters_from_tcp_info(own), sample_tcp(port).get(key)

        own, sampled = _until(both, lambda pair: pair[0] == pair[1])  # a late ACK may land between
        assert sampled is not None and own == sampled


def test_a_shorter_tcp_info_from_an_older_kernel_reads_as_zero_or_none():
    with _listener() as srv, ExitStack() as stack:
        client, server_side = _connect(stack, srv, "127.0.0.1")
        _send(client, server_side, 77)
        _send(server_side, client, 88)
        time.sleep(0.05)
        info = server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
    assert len(info) >= 208, "this kernel's tcp_info lacks tcpi_bytes_sent"
    full = counters_from_tcp_info(info)
    assert full is not None and (full.bytes_in, full.bytes_out, full.bytes_sent) == (77, 88, 88)
    linux_4_0 = counters_from_tcp_info(info[:120])
    assert linux_4_0 is not None
    assert (linux_4_0.bytes_in, linux_4_0.bytes_out, linux_4_0.segs_in, linux_4_0.segs_out,
            linux_4_0.bytes_sent) == (0, 0, 0, 0, None)
    linux_4_1 = counters_from_tcp_info(info[:136])
    assert linux_4_1 is not None
    assert (linux_4_1.bytes_in, linux_4_1.bytes_out, linux_4_1.segs_in) == (77, 88, 0)
    linux_4_2 = counters_from_tcp_info(info[:144])
    assert linux_4_2 is not None
    assert (linux_4_2.segs_in, linux_4_2.segs_out) == (full.segs_in, full.segs_out)
    assert linux_4_2.bytes_sent is None
    assert linux_4_2.wire_out == 88 + full.segs_out * full.header_bytes  # bytes_acked instead
    assert counters_from_tcp_info(info[:208]) == full
    assert counters_from_tcp_info(b"") is None


def test_bad_arguments_are_refused():
    for port in (0, -1, 65536):
        with pytest.raises(ValueError):
            sample_tcp(port)
    with pytest.raises(ValueError):
        sample_tcp(102, (socket.AF_UNIX,))
    with pytest.raises(ValueError):
        sample_tcp(102, ())


def test_framed_adds_a_link_overhead_per_segment():
    c = TcpCounters(bytes_in=100, bytes_out=200, segs_in=3, segs_out=4, header_bytes=52)
    assert (c.wire_in, c.wire_out) == (256, 408)
    assert c.framed(18) == (256 + 54, 408 + 72)
    assert c.framed(0) == (c.wire_in, c.wire_out)
    retransmitted = TcpCounters(100, 200, 3, 4, 52, bytes_sent=260)
    assert retransmitted.wire_out == 260 + 4 * 52


# --- ledger -------------------------------------------------------------------------------------
def test_peer_strings_as_libiec61850_gives_them():
    assert parse_peer("192.0.2.7:102") == ("192.0.2.7", 102)
    assert parse_peer("[::1]:40000") == ("::1", 40000)
    assert parse_peer("::1:40000") == ("::1", 40000)
    assert parse_peer("[0:0:0:0:0:0:0:1]:9") == ("::1", 9)
    assert parse_peer("[2001:DB8::A]:9") == ("2001:db8::a", 9)
    assert parse_peer("[::ffff:127.0.0.1]:5") == ("127.0.0.1", 5)
    assert parse_peer("::ffff:127.0.0.1:5") == ("127.0.0.1", 5)
    assert parse_peer("[fe80::1%eth0]:7") == ("fe80::1", 7)
    for bad in ("", "?", "host:1", "192.0.2.7", "192.0.2.7:0", "192.0.2.7:70000",
                "192.0.2.7:-1", "[::1]", "[::1]:", "::1", "192.0.2.7:\u0663"):
        assert parse_peer(bad) is None, bad


def _c(bytes_in: int, bytes_out: int, segs_in: int = 10, segs_out: int = 20) -> TcpCounters:
    return TcpCounters(bytes_in=bytes_in, bytes_out=bytes_out, segs_in=segs_in,
                       segs_out=segs_out, header_bytes=52)


def _client(snapshot: dict, peer: str) -> dict:
    (client,) = [c for c in snapshot["clients"] if c["peer"] == peer]
    return client


def test_level_is_the_highest_used():
    ledger = WireLedger()
    for peer in ("10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3", "10.0.0.4:4"):
        ledger.opened(peer, 0.0)
    ledger.used("10.0.0.2:2", "settings")
    ledger.used("10.0.0.2:2", "monitoring")
    ledger.used("10.0.0.3:3", "reports")
    ledger.used("10.0.0.3:3", "settings")
    ledger.used("10.0.0.4:4", "settings")
    ledger.used("10.0.0.4:4", "reports")
    snap = ledger.snapshot(1.0)
    assert [(c["peer"], c["level"]) for c in snap["clients"]] == [
        ("10.0.0.1:1", "monitoring"), ("10.0.0.2:2", "settings"),
        ("10.0.0.3:3", "reports"), ("10.0.0.4:4", "reports")]
    with pytest.raises(ValueError):
        ledger.used("10.0.0.1:1", "control")


def test_snapshot_figures_for_open_clients():
    ledger = WireLedger()
    ledger.opened("10.0.0.1:5000", 100.0)
    ledger.opened("[2001:db8::1]:6000", 100.0)
    ledger.update({("10.0.0.1", 5000): _c(1000, 3000),
                   ("10.9.9.9", 1): _c(5, 5)}, 105.0)  # not open: ignored
    snap = ledger.snapshot(110.0)
    first = _client(snap, "10.0.0.1:5000")
    assert first == {"peer": "10.0.0.1:5000", "level": "monitoring", "bytes_in": 1000,
                     "bytes_out": 3000, "wire_in": 1000 + 10 * 52, "wire_out": 3000 + 20 * 52,
                     "connected_s": 10.0, "bytes_per_day": (1520 + 4040) * 86400 / 10}
    unsampled = _client(snap, "[2001:db8::1]:6000")
    assert (unsampled["wire_in"], unsampled["wire_out"], unsampled["bytes_per_day"]) == (0, 0, 0)
    assert snap["levels"]["monitoring"]["connections"] == 2
    assert snap["levels"]["monitoring"]["connected_s"] == 20.0
    assert snap["levels"]["monitoring"]["bytes_per_day_per_client"] == 5560 * 86400 / 20
    assert snap["levels"]["settings"] == {
        "connections": 0, "bytes_in": 0, "bytes_out": 0, "wire_in": 0, "wire_out": 0,
        "connected_s": 0.0, "bytes_per_day_per_client": None}
    assert ledger.snapshot(100.0)["clients"][0]["bytes_per_day"] is None  # no time yet
    json.dumps(snap)


def test_closed_connections_go_into_their_levels_totals():
    ledger = WireLedger()
    ledger.opened("10.0.0.1:1", 0.0)
    ledger.opened("10.0.0.2:2", 0.0)
    ledger.opened("10.0.0.3:3", 50.0)
    ledger.used("10.0.0.2:2", "settings")
    ledger.used("10.0.0.3:3", "settings")
    ledger.update({("10.0.0.1", 1): _c(100, 200), ("10.0.0.2", 2): _c(1000, 2000),
                   ("10.0.0.3", 3): _c(10, 20, 1, 1)}, 60.0)
    ledger.update({("10.0.0.1", 1): _c(150, 300)}, 90.0)  # the latest counters win
    ledger.closed("10.0.0.1:1", 100.0)
    ledger.closed("10.0.0.2:2", 100.0)
    snap = ledger.snapshot(150.0)
    assert [c["peer"] for c in snap["clients"]] == ["10.0.0.3:3"]
    monitoring = snap["levels"]["monitoring"]
    assert monitoring == {"connections": 1, "bytes_in": 150, "bytes_out": 300,
                          "wire_in": 150 + 520, "wire_out": 300 + 1040, "connected_s": 100.0,
                          "bytes_per_day_per_client": (670 + 1340) * 864.0}
    settings = snap["levels"]["settings"]  # one closed (100 s), one open (100 s so far)
    assert settings["connections"] == 2
    assert settings["connected_s"] == 200.0
    assert (settings["wire_in"], settings["wire_out"]) == (1520 + 62, 3040 + 72)
    assert settings["bytes_per_day_per_client"] == (1582 + 3112) * 86400 / 200
    # closing again, or a peer never opened, changes nothing
    ledger.closed("10.0.0.1:1", 200.0)
    ledger.closed("10.7.7.7:7", 200.0)
    ledger.closed("not a peer", 200.0)
    ledger.used("10.7.7.7:7", "reports")
    ledger.used("nonsense", "reports")
    ledger.opened("nonsense", 200.0)
    later = ledger.snapshot(150.0)
    assert later == snap


def test_final_counters_at_close_replace_the_last_sample():
    ledger = WireLedger()
    ledger.opened("10.0.0.1:1", 0.0)
    ledger.update({("10.0.0.1", 1): _c(100, 200)}, 10.0)
    ledger.closed("10.0.0.1:1", 12.0, final=_c(180, 400, 12, 24))
    totals = ledger.snapshot(20.0)["levels"]["monitoring"]
    assert (totals["bytes_in"], totals["bytes_out"]) == (180, 400)
    assert totals["connected_s"] == 12.0


def test_ipv6_peers_match_whatever_their_spelling():
    ledger = WireLedger()
    ledger.opened("[::1]:5000", 0.0)
    ledger.opened("[::ffff:192.0.2.1]:6000", 0.0)
    ledger.used("::1:5000", "reports")
    ledger.used("192.0.2.1:6000", "settings")
    ledger.update({("::1", 5000): _c(7, 8), ("192.0.2.1", 6000): _c(9, 10)}, 1.0)
    assert sorted(ledger.open_peers()) == [("192.0.2.1", 6000), ("::1", 5000)]
    ledger.closed("[0:0::1]:5000", 2.0)
    snap = ledger.snapshot(2.0)
    assert [c["peer"] for c in snap["clients"]] == ["192.0.2.1:6000"]
    assert snap["levels"]["reports"]["connections"] == 1
    assert snap["levels"]["reports"]["bytes_in"] == 7


def test_a_peer_opened_again_closes_its_previous_connection():
    ledger = WireLedger()
    ledger.opened("10.0.0.1:1", 0.0)
    ledger.used("10.0.0.1:1", "reports")
    ledger.update({("10.0.0.1", 1): _c(100, 200)}, 5.0)
    ledger.opened("10.0.0.1:1", 10.0)
    snap = ledger.snapshot(10.0)
    assert snap["levels"]["reports"]["connections"] == 1
    assert snap["levels"]["reports"]["bytes_in"] == 100
    assert snap["clients"][0]["level"] == "monitoring"
    assert snap["clients"][0]["bytes_in"] == 0


def test_connections_missing_from_a_sample_can_be_closed():
    ledger = WireLedger()
    ledger.opened("10.0.0.1:1", 0.0)
    ledger.opened("10.0.0.2:2", 10.0)
    ledger.update({("10.0.0.1", 1): _c(100, 200)}, 5.0)
    # without close_missing nothing is closed; a connection opened after the
    # sample started is never closed by it
    assert ledger.update({}, 8.0) == []
    assert ledger.update({("10.0.0.1", 1): _c(110, 210)}, 10.0, close_missing=True) == []
    assert len(ledger.open_peers()) == 2
    assert ledger.update({("10.0.0.2", 2): _c(1, 2)}, 20.0, close_missing=True) == [
        "10.0.0.1:1"]
    totals = ledger.snapshot(20.0)["levels"]["monitoring"]
    assert totals["connections"] == 2  # the closed one and the open one
    assert ledger.open_peers() == [("10.0.0.2", 2)]
    closed_only = WireLedger()
    closed_only.opened("10.0.0.1:1", 0.0)
    closed_only.update({("10.0.0.1", 1): _c(110, 210)}, 10.0)
    closed_only.update({}, 20.0, close_missing=True)
    assert closed_only.snapshot(30.0)["levels"]["monitoring"] == {
        "connections": 1, "bytes_in": 110, "bytes_out": 210, "wire_in": 630,
        "wire_out": 1250, "connected_s": 20.0, "bytes_per_day_per_client": 1880 * 86400 / 20}


def test_ledger_books_real_connections_from_samples():
    ledger = WireLedger()
    with _listener() as srv, ExitStack() as stack:
        port = srv.getsockname()[1]
        pairs = [_connect(stack, srv, "127.0.0.1") for _ in range(3)]
        peers = ["{}:{}".format(*_peer_key(c)) for c, _ in pairs]
        for peer in peers:
            ledger.opened(peer, 0.0)
        ledger.used(peers[1], "settings")
        ledger.used(peers[2], "reports")
        expected = {}
        for i, (client, server_side) in enumerate(pairs):
            _send(client, server_side, 100 * (i + 1))
            _send(server_side, client, 1000 * (i + 1))
            expected[_peer_key(client)] = (100 * (i + 1), 1000 * (i + 1))
        sample = _settled(port, expected)
        ledger.update(sample, 30.0)
        for peer in peers:
            ledger.closed(peer, 60.0)
    snap = ledger.snapshot(60.0)
    assert snap["clients"] == []
    for level, (key, (up, down)) in zip(("monitoring", "settings", "reports"),
                                        expected.items(), strict=True):
        totals = snap["levels"][level]
        assert (totals["connections"], totals["bytes_in"], totals["bytes_out"]) == (1, up, down)
        assert totals["wire_in"] == sample[key].wire_in > up
        assert totals["wire_out"] == sample[key].wire_out > down
        assert totals["connected_s"] == 60.0


def test_ledger_calls_from_many_threads_lose_nothing():
    ledger = WireLedger()
    sample = {("10.0.0.1", p): _c(1, 1) for p in range(1, 101)}

    def client_thread(base: int) -> None:
        for port in range(base, base + 25):
            peer = f"10.0.0.1:{port}"
            ledger.opened(peer, 0.0)
            ledger.used(peer, "settings")
            ledger.closed(peer, 1.0)

    def sampler_thread() -> None:
        for _ in range(200):
            ledger.update(sample, 0.5)
            ledger.snapshot(0.5)

    threads = [threading.Thread(target=client_thread, args=(b,)) for b in (1, 26, 51, 76)]
    threads.append(threading.Thread(target=sampler_thread))
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    snap = ledger.snapshot(2.0)
    assert snap["clients"] == []
    assert snap["levels"]["settings"]["connections"] == 100
    assert snap["levels"]["settings"]["connected_s"] == 100.0


def test_many_connections_span_several_netlink_reads():
    # ~330 bytes a socket and at most ~32 KiB a kernel read: 120 sockets need several
    with _listener() as srv, ExitStack() as stack:
        expected = {}
        for i in range(120):
            client, server_side = _connect(stack, srv, "127.0.0.1")
            _send(client, server_side, i)
            _send(server_side, client, 2 * i)
            expected[_peer_key(client)] = (i, 2 * i)
        sample = _settled(srv.getsockname()[1], expected)
        assert {key: (c.bytes_in, c.bytes_out) for key, c in sample.items()} == expected
