"""What the bundled libiec61850/mbedTLS does not offer through its API, done carefully.

Three things, all process-level and all self-checking:

:func:`refuse_client_renegotiation`
    libiec61850 1.6.1 creates every ``TLSConfiguration`` with mbedTLS
    renegotiation *enabled* (so that its own periodic renegotiation,
    ``TLSConfiguration_setRenegotiationTime``, can work) and exposes no switch
    for it; a client may then renegotiate a TLS 1.2 session as often as it
    likes, each time costing the gateway a full handshake. mbedTLS itself has
    ``mbedtls_ssl_conf_renegotiation`` (exported by the bundled library) but
    it needs the ``mbedtls_ssl_config`` embedded in the opaque
    ``TLSConfiguration``. Every TLS socket copies that config when it is
    created, so disabling renegotiation there once, before the server starts,
    covers every connection: mbedTLS then answers a client's renegotiation
    request with a ``no_renegotiation`` alert (RFC 5246 7.2.2) and the client
    gives up. TLS 1.3 has no renegotiation at all.

    The embedded config is located by measurement, not by a hard-coded
    offset: the offset of the ``endpoint`` byte inside an ``mbedtls_ssl_config``
    is found on a scratch config, the one byte that
    ``TLSConfiguration_setClientMode`` changes inside the ``TLSConfiguration``
    gives the config's address, and every write is checked to change exactly
    the byte it should. Anything unexpected (another library build) leaves
    the configuration untouched and returns False, which the server logs and
    reports in its security status.

:class:`NativeOutput`
    The bundled build prints TLS debugging (certificate dumps with subjects,
    issuers and serial numbers, on every handshake) and ISO/MMS debugging on
    the C stdio streams. Those lines would land in the journal next to the
    agent's log. :class:`NativeOutput` points file descriptors 1 and 2 at a
    pipe, keeps Python's own output on duplicates of the original streams,
    and hands each library line to the ``libiec61850`` logger at DEBUG level,
    never higher.

:func:`server_sockets`, :func:`cut`, :func:`set_syn_filter`
    The 1.6.1 wheel serves every connection from one thread, runs the TLS
    handshake there with no time limit, and tells Python about a connection
    only after it. So the server's accepted sockets are found from inside the
    process (``/proc/self/fd``, checked by inode), a socket that may not keep
    its slot is shut down with ``shutdown(2)`` on a duplicate of its
    descriptor (the library's blocked read returns and it closes the
    connection itself; its descriptor is never closed under it), and
    addresses in penalty are refused before ``accept()``: a classic BPF
    program on the listening socket drops their SYNs (no privilege needed).
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: mbedtls/ssl.h
_MBEDTLS_SSL_IS_CLIENT = 0
_MBEDTLS_SSL_IS_SERVER = 1
_MBEDTLS_SSL_RENEGOTIATION_DISABLED = 0
_MBEDTLS_SSL_RENEGOTIATION_ENABLED = 1
#: Large enough for any mbedtls_ssl_config (a few hundred bytes in 3.6).
_SCRATCH = 8192

_P = ctypes.c_void_p


def _declare(lib: ctypes.CDLL) -> None:
    for name, restype, argtypes in (
            ("mbedtls_ssl_config_init", None, [_P]),
            ("mbedtls_ssl_conf_endpoint", None, [_P, ctypes.c_int]),
            ("mbedtls_ssl_conf_renegotiation", None, [_P, ctypes.c_int]),
            ("TLSConfiguration_setClientMode", None, [_P])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


def _changed(before: bytes, after: bytes) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]


def _field_offsets(lib: ctypes.CDLL) -> tuple[int, int] | None:
    """(endpoint offset, renegotiation offset) inside an mbedtls_ssl_config."""
    scratch = ctypes.create_string_buffer(_SCRATCH)
    lib.mbedtls_ssl_config_init(scratch)
    zero = scratch.raw
    lib.mbedtls_ssl_conf_endpoint(scratch, _MBEDTLS_SSL_IS_SERVER)
    with_endpoint = scratch.raw
    lib.mbedtls_ssl_conf_renegotiation(scratch, _MBEDTLS_SSL_RENEGOTIATION_ENABLED)
    with_renegotiation = scratch.raw
    endpoint = _changed(zero, with_endpoint)
    renegotiation = _changed(with_endpoint, with_renegotiation)
    if len(endpoint) != 1 or len(renegotiation) != 1:
        return None
    return endpoint[0], renegotiation[0]


def _block_size(pointer: int) -> int | None:
    try:
        libc = ctypes.CDLL(None)
        usable = libc.malloc_usable_size
    except (OSError, AttributeError):
        return None
    usable.restype, usable.argtypes = ctypes.c_size_t, [_P]
    size = int(usable(pointer))
    return size if size > 0 else None


def refuse_client_renegotiation(lib: ctypes.CDLL, tls_config: int) -> bool:
    """Disable TLS renegotiation in a fresh server ``TLSConfiguration``; True if done.

    Must be called before the configuration is handed to the server (no
    socket exists yet). Never raises: on any surprise the configuration is
    left as it was and False is returned.
    """
    try:
        _declare(lib)
        offsets = _field_offsets(lib)
        size = _block_size(tls_config)
        if offsets is None or size is None:
            return False
        endpoint, renegotiation = offsets
        before = ctypes.string_at(tls_config, size)
        lib.TLSConfiguration_setClientMode(tls_config)
        after = ctypes.string_at(tls_config, size)
        moved = _changed(before, after)
        if len(moved) != 1 or before[moved[0]] != _MBEDTLS_SSL_IS_SERVER:
            if moved:  # not what we know: put the bytes back exactly as they were
                ctypes.memmove(tls_config, before, size)
            return False
        conf = tls_config + moved[0] - endpoint
        lib.mbedtls_ssl_conf_endpoint(conf, _MBEDTLS_SSL_IS_SERVER)
        if ctypes.string_at(tls_config, size) != before:
            ctypes.memmove(tls_config, before, size)
            return False
        flag = moved[0] - endpoint + renegotiation
        if not 0 <= flag < size or before[flag] != _MBEDTLS_SSL_RENEGOTIATION_ENABLED:
            return False
        lib.mbedtls_ssl_conf_renegotiation(conf, _MBEDTLS_SSL_RENEGOTIATION_DISABLED)
        done = ctypes.string_at(tls_config, size)
        if _changed(before, done) != [flag]:
            ctypes.memmove(tls_config, before, size)
            return False
        return True
    except (OSError, AttributeError, ValueError):
        return False


# --- the library's own prints -------------------------------------------------------------

#: Logger that receives the library's stdout/stderr lines, at DEBUG.
NATIVE_LOGGER = "libiec61850"
#: A line longer than this is cut (a certificate dump is ~600 bytes in all).
_MAX_LINE = 4096


class NativeOutput:
    """Route the C library's stdout and stderr (fds 1 and 2) into logging at DEBUG.

    ``start()`` keeps Python's ``sys.stdout``/``sys.stderr`` (and any logging
    handler writing to them) on duplicates of the original descriptors, so
    the agent's own log and printed output are unchanged, then points fds 1
    and 2 at a pipe read by a daemon thread. ``stop()`` puts the descriptors
    back. One instance per process (:func:`route_native_output`).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(NATIVE_LOGGER)
        self.lines = 0
        self._saved: dict[int, int] = {}          # fd -> duplicate of what it was
        self._swapped: list[tuple[Any, Any]] = []  # (old stream, its replacement)
        self._read_fd = -1
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        read_fd, write_fd = os.pipe()
        for fd in (1, 2):
            self._saved[fd] = os.dup(fd)
        # Python streams and log handlers that write to fd 1 or 2 move to a copy of
        # what that fd was; anything else (a protocol stream on its own fd) stays.
        replacements: dict[int, Any] = {}
        for stream in _python_streams():
            fd = _fileno(stream)
            if fd not in self._saved or id(stream) in replacements:
                continue
            replacements[id(stream)] = os.fdopen(
                os.dup(self._saved[fd]), "w", buffering=1,
                encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="backslashreplace")
            self._swapped.append((stream, replacements[id(stream)]))
        self._swap(forward=True)
        for fd in (1, 2):
            os.dup2(write_fd, fd)
        os.close(write_fd)
        self._read_fd = read_fd
        self._thread = threading.Thread(target=self._pump, name="native-output", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        for _old, new in self._swapped:
            _flush(new)
        for fd in (1, 2):  # the pipe's last writers go: the pump reads to the end and stops
            os.dup2(self._saved[fd], fd)
            os.close(self._saved.pop(fd))
        self._swap(forward=False)
        for _old, new in self._swapped:
            new.close()
        self._swapped = []
        self._thread.join(timeout=2)
        self._thread = None

    def _swap(self, forward: bool) -> None:
        for old, new in self._swapped:
            src, dst = (old, new) if forward else (new, old)
            for name in ("stdout", "stderr"):
                if getattr(sys, name) is src:
                    setattr(sys, name, dst)
            for handler in _stream_handlers():
                if handler.stream is src:
                    handler.setStream(dst)

    def _pump(self) -> None:
        with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                try:
                    chunk = pipe.read(65536)
                except OSError:
                    return
                if not chunk:
                    if pending:
                        self._emit(pending)
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > _MAX_LINE:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._emit(line)

    def _emit(self, raw: bytes) -> None:
        text = raw[:_MAX_LINE].decode(errors="replace").rstrip()
        if text:
            self.lines += 1
            # DEBUG only, whatever the line says: it may carry certificate subjects.
            self.logger.debug("%s", text)


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers = [logging.getLogger(), *(obj for obj in logging.Logger.manager.loggerDict.values()
                                      if isinstance(obj, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers if isinstance(h, logging.StreamHandler)]


def _python_streams() -> list[Any]:
    return [sys.stdout, sys.stderr, *(h.stream for h in _stream_handlers())]


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


_native_output: NativeOutput | None = None
_native_lock = threading.Lock()


def route_native_output() -> NativeOutput:
    """Start (once per process) routing the library's prints to the log at DEBUG.

    For entry points (the agent, the test servers); never from inside a test
    process, whose descriptors belong to the test runner.
    """
    global _native_output
    with _native_lock:
        if _native_output is None:
            _native_output = NativeOutput()
            _native_output.start()
        return _native_output


# --- the server's sockets, seen from inside the process ------------------------------------

#: A TCP endpoint as :func:`~inverter_agent.adapters._shared.wirestats.parse_peer` writes it:
#: (ip, port).
Endpoint = tuple[str, int]


def _endpoint(address: Any) -> Endpoint | None:
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host = str(address[0]).partition("%")[0]
    if host.startswith("::ffff:") and "." in host:
        host = host.removeprefix("::ffff:")
    return host, int(address[1])


def _own_sockets() -> Iterator[tuple[int, int]]:
    """(fd, socket inode) of every socket this process has open."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        try:
            fd = int(name)
            link = os.readlink(f"/proc/self/fd/{name}")
        except (ValueError, OSError):
            continue
        if link.startswith("socket:["):
            yield fd, int(link[8:-1])


def server_sockets(port: int) -> dict[int, tuple[int, Endpoint]]:
    """fd -> (socket inode, peer) of every connected TCP socket of this process whose
    local port is ``port``: the MMS server's accepted connections, including those
    still in their TLS handshake (the library does that in its listener thread,
    before any callback knows the connection exists)."""
    out: dict[int, tuple[int, Endpoint]] = {}
    for fd, inode in _own_sockets():
        found = _inspect(fd, inode, port)
        if found is not None:
            out[fd] = (inode, found)
    return out


def _inspect(fd: int, inode: int, port: int) -> Endpoint | None:
    with _Duplicate(fd, inode) as sock:
        if sock is None or sock.type != socket.SOCK_STREAM or \
                sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        try:
            local = _endpoint(sock.getsockname())
            if local is None or local[1] != port:
                return None
            return _endpoint(sock.getpeername())
        except OSError:  # the listening socket (no peer), or gone
            return None


def cut(fd: int, inode: int) -> bool:
    """Shut a server socket down (both directions) without closing the library's fd.

    The library's blocked read (a TLS handshake in the listener thread, a
    connection thread waiting for a COTP or ACSE PDU) returns at once and it
    closes the connection itself; the fd cannot be reused under it meanwhile.
    False if the fd is no longer that socket.
    """
    with _Duplicate(fd, inode) as sock:
        if sock is None:
            return False
        try:
            sock.shutdown(socket.SHUT_RDWR)  # closes nothing: the library's fd stays open
            return True
        except OSError:
            return False


# --- refusing a peer before it takes a slot: a SYN filter on the listening socket -----------

_SO_ATTACH_FILTER = 26
_SO_DETACH_FILTER = 27
_SKF_NET_OFF = -0x100000
_BPF_LD_B_ABS, _BPF_LD_W_ABS = 0x30, 0x20
_BPF_AND_K, _BPF_JEQ_K, _BPF_RET_K = 0x54, 0x15, 0x06
#: Addresses a filter holds at most (cBPF jump offsets are 8 bits: the program must stay
#: short; IPv6 addresses take 8 instructions each, IPv4 ones 1).
MAX_BLOCKED = 200


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def listening_socket(port: int) -> tuple[int, int] | None:
    """(fd, inode) of this process's TCP listening socket on ``port``."""
    for fd, inode in _own_sockets():
        with _Duplicate(fd, inode) as sock:
            if sock is None or sock.type != socket.SOCK_STREAM:
                continue
            try:
                if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    continue
                local = _endpoint(sock.getsockname())
            except OSError:
                continue
            if local is not None and local[1] == port:
                return fd, inode
    return None


class _Duplicate:
    """``with _Duplicate(fd, inode) as sock``: a socket object on a duplicate of ``fd``
    (None if ``fd`` is no longer that socket); only the duplicate is closed after."""

    def __init__(self, fd: int, inode: int) -> None:
        self.fd, self.inode = fd, inode
        self.sock: socket.socket | None = None

    def __enter__(self) -> socket.socket | None:
        try:
            dup = os.dup(self.fd)
        except OSError:
            return None
        try:
            if os.fstat(dup).st_ino != self.inode:
                os.close(dup)
                return None
            self.sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            return None
        return self.sock

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()


def syn_filter(blocked: list[str]) -> list[tuple[int, int, int, int]]:
    """:func:`_syn_filter` for as many of ``blocked`` as one program can hold (the
    first ones; the others are left to the close-after-accept path)."""
    chosen = list(blocked[:MAX_BLOCKED])
    while True:
        try:
            return _syn_filter(chosen)
        except ValueError:
            chosen = chosen[:-1]


def _syn_filter(blocked: list[str]) -> list[tuple[int, int, int, int]]:
    """cBPF: drop packets whose source address is in ``blocked`` (IPv4 and IPv6),
    accept everything else.

    On a listening TCP socket the kernel runs the filter on each SYN (and on the
    handshake's final ACK) before a connection exists: a dropped SYN is
    retransmitted by the client after 1 s, 3 s, ... so the peer is slowed down
    and never reaches accept(), let alone one of the library's slots.
    """
    v4: list[int] = []
    v6: list[tuple[int, int, int, int]] = []
    for text in blocked[:MAX_BLOCKED]:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version == 4:
            v4.append(int(address))
        else:
            n = int(address)
            v6.append(tuple((n >> (96 - 32 * i)) & 0xFFFFFFFF for i in range(4)))  # type: ignore[misc]
    # Layout: [0] load version, [1] mask, [2] is v4? [3] is v6? then the v4 block,
    # then the v6 block, then accept, drop. Jumps are relative to the next insn.
    v4_block = [(_BPF_LD_W_ABS, 0, 0, (_SKF_NET_OFF + 12) & 0xFFFFFFFF)]
    for address in v4:
        v4_block.append((_BPF_JEQ_K, 0, 0, address))  # targets patched below
    v6_block: list[tuple[int, int, int, int]] = []
    for words in v6:
        for w, word in enumerate(words):
            v6_block.append((_BPF_LD_W_ABS, 0, 0, (_SKF_NET_OFF + 8 + 4 * w) & 0xFFFFFFFF))
            v6_block.append((_BPF_JEQ_K, 0, 0, word))
    head = [(_BPF_LD_B_ABS, 0, 0, (_SKF_NET_OFF + 0) & 0xFFFFFFFF), (_BPF_AND_K, 0, 0, 0xF0)]
    program = head + [None, None] + v4_block + [None] + v6_block  # type: ignore[list-item]
    accept_at = len(program)
    drop_at = accept_at + 1
    program += [(_BPF_RET_K, 0, 0, 0xFFFFFFFF), (_BPF_RET_K, 0, 0, 0)]

    def rel(src: int, dst: int) -> int:
        return dst - src - 1

    v4_at = 4
    after_v4 = v4_at + len(v4_block)       # the "v4 done: accept" jump
    v6_at = after_v4 + 1
    program[2] = (_BPF_JEQ_K, rel(2, v4_at), 0, 0x40)                # v4 -> v4 block
    program[3] = (_BPF_JEQ_K, rel(3, v6_at), rel(3, accept_at), 0x60)  # v6 -> v6 block
    for i in range(len(v4)):
        at = v4_at + 1 + i
        program[at] = (_BPF_JEQ_K, rel(at, drop_at), 0, v4[i])
    program[after_v4] = (0x05, 0, 0, rel(after_v4, accept_at))      # BPF_JMP|BPF_JA
    for a_i in range(len(v6)):
        base = v6_at + 8 * a_i
        next_address = base + 8
        for w in range(4):
            at = base + 2 * w + 1
            word = v6[a_i][w]
            on_match = rel(at, drop_at) if w == 3 else 0
            on_miss = rel(at, next_address if next_address < accept_at else accept_at)
            program[at] = (_BPF_JEQ_K, on_match, on_miss, word)
    if any(jt > 255 or jf > 255 for _c, jt, jf, _k in program):
        raise ValueError("too many blocked addresses for one cBPF program")
    return program  # type: ignore[return-value]


def set_syn_filter(port: int, blocked: list[str]) -> bool:
    """Make the listening socket on ``port`` drop connection attempts from ``blocked``
    (IPv4 addresses; an empty list removes the filter). True if it was applied."""
    found = listening_socket(port)
    if found is None:
        return False
    with _Duplicate(*found) as sock:
        if sock is None:
            return False
        try:
            if not blocked:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_FILTER, 0)
                except OSError:
                    pass  # no filter attached
                return True
            instructions = syn_filter(blocked)
            array = (_SockFilter * len(instructions))(*[_SockFilter(*i) for i in instructions])
            prog = _SockFprog(len(instructions), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(prog))
            return True
        except OSError as exc:
            log.warning("MMS: cannot set the connection filter on port %d: %s", port, exc)
            return False
