"""Fixtures for the MMS tests: free loopback ports and a server in another process.

The libiec61850 (SWIG) client must not share a process with the server: it
holds the GIL while it waits for the answer, and the server's Python callbacks
would stall (LIBIEC61850.md). So the server runs in
``tests/adapters/mms/servers/demo_server.py --commands``
and the test drives it over stdin/stdout.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parents[3])


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m tests.adapters.mms.servers.demo_server --commands`` on a free port."""

    module = "tests.adapters.mms.servers.demo_server"

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--commands",
             "--port", str(self.port), *args],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._line(timeout=15)
        assert ready == {"ready": self.port}, ready

    def _line(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert readable, "demo server did not answer in time"
        line = self.proc.stdout.readline()
        assert line, f"demo server exited (rc={self.proc.poll()})"
        return json.loads(line)

    def command(self, cmd: dict[str, Any], timeout: float = 10) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def publish(self, **points: dict[str, Any]) -> None:
        assert self.command({"cmd": "publish", "points": points}) == {"ok": True}

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.command({"cmd": "stop"}, timeout=5)
            except (AssertionError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


class FunctionsServer(ServerProcess):
    """``functions_server --commands`` with a real SettingsService over ``state_dir``."""

    module = "tests.adapters.mms.servers.functions_server"

    def __init__(self, state_dir: str, *args: str) -> None:
        self.state_dir = state_dir
        super().__init__("--state-dir", state_dir, *args)

    @property
    def settings_file(self) -> str:
        return os.path.join(self.state_dir, "settings.json")

    def persisted(self) -> dict[str, Any]:
        return self.command({"cmd": "persisted"})["settings"]

    def effective(self) -> dict[str, Any]:
        return self.command({"cmd": "effective"})["settings"]

    def temporary(self) -> dict[str, Any]:
        return self.command({"cmd": "temporary"})["settings"]

    def file_bytes(self) -> bytes | None:
        try:
            with open(self.settings_file, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None


@pytest.fixture
def functions_server(tmp_path) -> Iterator[FunctionsServer]:
    server = FunctionsServer(str(tmp_path))
    try:
        yield server
    finally:
        rc = server.close()
        assert rc == 0, f"functions server exit code {rc}"


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    server = ServerProcess()
    try:
        yield server
    finally:
        rc = server.close()
        assert rc == 0, f"demo server exit code {rc}"


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
