"""Settings over MMS against the whole agent: applied at the inverter and persisted
(how fast: ``make bench``, section "timing"), and never lost when the agent is
killed mid-burst (SIGKILL, many times)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

from open61850.data import FloatData, IntData, StructureData
from open61850.mms import MmsClient, operate

from inverter_agent.functions import settings_from_dict

from .conftest import LD, wait_for


def _write_float(client, ref, value):
    client.write(f"{LD}/{ref} [SP]", FloatData(value))


def _write_ms(client, ref, seconds):
    client.write(f"{LD}/{ref} [SP]", IntData(int(round(seconds * 1000))))


def _burst(client, start, stop, in_flight, acked):
    """Write enter_service.delay_s = start+1, start+2, ... until stopped or cut off."""
    value = start
    try:
        while not stop.is_set():
            value = 20.0 if value >= 590.0 else value + 1.0
            in_flight.append(value)
            _write_ms(client, "DCTE1.RtnDlTmms.setVal", value)
            acked.append(value)
    except Exception:  # the connection dies with the agent: expected
        pass


def test_an_accepted_setting_reaches_the_inverter_and_is_persisted(fresh_sim, agent_factory):
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", poll_period=0.1)
    wait_for(lambda: fresh_sim.control.get_point(123, "WMaxLim_Ena") == 1, what="running")
    client = MmsClient.connect("127.0.0.1", agent.port, timeout=5)
    try:
        operate(client, f"{LD}/DWMX1.Mod", IntData(1))  # on: a persisted setting
        operate(client, f"{LD}/DWMX1.WMaxSptPct", StructureData([FloatData(40.0)]))
        # How fast (target < 0.5 s at this poll): `make bench`, section "timing".
        wait_for(lambda: abs(fresh_sim.control.get_point(123, "WMaxLimPct") - 40.0) < 0.05,
                 timeout=10, interval=0.01, what="limit at the inverter")
    finally:
        client.close()
    persisted = json.load(open(os.path.join(agent.state_dir, "settings.json")))
    assert persisted["settings"]["active_power_limit"]["p_limit_pct"] == 40.0


def test_sigkill_during_a_burst_of_writes_never_loses_an_acknowledged_write(
        fresh_sim, agent_factory, tmp_path):
    rng = random.Random(61850)
    value = 20.0
    state_dir = None
    for round_ in range(8):
        args = ["--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}"]
        if state_dir:
            args += ["--state-dir", state_dir]
        agent = agent_factory(*args, poll_period=0.2)
        state_dir = agent.state_dir
        client = MmsClient.connect("127.0.0.1", agent.port, timeout=5)
        acked: list[float] = []
        in_flight: list[float] = []
        stop = threading.Event()

        writer = threading.Thread(target=_burst,
                                  args=(client, value, stop, in_flight, acked))
        writer.start()
        time.sleep(rng.uniform(0.2, 0.8))
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        stop.set()
        writer.join(10)
        client.close()
        assert acked, f"round {round_}: no write was acknowledged before the kill"
        value = in_flight[-1]
        # The stored file is whole and valid, and holds the last acknowledged
        # write or the one in flight at the kill.
        with open(os.path.join(state_dir, "settings.json")) as fh:
            doc = json.load(fh)
        stored = settings_from_dict(doc["settings"]).enter_service.delay_s
        allowed = {acked[-1]} | ({in_flight[-1]} if in_flight[-1] != acked[-1] else set())
        assert stored in allowed, (round_, stored, acked[-3:], in_flight[-1])
        assert not [f for f in os.listdir(state_dir) if f.startswith("settings.json.bad")]
    # And the restarted agent serves what was stored.
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}", "--state-dir",
                          state_dir, poll_period=0.2)
    client = MmsClient.connect("127.0.0.1", agent.port, timeout=5)
    try:
        served = client.read(f"{LD}/DCTE1.RtnDlTmms.setVal [SP]").value / 1000
    finally:
        client.close()
    assert served == stored
