"""Security wiring of the real agent: secure default bind, TLS from flags,
the audit command."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time

from inverter_agent.security import certs
from simulator import SimProcess

from ..e2e.conftest import AgentProcess, free_port


def _cli(*args, timeout=30, **kw):
    return subprocess.run([sys.executable, "-m", "inverter_agent.cli", *args],
                          capture_output=True, text=True, timeout=timeout, **kw)


def test_plain_mms_on_a_non_loopback_address_is_refused_without_opt_in(tmp_path):
    r = _cli("run", "--modbus-tcp", "127.0.0.1:1", "--mms-host", "0.0.0.0", "--mms-port",
             str(free_port()), "--state-dir", str(tmp_path), "--no-functions")
    assert r.returncode == 2
    assert "refusing plain" in r.stderr and "TLS" in r.stderr


def test_tls_material_must_be_complete(tmp_path):
    r = _cli("run", "--modbus-tcp", "127.0.0.1:1", "--tls-cert", "x.pem", "--state-dir",
             str(tmp_path))
    assert r.returncode == 2 and "tls_cert, tls_key and tls_ca" in r.stderr


def test_agent_serves_mms_over_tls_only_with_a_client_certificate(tmp_path):
    ca = str(tmp_path / "ca")
    certs.create_ca(ca)
    skey, scert = certs.issue(ca, "gateway", str(tmp_path / "srv"), server=True,
                              sans=["127.0.0.1"])
    ckey, ccert = certs.issue(ca, "eng1", str(tmp_path / "cli"), role="engineer")
    with SimProcess() as sim:
        agent = AgentProcess(str(tmp_path), "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}",
                             "--tls-cert", scert, "--tls-key", skey, "--tls-ca",
                             os.path.join(ca, "ca.pem"))
        agent.start()
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(os.path.join(ca, "ca.pem"))
            ctx.load_cert_chain(ccert, ckey)
            with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                assert "ECDHE" in tls.cipher()[0] or tls.version() == "TLSv1.3"
            # Without a client certificate the handshake is refused.
            bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            bare.load_verify_locations(os.path.join(ca, "ca.pem"))
            refused = False
            try:
                with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as raw, \
                        bare.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"\x03\x00\x00\x16")
                    refused = tls.recv(1) == b""
            except (ssl.SSLError, OSError):
                refused = True
            assert refused
            time.sleep(5.5)
            with open(os.path.join(agent.state_dir, "status.json")) as fh:
                sec = json.load(fh)["security"]
            assert sec["tls"] and sec["roles_enforced"] and sec["certificate"]["days_left"] > 300
        finally:
            rc, _ = agent.terminate()
        assert rc == 0
    r = _cli("audit", "--state-dir", agent.state_dir)
    assert r.returncode == 0 and "chain: intact" in r.stdout
    assert "PRIVATE KEY" not in agent.log() and "BEGIN CERTIFICATE" not in r.stdout
