"""A change made over DNP3 is the core's change: visible over MMS, and at the inverter.

The whole agent as a child process (``inverter-agent run``, MMS and DNP3 both
serving), the simulated inverter in another, dnp3py's master and the project's
MMS client in the test: an active power limit direct-operated over DNP3 is read
back over MMS and reaches the inverter (how fast: ``make bench``, section
"timing"); a volt-var curve written through the curve edit buffer by either
foreign master (dnp3py, yadnp3) is read back over MMS (DVVR1.VVArCrv) and followed
by the inverter's reactive power, and a curve with a gap is refused with nothing
changed.
"""

from __future__ import annotations

import socket

import pytest

from simulator import SimProcess
from tests.e2e.conftest import LD, AgentProcess, free_port, wait_for

from .conftest import OUT_OF_RANGE, SUCCESS, ForeignMaster, curve_writes

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
    assert master.direct_operate_analog(88, 420) == SUCCESS  # 42.0 %
    # How fast: `make bench` section "timing" (target < 1 s at this 0.1 s poll).
    wait_for(lambda: abs(control.get_point(123, "WMaxLimPct") - 42.0) < 0.05, timeout=10,
             interval=0.01, what="42 % at the inverter")
    leaves = agent.mms.read(f"{LD}/DWMX1.WMaxSptPct", "MX")
    assert leaves["mxVal.f"] == pytest.approx(42.0)


def _mms_curve(agent) -> list[tuple[float, float]]:
    leaves = agent.mms.read(f"{LD}/DVVR1.VVArCrv", "SP")
    return [(round(leaves[f"crvPts.{i}.xVal"], 3), round(leaves[f"crvPts.{i}.yVal"], 3))
            for i in range(leaves["numPts"])]


def _curve_shown_over_mms_and_applied(agent, write_curve, number: int, q_pct: float) -> None:
    """A flat volt-var curve (``q_pct`` of max VArs at any voltage) written through the
    edit buffer as curve ``number`` and applied: read back over MMS, and the inverter's
    reactive power follows it; then a curve with a gap is refused and nothing changes."""
    flat = [(90.0, q_pct), (110.0, q_pct)]
    statuses = write_curve([*curve_writes(number, 2, 2, flat), ("AO", 217, number)])
    assert statuses == [SUCCESS] * len(statuses), statuses
    wait_for(lambda: _mms_curve(agent) == flat, timeout=5, what="the curve over MMS")
    rated_var = 2200.0  # the simulated inverter's (AI12)
    control = agent.sim.control
    wait_for(lambda: abs(control.state()["units"]["1"]["plant"]["var"]
                         - q_pct / 100 * rated_var) < 0.05 * rated_var,
             timeout=30, what=f"{q_pct} % of max VArs at the inverter")
    # a curve with a gap (3 points declared, 2 written): refused, nothing changes
    gap = curve_writes(number + 1, 2, 2, [(90.0, 10.0), (110.0, 10.0)])
    gap[2] = ("AO", 246, 3)
    statuses = write_curve([*gap, ("AO", 217, number + 1)])
    assert statuses[-1] == OUT_OF_RANGE and statuses[:-1] == [SUCCESS] * (len(statuses) - 1)
    assert _mms_curve(agent) == flat
    assert agent.mms.read(f"{LD}/DVVR1.VVArCrv", "SP")["numPts"] == 2


def test_a_volt_var_curve_written_by_dnp3py_is_applied_and_read_back_over_mms(agent):
    master = ForeignMaster(agent.dnp3_port)
    _curve_shown_over_mms_and_applied(agent, master.operate_in_turn, 3, 30.0)


def test_a_volt_var_curve_written_by_yadnp3_is_applied_and_read_back_over_mms(agent):
    pytest.importorskip("opendnp3", reason="yadnp3 has wheels for x86_64 and Windows only")
    from .test_yadnp3 import yad_master

    with yad_master(agent.dnp3_port) as master:
        def write(controls):
            return [master.analog(i, int(v)) if k == "AO" else master.latch(i, bool(v))
                    for k, i, v in controls]
        _curve_shown_over_mms_and_applied(agent, write, 5, -20.0)
