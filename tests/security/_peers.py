"""Clients for the admission tests: a well-behaved MMS client (plain or TLS, pure Python:
open61850 over a socket, wrapped by ``ssl`` for TLS) and a client that sends malformed
frames, each from a loopback address of its own (127.0.0.x are all loopback)."""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time

from open61850.mms import MmsClient
from open61850.mms.association import (
    AssociationParameters,
    association_request,
    decode_association_response,
)
from open61850.mms.transport import IsoConnection, connection_request, recv_tpkt, send_tpkt

from .test_fuzz_flood import _mutate


def corpus() -> list[bytes]:
    """What a real client sends first: the COTP connect and the MMS association request."""
    a, b = socket.socketpair()
    try:
        send_tpkt(a, connection_request(calling_tsap=b"\x00\x01", called_tsap=b"\x00\x01"))
        cr = b.recv(65536)
        IsoConnection(a).send(association_request(AssociationParameters()))
        b.settimeout(2)
        dt = b.recv(65536)
    finally:
        a.close()
        b.close()
    return [cr, dt]


def connect(port: int, source: str, ctx: ssl.SSLContext | None = None,
            timeout: float = 1.0) -> MmsClient:
    """COTP + MMS association as open61850 does it, from ``source``, over TLS if ``ctx``."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0))
    try:
        sock: socket.socket = ctx.wrap_socket(raw) if ctx is not None else raw
        sock.settimeout(timeout)
        send_tpkt(sock, connection_request(calling_tsap=b"\x00\x01", called_tsap=b"\x00\x01"))
        cc = recv_tpkt(sock)
        if cc is None:
            raise ConnectionError("closed before COTP CC")
        conn = IsoConnection(sock)
        conn.send(association_request(AssociationParameters()))
        response = conn.recv()
        if response is None:
            raise ConnectionError("closed during association")
        accepted = decode_association_response(response)
    except BaseException:
        raw.close()
        raise
    sock.settimeout(None)
    client = MmsClient(conn, request_timeout=timeout, association=accepted)
    client._start()
    return client


def associate_within(port: int, source: str, ctx: ssl.SSLContext | None,
                     limit_s: float) -> float:
    """Seconds until an association succeeds, retrying as a well-behaved client does
    (a short pause after each failure); ``limit_s * 2`` at most."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2 * limit_s:
        try:
            client = connect(port, source, ctx, timeout=min(1.0, limit_s))
        except (OSError, ssl.SSLError, ConnectionError, ValueError, Exception):
            time.sleep(0.05)
            continue
        elapsed = time.monotonic() - t0
        client.close()
        return elapsed
    return float("inf")


class MalformedPeer(threading.Thread):
    """Sends a valid prefix then one mutated frame, again and again, from ``source``,
    without closing its old connections (it leaves the last ``leak`` open), for at
    most ``seconds`` and ``max_connections`` connections. Over TLS (``ctx``) half of
    the attempts send garbage where the ClientHello should be."""

    def __init__(self, port: int, source: str, frames: list[bytes], seed: int,
                 ctx: ssl.SSLContext | None = None, seconds: float = 10.0,
                 max_connections: int = 5000, leak: int = 4) -> None:
        super().__init__(daemon=True, name=f"malformed-{source}")
        self.port, self.source, self.frames, self.ctx = port, source, frames, ctx
        self.rng = random.Random(seed)
        self.seconds, self.max_connections, self.leak = seconds, max_connections, leak
        self.stop = threading.Event()
        self.attempts = 0

    def run(self) -> None:
        held: list[socket.socket] = []
        deadline = time.monotonic() + self.seconds
        try:
            while not self.stop.is_set() and time.monotonic() < deadline and \
                    self.attempts < self.max_connections:
                self.attempts += 1
                try:
                    held.append(self._once())
                except (OSError, ssl.SSLError, ValueError):
                    continue
                while len(held) > self.leak:
                    held.pop(0).close()
        finally:
            for s in held:
                s.close()

    def _once(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=0.5,
                                       source_address=(self.source, 0))
        try:
            if self.ctx is not None and self.rng.random() < 0.5:
                raw.sendall(self.rng.randbytes(self.rng.randint(1, 300)))  # not a ClientHello
                return raw
            sock = self.ctx.wrap_socket(raw) if self.ctx is not None else raw
            sock.settimeout(0.1)
            k = self.rng.randrange(len(self.frames) + 1)
            for message in self.frames[:k]:
                sock.sendall(message)
                try:
                    sock.recv(65536)
                except (TimeoutError, OSError):
                    pass
            sock.sendall(_mutate(self.rng, self.frames[k % len(self.frames)]))
            try:
                sock.recv(65536)
            except (TimeoutError, OSError):
                pass
            return sock
        except BaseException:
            raw.close()
            raise
