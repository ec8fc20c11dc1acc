"""The simulator as a process: signals, start-up errors, control channel, 1547 models,
native protection with a grid script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import simulator
import simulator.cli
from simulator import SimControlError, SimProcess, SimStartError
from simulator.testing import Device, tcp_client, wait_for


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_within_10_s(sig):
    # The simulator stops its parts side by side with a 3 s deadline; 10 s (the
    # agent unit's TimeoutStopSec) leaves room for a loaded CI machine, and a stop
    # that hangs still fails here, with the simulator's own account of it.
    sim = SimProcess(pty=True).start()
    link, port = sim.pty_path, sim.tcp_port
    assert link and os.path.islink(link)
    t0 = time.monotonic()
    assert sim.proc is not None
    sim.proc.send_signal(sig)
    try:
        rc = sim.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sim.stop(timeout=1)
        pytest.fail("not stopped 10 s after the signal; its log:\n"
                    + "\n".join(list(sim.stderr_lines)[-20:]))
    assert rc == 0
    assert time.monotonic() - t0 < 10
    assert not os.path.lexists(link)  # symlink removed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    assert sim.stop() == 0  # idempotent, and reaped: no zombie
    assert "parts stopped in" in sim.output() and "still stopping" not in sim.output()
    assert f"signal {int(sig)}: stopping" in sim.output()


def test_bad_options_fail_fast_with_the_reason():
    with pytest.raises(SimStartError, match="start with common model 1"):
        SimProcess("--models", "103,1").start()
    with pytest.raises(SimStartError, match="unknown fault"):
        SimProcess("--fault", "loud").start()
    with pytest.raises(SystemExit) as exc:
        simulator.cli.main(["--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        simulator.cli.main([])  # no transport
    assert exc.value.code == 2


def test_control_channel_answers_every_line(fresh):
    ctl = fresh.control
    assert ctl.ping()
    with pytest.raises(SimControlError, match="unknown cmd"):
        ctl.request("frobnicate")
    with pytest.raises(SimControlError, match="no unit 7"):
        ctl.set_dc(1000, unit=7)
    with pytest.raises(SimControlError, match="out of range"):
        ctl.set_grid(v_pu=3.0)
    assert fresh.control_address is not None
    with socket.create_connection(fresh.control_address, timeout=2) as s:
        s.sendall(b"not json\n" + json.dumps({"cmd": "state", "unit": 2}).encode() + b"\n")
        f = s.makefile("rb")
        assert json.loads(f.readline())["ok"] is False
        state = json.loads(f.readline())
    assert state["ok"] and set(state["units"]) == {"2"}
    plant = state["units"]["2"]["plant"]
    assert plant["st"] == "MPPT" and plant["w"] == pytest.approx(3880, abs=5)
    assert ctl.get_point(103, "PhVphA", unit=2) == pytest.approx(240.0)


def test_ieee_1547_controls_and_reversion():
    with SimProcess("--models", "1,701,702,703,704", "--tau", "0.2") as sim:
        client = tcp_client(sim)
        try:
            dev = Device.scan(client)
            dev.write(704, "WMaxLimPctRvrtTms", 1)
            dev.write(704, "WMaxLimPct", 50.0)
            dev.write(704, "WMaxLimPctEna", 1)
            wait_for(lambda: abs(dev.read(701, "W") - 2500) < 30, timeout=3)
            assert dev.read(701, "InvSt") == 4  # THROTTLED
            assert dev.read(704, "WMaxLimPctRvrtRem") in (0, 1)
            wait_for(lambda: dev.read(704, "WMaxLimPctEna") == 0, timeout=3)  # reverted
            wait_for(lambda: dev.read(701, "W") > 3500, timeout=3)
            dev.write(704, "PFWInj.PF", 0.9)
            dev.write(704, "PFWInj.Ext", 1)  # under-excited
            dev.write(704, "PFWInjEna", 1)
            wait_for(lambda: abs(dev.read(701, "PF") - 0.9) < 0.005, timeout=3)  # signed as W
            assert dev.read(701, "Var") < -1500
            dev.write(703, "ES", 0)  # cease to energize
            wait_for(lambda: dev.read(701, "W") == 0, timeout=3)
            assert dev.read(701, "ConnSt") == 0
        finally:
            client.close()


def test_native_trip_with_a_grid_script(tmp_path):
    script = tmp_path / "grid.csv"
    script.write_text("t,v_pu,f_hz\n0,1.0,60\n0.3,1.15,60\n1.5,1.0,60\n")
    with SimProcess("--native-trip", "--reconnect-delay", "0.5", "--tau", "0.1",
                    "--grid-script", str(script)) as sim:
        client = tcp_client(sim)
        try:
            dev = Device.scan(client)
            # one snapshot: tripped (STANDBY) with no output while the voltage is high
            m = wait_for(lambda: (lambda m: m if m.value("St") == 8 else None)(dev.read(103)),
                         timeout=3)
            assert m.value("W") == 0 and m.value("PhVphA") == pytest.approx(276.0)
            wait_for(lambda: dev.read(103, "W") > 3000, timeout=3)  # back after the delay
        finally:
            client.close()


def test_gateway_backup_protection_case_native_trip_off(fresh, dev):
    fresh.control.set_grid(v_pu=1.2)
    time.sleep(0.3)
    assert dev.read(103, "W") > 3000  # the inverter rides through: the gateway must act


def test_simulator_exits_when_its_parent_dies():
    cmd = (f"{sys.executable} -m simulator --tcp 127.0.0.1:0 --control off --watch-parent "
           ">/dev/null 2>&1 & echo $!; sleep 0.8")
    env = dict(os.environ, PYTHONPATH=str(os.path.dirname(os.path.dirname(simulator.__file__))))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=10, env=env)
    pid = int(out.stdout.split()[0])

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] in "ZX"  # zombie: exited, not yet reaped
        except FileNotFoundError:
            return True

    wait_for(gone, timeout=4)
