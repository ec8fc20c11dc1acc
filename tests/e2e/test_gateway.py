"""The gateway end to end: simulator -> agent -> MMS client, three processes,
real wires (loopback TCP, a pty with RTU framing, MMS)."""

from __future__ import annotations

import time

import pytest

from hal.reading import Detail, Validity

from .conftest import wait_for


def _near(agent, do, target, tol):
    def check():
        v, q, _ = agent.read(do)
        return (v, q) if q.good and abs(v - target) <= tol else None
    return check


def test_simulated_voltage_change_reaches_the_mms_client_over_tcp(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--no-functions")
    wait_for(_near(agent, "MMXU1.PhV.phsA", 240.0, 0.5), what="nominal voltage over MMS")
    fresh_sim.control.set_grid(v_pu=1.05, f_hz=60.1)
    wait_for(_near(agent, "MMXU1.PhV.phsA", 252.0, 0.5), what="252 V over MMS")
    hz, q, t = agent.read("MMXU1.Hz")
    assert hz == pytest.approx(60.1, abs=0.01) and q.good
    assert abs(t - time.time()) < 5  # a real timestamp, not 1970
    w, q, _ = agent.read("MMXU1.TotW")
    assert q.good and w > 0
    assert agent.read("LLN0.Health", "ST")[0] == 1  # Ok


def test_simulated_voltage_change_reaches_the_mms_client_over_rtu(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-rtu", fresh_sim.pty_path, "--baud", "115200",
                          "--no-functions")
    wait_for(_near(agent, "MMXU1.PhV.phsA", 240.0, 0.5), what="nominal voltage over RTU")
    fresh_sim.control.set_grid(v_pu=0.95)
    wait_for(_near(agent, "MMXU1.PhV.phsA", 228.0, 0.5), what="228 V over RTU")


def test_a_silent_inverter_turns_quality_invalid_within_a_poll_and_recovers(
        fresh_sim, agent_factory):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--no-functions",
                          poll_period=0.5)
    wait_for(_near(agent, "MMXU1.PhV.phsA", 240.0, 0.5), what="good data first")
    t0 = time.monotonic()
    fresh_sim.control.fault("silent")
    _, q, _ = wait_for(lambda: (r := agent.read("MMXU1.PhV.phsA")) and
                       (r if not r[1].good else None), timeout=5, interval=0.02,
                       what="invalid quality")
    took = time.monotonic() - t0
    assert q.validity == Validity.INVALID
    assert Detail.FAILURE in q.detail and Detail.OLD_DATA in q.detail
    # The first poll after the link dies fails (timeout 40 % of the period,
    # one retry) and publishes invalid: at most two periods after the fault, plus
    # room for a loaded machine.
    assert took < 2 * agent.poll_period + 1.0, took
    assert agent.read("LLN0.Health", "ST")[0] == 3  # Alarm
    fresh_sim.control.fault("none")
    wait_for(_near(agent, "MMXU1.PhV.phsA", 240.0, 0.5), what="good again")
    assert agent.alive()


@pytest.mark.parametrize("mode", ["exception:4", "garbage", "truncated", "bad_crc"])
def test_bad_answers_on_rtu_mark_data_invalid_without_crashing(fresh_sim, agent_factory, mode):
    agent = agent_factory("--modbus-rtu", fresh_sim.pty_path, "--baud", "115200",
                          "--no-functions")
    wait_for(_near(agent, "MMXU1.TotW", 3880.0, 200.0), what="good data first")
    fresh_sim.control.fault(mode)
    wait_for(lambda: not agent.read("MMXU1.TotW")[1].good, timeout=5, what="invalid")
    fresh_sim.control.fault("none")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, timeout=10, what="good again")
    assert agent.alive()


def test_the_serial_device_disappears_and_comes_back(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-rtu", fresh_sim.pty_path, "--baud", "115200",
                          "--no-functions")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="good data first")
    fresh_sim.control.pty_cycle(down_s=1.5)
    wait_for(lambda: not agent.read("MMXU1.TotW")[1].good, timeout=5, what="invalid")
    fresh_sim.control.set_grid(v_pu=1.02)
    wait_for(_near(agent, "MMXU1.PhV.phsA", 244.8, 0.5), timeout=15, what="back on new pty")
    assert agent.alive()


def test_no_inverter_at_start_serves_invalid_data_then_picks_it_up(agent_factory, tmp_path):
    from simulator import SimProcess

    from .conftest import free_port
    port = free_port()
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{port}", "--no-functions")
    wait_for(lambda: agent.read("LPHD1.PhyHealth", "ST")[0] == 3, what="health alarm")
    _, q, _ = agent.read("MMXU1.TotW")
    assert q.validity == Validity.INVALID
    with SimProcess("--tcp", f"127.0.0.1:{port}"):
        wait_for(lambda: agent.read("MMXU1.TotW")[1].good, timeout=10, what="found later")
    assert agent.alive()


def test_sigterm_stops_the_agent_cleanly_within_5_s(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="running")
    rc, took = agent.terminate()
    assert rc == 0, agent.log()
    assert took < 5.0
    assert "stopped" in agent.log()


def test_sigterm_while_the_link_hangs_still_stops_within_5_s(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--timeout", "1.5",
                          poll_period=1.0)
    fresh_sim.control.fault("silent")
    time.sleep(1.5)
    rc, took = agent.terminate()
    fresh_sim.control.fault("none")
    assert rc == 0 and took < 5.0, (rc, took)


def test_status_and_events_commands_show_the_running_agent(fresh_sim, agent_factory):
    import subprocess
    import sys

    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="running")
    fresh_sim.control.set_grid(v_pu=1.25)  # a trip, so there is one to show
    time.sleep(6)  # status.json is rewritten about every 5 s

    def run(*args):
        return subprocess.run([sys.executable, "-m", "inverter_agent.cli", *args,
                               "--state-dir", agent.state_dir], capture_output=True,
                              text=True, timeout=30)
    st = run("status")
    assert st.returncode == 0, st.stderr
    assert "inverter link   up" in st.stdout
    assert "last trip" in st.stdout and "HV2" in st.stdout
    ev = run("events")
    assert "trip" in ev.stdout and "controller_start" in ev.stdout


def test_scan_lists_devices_and_models_on_tcp_and_on_the_pty(fresh_sim):
    import subprocess
    import sys

    for link in (["--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}"],
                 ["--modbus-rtu", fresh_sim.pty_path, "--baud", "115200"]):
        r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "scan", *link,
                            "--units", "1-3"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "unit 1: SunSpec at base 40000" in r.stdout
        assert "model   103" in r.stdout and "model   123" in r.stdout
        assert "1 SunSpec device(s) found" in r.stdout


def test_read_prints_the_served_model_with_values(fresh_sim, agent_factory):
    import subprocess
    import sys

    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--no-functions")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="running")
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "read", "--port",
                        str(agent.port)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "GWINV1" in r.stdout and "PhV.phsA = 240" in r.stdout and "[good]" in r.stdout


def test_model_command_writes_an_icd_matching_the_live_server(fresh_sim, agent_factory,
                                                              tmp_path):
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    icd = tmp_path / "gw.icd"
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "model", "--icd", str(icd)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ns = {"scl": "http://www.iec.ch/61850/2003/SCL"}
    root = ET.parse(icd).getroot()
    ld = root.find(".//scl:LDevice", ns)
    in_icd = {f"{e.get('prefix', '')}{e.get('lnClass')}{e.get('inst', '')}"
              for e in ld if e.tag.endswith(("}LN0", "}LN"))}
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    served = set(agent.mms.logical_nodes("GWINV1"))
    assert in_icd == served
