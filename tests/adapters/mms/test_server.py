"""MmsServer lifecycle in this process, read with open61850 (pure Python).

open61850 releases the GIL while it waits on its socket, so unlike the SWIG
client it can share a process with the server.
"""

from __future__ import annotations

import socket

import pytest
from open61850.mms import MmsClient, MmsConnectionError

from hal.reading import Reading
from inverter_agent.adapters.mms.der_model import der_model_spec
from inverter_agent.adapters.mms.server import MmsServer

from .conftest import free_port, wait_until


def _read_w(port: int) -> float:
    with MmsClient.connect("127.0.0.1", port, timeout=5) as client:
        return client.read("GWINV1/MMXU1.TotW.mag.f [MX]").value


def test_start_stop_twenty_times_on_the_same_port():
    port = free_port()
    server = MmsServer(der_model_spec(), port=port)
    for cycle in range(20):
        server.start()
        assert server.running
        assert server.publish({"W": Reading.good(float(cycle))})
        assert _read_w(port) == float(cycle)
        server.stop()
        assert not server.running
    with pytest.raises(MmsConnectionError):
        MmsClient.connect("127.0.0.1", port, timeout=2)


def test_stop_is_idempotent_and_releases_the_port():
    port = free_port()
    server = MmsServer(der_model_spec(), port=port)
    server.stop()  # never started: a no-op
    server.start()
    server.start()  # already running: a no-op
    server.stop()
    server.stop()
    with socket.socket() as s:  # the listening socket is gone
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    with MmsServer(der_model_spec(), port=port) as again:
        assert again.publish({"W": Reading.good(7.0)})
        assert _read_w(port) == 7.0


def test_publish_when_stopped_is_refused_quietly():
    server = MmsServer(der_model_spec(), port=free_port())
    assert server.publish({"W": Reading.good(1.0)}) is False


def test_a_busy_port_is_an_error():
    port = free_port()
    with MmsServer(der_model_spec(), port=port):
        with pytest.raises(OSError, match=str(port)):
            MmsServer(der_model_spec(), port=port).start()


def test_connected_clients_follows_associations():
    port = free_port()
    with MmsServer(der_model_spec(), port=port) as server:
        assert server.connected_clients() == 0
        first = MmsClient.connect("127.0.0.1", port, timeout=5)
        second = MmsClient.connect("127.0.0.1", port, timeout=5)
        assert wait_until(lambda: server.connected_clients() == 2)
        first.close()
        assert wait_until(lambda: server.connected_clients() == 1)
        second.close()
        assert wait_until(lambda: server.connected_clients() == 0)


def test_max_connections_is_enforced():
    port = free_port()
    with MmsServer(der_model_spec(), port=port, max_connections=1):
        with MmsClient.connect("127.0.0.1", port, timeout=5) as first:
            with pytest.raises((MmsConnectionError, OSError, TimeoutError)):
                MmsClient.connect("127.0.0.1", port, timeout=2).close()
            assert first.read("GWINV1/LLN0.Beh.stVal [ST]").value == 1


def test_the_bundled_library_accepts_five_associations_and_refuses_a_sixth():
    # libiec61850's compile-time cap (CONFIG_MAXIMUM_TCP_CLIENT_CONNECTIONS = 5 in the
    # wheel): the config schema and the constructor stop at 5 because of it.
    port = free_port()
    with MmsServer(der_model_spec(), port=port, max_connections=5):
        clients = [MmsClient.connect("127.0.0.1", port, timeout=5) for _ in range(5)]
        try:
            with pytest.raises((MmsConnectionError, OSError, TimeoutError)):
                MmsClient.connect("127.0.0.1", port, timeout=2).close()
            assert all(c.read("GWINV1/LLN0.Beh.stVal [ST]").value == 1 for c in clients)
        finally:
            for c in clients:
                c.close()
    with pytest.raises(ValueError, match="max_connections 6: 1..5"):
        MmsServer(der_model_spec(), max_connections=6)


def test_unconvertible_value_marks_the_point_invalid():
    port = free_port()
    with MmsServer(der_model_spec(), port=port) as server:
        assert server.publish({"St": Reading.good(4)})
        assert server.publish({"St": Reading.good("not a number")})
        with MmsClient.connect("127.0.0.1", port, timeout=5) as client:
            assert client.read("GWINV1/DGEN1.DEROpSt.stVal [ST]").value == 6  # MPPT: running
            q = client.read("GWINV1/DGEN1.DEROpSt.q [ST]").value
            assert q[0] & 0x40, "validity must be invalid (bit 1 of the bit string)"


def test_constructor_rejects_out_of_range_settings():
    with pytest.raises(ValueError, match="port"):
        MmsServer(der_model_spec(), port=70000)
    with pytest.raises(ValueError, match="max_connections"):
        MmsServer(der_model_spec(), max_connections=0)
