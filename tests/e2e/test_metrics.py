"""The metrics endpoint: off by default, loopback by default, and what it serves
(poll timing, link state, readings by quality, function states, setpoints, trips,
protocol links and per-client bytes) parsed by a real Prometheus text parser."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inverter_agent import config as config_mod

from .conftest import free_port, wait_for


def _scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    families = {}
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam.samples
    return families


def _value(families, name: str, /, **labels) -> float:
    for s in families[name]:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((name, labels))


def test_off_by_default_and_on_loopback_by_default(tmp_path):
    cfg = config_mod.load(None)
    assert cfg["metrics.enabled"] is False and cfg["metrics.host"] == "127.0.0.1"
    bad = tmp_path / "agent.toml"
    bad.write_text("[metrics]\nport = 0\n")
    with pytest.raises(config_mod.ConfigError, match=r"\[metrics\] port: 0 is out of range"):
        config_mod.load(str(bad))


def test_scraped_metrics_parse_and_follow_the_gateway(fresh_sim, agent_factory, tmp_path):
    port = free_port()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"[metrics]\nenabled = true\nport = {port}\n")
    agent = agent_factory("--config", str(cfg), "--modbus-tcp",
                          f"127.0.0.1:{fresh_sim.tcp_port}")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="running")  # an MMS client too
    fam = wait_for(lambda: (f := _scrape(port)) and
                   f.get("inverter_agent_client_wire_bytes") and f, timeout=15,
                   what="per-client bytes")
    inv = "INV1"
    assert _value(fam, "inverter_agent_link_up", inverter=inv) == 1
    assert _value(fam, "inverter_agent_cycles", inverter=inv) > 0  # counter: _total dropped
    assert 0 < _value(fam, "inverter_agent_poll_last_seconds", inverter=inv) < 1
    assert _value(fam, "inverter_agent_poll_period_seconds", inverter=inv) > 0
    assert _value(fam, "inverter_agent_readings", inverter=inv, quality="good") > 10
    assert _value(fam, "inverter_agent_reading", inverter=inv, name="W") > 0
    assert _value(fam, "inverter_agent_functions_running", inverter=inv) == 1
    assert _value(fam, "inverter_agent_function_enabled", inverter=inv,
                  function="volt_var") in (0, 1)
    assert _value(fam, "inverter_agent_setpoint_p_limit_percent", inverter=inv) == 100
    assert _value(fam, "inverter_agent_tripped", inverter=inv) == 0
    assert _value(fam, "inverter_agent_trips", inverter=inv) == 0
    assert _value(fam, "inverter_agent_protocol_clients", protocol="mms") >= 1
    mine = [s for s in fam["inverter_agent_client_wire_bytes"]
            if s.labels["protocol"] == "mms" and s.labels["direction"] == "in"]
    assert mine and all(s.value > 0 for s in mine) and mine[0].labels["peer"]
    assert _value(fam, "inverter_agent_modbus_bytes", inverter=inv, direction="in") > 0
    assert _value(fam, "inverter_agent_status_age_seconds") < 5

    fresh_sim.control.set_grid(v_pu=1.25)  # over-voltage: the backup trip
    fam = wait_for(lambda: (f := _scrape(port)) and
                   _value(f, "inverter_agent_tripped", inverter=inv) == 1 and f,
                   timeout=15, what="trip")
    assert _value(fam, "inverter_agent_trips", inverter=inv) == 1
    assert _value(fam, "inverter_agent_function_active", inverter=inv,
                  function="volt_var") in (0, 1)
    fresh_sim.control.set_grid(v_pu=1.0)
    rc, took = agent.terminate()
    assert rc == 0 and took < 5.0


def test_a_silent_client_is_dropped_after_the_timeout_and_the_loop_runs_on(
        fresh_sim, agent_factory, tmp_path):
    import socket
    import time

    port = free_port()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"[metrics]\nenabled = true\nport = {port}\ntimeout = 1.0\n")
    agent = agent_factory("--config", str(cfg), "--modbus-tcp",
                          f"127.0.0.1:{fresh_sim.tcp_port}")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, what="running")
    before = _value(_scrape(port), "inverter_agent_cycles", inverter="INV1")
    silent = socket.create_connection(("127.0.0.1", port))  # connects, never asks
    try:
        t0 = time.monotonic()
        fam = _scrape(port)  # served once the silent one is dropped (1 s), not never
        took = time.monotonic() - t0
        silent.settimeout(5)
        assert silent.recv(100) == b""  # the server closed it
    finally:
        silent.close()
    assert 0.5 < took < 4.0, took
    # the control loop kept polling meanwhile (0.25 s period at most): several cycles
    assert _value(fam, "inverter_agent_cycles", inverter="INV1") >= before + 3
    assert _value(fam, "inverter_agent_link_up", inverter="INV1") == 1
