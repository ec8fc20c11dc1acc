"""Whole-gateway fixtures: the simulator, the agent and the MMS client each in
their own process, talking over loopback TCP, pseudo-terminals and MMS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hal.reading import Quality
from inverter_agent.adapters.mms import client as mms
from simulator import SimProcess

LD = "GWINV1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """``inverter-agent run`` as a child process, MMS on a free loopback port."""

    def __init__(self, tmp: str, *args: str, poll_period: float | str = "auto") -> None:
        self.port = free_port()
        self.state_dir = os.path.join(tmp, "state")
        self.log_path = os.path.join(tmp, f"agent-{self.port}.log")
        # "auto" (the default) is chosen by the agent; until it has chosen it polls at
        # 0.25 s, and over loopback and fast ptys it chooses less: 0.25 s bounds it.
        self.poll_period = 0.25 if poll_period == "auto" else float(poll_period)
        period_args = [] if poll_period == "auto" else ["--poll-period", str(poll_period)]
        self.args = ["run", "--mms-host", "127.0.0.1", "--mms-port", str(self.port),
                     "--state-dir", self.state_dir, *period_args,
                     "--log-level", "debug", *args]
        self.proc: subprocess.Popen | None = None
        self._conn: mms.MmsConnection | None = None

    def start(self, wait_mms: bool = True) -> AgentProcess:
        self._log = open(self.log_path, "w")  # a file, not a pipe: a full pipe would stall it
        self.proc = subprocess.Popen([sys.executable, "-m", "inverter_agent.cli", *self.args],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        if wait_mms:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"agent exited early:\n{self.log()}"
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise AssertionError(f"MMS port never opened:\n{self.log()}")
        return self

    def log(self) -> str:
        with open(self.log_path) as fh:
            return fh.read()

    @property
    def mms(self) -> mms.MmsConnection:
        if self._conn is None:
            self._conn = mms.connect("127.0.0.1", self.port, timeout=5)
        return self._conn

    def read(self, do: str, fc: str = "MX") -> tuple[object, Quality, float]:
        """(value, quality, time) of one data object, e.g. ``MMXU1.PhV.phsA``."""
        leaves = self.mms.read(f"{LD}/{do}", fc)
        value = next(v for k, v in leaves.items() if k.endswith(("mag.f", "stVal", "setMag.f")))
        return value, mms.quality_from_bits(leaves["q"]), leaves["t"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc, time.monotonic() - t0


def wait_for(fn, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except mms.MmsClientError as exc:  # a read racing a reconnect: try again
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with SimProcess("--tau", "0.2", "--seed", "5", pty=True) as proc:
        yield proc


@pytest.fixture
def fresh_sim(sim: SimProcess) -> SimProcess:
    sim.control.reset()
    return sim


@pytest.fixture
def agent_factory(tmp_path) -> Iterator:
    started: list[AgentProcess] = []

    def make(*args: str, poll_period: float | str = "auto",
             wait_mms: bool = True) -> AgentProcess:
        a = AgentProcess(str(tmp_path), *args, poll_period=poll_period)
        started.append(a)
        return a.start(wait_mms=wait_mms)

    yield make
    for a in started:
        a.terminate()
