"""``inverter-agent read`` / ``write`` / ``operate`` against a running gateway, over TLS
with client certificates whose roles the server enforces, and the connection errors
they print for a person (not a bare ``IedClientError 5``)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from inverter_agent.security import certs
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.timeout(180)

LD = "GWINV1"
SETTING = f"{LD}/DGEN1.OvPFRtg.setMag.f"  # fixed_pf.pf_min_injecting: accepts 0.95
CONTROL = f"{LD}/DGEN1.RlsCmd"  # release temporary commands: a direct-operate SPC


def wait_listening(proc: subprocess.Popen, port: int) -> None:
    """Until the agent ``proc`` accepts on ``port`` (it must not exit; 30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no MMS port"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)


class Gateway:
    def __init__(self, root: str) -> None:
        self.ca = certs.create_ca(f"{root}/ca")
        self.server_key, self.server_cert = certs.issue(f"{root}/ca", "gw", f"{root}/srv",
                                                        server=True, sans=["127.0.0.1"])
        self.clients = {role: certs.issue(f"{root}/ca", f"{role}1", f"{root}/cli", role=role)
                        for role in ("viewer", "operator", "engineer")}
        self.port = free_port()
        self.log = open(f"{root}/agent.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inverter_agent.cli", "run", "--simulate", "--mms-host",
             "127.0.0.1", "--mms-port", str(self.port), "--state-dir", f"{root}/state",
             "--tls-cert", self.server_cert, "--tls-key", self.server_key, "--tls-ca", self.ca],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_listening(self.proc, self.port)

    def tls(self, role: str | None) -> list[str]:
        args = ["--port", str(self.port), "--tls-ca", self.ca]
        if role is not None:
            key, cert = self.clients[role]
            args += ["--tls-cert", cert, "--tls-key", key]
        return args

    def close(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self.log.close()
        return rc


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Gateway]:
    gw = Gateway(str(tmp_path_factory.mktemp("tlsgw")))
    try:
        yield gw
    finally:
        assert gw.close() == 0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inverter_agent.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_read_over_tls_with_a_client_certificate(gateway):
    done = cli("read", *gateway.tls("viewer"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(LD + "\n"), done.stdout[:300]  # no library debugging
    assert "  MMXU1\n" in done.stdout and "TotW" in done.stdout


def test_a_plain_read_of_a_tls_server_says_what_to_check(gateway):
    done = cli("read", "--port", str(gateway.port), "--timeout", "2")
    assert done.returncode == 1
    assert "IedClientError" in done.stderr and "--tls-ca" in done.stderr, done.stderr


def test_nothing_listening_and_a_bad_ca_file_are_named(gateway, tmp_path):
    done = cli("read", "--port", str(free_port()), "--timeout", "2")
    assert done.returncode == 1 and "nothing answers there" in done.stderr, done.stderr
    done = cli("read", "--port", str(gateway.port), "--tls-ca", str(tmp_path / "none.pem"))
    assert done.returncode == 1
    assert f"CA bundle {tmp_path}/none.pem could not be loaded" in done.stderr


def test_write_needs_a_role_that_may_write(gateway):
    done = cli("write", SETTING, "0.95", *gateway.tls("viewer"))
    assert done.returncode == 1 and "access denied" in done.stderr, done.stderr
    done = cli("write", SETTING, "0.95", *gateway.tls("engineer"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"{SETTING} [SP] = 0.949999")
    done = cli("write", SETTING, "0.5", *gateway.tls("engineer"))  # out of range
    assert done.returncode == 1 and "IedClientError" in done.stderr


def test_operate_needs_a_role_that_may_operate(gateway):
    done = cli("operate", CONTROL, "true", *gateway.tls("viewer"))
    assert done.returncode == 1 and "no-access-authority" in done.stderr, done.stderr
    done = cli("operate", CONTROL, "true", *gateway.tls("operator"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"operated {CONTROL} = True"


def test_write_and_operate_on_a_plain_gateway(tmp_path):
    """Without TLS (loopback only) the same commands work with no certificate."""
    port = free_port()
    log = open(tmp_path / "agent.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inverter_agent.cli", "run", "--simulate", "--mms-port",
         str(port), "--state-dir", str(tmp_path / "state")],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port)
        done = cli("write", SETTING, "0.95", "--port", str(port))
        assert done.returncode == 0, done.stderr
        done = cli("operate", CONTROL, "true", "--port", str(port))
        assert done.returncode == 0, done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        log.close()
