"""Reads are served by libiec61850 alone: no Python callback per read, whatever is
configured (functions bound, roles, idle timeout). Client presence, for the
communication-loss revert, comes from associations and the kernel's
per-connection counters instead."""

from __future__ import annotations

import time

import pytest
from open61850.mms import MmsClient

from inverter_agent.adapters.mms import _native as nat
from inverter_agent.adapters.mms.binding import attach_functions
from inverter_agent.adapters.mms.functions_model import functions_model_spec
from inverter_agent.adapters.mms.server import MmsServer
from inverter_agent.core.api import Commands
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.security.audit import AuditLog
from tests.e2e.conftest import free_port

LD = "GWINV1"


@pytest.fixture
def served(tmp_path):
    service = SettingsService(SettingsStore(str(tmp_path), "rule21"), EventLog(str(tmp_path)),
                              revert_after_s=300)
    server = MmsServer(functions_model_spec("INV1"), port=free_port(),
                       audit=AuditLog(str(tmp_path)), idle_timeout_s=60)
    binding = attach_functions(server, Commands("INV1", service, server.audit), None,
                               ld_inst="INV1")
    server.start()
    try:
        yield server, service
    finally:
        binding.close()
        server.stop()


def test_no_read_callback_is_installed(served):
    server, _ = served
    assert server._callbacks  # writes, controls, connections: those are handled
    assert not any(isinstance(cb, nat.READ_ACCESS_HANDLER) for cb in server._callbacks)


def test_presence_comes_from_association_and_the_kernel_counters(served):
    server, _ = served
    assert server.clients_heard() is False  # nobody yet
    with MmsClient.connect("127.0.0.1", server.port, timeout=5) as client:
        assert server.clients_heard() is True  # the association
        assert server.clients_heard() is False  # and nothing since
        client.read(f"{LD}/DGEN1.Trip.stVal [ST]")
        assert server.clients_heard() is True  # a read: bytes in, seen by the kernel
        time.sleep(0.05)
        assert server.clients_heard() is False


def test_a_reading_client_keeps_a_temporary_command_alive(served):
    server, service = served
    service.revert_after_s = 0.6
    with MmsClient.connect("127.0.0.1", server.port, timeout=5) as client:
        service.operate("p_limit_enabled", True, who="test")
        for _ in range(6):  # 1.2 s of reads, no write or control
            time.sleep(0.2)
            client.read(f"{LD}/DGEN1.Trip.stVal [ST]")
            assert service.tick() is False
        last_read = time.monotonic()
        # Silence, the agent ticking every cycle: the revert comes after revert_after,
        # and at most one presence interval (1 s) later than that (with 1 s of room
        # for a loaded machine).
        deadline = last_read + 5.0
        while not service.tick() and time.monotonic() < deadline:
            time.sleep(0.05)
        silent = time.monotonic() - last_read
        assert service.temporary() == {}
        assert 0.6 <= silent <= 0.6 + 1.0 + 1.0, silent


def test_without_the_kernel_counters_no_client_is_judged_silent(served, monkeypatch):
    server, _ = served
    import inverter_agent.adapters.mms.server as server_mod

    def refused(_port):
        raise PermissionError("sock_diag refused (a sandbox without AF_NETLINK)")

    with MmsClient.connect("127.0.0.1", server.port, timeout=5):
        assert server.clients_heard() is True
        monkeypatch.setattr(server_mod, "sample_tcp", refused)
        assert server._activity.sample() is None  # the idle check then closes nobody
        assert server.clients_heard() is True  # an associated client counts as heard
