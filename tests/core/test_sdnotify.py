"""systemd notifications from the real agent process over a real datagram socket."""

import os
import socket
import subprocess
import sys
import time

import pytest

from simulator import SimProcess


def _notify_socket(tmp_path, timeout):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(timeout)
    return path, sock


def _agent(tmp_path, sim, notify_path, watchdog_usec, *args):
    """The agent as systemd would start it: NOTIFY_SOCKET and WATCHDOG_USEC set."""
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(watchdog_usec))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.Popen(
        [sys.executable, "-m", "inverter_agent.cli", "run", "--modbus-tcp",
         f"127.0.0.1:{sim.tcp_port}", "--mms-port", str(port), "--state-dir",
         str(tmp_path / "state"), *args], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("units", [None, "1,2"], ids=["one inverter", "site of two"])
def test_agent_reports_ready_pings_the_watchdog_from_its_loop_and_says_stopping(tmp_path,
                                                                                 units):
    path, sock = _notify_socket(tmp_path, 0.5)
    extra = ("--units", units) if units else ()
    with SimProcess(*extra) as sim:
        proc = _agent(tmp_path, sim, path, 2000000, "--poll-period", "0.2", *extra)
        got: list[str] = []
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline and got.count("WATCHDOG=1") < 5:
                try:
                    got.append(sock.recv(4096).decode())
                except TimeoutError:
                    pass
        finally:
            proc.terminate()
            proc.wait(10)
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                break
    sock.close()
    assert any(m.startswith("READY=1") for m in got), got
    assert got.count("WATCHDOG=1") >= 5
    assert "STOPPING=1" in got


def test_without_notify_socket_nothing_is_sent():
    from inverter_agent.sdnotify import Notifier
    n = Notifier(address="")
    assert not n.enabled and n.ready() is False and n.watchdog() is False


def test_a_stalled_control_loop_stops_the_watchdog_pings(tmp_path):
    # Stall the loop for real: the inverter answers 4 s late, and a poll waits
    # (timeout 2 s, one retry) before it gives up. The pings, sent by the loop
    # itself after each cycle, stop meanwhile; systemd would restart a service
    # stuck longer than WatchdogSec.
    path, sock = _notify_socket(tmp_path, 0.2)
    with SimProcess() as sim:
        proc = _agent(tmp_path, sim, path, 1000000, "--poll-period", "2.0", "--timeout", "2.0",
                      "--no-functions")

        def pings(seconds):
            times = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    if sock.recv(4096) == b"WATCHDOG=1":
                        times.append(time.monotonic())
                except TimeoutError:
                    pass
            return times

        def first_ping(limit_s):  # the agent is up (its start may be slow on a busy machine)
            end = time.monotonic() + limit_s
            while time.monotonic() < end:
                if pings(0.5):
                    return
            raise AssertionError(f"no watchdog ping within {limit_s} s of the start")

        try:
            first_ping(30.0)
            healthy = pings(5.0)
            sim.control.fault("delay:4.0")
            stalled = pings(5.0)
            sim.control.fault("none")
            recovered = pings(7.0)
        finally:
            proc.terminate()
            proc.wait(10)
    sock.close()
    assert len(healthy) >= 2  # a ping every 2 s cycle
    gaps = [b - a for a, b in zip(healthy, healthy[1:], strict=False)]
    assert max(gaps) < 3.5, gaps  # one each cycle (room for a loaded machine; a stall is 4 s)
    # While stalled: at most one ping (a cycle that began before the fault).
    assert len(stalled) <= 1, stalled
    assert len(recovered) >= 2  # pings come back with the link
