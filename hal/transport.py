"""Modbus transports: a pipe for holding registers, over TCP or RTU (RS-485).

Both go through pymodbus 3.x synchronous clients. The transport cares about
nothing but registers: it knows no SunSpec and no upper layer. Failures raise
one family (:class:`TransportError`); a device that answers with a Modbus
exception raises :class:`DeviceException`, which is *not* a link failure (the
device is alive, it just refused the request).

Retries are ours, not pymodbus's, so the worst-case time of a dead link is
explicit: ``timeout * (retries + 1)`` plus the back-off between attempts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from serial.rs485 import RS485Settings

log = logging.getLogger(__name__)

#: Modbus limit for one read of holding registers (function code 3).
MAX_READ = 125
#: Modbus limit for one write of multiple registers (function code 16).
MAX_WRITE = 123


class TransportError(Exception):
    """The link failed: no answer, a broken frame, or no connection."""


class DeviceException(Exception):
    """The device answered with a Modbus exception response."""

    def __init__(self, function: int, code: int, address: int, count: int) -> None:
        self.function = function
        self.code = code
        self.address = address
        self.count = count
        names = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                 4: "server device failure", 6: "server device busy"}
        super().__init__(f"exception {code} ({names.get(code, 'unknown')}) for function "
                         f"{function} at {address} x{count}")


class Transport(Protocol):
    """What the SunSpec layer needs from a wire."""

    description: str

    def read_holding(self, address: int, count: int, unit: int) -> list[int]: ...

    def write_registers(self, address: int, values: Sequence[int], unit: int) -> None: ...

    def close(self) -> None: ...

    def cancel(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Timeouts and retries for one transaction."""

    timeout: float = 1.0
    retries: int = 2
    backoff: float = 0.05  # first pause; doubles per attempt
    backoff_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.timeout <= 30:
            raise ValueError(f"timeout {self.timeout} s outside 0.01..30 s")
        if not 0 <= self.retries <= 10:
            raise ValueError(f"retries {self.retries} outside 0..10")
        if not 0 <= self.backoff <= self.backoff_max <= 60:
            raise ValueError("backoff must satisfy 0 <= backoff <= backoff_max <= 60 s")


@dataclass(slots=True)
class TransportStats:
    transactions: int = 0
    failures: int = 0
    exceptions: int = 0
    retries: int = 0
    reconnects: int = 0
    bytes_out: int = 0
    bytes_in: int = 0


class _PymodbusTransport:
    """Shared request/retry logic over a pymodbus sync client."""

    description = "modbus"

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.stats = TransportStats()
        self._lock = threading.Lock()  # one transaction on the wire at a time
        self._client: ModbusTcpClient | ModbusSerialClient | None = None
        self._cancelled = threading.Event()

    # -- subclasses
    def _make_client(self) -> ModbusTcpClient | ModbusSerialClient:
        raise NotImplementedError

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.stats.bytes_out += len(data)
        else:
            self.stats.bytes_in += len(data)
        return data

    def _connected_client(self) -> ModbusTcpClient | ModbusSerialClient:
        if self._client is None:
            self._client = self._make_client()
        if not self._client.connected:
            self.stats.reconnects += 1
            if not self._client.connect():
                self._drop()
                raise TransportError(f"{self.description}: cannot connect")
        return self._client

    def _drop(self) -> None:
        self._quiet_needed = True  # an answer to the abandoned request may still come
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead link may fail again; nothing to save
                pass

    def _transact(self, function: int, address: int, count: int, call,
                  unit: int | None = None):
        attempts = self.policy.retries + 1
        pause = self.policy.backoff
        last: Exception | None = None
        with self._lock:
            for attempt in range(attempts):
                if self._cancelled.is_set():
                    raise TransportError(f"{self.description}: cancelled (shutting down)")
                if attempt:
                    self.stats.retries += 1
                    time.sleep(pause)
                    pause = min(pause * 2, self.policy.backoff_max)
                self.stats.transactions += 1
                try:
                    client = self._connected_client()
                    self._before_request(client)
                    rsp = call(client)
                except TransportError as exc:
                    last = exc
                    continue
                except (ModbusException, OSError, ValueError, IndexError) as exc:
                    # A timeout, a broken or truncated frame, or a dead port:
                    # drop the connection so the next attempt starts clean.
                    last = TransportError(f"{self.description}: {exc}")
                    self._drop()
                    continue
                fc = getattr(rsp, "function_code", function)
                dev = getattr(rsp, "dev_id", unit)
                if isinstance(fc, int) and fc & 0x7F != function or \
                        unit and isinstance(dev, int) and dev != unit:
                    # An answer to another request (a stray or garbled frame): its
                    # registers are not ours, whatever they decode to.
                    last = TransportError(f"{self.description}: unit {dev} function {fc} "
                                          f"answered a unit {unit} function {function} "
                                          "request")
                    self._drop()
                    continue
                if rsp.isError():
                    code = getattr(rsp, "exception_code", None)
                    if code is None:
                        last = TransportError(f"{self.description}: bad response {rsp}")
                        self._drop()
                        continue
                    self.stats.exceptions += 1
                    raise DeviceException(function, int(code), address, count)
                return rsp
            self.stats.failures += 1
            assert last is not None
            raise last

    def _before_request(self, client: ModbusTcpClient | ModbusSerialClient) -> None:
        """Hook run before each request goes out (RTU: drop stale input)."""

    # -- Transport
    def read_holding(self, address: int, count: int, unit: int) -> list[int]:
        if not 1 <= count <= MAX_READ:
            raise ValueError(f"read of {count} registers: Modbus allows 1..{MAX_READ}")
        rsp = self._transact(3, address, count, lambda c: c.read_holding_registers(
            address, count=count, device_id=unit), unit)
        regs = list(rsp.registers)
        if len(regs) < count:
            # A response shorter than asked is a broken frame, not data.
            raise TransportError(f"{self.description}: asked {count} registers, got {len(regs)}")
        return regs[:count]

    def write_registers(self, address: int, values: Sequence[int], unit: int) -> None:
        values = [int(v) & 0xFFFF for v in values]
        for start in range(0, len(values), MAX_WRITE):
            chunk = values[start:start + MAX_WRITE]
            self._transact(16, address + start, len(chunk), lambda c, a=address + start, v=chunk:
                           c.write_registers(a, v, device_id=unit))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def cancel(self) -> None:
        """Fail every further transaction at once (for shutdown from another thread).

        The transaction on the wire right now still runs to its timeout.
        """
        self._cancelled.set()

    def resume(self) -> None:
        """Take transactions again after :meth:`cancel` (a last write while stopping)."""
        self._cancelled.clear()


class TcpTransport(_PymodbusTransport):
    """Modbus TCP (MBAP framing) to host:port."""

    def __init__(self, host: str, port: int = 502, policy: RetryPolicy | None = None) -> None:
        super().__init__(policy or RetryPolicy())
        self.host, self.port = host, int(port)
        self.description = f"tcp {host}:{port}"

    def _make_client(self) -> ModbusTcpClient:
        return ModbusTcpClient(self.host, port=self.port, timeout=self.policy.timeout,
                               retries=0, reconnect_delay=0, trace_packet=self._trace)


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Serial line settings for RTU over RS-485."""

    device: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    #: Extra idle time before each request, for USB adapters that buffer in
    #: 16 ms chunks and would otherwise merge frames (3.5-char gap violated).
    inter_frame_delay: float = 0.0
    #: RS-485 direction control: "none" (the transceiver switches by itself, as
    #: USB adapters and auto-direction HATs do) or "kernel" (the UART driver
    #: drives RTS, or the DE GPIO its device tree names, around each frame).
    rs485: str = "none"
    rts_level_for_tx: bool = True
    delay_before_tx: float = 0.0
    delay_before_rx: float = 0.0

    def __post_init__(self) -> None:
        if self.baud not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400):
            raise ValueError(f"baud {self.baud} is not a standard Modbus RTU rate")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity {self.parity!r} must be N, E or O")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits {self.stopbits} must be 1 or 2")
        if self.rs485 not in ("none", "kernel"):
            raise ValueError(f"rs485 {self.rs485!r} must be none or kernel")

    @property
    def char_time(self) -> float:
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baud


class RtuTransport(_PymodbusTransport):
    """Modbus RTU on a serial line (RS-485 half duplex, or a pty on the bench).

    The device path is reopened after a failure, so a USB adapter or pty that
    disappears and comes back under the same (udev / symlink) name recovers.
    """

    def __init__(self, serial: SerialSettings, policy: RetryPolicy | None = None) -> None:
        super().__init__(policy or RetryPolicy())
        self.serial = serial
        self.description = f"rtu {serial.device}@{serial.baud}"

    def _make_client(self) -> ModbusSerialClient:
        s = self.serial
        if not os.path.exists(s.device):
            raise TransportError(f"{self.description}: {s.device} does not exist")
        return ModbusSerialClient(
            os.path.realpath(s.device), framer=FramerType.RTU, baudrate=s.baud,
            bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits,
            timeout=self.policy.timeout, retries=0, reconnect_delay=0,
            trace_packet=self._trace)

    def _connected_client(self) -> ModbusTcpClient | ModbusSerialClient:
        fresh = self._client is None or not self._client.connected
        client = super()._connected_client()
        if fresh and self.serial.rs485 == "kernel":
            s = self.serial
            try:
                client.socket.rs485_mode = RS485Settings(
                    rts_level_for_tx=s.rts_level_for_tx, rts_level_for_rx=not s.rts_level_for_tx,
                    delay_before_tx=s.delay_before_tx or None,
                    delay_before_rx=s.delay_before_rx or None)
            except (OSError, ValueError, AttributeError) as exc:
                self._drop()
                raise TransportError(
                    f"{self.description}: kernel RS-485 mode cannot be set on {s.device} "
                    f"({exc}); is this a UART with RS-485 support, or should rs485 be "
                    "\"none\" (an auto-direction transceiver)?") from None
        return client

    def _before_request(self, client: ModbusTcpClient | ModbusSerialClient) -> None:
        # Whatever arrived since the last answer (a stray frame, line noise, a late
        # answer to an abandoned request) is not the answer to this request. After a
        # failed transaction, first let a late answer arrive (one timeout), then drop it:
        # RTU answers carry no address, so a late one would pass for this one.
        port = getattr(client, "socket", None)
        if getattr(self, "_quiet_needed", False):
            self._quiet_needed = False
            time.sleep(min(self.policy.timeout, 0.2))
        if port is not None:
            try:
                port.reset_input_buffer()
            except Exception as exc:  # termios.error, SerialException: the port is gone
                self._drop()
                raise TransportError(f"{self.description}: {exc}") from None

    def _transact(self, function, address, count, call, unit=None):
        if self.serial.inter_frame_delay:
            time.sleep(self.serial.inter_frame_delay)
        return super()._transact(function, address, count, call, unit)
