"""``agent.poll_period = "auto"`` end to end: the agent measures its link, chooses,
and says what it chose and why in the log, ``status.json`` and ``inverter-agent status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import wait_for


def _status(agent) -> dict:
    with open(os.path.join(agent.state_dir, "status.json")) as fh:
        return json.load(fh)


def _chosen(agent):
    try:
        auto = _status(agent).get("poll_period_auto") or {}
    except (OSError, ValueError):
        return None
    return auto if auto.get("chosen_s") else None


def test_default_period_is_chosen_from_the_tcp_link_and_stated(agent_factory, fresh_sim):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    auto = wait_for(lambda: _chosen(agent), timeout=20, what="a chosen poll period")
    assert auto["chosen_s"] == 0.05  # loopback TCP: round trips of ~1 ms, the floor
    assert "TCP" in auto["reason"] and "floor" in auto["reason"]
    assert auto["worst_trip_latency_s"] < 0.2
    st = _status(agent)
    assert st["poll_period_s"] == 0.05
    assert "poll period auto: 0.050 s" in agent.log()
    out = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "status", "--state-dir",
                          agent.state_dir], capture_output=True, text=True, timeout=30)
    assert "poll period     auto: 0.05 s" in out.stdout, out.stdout
    assert "backup trip" in out.stdout


def test_an_explicit_period_is_kept(agent_factory, fresh_sim):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--no-functions",
                          poll_period=0.3)
    st = wait_for(lambda: os.path.exists(os.path.join(agent.state_dir, "status.json"))
                  and _status(agent), timeout=20, what="a status file")
    assert st["poll_period_s"] == 0.3 and st["poll_period_auto"] is None
