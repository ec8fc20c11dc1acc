"""TLS hardening against what an outside scan found: renegotiation, CBC suites, and the
library's own debug prints (certificate dumps) in the agent's log.

The gateway is ``functions_server`` over TLS in its own process, its log (stderr)
kept in a file; the client is the ``openssl`` command-line tool.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from inverter_agent.security import certs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "adapters", "mms"))
from conftest import ROOT, FunctionsServer, free_port, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)


class LoggedServer(FunctionsServer):
    """A functions_server whose log (stderr) goes to ``log_path``."""

    def __init__(self, root: str, level: str, *args: str) -> None:
        self.state_dir = os.path.join(root, "state")
        os.makedirs(self.state_dir, exist_ok=True)
        self.log_path = os.path.join(root, "server.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--commands", "--port", str(self.port),
             "--state-dir", self.state_dir, "--log-level", level, *args],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, bufsize=1)
        ready = self._line(timeout=15)
        assert ready == {"ready": self.port}, ready

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def close(self) -> int:
        try:
            return super().close()
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("pki"))
    ca = certs.create_ca(f"{root}/ca")
    certs.create_ca(f"{root}/other", cn="someone else's CA")
    key, cert = certs.issue(f"{root}/ca", "gw", f"{root}/srv", server=True,
                            sans=["127.0.0.1"])
    ckey, ccert = certs.issue(f"{root}/ca", "eng1", f"{root}/cli", role="engineer")
    skey, scert = certs.issue(f"{root}/other", "stranger", f"{root}/cli", role="engineer")
    return {"ca": ca, "key": key, "cert": cert, "client_key": ckey, "client_cert": ccert,
            "stranger_key": skey, "stranger_cert": scert}


def _tls_args(pki: dict[str, str]) -> list[str]:
    return ["--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-ca", pki["ca"]]


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory) -> Iterator[LoggedServer]:
    s = LoggedServer(str(tmp_path_factory.mktemp("info")), "INFO", *_tls_args(pki))
    try:
        yield s
    finally:
        assert s.close() == 0


def s_client(pki: dict[str, str], port: int, stdin: list[tuple[str, float]],
             *extra: str, who: str = "client") -> str:
    """``openssl s_client`` over TLS 1.2 with a client certificate; ``stdin`` is a list of
    (line, seconds to wait after it). Returns everything it printed."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
           "-cert", pki[f"{who}_cert"], "-key", pki[f"{who}_key"], "-CAfile", pki["ca"],
           *extra]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdin is not None
    try:
        time.sleep(0.5)
        for line, pause in stdin:
            if proc.poll() is not None:
                break
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                break
            time.sleep(pause)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    return out


def test_client_initiated_renegotiation_is_refused(pki, server):
    out = s_client(pki, server.port, [("R", 1.5), ("R", 1.0)])
    assert "Cipher is ECDHE-ECDSA-AES" in out, out  # the session was up first
    assert "RENEGOTIATING" in out
    # mbedTLS answers the ClientHello with a no_renegotiation alert; OpenSSL gives up.
    assert "no renegotiation" in out, out
    assert server.command({"cmd": "clients"})["clients"] == 0  # and the session is gone
    # The gateway is fine afterwards: a new session is established and closed cleanly.
    out = s_client(pki, server.port, [("Q", 0.5)])
    assert "Cipher is ECDHE-ECDSA-AES" in out and "no renegotiation" not in out


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384",
                                    "ECDHE-ECDSA-AES128-SHA"])
def test_tls12_offers_aead_suites_only(pki, server, cipher):
    out = s_client(pki, server.port, [("Q", 0.5)], "-cipher", cipher)
    assert "handshake failure" in out or "no ciphers" in out.lower() or \
        "Cipher is (NONE)" in out, out
    assert f"Cipher is {cipher}" not in out


def test_library_prints_stay_out_of_the_log_at_info(pki, server):
    s_client(pki, server.port, [("Q", 0.5)])  # a good client: certificate dumped
    s_client(pki, server.port, [("Q", 0.5)], who="stranger")  # refused: dumped too
    assert wait_until(lambda: "refused" in server.log())
    text = server.log()
    for marker in ("subject name", "issuer name", "serial number", "Verify cert", "TLS: ",
                   "CN=eng1, OU", "CN=stranger"):
        assert marker not in text, f"{marker!r} in the INFO log:\n{text}"
    # Every line is one of the agent's log records: nothing bypasses logging.
    for line in text.splitlines():
        if line.strip():
            assert " INFO " in line or " WARNING " in line or " ERROR " in line, line


def test_library_prints_go_to_the_log_at_debug_only(pki, tmp_path):
    s = LoggedServer(str(tmp_path), "DEBUG", *_tls_args(pki))
    try:
        s_client(pki, s.port, [("Q", 0.5)])
        assert wait_until(lambda: "subject name" in s.log())
    finally:
        assert s.close() == 0
    lines = s.log().splitlines()
    dumps = [line for line in lines if "subject name" in line or "Verify cert" in line]
    assert dumps  # the library did print, and it reached the log...
    for line in dumps:  # ...as DEBUG records of the libiec61850 logger, nothing else
        assert " DEBUG libiec61850: " in line, line
    assert not [line for line in lines if line.startswith(("TLS:", "  subject name"))]


def test_renegotiation_switch_is_found_by_measurement_or_left_alone():
    from inverter_agent.adapters.mms import _native as nat
    from inverter_agent.adapters.mms.hardening import refuse_client_renegotiation

    lib = nat.lib()
    config = lib.TLSConfiguration_create()
    try:
        assert refuse_client_renegotiation(lib, config)
        # Done already: the flag is not where "enabled" was, so nothing is touched again.
        assert not refuse_client_renegotiation(lib, config)
    finally:
        lib.TLSConfiguration_destroy(config)

    class OtherBuild:  # a library without the mbedTLS symbols exported
        pass

    assert not refuse_client_renegotiation(OtherBuild(), 0)  # type: ignore[arg-type]
