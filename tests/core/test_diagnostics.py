"""A newcomer's diagnostics: why a link never comes up is logged, once, then rate-limited;
``status`` and ``events`` find the state ``make run`` wrote; ``events`` without a log
says so and fails."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import pytest

from inverter_agent import cli
from inverter_agent import config as config_mod
from inverter_agent.core.agent import Agent, LinkDiagnosis
from simulator import SimProcess
from tests.e2e.conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _agent(tmp_path, **link) -> Agent:
    overrides = {"agent.state_dir": str(tmp_path), "agent.poll_period": 0.25,
                 "inverter.retries": 0, "inverter.timeout": 0.1}
    overrides.update({f"inverter.{k}": v for k, v in link.items()})
    return Agent(config_mod.load(None, overrides))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_wrong_unit_id_logs_its_cause_once_at_warning(tmp_path, caplog):
    with SimProcess() as sim:  # answers unit 1 only
        agent = _agent(tmp_path, modbus_tcp=f"127.0.0.1:{sim.tcp_port}", unit=7)
        try:
            with caplog.at_level(logging.DEBUG):
                for _ in range(12):  # three seconds' worth of cycles at 4 a second
                    agent.cycle()
        finally:
            agent.close()
    warnings = _warnings(caplog)
    about_unit = [w for w in warnings if "unit 7" in w]
    assert agent.stats.failed_polls == 12
    # one line from the agent with the cause and what to check, and at most the HAL's
    # own first line: never one a cycle
    assert len(about_unit) <= 2, about_unit
    agent_lines = [w for w in about_unit if "inverter link down" in w]
    assert len(agent_lines) == 1, warnings
    assert "no SunSpec marker" in agent_lines[0] and "unit id" in agent_lines[0]


def test_missing_serial_device_logs_its_cause_once(tmp_path, caplog):
    device = str(tmp_path / "rs485-inverter")  # never created
    agent = _agent(tmp_path, modbus_rtu=device)
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(5):
                agent.cycle()
    finally:
        agent.close()
    lines = [w for w in _warnings(caplog) if "inverter link down" in w]
    assert len(lines) == 1, _warnings(caplog)
    assert device in lines[0] and "RS-485 adapter" in lines[0]


def test_repeats_of_one_cause_are_rate_limited(caplog):
    now = [1000.0]
    diag = LinkDiagnosis("INV1", 7, repeat_s=300.0, change_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO):
        for _ in range(4 * 299):  # a wrong unit id at four polls a second for 299 s
            diag.failed("unit 7: no SunSpec marker")
            now[0] += 0.25
        assert diag.logged == 1
        now[0] += 1.0
        diag.failed("unit 7: no SunSpec marker")  # 300 s on: once more, with the count
        assert diag.logged == 2
        assert "still down after 300 s (1197 failed polls" in _warnings(caplog)[-1]
        diag.failed("timed out")  # a new cause, but one was logged just now: folded
        assert diag.logged == 2
        now[0] += 10.0
        diag.failed("timed out")  # a new cause, 10 s on: logged
        assert diag.logged == 3 and "timed out" in _warnings(caplog)[-1]
        diag.up()
    assert caplog.records[-1].levelno == logging.INFO and "link up" in \
        caplog.records[-1].getMessage()
    diag.failed("timed out")  # down again: logged at once
    assert diag.logged == 4


def _cli(cwd, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != cli.ENV_STATE_DIR}
    base["INVERTER_AGENT_CONFIG_DIR"] = str(cwd / "no-etc")  # no system config
    return subprocess.run([sys.executable, "-m", "inverter_agent.cli", *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60)



def test_status_after_make_run_finds_its_state_dir(tmp_path):
    """`make run` writes to $(CURDIR)/state; `inverter-agent status` from that directory,
    with no flag, finds it (the installed service's directory has no status)."""
    if os.path.exists(os.path.join(config_mod.DEFAULT_STATE_DIR, "status.json")):
        pytest.skip(f"an installed agent's status is in {config_mod.DEFAULT_STATE_DIR}")
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as fh:
        assert re.search(r"^STATE_DIR \?= \$\(CURDIR\)/" + cli.BENCH_STATE_DIR + "$",
                         fh.read(), re.M)
    state = tmp_path / cli.BENCH_STATE_DIR
    agent = subprocess.Popen(
        [sys.executable, "-m", "inverter_agent.cli", "run", "--simulate", "--mms-host",
         "127.0.0.1", "--mms-port", str(free_port()), "--state-dir", str(state)], cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (state / "status.json").exists():
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        agent.terminate()
        agent.wait(20)
    done = _cli(tmp_path, "status")
    assert done.returncode == 0, done.stderr
    assert "inverter link" in done.stdout and str(state) in done.stderr
    # from anywhere, with the variable set
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _cli(elsewhere, "status").returncode == 1
    done = _cli(elsewhere, "status", env={cli.ENV_STATE_DIR: str(state)})
    assert done.returncode == 0 and "inverter link" in done.stdout


def test_events_without_a_log_says_so_and_fails(tmp_path):
    done = _cli(tmp_path, "events", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert "no event log in" in done.stderr and done.stdout == ""
    os.makedirs(tmp_path / "s")
    with open(tmp_path / "s" / "events.jsonl", "w") as fh:
        fh.write('{"time": 1, "kind": "trip", "detail": "overvoltage"}\n')
    done = _cli(tmp_path, "events", "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 0 and "overvoltage" in done.stdout
