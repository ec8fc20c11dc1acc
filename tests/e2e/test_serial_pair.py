"""The bench set-up with a serial-port pair made by socat: the simulator on one
end as a serial device (``--serial``), the agent on the other, MMS on top.
This is the path a bench engineer uses with two USB-RS485 adapters."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from simulator import SimProcess

from .conftest import wait_for

pytestmark = pytest.mark.skipif(shutil.which("socat") is None,
                                reason="socat not installed (make install installs it as root)")


@pytest.fixture
def pty_pair(tmp_path):
    a, b = str(tmp_path / "ttyA"), str(tmp_path / "ttyB")
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (os.path.exists(a) and os.path.exists(b)):
        assert time.monotonic() < deadline, "socat made no pty pair"
        time.sleep(0.02)
    yield a, b
    proc.terminate()
    proc.wait(5)


def test_agent_reads_a_simulated_inverter_through_a_socat_serial_pair(pty_pair, agent_factory):
    a, b = pty_pair
    with SimProcess("--serial", a, "--baud", "9600", "--tau", "0.2", tcp=False) as sim:
        agent = agent_factory("--modbus-rtu", b, "--baud", "9600", "--no-functions",
                              poll_period=0.5)
        wait_for(lambda: agent.read("MMXU1.PhV.phsA")[1].good, timeout=15, what="good data")
        sim.control.set_grid(v_pu=1.03)

        def at_247():
            v, q, _ = agent.read("MMXU1.PhV.phsA")
            return q.good and abs(v - 247.2) < 0.5
        wait_for(at_247, timeout=10, what="247.2 V through the pair")
