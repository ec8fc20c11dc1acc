"""Bytes on the wire per TCP client, read from the kernel's own socket counters.

Why sock_diag: libiec61850 owns the MMS server's sockets. We have neither their
file descriptors nor a hook on their reads and writes, so we cannot count bytes
ourselves. The kernel already counts them for every TCP socket (``struct
tcp_info``, RFC 4898 statistics) and hands them to any process of the same
network namespace, unprivileged, through the ``NETLINK_SOCK_DIAG`` netlink
family: a ``SOCK_DIAG_BY_FAMILY`` dump request (``struct inet_diag_req_v2``)
with ``INET_DIAG_INFO`` asked for answers one ``struct inet_diag_msg`` per
socket followed by its ``struct tcp_info``. That is what ``ss -ti`` does; here
it is done with :mod:`socket` and :mod:`struct` only, no subprocess, no new
dependency. The request names our local port (``idiag_sport``), so the kernel
walks its established-socket hash and returns only the server's connections.

Two parts:

* :func:`sample_tcp` -- one snapshot of the counters of every connection whose
  local port is the server's, keyed by the peer's ``(ip, port)``.
* :class:`WireLedger` -- thread-safe book of connections, their level of
  service (monitoring < settings < reports) and their latest counters; folds
  closed connections into per-level totals and gives a JSON-able snapshot with
  bytes-per-day figures. Time is always passed in.

What counts as "on the wire": TCP payload plus, for each segment (data and
pure ACKs, retransmissions included), the IP and TCP headers: IPv4 20 or IPv6
40, TCP 20, and 12 more when the connection negotiated timestamps. Link-layer
framing is *not* counted, because it depends on the link (Ethernet, Wi-Fi,
PPP, a cellular bearer, a VPN tunnel...); :meth:`TcpCounters.framed` adds a
per-segment link overhead, :data:`ETHERNET_FRAMING` (header + FCS) or
:data:`ETHERNET_ON_WIRE` (also preamble and inter-frame gap) for Ethernet.
Other TCP options (SACK blocks, the SYN's MSS/window-scale options) are not
counted: a few bytes per connection, more on lossy links.

The kernel's byte counters are 64-bit and start at zero for each connection;
the segment counters are 32-bit and would wrap after 2**32 segments (not
handled: decades for a client polling once a second).

Cost: each request walks the kernel's whole established-socket hash table,
~0.2 ms per address family on a 262144-bucket table, plus a few us of Python
per reported connection; sample every few seconds, not per request.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "BOTH_FAMILIES",
    "ETHERNET_FRAMING",
    "ETHERNET_ON_WIRE",
    "LEVELS",
    "IPV4_HEADER",
    "IPV6_HEADER",
    "TcpCounters",
    "WireLedger",
    "counters_from_tcp_info",
    "parse_peer",
    "sample_tcp",
]

# --- netlink / sock_diag constants (linux/netlink.h, sock_diag.h, inet_diag.h) --------------
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x01
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2  # rtattr type of the struct tcp_info in a reply

# TCP states (include/net/tcp_states.h)
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11

#: States asked for: full sockets with a peer. TIME_WAIT (and the request
#: sockets of half-open handshakes) are left out: the kernel keeps no
#: ``tcp_info`` for them, only addresses.
_STATES = (TCP_ESTABLISHED, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
           TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING)
_STATE_MASK = sum(1 << s for s in _STATES)
#: The peer's FIN has been received: ``tcpi_bytes_received`` counts it as one byte.
_PEER_FIN_IN = frozenset({TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING})
#: Our FIN has been acknowledged: ``tcpi_bytes_acked`` counts it as one byte.
_OUR_FIN_ACKED = frozenset({TCP_FIN_WAIT2})

TCPI_OPT_TIMESTAMPS = 1

# struct layouts
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQ_V2 = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states
_SOCKID_PORTS = struct.Struct("!HH")  # sport, dport (network order)
_DIAG_MSG_LEN = 72  # sizeof(struct inet_diag_msg)
_RTATTR = struct.Struct("=HH")  # len, type
#: inet_diag_msg: family, state, timer, retrans, then id.idiag_sport, idiag_dport
_DIAG_HEAD = struct.Struct("!BB2x2xH")

# struct tcp_info (linux/tcp.h) offsets of the fields we read, with the kernel
# that appended them: a shorter struct from an older kernel lacks them.
_TI_OPTIONS = 5  # __u8 tcpi_options
_TI_BYTES_ACKED = 120  # __u64, Linux 4.1
_TI_BYTES_RECEIVED = 128  # __u64, Linux 4.1
_TI_SEGS_OUT = 136  # __u32, Linux 4.2
_TI_SEGS_IN = 140  # __u32, Linux 4.2
_TI_BYTES_SENT = 200  # __u64, Linux 4.19
_TI_COUNTS = struct.Struct("=QQII")  # bytes_acked, bytes_received, segs_out, segs_in
_TI_BYTES = struct.Struct("=QQ")  # bytes_acked, bytes_received
_U64 = struct.Struct("=Q")

#: Both IP families, the default of :func:`sample_tcp`.
BOTH_FAMILIES = (socket.AF_INET, socket.AF_INET6)

_RECV_BUFFER = 1 << 16  # the kernel fills dump skbs of at most ~32 KiB
_TIMEOUT_S = 2.0

IPV4_HEADER = 20
IPV6_HEADER = 40
TCP_HEADER = 20
TCP_TIMESTAMP_OPTION = 12  # 10-byte option padded to 32 bits
#: Ethernet header (14) + FCS (4) per frame: what a capture on the link shows.
ETHERNET_FRAMING = 18
#: Also preamble + start delimiter (8) and inter-frame gap (12): line occupancy.
ETHERNET_ON_WIRE = 38


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One socket's counters, as seen from the server (``in`` = from the client).

    ``bytes_out`` is ``tcpi_bytes_acked``: payload the client has acknowledged,
    i.e. delivered, each byte once, the mirror of the client's own
    ``bytes_received``. ``tcpi_bytes_sent`` counts retransmitted payload again
    and includes bytes still in flight; it is the better *wire* figure, so
    :attr:`wire_out` uses it (kept in :attr:`bytes_sent`) when the kernel has
    it (Linux >= 4.19), and ``bytes_out`` otherwise.

    The FIN, which the kernel's sequence-number-based counters count as one
    byte, is taken off: the byte counts are payload only, in every state.

    On a kernel whose ``tcp_info`` ends before a field (older than 4.1 for the
    byte counts, 4.2 for the segment counts) that field reads 0, and
    :attr:`bytes_sent` is None before 4.19.

    ``header_bytes`` is the IP + TCP header overhead of one segment of this
    connection (IPv4-mapped peers of an IPv6 socket travel as IPv4). The
    server's SYN-ACK is sent before the connection's socket exists and is not
    in ``segs_out`` (one segment per connection); the client's SYN and
    handshake ACK are in ``segs_in``.
    """

    bytes_in: int
    bytes_out: int
    segs_in: int
    segs_out: int
    header_bytes: int
    bytes_sent: int | None = None
    state: int = TCP_ESTABLISHED

    @property
    def wire_in(self) -> int:
        """Bytes the client put on the wire to us: payload + headers of every segment.

        Duplicate payload the client retransmitted is not in ``bytes_in``
        (the kernel counts received payload once) but its segments' headers are.
        """
        return self.bytes_in + self.segs_in * self.header_bytes

    @property
    def wire_out(self) -> int:
        """Bytes we put on the wire to the client, retransmissions included."""
        payload = self.bytes_out if self.bytes_sent is None else self.bytes_sent
        return payload + self.segs_out * self.header_bytes

    def framed(self, link_overhead: int = ETHERNET_FRAMING) -> tuple[int, int]:
        """``(wire_in, wire_out)`` plus ``link_overhead`` bytes per segment.

        The kernel counts segments as packets on the link (a TSO or GRO batch
        as the packets it stands for), so this holds for a real link; over
        loopback (64 KiB MTU) segments are few and large.
        """
        return (self.wire_in + self.segs_in * link_overhead,
                self.wire_out + self.segs_out * link_overhead)


# --- sampler -----------------------------------------------------------------------------------
def sample_tcp(local_port: int, families: Iterable[int] = BOTH_FAMILIES,
               ) -> dict[tuple[str, int], TcpCounters]:
    """Counters of every TCP connection (IPv4 and IPv6) whose local port is ``local_port``.

    Meant for a server's port. (The socket of a connection we opened counts
    its SYN in ``bytes_out``: one byte more than the payload.)

    Keyed by the peer's ``(ip, port)``; IPv4-mapped IPv6 peers are given as
    dotted IPv4, IPv6 peers in compressed form without a scope. Listening and
    TIME_WAIT sockets are not reported. Works unprivileged, and sees the
    sockets of the caller's network namespace only.

    ``families``: the socket families to ask for, one kernel request each.
    Each request walks the kernel's whole established-socket hash table
    (sized from RAM: 262144 buckets here, ~0.18 ms), so a server that only
    listens on IPv4 can pass ``(socket.AF_INET,)`` and halve the cost. A
    dual-stack IPv6 listener's IPv4 clients are AF_INET6 sockets.

    Raises :class:`OSError` when the kernel refuses or fails the request (no
    ``inet_diag``/``tcp_diag`` support, seccomp, a reply in a form we do not
    know) or does not answer within 2 s.
    """
    if not 0 < local_port < 65536:
        raise ValueError(f"local port out of range: {local_port}")
    asked = tuple(families)
    if not asked or not set(asked) <= set(BOTH_FAMILIES):
        raise ValueError(f"families must be AF_INET and/or AF_INET6, not {asked}")
    found: dict[tuple[str, int], TcpCounters] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(_TIMEOUT_S)
        for seq, family in enumerate(asked, start=1):
            nl.send(_request(family, local_port, seq))
            for state, peer, header, info in _replies(nl, seq):
                if peer[1] == 0:
                    continue
                counters = counters_from_tcp_info(info, header, state)
                if counters is not None:
                    found[peer] = counters
    return found


def _request(family: int, sport: int, seq: int) -> bytes:
    body = (_REQ_V2.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), _STATE_MASK)
            + _SOCKID_PORTS.pack(sport, 0)  # the kernel matches sport (and dport if non-zero)
            + bytes(16 + 16 + 4 + 8))  # src, dst, if, cookie: not used by a dump
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _replies(nl: socket.socket, seq: int) -> Iterator[tuple[int, tuple[str, int], int, bytes]]:
    """``(state, peer, ip_header_bytes, tcp_info)`` of each socket in the dump
    answering request ``seq``, up to its NLMSG_DONE."""
    while True:
        data, _, flags, _ = nl.recvmsg(_RECV_BUFFER)
        if flags & socket.MSG_TRUNC:
            raise OSError("sock_diag: reply truncated")
        if not data:
            raise OSError("sock_diag: netlink socket closed before NLMSG_DONE")
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size or offset + length > len(data):
                raise OSError(f"sock_diag: malformed netlink message (length {length})")
            payload = memoryview(data)[offset + _NLMSGHDR.size:offset + length]
            offset += (length + 3) & ~3
            if msg_seq != seq:
                continue  # not ours (left over from an earlier request)
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                # Both carry an int: 0, or a negative errno (a refused request,
                # or a dump that failed part way).
                error = struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
                if error < 0:
                    raise OSError(-error, f"sock_diag request failed: {os.strerror(-error)}")
                if kind == NLMSG_DONE:
                    return
                continue  # NLMSG_ERROR with 0 is an acknowledgement
            if kind == SOCK_DIAG_BY_FAMILY and len(payload) >= _DIAG_MSG_LEN:
                yield _diag_msg(payload)


def _diag_msg(msg: memoryview) -> tuple[int, tuple[str, int], int, bytes]:
    family, state, dport = _DIAG_HEAD.unpack_from(msg)
    if family == socket.AF_INET:
        ip, header = socket.inet_ntop(socket.AF_INET, msg[24:28]), IPV4_HEADER
    else:
        ip, header = _ipv6_peer(bytes(msg[24:40]))  # idiag_dst
    info = b""
    offset = _DIAG_MSG_LEN
    while offset + _RTATTR.size <= len(msg):
        rta_len, rta_type = _RTATTR.unpack_from(msg, offset)
        if rta_len < _RTATTR.size:
            break
        if rta_type == INET_DIAG_INFO:
            info = bytes(msg[offset + _RTATTR.size:offset + rta_len])
            break
        offset += (rta_len + 3) & ~3
    return state, (ip, dport), header, info


@functools.lru_cache(maxsize=256)
def _ipv6_peer(raw: bytes) -> tuple[str, int]:
    """An IPv6 peer address as text (as :func:`parse_peer` spells it) and its IP header size."""
    v6 = ipaddress.IPv6Address(raw)
    mapped = v6.ipv4_mapped
    return (str(mapped), IPV4_HEADER) if mapped is not None else (str(v6), IPV6_HEADER)


def counters_from_tcp_info(info: bytes, ip_header: int = IPV4_HEADER,
                           state: int = TCP_ESTABLISHED) -> TcpCounters | None:
    """Decode the fields we use of a ``struct tcp_info`` (as sock_diag or
    ``getsockopt(TCP_INFO)`` give it), None when there is none.

    A struct shorter than the running kernel's headers say is an older
    kernel's: the fields it lacks read 0 (``bytes_sent``: None).
    ``ip_header``: :data:`IPV4_HEADER` or :data:`IPV6_HEADER`; ``state``: the
    socket's TCP state, for the FIN correction.
    """
    size = len(info)
    if size <= _TI_OPTIONS:
        return None
    header = ip_header + TCP_HEADER
    if info[_TI_OPTIONS] & TCPI_OPT_TIMESTAMPS:
        header += TCP_TIMESTAMP_OPTION
    bytes_out = bytes_in = segs_out = segs_in = 0
    bytes_sent: int | None = None
    if size >= _TI_SEGS_IN + 4:
        bytes_out, bytes_in, segs_out, segs_in = _TI_COUNTS.unpack_from(info, _TI_BYTES_ACKED)
    elif size >= _TI_BYTES_RECEIVED + 8:
        bytes_out, bytes_in = _TI_BYTES.unpack_from(info, _TI_BYTES_ACKED)
    if size >= _TI_BYTES_SENT + 8:
        (bytes_sent,) = _U64.unpack_from(info, _TI_BYTES_SENT)
    if state in _PEER_FIN_IN and bytes_in:
        bytes_in -= 1
    if state in _OUR_FIN_ACKED and bytes_out:
        bytes_out -= 1
    return TcpCounters(bytes_in, bytes_out, segs_in, segs_out, header, bytes_sent, state)


# --- ledger ------------------------------------------------------------------------------------
#: Levels of service, lowest first: a connection is at the highest level it used.
LEVELS = ("monitoring", "settings", "reports")
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
_DAY_S = 86400.0


def parse_peer(peer: str) -> tuple[str, int] | None:
    """``(ip, port)`` from libiec61850's peer string, None when it is not one.

    Accepts ``"1.2.3.4:102"``, ``"[::1]:102"`` and ``"::1:102"`` (split on the
    last colon); IPv4-mapped IPv6 addresses become dotted IPv4 and IPv6
    addresses are normalised as :func:`sample_tcp` gives them, so that both
    name a connection the same way.
    """
    host, sep, port_text = peer.strip().rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.partition("%")[0]  # a scope id: sock_diag gives the bare address
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), port


def _peer_text(key: tuple[str, int]) -> str:
    ip, port = key
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(slots=True)
class _Connection:
    opened_at: float
    level: str = "monitoring"
    counters: TcpCounters | None = None


@dataclass(slots=True)
class _Totals:
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    wire_in: int = 0
    wire_out: int = 0
    connected_s: float = 0.0

    def add(self, connection: _Connection, now: float) -> None:
        self.connections += 1
        self.connected_s += max(0.0, now - connection.opened_at)
        c = connection.counters
        if c is not None:
            self.bytes_in += c.bytes_in
            self.bytes_out += c.bytes_out
            self.wire_in += c.wire_in
            self.wire_out += c.wire_out


def _per_day(wire: int, seconds: float) -> float | None:
    return wire * _DAY_S / seconds if seconds > 0 else None


class WireLedger:
    """Connections of one server, their level of service and what they cost on the wire.

    Fed from two sides: the server's connection callbacks (:meth:`opened`,
    :meth:`used`, :meth:`closed`; libiec61850 threads) and the control loop's
    periodic :func:`sample_tcp` (:meth:`update`). All methods take one lock
    and never block on anything else, and none reads a clock.

    A connection's counters are those of its latest sample. :meth:`closed`
    without ``final`` keeps those: the traffic after the last sample (at most
    one sampling period of it, and all of a connection shorter than one
    period) is lost. Pass ``final`` to avoid that. Seen with libiec61850
    1.6.1: when the client closes (FIN), the disconnect indication comes
    while the server's socket is still in CLOSE_WAIT, so a :func:`sample_tcp`
    in that callback has the connection's final counters; after a client's
    RST the socket is already gone (keep the last sample); a connection the
    server aborts gets no indication at all and its socket is gone right
    after ``ClientConnection_abort`` (sample just before aborting, or let
    :meth:`update` close connections missing from a sample).

    Peers that the ledger does not know (or strings that are not
    ``ip:port``) are ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], _Connection] = {}
        self._closed = {level: _Totals() for level in LEVELS}

    def opened(self, peer: str, now: float) -> None:
        """A client connected at ``now``; its level is monitoring until it uses
        more (so a connection that never gets as far as a request counts there).

        A peer already open (a close we missed) is closed first, at ``now``.
        """
        key = parse_peer(peer)
        if key is None:
            return
        with self._lock:
            stale = self._open.pop(key, None)
            if stale is not None:
                self._closed[stale.level].add(stale, now)
            self._open[key] = _Connection(opened_at=now)

    def used(self, peer: str, level: str) -> None:
        """The client used ``level`` (one of :data:`LEVELS`); keeps the highest."""
        rank = _RANK.get(level)
        if rank is None:
            raise ValueError(f"unknown level of service {level!r}; one of {LEVELS}")
        key = parse_peer(peer)
        if key is None:
            return
        with self._lock:
            connection = self._open.get(key)
            if connection is not None and rank > _RANK[connection.level]:
                connection.level = level

    def update(self, counters: Mapping[tuple[str, int], TcpCounters], now: float, *,
               close_missing: bool = False) -> list[str]:
        """Take the latest counters of each open connection from a sample.

        Sockets of the sample with no open connection (not reported yet, or
        already closed) are ignored.

        ``now`` is when the sample was *started* (read the clock before
        calling :func:`sample_tcp`), on the clock of :meth:`opened`. With
        ``close_missing``, a connection opened before ``now`` but absent from
        the sample has no socket any more: it is closed at ``now`` with its
        last counters. That catches closes the server is not told about
        (libiec61850 1.6.1 does not indicate the connections it aborts);
        only pass it with a sample of all the families the server listens on.
        Returns the peers so closed.
        """
        gone: list[str] = []
        with self._lock:
            for key, connection in list(self._open.items()):
                latest = counters.get(key)
                if latest is not None:
                    connection.counters = latest
                elif close_missing and connection.opened_at < now:
                    del self._open[key]
                    self._closed[connection.level].add(connection, now)
                    gone.append(_peer_text(key))
        return gone

    def closed(self, peer: str, now: float, final: TcpCounters | None = None) -> None:
        """The client disconnected at ``now``: fold it into its level's totals.

        ``final``: the connection's counters sampled at close time, if the
        caller has them; they replace the last sampled ones.
        """
        key = parse_peer(peer)
        if key is None:
            return
        with self._lock:
            connection = self._open.pop(key, None)
            if connection is None:
                return
            if final is not None:
                connection.counters = final
            self._closed[connection.level].add(connection, now)

    def open_peers(self) -> list[tuple[str, int]]:
        """Keys of the open connections, as :func:`sample_tcp` names them."""
        with self._lock:
            return list(self._open)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Plain data (JSON-able) at ``now``.

        ``clients``: one entry per open connection, ``levels``: per level of
        service, totals over closed *and* open connections (open ones with
        their latest counters and their time so far). ``bytes_per_day`` is
        ``wire_in + wire_out`` extrapolated to a day of connection; a level's
        ``bytes_per_day_per_client`` is its wire bytes per client-second of
        connection, times a day (None while no time has passed).
        """
        with self._lock:
            clients = []
            levels = {level: replace(totals) for level, totals in self._closed.items()}
            for key, connection in sorted(self._open.items()):
                levels[connection.level].add(connection, now)
                c = connection.counters
                connected_s = max(0.0, now - connection.opened_at)
                wire_in = c.wire_in if c else 0
                wire_out = c.wire_out if c else 0
                clients.append({
                    "peer": _peer_text(key),
                    "level": connection.level,
                    "bytes_in": c.bytes_in if c else 0,
                    "bytes_out": c.bytes_out if c else 0,
                    "wire_in": wire_in,
                    "wire_out": wire_out,
                    "connected_s": connected_s,
                    "bytes_per_day": _per_day(wire_in + wire_out, connected_s),
                })
        return {
            "clients": clients,
            "levels": {
                level: {
                    "connections": t.connections,
                    "bytes_in": t.bytes_in,
                    "bytes_out": t.bytes_out,
                    "wire_in": t.wire_in,
                    "wire_out": t.wire_out,
                    "connected_s": t.connected_s,
                    "bytes_per_day_per_client": _per_day(t.wire_in + t.wire_out, t.connected_s),
                }
                for level, t in levels.items()
            },
        }

