"""Fixtures for the simulator tests: a shared simulator process, reset before each test.

Every test here talks to a real ``python -m simulator`` over loopback TCP or a
pty; nothing is mocked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from simulator import SimProcess
from simulator.testing import Device, rtu_client, tcp_client

TAU = 0.2  # fast plant for tests: settles within ~1 s


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """One simulator for a test module: units 1 and 2, TCP and a pty."""
    with SimProcess("--units", "1,2", "--tau", str(TAU), "--seed", "1", pty=True) as proc:
        yield proc


@pytest.fixture
def tau() -> float:
    """The plant time constant the shared simulator runs with, s."""
    return TAU


@pytest.fixture
def fresh(sim: SimProcess) -> SimProcess:
    """The shared simulator, back to nominal conditions and default controls."""
    sim.control.reset()
    return sim


@pytest.fixture
def tcp(fresh: SimProcess) -> Iterator[ModbusTcpClient]:
    client = tcp_client(fresh)
    yield client
    client.close()


@pytest.fixture
def dev(tcp: ModbusTcpClient) -> Device:
    return Device.scan(tcp)


@pytest.fixture
def rtu(fresh: SimProcess) -> Iterator[ModbusSerialClient]:
    assert fresh.pty_path and os.path.islink(fresh.pty_path)
    client = rtu_client(fresh.pty_path)
    yield client
    client.close()
