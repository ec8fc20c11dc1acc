"""Cost of communication: the agent counts the bytes on the wire of every MMS
client and sorts them by level of service (monitoring, settings, reports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from inverter_agent.adapters.mms import client as mms

from .conftest import LD, wait_for


def _status(agent, after: float):
    try:
        with open(os.path.join(agent.state_dir, "status.json")) as fh:
            st = json.load(fh)
    except (OSError, ValueError):
        return None
    return st if st["time"] >= after and "wire" in st else None


def test_bytes_on_the_wire_are_counted_per_client_and_level_of_service(fresh_sim,
                                                                         agent_factory):
    from open61850.mms import MmsClient, ObjectName
    from open61850.mms import rcb as rcbs

    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    monitor = mms.connect("127.0.0.1", agent.port, timeout=5)
    setter = mms.connect("127.0.0.1", agent.port, timeout=5)
    reporter = MmsClient.connect("127.0.0.1", agent.port, timeout=5)
    try:
        for _ in range(5):
            monitor.read(f"{LD}/MMXU1", "MX")
        ref = f"{LD}/DCTE1.VHiLim.setMag.f"
        setter.read(f"{LD}/MMXU1", "MX")
        setter.write_float(ref, "SP", float(setter.read_value(ref, "SP")))
        rcb = ObjectName("LLN0$RP$urcbMeas01", LD)
        rcbs.enable(reporter, rcb, rcbs.RcbSettings(intg_pd_ms=500,
                                                    general_interrogation=False))
        t = time.time()
        st = wait_for(lambda: _status(agent, t), timeout=15, what="status with wire counts")
        clients = st["wire"]["clients"]
        # The Modbus side keeps its own byte count beside the MMS one.
        assert st["modbus_bytes"]["bytes_in"] > st["modbus_bytes"]["bytes_out"] > 0
        assert sorted(c["level"] for c in clients) == ["monitoring", "reports", "settings"]
        for c in clients:
            # The kernel's counts: requests in, responses (and reports) out, each
            # with its IP/TCP headers on top of the payload.
            assert 0 < c["bytes_in"] < c["wire_in"], c
            assert 0 < c["bytes_out"] < c["wire_out"], c
            assert c["bytes_per_day"] > 0
        by_level = {c["level"]: c for c in clients}
        # Five reads of all MMXU1 measurements answer more than one read does.
        assert by_level["monitoring"]["bytes_out"] > by_level["settings"]["bytes_out"] / 2
        seen = {c["level"]: c["wire_in"] + c["wire_out"] for c in clients}
        rcbs.disable(reporter, rcb)
    finally:
        monitor.close()
        setter.close()
        reporter.close()
    # Closed connections are folded into their level's totals, nothing lost.
    t = time.time() + 0.5
    st = wait_for(lambda: (s := _status(agent, t)) and not s["wire"]["clients"] and s,
                  timeout=15, what="status after the clients left")
    levels = st["wire"]["levels"]
    # (The fixture's readiness probe, a bare TCP connect, is a monitoring client too.)
    assert levels["monitoring"]["connections"] >= 1, levels
    assert levels["settings"]["connections"] == levels["reports"]["connections"] == 1, levels
    for level in ("monitoring", "settings", "reports"):
        assert levels[level]["wire_in"] + levels[level]["wire_out"] >= seen[level]
        assert levels[level]["bytes_per_day_per_client"] > 0
    shown = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "status", "--state-dir",
                            agent.state_dir], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    for level in ("monitoring", "settings", "reports"):
        assert f"wire {level}" in shown.stdout, shown.stdout
