"""Modbus protocol pieces of the simulator: PDU handling, RTU/TCP framing, faults.

Pure functions of bytes (as pymodbus' framers are): the transports in
``simulator.server`` move bytes and call these.

Function codes served: 3 (read holding), 4 (read input: same image, some
SunSpec masters use it), 6 (write single), 16 (write multiple). Anything else
answers exception 1.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .registers import ILLEGAL_FUNCTION, ILLEGAL_VALUE, ModbusError

READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
WRITE_CODES = (WRITE_SINGLE, WRITE_MULTIPLE)

ReadFn = Callable[[int, int], list[int]]
WriteFn = Callable[[int, Sequence[int]], None]


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (reflected polynomial 0xA001, initial 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    """Append the CRC, low byte first as RTU sends it."""
    return frame + struct.pack("<H", crc16(frame))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the request frame at the head of ``buf`` (CRC included).

    0: not enough bytes yet to tell; None: function code of unknown length
    (only the 3.5-character gap can end it).
    """
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else 0
    return None


def t35(baud: int) -> float:
    """The 3.5-character inter-frame gap (11 bits a character; 1.75 ms above 19200 baud)."""
    return 3.5 * 11.0 / baud if baud <= 19200 else 0.00175


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes((fc | 0x80, code))


def handle_pdu(pdu: bytes, read: ReadFn, write: WriteFn) -> bytes:
    """Execute one request PDU against the register callbacks; return the response PDU."""
    if not pdu:
        raise ValueError("empty PDU")
    fc = pdu[0]
    try:
        if fc in (READ_HOLDING, READ_INPUT):
            if len(pdu) != 5:
                raise ModbusError(ILLEGAL_VALUE, "bad read request length")
            address, count = struct.unpack(">HH", pdu[1:5])
            regs = read(address, count)
            return bytes((fc, 2 * len(regs))) + struct.pack(f">{len(regs)}H", *regs)
        if fc == WRITE_SINGLE:
            if len(pdu) != 5:
                raise ModbusError(ILLEGAL_VALUE, "bad write request length")
            address, value = struct.unpack(">HH", pdu[1:5])
            write(address, [value])
            return pdu
        if fc == WRITE_MULTIPLE:
            if len(pdu) < 6:
                raise ModbusError(ILLEGAL_VALUE, "bad write request length")
            address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            if nbytes != 2 * count or len(pdu) != 6 + nbytes or not 1 <= count <= 123:
                raise ModbusError(ILLEGAL_VALUE, "byte count does not match register count")
            values = struct.unpack(f">{count}H", pdu[6:6 + nbytes])
            write(address, list(values))
            return pdu[:5]
        raise ModbusError(ILLEGAL_FUNCTION, f"function {fc} not supported")
    except ModbusError as exc:
        return exception_pdu(fc, exc.code)


# --- fault injection --------------------------------------------------------

FAULT_KINDS = ("none", "silent", "exception", "garbage", "truncated", "bad_crc", "delay")


@dataclass(frozen=True, slots=True)
class Fault:
    """How the device misbehaves on the wire.

    ``silent`` and ``exception`` refuse the request before it is executed (a
    dead or busy device); ``garbage``, ``truncated``, ``bad_crc`` and ``delay``
    execute it and spoil or delay the answer (noise on the way back).
    """

    kind: str = "none"
    code: int = 0  # exception code
    delay_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``none``, ``silent``, ``exception:N``, ``garbage``, ``truncated``, ``bad_crc``,
        ``delay:SECONDS``."""
        kind, _, arg = text.strip().partition(":")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {text!r}; one of {', '.join(FAULT_KINDS)} "
                             "(exception:N, delay:SECONDS), or pty_cycle as a command")
        if kind == "exception":
            try:
                code = int(arg)
            except ValueError:
                raise ValueError("exception fault needs a code: exception:N") from None
            if not 1 <= code <= 255:
                raise ValueError(f"exception code {code} outside 1..255")
            return cls(kind, code=code)
        if kind == "delay":
            try:
                delay = float(arg)
            except ValueError:
                raise ValueError("delay fault needs seconds: delay:SECONDS") from None
            if not 0.0 <= delay <= 600.0:
                raise ValueError(f"delay {delay} outside 0..600 s")
            return cls(kind, delay_s=delay)
        if arg:
            raise ValueError(f"fault {kind} takes no argument")
        return cls(kind)

    def __str__(self) -> str:
        if self.kind == "exception":
            return f"exception:{self.code}"
        if self.kind == "delay":
            return f"delay:{self.delay_s:g}"
        return self.kind

    @property
    def executes(self) -> bool:
        """Whether the request is carried out at all."""
        return self.kind not in ("silent", "exception")


def spoil(frame: bytes, fault: Fault, rng: random.Random, crc_at_end: bool) -> bytes:
    """The bytes sent instead of a good response ``frame`` under ``fault``.

    ``crc_at_end``: RTU frame (bad_crc flips the CRC); for TCP, bad_crc
    corrupts the MBAP protocol identifier, the only integrity field TCP has.
    """
    if fault.kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(len(frame)))
    if fault.kind == "truncated":
        return frame[:max(1, len(frame) - 3)]
    if fault.kind == "bad_crc":
        b = bytearray(frame)
        if crc_at_end:
            b[-1] ^= 0xFF
        else:
            b[2:4] = b"\xde\xad"
        return bytes(b)
    return frame
