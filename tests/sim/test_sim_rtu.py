"""The simulator over Modbus RTU on its own pty: framing, units, broadcast, faults, pty_cycle."""

from __future__ import annotations

import os
import select
import struct
import threading
import time

import pytest

from simulator import SimControlError, SimProcess
from simulator.modbus import crc_ok, with_crc
from simulator.testing import (
    Device,
    read_request_rtu,
    rtu_client,
    rtu_exchange,
    tcp_client,
    wait_for,
)

SUNS_REPLY = with_crc(bytes.fromhex("010304") + b"SunS")


def test_scan_and_decode_over_the_pty(fresh, rtu):
    dev = Device.scan(rtu)
    assert dev.order == [1, 103, 120, 121, 122, 123]
    assert dev.models[1].value("SN") == "SIM00001"
    assert dev.models[103].value("PhVphA") == pytest.approx(240.0)
    assert dev.write(123, "WMaxLimPct", 75.0).function_code == 16
    assert dev.read(123, "WMaxLimPct") == pytest.approx(75.0)
    assert Device.scan(rtu, unit=2).models[1].value("SN") == "SIM00002"


def test_raw_frames_other_units_and_bad_crc(fresh):
    path = fresh.pty_path
    assert rtu_exchange(path, read_request_rtu(1, 40000, 2), expect=9) == SUNS_REPLY
    assert rtu_exchange(path, read_request_rtu(9, 40000, 2), wait=0.3) == b""  # not ours
    bad = bytearray(read_request_rtu(1, 40000, 2))
    bad[-1] ^= 0x55
    assert rtu_exchange(path, bytes(bad), wait=0.3) == b""  # a slave ignores a bad CRC
    # ...and is in step for the next frame
    assert rtu_exchange(path, read_request_rtu(1, 40000, 2), expect=9) == SUNS_REPLY
    # a function code of unknown length ends by the gap and gets exception 1
    reply = rtu_exchange(path, with_crc(bytes.fromhex("012b0e0100")), expect=5)
    assert reply == with_crc(bytes.fromhex("01ab01"))
    # read past the image: exception 2
    assert rtu_exchange(path, read_request_rtu(1, 0, 2), expect=5) == \
        with_crc(bytes.fromhex("018302"))


def test_broadcast_write_is_executed_by_every_unit_without_reply(fresh):
    client = tcp_client(fresh)
    try:
        dev1, dev2 = Device.scan(client, unit=1), Device.scan(client, unit=2)
        conn = dev1.address(123, "Conn")
        frame = with_crc(struct.pack(">BBHH", 0, 6, conn, 0))
        assert rtu_exchange(fresh.pty_path, frame, wait=0.3) == b""
        wait_for(lambda: dev1.read(123, "Conn") == 0 and dev2.read(123, "Conn") == 0,
                 timeout=2)
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["silent", "exception:4", "garbage", "truncated", "bad_crc",
                                  "delay:0.5"])
def test_fault_modes_over_rtu(fresh, mode):
    fresh.control.fault(mode)
    req = read_request_rtu(1, 40000, 2)
    t0 = time.monotonic()
    wire = rtu_exchange(fresh.pty_path, req, wait=1.0 if mode.startswith("delay") else 0.3,
                        expect=9)
    elapsed = time.monotonic() - t0
    if mode == "silent":
        assert wire == b""
    elif mode == "exception:4":
        assert wire == with_crc(bytes.fromhex("018304"))
    elif mode == "garbage":
        assert len(wire) == len(SUNS_REPLY) and wire != SUNS_REPLY
    elif mode == "truncated":
        assert wire == SUNS_REPLY[:-3]
    elif mode == "bad_crc":
        assert wire[:-2] == SUNS_REPLY[:-2] and not crc_ok(wire)
    else:
        assert wire == SUNS_REPLY and elapsed >= 0.5
    # what a pymodbus master makes of it
    client = rtu_client(fresh.pty_path, timeout=0.3)
    try:
        try:
            rr = client.read_holding_registers(40000, count=2, device_id=1)
        except Exception as exc:  # ModbusIOException: no usable answer
            rr = exc
        if mode == "exception:4":
            assert rr.isError() and rr.exception_code == 4
        else:
            assert isinstance(rr, Exception), rr
    finally:
        client.close()
    fresh.control.fault("none")


def test_pty_cycle_kills_the_old_fd_and_the_link_comes_back(fresh):
    link = fresh.pty_path
    old_device = os.path.realpath(link)
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        result: dict[str, str] = {}
        t = threading.Thread(target=lambda: result.update(pty=fresh.control.pty_cycle(1.0)))
        t.start()
        # the device is gone for a while, like an unplugged USB adapter
        wait_for(lambda: not os.path.lexists(link), timeout=3, interval=0.01)
        t.join(timeout=5)
        assert result["pty"] == os.path.realpath(link)
        with pytest.raises(OSError):
            data = os.read(fd, 16)  # EIO once the master side is gone...
            if data == b"":
                raise OSError("EOF")  # ...or end of file: either way the fd is dead
    finally:
        os.close(fd)
    assert result["pty"] != old_device  # our fd kept the old pts number taken
    wait_for(lambda: fresh.pty_device == result["pty"], timeout=2)  # announced on stdout
    client = rtu_client(link)
    try:
        assert client.read_holding_registers(40000, count=2, device_id=1).registers == [
            0x5375, 0x6E53]
    finally:
        client.close()


def test_existing_serial_port_transport():
    # the simulator opens a serial device it is given (here the slave side of our own pty,
    # standing in for a socat pair or a USB-RS485 adapter); we talk on the master side
    master, slave = os.openpty()
    try:
        with SimProcess("--serial", os.ttyname(slave), "--baud", "19200", tcp=False) as sim:
            assert sim.pty_device == os.ttyname(slave)
            os.write(master, read_request_rtu(1, 40000, 2))
            data = b""
            deadline = time.monotonic() + 2
            while len(data) < len(SUNS_REPLY) and time.monotonic() < deadline:
                if select.select([master], [], [], 0.1)[0]:
                    data += os.read(master, 64)
            assert data == SUNS_REPLY
            with pytest.raises(SimControlError, match="no pty to cycle"):
                sim.control.pty_cycle(0.1)
    finally:
        os.close(master)
        os.close(slave)
