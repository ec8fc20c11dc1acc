"""A change made over DNP3 is the core's change: visible over MMS, and at the inverter.

The whole agent as a child process (``inverter-agent run``, MMS and DNP3 both
serving), the simulated inverter in another, dnp3py's master and the project's
MMS client in the test: an active power limit direct-operated over DNP3 is read
back over MMS and reaches the inverter within a few control cycles.
"""

from __future__ import annotations

import socket
import time

import pytest

from simulator import SimProcess
from tests.e2e.conftest import LD, AgentProcess, free_port, wait_for

from .conftest import SUCCESS, ForeignMaster

POLL_S = 0.1


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dnp3mms")
    port = free_port()
    cfg = tmp / "agent.toml"
    cfg.write_text(f"[dnp3]\nenabled = true\nport = {port}\n")
    with SimProcess("--tau", "0.2", "--seed", "5") as sim:
        proc = AgentProcess(str(tmp), "--config", str(cfg), "--modbus-tcp",
                            f"127.0.0.1:{sim.tcp_port}", poll_period=POLL_S).start()
        try:
            wait_for(lambda: _listening(port), timeout=20, what="DNP3 listening")
            proc.dnp3_port, proc.sim = port, sim
            yield proc
        finally:
            proc.terminate()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_a_limit_operated_over_dnp3_shows_over_mms_and_reaches_the_inverter(agent):
    master = ForeignMaster(agent.dnp3_port)
    control = agent.sim.control
    assert master.direct_operate_binary(17, True) == SUCCESS
    wait_for(lambda: control.get_point(123, "WMaxLim_Ena") == 1, timeout=10,
             what="limit enabled at the inverter")
    t0 = time.monotonic()
    assert master.direct_operate_analog(88, 420) == SUCCESS  # 42.0 %
    wait_for(lambda: abs(control.get_point(123, "WMaxLimPct") - 42.0) < 0.05, timeout=5,
             interval=0.01, what="42 % at the inverter")
    took = time.monotonic() - t0
    print(f"DNP3 direct operate -> WMaxLimPct at the inverter: {took * 1000:.0f} ms")
    assert took < 1.0, took  # a few 100 ms control cycles, generous for a shared machine
    leaves = agent.mms.read(f"{LD}/DWMX1.WMaxSptPct", "MX")
    assert leaves["mxVal.f"] == pytest.approx(42.0)
