"""Modbus transports of the simulator: TCP on loopback, RTU on a pty or serial port.

Transports move bytes and nothing else (the pymodbus split): what a request
does is decided by a :class:`Bus` (``simulator.simulation.Simulation``), and
framing / CRC / faults are the pure functions of ``simulator.modbus``.
"""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import socketserver
import struct
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .modbus import Fault, crc_ok, exception_pdu, rtu_request_length, spoil, t35, with_crc

log = logging.getLogger(__name__)

GATEWAY_TARGET_FAILED = 0x0B


class Bus(Protocol):
    """What the transports need from the simulation."""

    def has_unit(self, unit: int) -> bool: ...

    def serve(self, unit: int, pdu: bytes) -> tuple[bytes | None, Fault]: ...

    def broadcast(self, pdu: bytes) -> None: ...


# --- Modbus TCP ---------------------------------------------------------------

class _TcpHandler(socketserver.BaseRequestHandler):
    server: _ThreadingServer

    def _recv_exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = self.request.recv(n - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self) -> None:
        sock: socket.socket = self.request
        srv = self.server
        with srv.clients_lock:
            srv.clients.add(sock)
        log.info("TCP client %s:%d connected", *self.client_address[:2])
        try:
            while not srv.stopping.is_set():
                hdr = self._recv_exact(7)
                if hdr is None:
                    break
                tid, pid, length, unit = struct.unpack(">HHHB", hdr)
                if pid != 0 or not 2 <= length <= 254:
                    log.warning("TCP: bad MBAP header %s, closing", hdr.hex())
                    break
                pdu = self._recv_exact(length - 1)
                if pdu is None:
                    break
                self._answer(sock, tid, unit, pdu)
        finally:
            with srv.clients_lock:
                srv.clients.discard(sock)
            log.info("TCP client %s:%d gone", *self.client_address[:2])

    def _answer(self, sock: socket.socket, tid: int, unit: int, pdu: bytes) -> None:
        bus = self.server.bus
        if unit == 0:
            bus.broadcast(pdu)
            return
        if not bus.has_unit(unit):
            # what a TCP gateway says for a unit id nobody answers on its bus
            resp: bytes | None = exception_pdu(pdu[0], GATEWAY_TARGET_FAILED)
            fault = Fault()
        else:
            resp, fault = bus.serve(unit, pdu)
        if resp is None:
            return
        adu = struct.pack(">HHHB", tid, 0, len(resp) + 1, unit) + resp
        if fault.kind == "delay" and self.server.stopping.wait(fault.delay_s):
            return
        adu = spoil(adu, fault, self.server.rng, crc_at_end=False)
        try:
            sock.sendall(adu)
        except OSError as exc:
            log.info("TCP send failed: %s", exc)


class TrackingServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server that knows its open client sockets (to close them on stop)."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()
        super().__init__(address, handler)


class _ThreadingServer(TrackingServer):
    def __init__(self, address: tuple[str, int], bus: Bus) -> None:
        self.bus = bus
        self.stopping = threading.Event()
        self.rng = random.Random()
        super().__init__(address, _TcpHandler)


class ModbusTcpServer:
    """Modbus TCP on ``host:port`` (port 0: any free port), one thread per client."""

    def __init__(self, host: str, port: int, bus: Bus) -> None:
        self._srv = _ThreadingServer((host, port), bus)
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={
            "poll_interval": 0.1}, name="modbus-tcp", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._srv.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._srv.stopping.set()
        self._srv.shutdown()
        self._srv.server_close()
        with self._srv.clients_lock:
            for sock in list(self._srv.clients):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=2)


# --- Modbus RTU ---------------------------------------------------------------

class _Pty:
    """A pseudo-terminal whose slave side is published through a symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        # raw on the slave: no echo, no line editing, 8 bits through untouched
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(self.device, tmp)
        os.replace(tmp, link)  # atomic re-point: a reader never sees the link missing

    def fileno(self) -> int:
        return self.master

    def read(self) -> bytes:
        return os.read(self.master, 4096)

    def write(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except BlockingIOError:
            log.warning("pty %s: nobody reads, response dropped", self.device)

    def close(self, unlink: bool = True) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if unlink:
            try:
                if self.link.is_symlink() and os.readlink(self.link) == self.device:
                    self.link.unlink()
            except OSError:
                pass


class _Serial:
    """An existing serial port (socat pair, USB-RS485 adapter)."""

    def __init__(self, device: str, baud: int) -> None:
        import serial  # pyserial; only needed for this transport

        self.device = device
        self.port: Any = serial.Serial(device, baudrate=baud, timeout=0, write_timeout=1.0)

    def fileno(self) -> int:
        return int(self.port.fileno())

    def read(self) -> bytes:
        return bytes(self.port.read(4096))

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def close(self, unlink: bool = True) -> None:
        self.port.close()


class ModbusRtuServer:
    """Modbus RTU slave on a pty it creates (``pty_link``) or on a serial ``device``.

    Request frames end by the expected length for the function codes served
    (what works on a pty and through USB adapters that deliver 16 ms chunks),
    else by the 3.5-character gap at ``baud``. A partial frame older than
    ``stale_s`` is dropped, as is a frame with a bad CRC (a real slave stays
    silent on both).
    """

    def __init__(self, bus: Bus, baud: int = 9600, pty_link: str | None = None,
                 device: str | None = None,
                 on_port: Callable[[str, str | None], None] | None = None,
                 emulate_baud: bool = False) -> None:
        if (pty_link is None) == (device is None):
            raise ValueError("give exactly one of pty_link or device")
        self.bus = bus
        self.baud = baud
        #: Hold each answer for the time request and answer take on a real line.
        self.emulate_baud = emulate_baud
        self.gap = t35(baud)
        self.stale_s = max(self.gap, 0.05)
        self._link = Path(pty_link).absolute() if pty_link else None
        self._device = device
        self._on_port = on_port
        self._port: _Pty | _Serial | None = None
        self._stop = threading.Event()
        self._cycle_req: tuple[float, threading.Event] | None = None
        self._cycle_lock = threading.Lock()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name="modbus-rtu", daemon=True)

    @property
    def device(self) -> str | None:
        return self._port.device if self._port else None

    @property
    def link(self) -> str | None:
        return str(self._link) if self._link else None

    def _open(self) -> None:
        self._port = _Pty(self._link) if self._link else _Serial(str(self._device), self.baud)
        if self._on_port:
            self._on_port(self._port.device, self.link)

    def start(self) -> None:
        self._open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._port:
            self._port.close()
            self._port = None

    def cycle(self, down_s: float = 1.0, timeout: float = 10.0) -> str:
        """Close the pty, stay away ``down_s``, come back on a new pty; the new device path."""
        if self._link is None:
            raise RuntimeError("pty_cycle needs the simulator's own pty (not --serial)")
        done = threading.Event()
        with self._cycle_lock:
            self._cycle_req = (down_s, done)
        if not done.wait(timeout + down_s):
            raise TimeoutError("pty cycle did not complete")
        return str(self.device)

    def _do_cycle(self, down_s: float) -> None:
        old = self._port
        if old is not None:
            log.warning("pty_cycle: closing %s for %.2f s", old.device, down_s)
            old.close(unlink=True)
            self._port = None
        if self._stop.wait(down_s):
            return
        self._open()
        log.warning("pty_cycle: back on %s", self.device)

    def _run(self) -> None:
        buf = bytearray()
        last_rx = time.monotonic()
        while not self._stop.is_set():
            with self._cycle_lock:
                req, self._cycle_req = self._cycle_req, None
            if req is not None:
                buf.clear()
                try:
                    self._do_cycle(req[0])
                finally:
                    req[1].set()
                continue
            port = self._port
            if port is None:
                self._stop.wait(0.05)
                continue
            timeout = min(0.05, self.gap) if buf else 0.05
            try:
                ready, _, _ = select.select([port], [], [], timeout)
                data = port.read() if ready else b""
            except (OSError, ValueError) as exc:
                # a pty with no reader can report EIO: wait for the next opener
                log.debug("RTU read: %s", exc)
                self._stop.wait(0.05)
                continue
            now = time.monotonic()
            if data:
                buf += data
                last_rx = now
            while buf:
                n = rtu_request_length(bytes(buf[:7]))
                if n is None:
                    if now - last_rx < self.gap:
                        break
                    n = len(buf)  # the gap ends a frame of unknown length
                elif n == 0 or len(buf) < n:
                    if now - last_rx > self.stale_s:
                        log.info("RTU: dropping partial frame %s", bytes(buf).hex())
                        buf.clear()
                    break
                frame = bytes(buf[:n])
                del buf[:n]
                if not crc_ok(frame):
                    log.info("RTU: bad CRC in %s, resynchronising", frame.hex())
                    buf.clear()
                    break
                self._answer(port, frame)

    def _answer(self, port: _Pty | _Serial, frame: bytes) -> None:
        unit, pdu = frame[0], frame[1:-2]
        if unit == 0:
            self.bus.broadcast(pdu)
            return
        if not self.bus.has_unit(unit):
            return  # another slave's request: stay off the bus
        resp, fault = self.bus.serve(unit, pdu)
        if resp is None:
            return
        out = with_crc(bytes((unit,)) + resp)
        if self.emulate_baud:
            # The request arrived at once over the pty; on the line it took its bytes'
            # time, then the silence that ends it, then the answer its bytes' time.
            char = 10.0 / self.baud
            if self._stop.wait((len(frame) + len(out)) * char + self.gap):
                return
        if fault.kind == "delay" and self._stop.wait(fault.delay_s):
            return
        out = spoil(out, fault, self._rng, crc_at_end=True)
        try:
            port.write(out)
        except OSError as exc:
            log.info("RTU write failed: %s", exc)
