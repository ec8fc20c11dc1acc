"""Idle-connection closing needs the kernel's per-connection counters (sock_diag).
Where they cannot be read (qemu-user emulation refuses the netlink family with
EPROTONOSUPPORT; so may a board kernel built without inet_diag) the start-up log
and `status` say that closing is off and what follows; a silent client then
stays connected. That fault cannot be produced for real here, so the counter
reader raises what the kernel gave under emulation; the other case is real."""

from __future__ import annotations

import errno
import logging
import os
import time

import pytest
from open61850.mms import MmsClient

import inverter_agent.adapters.mms.server as server_mod
from inverter_agent.adapters.mms.functions_model import functions_model_spec
from inverter_agent.adapters.mms.server import MmsServer
from inverter_agent.cli import _print_mms_security
from tests.e2e.conftest import free_port

TIMEOUT_S = 0.5


def _no_sock_diag(_port, *_args):
    # What socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG) raised under qemu-arm.
    raise OSError(errno.EPROTONOSUPPORT, os.strerror(errno.EPROTONOSUPPORT))


@pytest.fixture
def make_server():
    servers = []

    def make() -> MmsServer:
        server = MmsServer(functions_model_spec("INV1"), port=free_port(),
                           idle_timeout_s=TIMEOUT_S)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def _connected_after(server: MmsServer, client: MmsClient, silent_s: float) -> int:
    deadline = time.monotonic() + silent_s
    while time.monotonic() < deadline and server.connected_clients():
        time.sleep(0.05)
    return server.connected_clients()


def test_without_sock_diag_the_log_and_status_say_idle_closing_is_off(
        make_server, monkeypatch, caplog, capsys):
    monkeypatch.setattr(server_mod, "sample_tcp", _no_sock_diag)
    with caplog.at_level(logging.INFO, logger=server_mod.log.name):
        server = make_server()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Idle-connection closing is OFF" in m and "Protocol not supported" in m
               and f"security.idle_timeout {TIMEOUT_S:g} s is not enforced" in m
               and "connection slots" in m for m in warnings), warnings
    listening = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert listening and "NOT ENFORCED: sock_diag unavailable" in listening[0], listening

    sec = server.security_status()
    assert "sock_diag" in sec["idle_close_off"]
    assert "Protocol not supported" in sec["idle_close_off"]
    _print_mms_security(sec)
    shown = capsys.readouterr().out
    assert "idle close      OFF: cannot read TCP counters (sock_diag)" in shown, shown
    assert f"({TIMEOUT_S:g} s) is not enforced" in shown, shown

    # What it means: a client silent for many timeouts keeps its connection.
    with MmsClient.connect("127.0.0.1", server.port, timeout=5) as client:
        assert _connected_after(server, client, 8 * TIMEOUT_S) == 1
        assert client.read("GWINV1/DGEN1.Trip.stVal [ST]") is not None
    # The warning is said once, not at every sample.
    warned = [r for r in caplog.records if "Idle-connection closing is OFF" in r.getMessage()]
    assert len(warned) == 1


def test_with_sock_diag_status_shows_the_timeout_and_a_silent_client_is_closed(
        make_server, caplog, capsys):
    with caplog.at_level(logging.INFO, logger=server_mod.log.name):
        server = make_server()
    assert not any("Idle-connection closing is OFF" in r.getMessage() for r in caplog.records)
    sec = server.security_status()
    assert sec["idle_close_off"] is None
    _print_mms_security(sec)
    assert f"idle close      after {TIMEOUT_S:g} s without a request" in capsys.readouterr().out
    with MmsClient.connect("127.0.0.1", server.port, timeout=5) as client:
        assert _connected_after(server, client, 10.0) == 0
