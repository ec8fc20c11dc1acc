"""Wire-level helpers for tests and benches: scan a SunSpec device, typed point access, raw
RTU / TCP exchanges that show exactly which bytes the simulator sent.

The Modbus client is duck-typed (any pymodbus 3.x sync client); pyserial is imported
only by :func:`rtu_exchange`.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from hal.sunspec import models as sm
from simulator import SimProcess
from simulator.modbus import with_crc


@dataclass
class Device:
    """A scanned SunSpec device: where each model sits, and typed point access."""

    client: Any
    unit: int
    models: dict[int, sm.DecodedModel]

    @classmethod
    def scan(cls, client: Any, base: int = 40000, unit: int = 1) -> Device:
        rr = client.read_holding_registers(base, count=2, device_id=unit)
        assert not rr.isError(), rr
        assert rr.registers == [0x5375, 0x6E53]
        models: dict[int, sm.DecodedModel] = {}
        addr = base + 2
        while True:
            hdr = client.read_holding_registers(addr, count=2, device_id=unit).registers
            if hdr[0] == 0xFFFF:
                assert hdr[1] == 0
                break
            models.setdefault(hdr[0], decode_at(client, addr, hdr[1] + 2, hdr[0], unit))
            addr += hdr[1] + 2
        return cls(client, unit, models)

    @property
    def order(self) -> list[int]:
        return sorted(self.models, key=lambda m: self.models[m].address)

    def address(self, model: int, path: str) -> int:
        dm = self.models[model]
        return dm.address + dm.layout.slot(path).offset

    def read(self, model: int, path: str | None = None) -> Any:
        """A fresh decode of the model; with ``path``, that point's engineering value."""
        dm = self.models[model]
        fresh = decode_at(self.client, dm.address, dm.layout.size, model, self.unit)
        return fresh if path is None else fresh.value(path)

    def raw_regs(self, model: int, path: str) -> list[int]:
        slot = self.models[model].layout.slot(path)
        rr = self.client.read_holding_registers(self.address(model, path),
                                                count=slot.point.size, device_id=self.unit)
        assert not rr.isError(), rr
        return list(rr.registers)

    def write(self, model: int, path: str, value: Any) -> Any:
        """Write an engineering value (scale factor read fresh); the pymodbus response."""
        fresh = self.read(model)
        slot = fresh.layout.slot(path)
        raw = sm.to_raw(value, slot, sm.scale_exponent(slot, fresh.raw))
        regs = slot.point.type.encode(raw, slot.point.size)
        return self.client.write_registers(self.address(model, path), regs,
                                           device_id=self.unit)


def decode_at(client: Any, address: int, size: int, model: int, unit: int) -> sm.DecodedModel:
    regs: list[int] = []
    while len(regs) < size:
        n = min(125, size - len(regs))
        rr = client.read_holding_registers(address + len(regs), count=n, device_id=unit)
        assert not rr.isError(), rr
        regs += rr.registers
    return sm.decode(model, address, regs)


def wait_for(fn: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll until ``fn()`` is truthy; fail the test with the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {timeout} s"
            return value
        time.sleep(interval)


def tcp_client(sim: SimProcess, timeout: float = 1.0) -> ModbusTcpClient:
    """A connected pymodbus TCP client to the simulator, no retries (tests want the truth)."""
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port, timeout=timeout, retries=0)
    assert client.connect()
    return client


def rtu_client(path: str, timeout: float = 1.0) -> ModbusSerialClient:
    """A connected pymodbus RTU client on ``path`` (the pty symlink), no retries."""
    client = ModbusSerialClient(path, baudrate=9600, timeout=timeout, retries=0)
    assert client.connect()
    return client


# --- raw wire helpers (to see exactly what the simulator sent) -----------------------

def rtu_exchange(path: str, frame: bytes, wait: float = 0.4, expect: int | None = None) -> bytes:
    """Send a raw RTU frame on ``path``; what came back within ``wait`` s.

    Returns early once ``expect`` bytes arrived.
    """
    import serial

    with serial.Serial(path, 9600, timeout=0) as port:
        port.reset_input_buffer()
        port.write(frame)
        port.flush()
        return _collect(port.read, wait, expect)


def _collect(read: Any, wait: float, expect: int | None) -> bytes:
    data = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and (expect is None or len(data) < expect):
        try:
            chunk = read(512)
        except TimeoutError:
            chunk = b""
        if chunk is None:
            break
        data += chunk
        if not chunk:
            time.sleep(0.01)
    return data


def read_request_rtu(unit: int, address: int, count: int) -> bytes:
    """A function 3 request frame, CRC included."""
    return with_crc(struct.pack(">BBHH", unit, 3, address, count))


def tcp_exchange(port: int, unit: int, pdu: bytes, wait: float = 0.4,
                 expect: int | None = None) -> bytes:
    """Send one MBAP request on a new connection; the bytes back within ``wait`` s.

    Returns early once ``expect`` bytes arrived or the simulator closed the connection.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(struct.pack(">HHHB", 7, 0, len(pdu) + 1, unit) + pdu)
        s.setblocking(False)
        closed = False

        def read(n: int) -> bytes | None:
            nonlocal closed
            if closed:
                return None
            try:
                chunk = s.recv(n)
            except BlockingIOError:
                return b""
            if not chunk:
                closed = True
                return None
            return chunk

        return _collect(read, wait, expect)
