"""The SYN filter program (cBPF) drops exactly the blocked source addresses, IPv4 and IPv6.

Run here through a small interpreter of the instructions it uses (the kernel runs the
same program on the listening socket; test_connection_cap shows that end to end)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from inverter_agent.adapters.mms.hardening import _SKF_NET_OFF, syn_filter


def _packet(src: str) -> bytes:
    address = ipaddress.ip_address(src)
    if address.version == 4:  # IPv4 header: version/IHL ... source at 12
        return bytes([0x45]) + bytes(11) + address.packed + bytes(4)
    return bytes([0x60]) + bytes(7) + address.packed + bytes(16)  # IPv6: source at 8


def _run(program: list[tuple[int, int, int, int]], net: bytes) -> int:
    a, pc = 0, 0
    for _ in range(10_000):
        code, jt, jf, k = program[pc]
        offset = (k - (_SKF_NET_OFF & 0xFFFFFFFF)) if code in (0x30, 0x20) else 0
        if code == 0x30:
            a = net[offset]
        elif code == 0x20:
            a = struct.unpack(">I", net[offset:offset + 4])[0]
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x05:
            pc += k
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1
    raise AssertionError("no return")


@pytest.mark.parametrize("blocked", [
    [], ["127.0.0.2"], ["127.0.0.2", "10.1.2.3", "2001:db8::7"],
    ["2001:db8::7", "::1"], [f"10.0.{i // 250}.{i % 250}" for i in range(180)] + ["fe80::1"],
])
def test_blocked_sources_are_dropped_and_no_other(blocked):
    program = syn_filter(blocked)
    assert len(program) < 4096
    for src in blocked:
        assert _run(program, _packet(src)) == 0, src
    for src in ("127.0.0.1", "10.1.2.4", "2001:db8::8", "2001:db8:0:0:1::7", "192.0.2.1",
                "::2"):
        if src not in blocked:
            assert _run(program, _packet(src)) == 0xFFFFFFFF, src


def test_too_many_addresses_keep_the_first_ones():
    many = [f"2001:db8::{i:x}" for i in range(100)]  # 8 instructions each
    program = syn_filter(many)
    kept = [a for a in many if _run(program, _packet(a)) == 0]
    assert 10 < len(kept) < 100 and kept == many[:len(kept)]
