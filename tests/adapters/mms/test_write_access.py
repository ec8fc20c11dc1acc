"""Validated writes to FC SP (plumbing for the settings issue), with open61850.

FC SP is writable by any client by default in libiec61850; the server denies
it and re-opens only attributes that have a validator (LIBIEC61850.md).
"""

from __future__ import annotations

import pytest
from open61850.data import FloatData
from open61850.mms import DataAccessError, MmsClient

from hal.reading import Reading
from inverter_agent.adapters.mms.der_model import der_model_spec
from inverter_agent.adapters.mms.server import MmsServer

from .conftest import free_port

WMAX = "GWINV1/DGEN1.WMax.setMag.f [SP]"


@pytest.fixture
def server_and_client():
    seen: list[float] = []

    def wmax_ok(value: float) -> bool:
        seen.append(value)
        return 0.0 <= value <= 7600.0

    def broken(value: float) -> bool:
        raise RuntimeError("validator bug")

    port = free_port()
    server = MmsServer(der_model_spec(), port=port)
    server.set_write_validator("INV1/DGEN1.WMax.setMag.f", wmax_ok)
    server.set_write_validator("INV1/DINV1.VARtg.setMag.f", broken)
    with server:
        server.publish({"WMax": Reading.good(7000.0), "VARtg": Reading.good(7500.0),
                        "WRtg": Reading.good(7600.0)})
        with MmsClient.connect("127.0.0.1", port, timeout=5) as client:
            yield server, client, seen


def test_refused_write_leaves_the_old_value(server_and_client):
    _, client, seen = server_and_client
    with pytest.raises(DataAccessError):
        client.write(WMAX, FloatData(9000.0))
    assert seen == [9000.0]
    assert client.read(WMAX).value == 7000.0


def test_accepted_write_lands(server_and_client):
    _, client, seen = server_and_client
    client.write(WMAX, FloatData(5000.0))
    assert seen == [5000.0]
    assert client.read(WMAX).value == 5000.0


def test_a_failing_validator_refuses(server_and_client):
    _, client, _ = server_and_client
    with pytest.raises(DataAccessError):
        client.write("GWINV1/DINV1.VARtg.setMag.f [SP]", FloatData(1.0))
    assert client.read("GWINV1/DINV1.VARtg.setMag.f [SP]").value == 7500.0


def test_attributes_without_a_validator_stay_read_only(server_and_client):
    _, client, _ = server_and_client
    with pytest.raises(DataAccessError):
        client.write("GWINV1/DINV1.WRtg.setMag.f [SP]", FloatData(1.0))
    assert client.read("GWINV1/DINV1.WRtg.setMag.f [SP]").value == 7600.0


def test_validators_are_fixed_while_running(server_and_client):
    server, _, _ = server_and_client
    with pytest.raises(RuntimeError):
        server.set_write_validator("INV1/DGEN1.WMax.setMag.f", lambda v: True)
