"""DNP3 over TLS: the outstation's certificate, a CA for master certificates and an
allow-list. A master on the list polls; one whose certificate the same CA signed
but which is not on the list is dropped before anything is read or changed."""

from __future__ import annotations

import ssl

import pytest
from dnp3.master.tcp_runner import MasterRunnerError

from inverter_agent.security import certs

from .conftest import NOT_AUTHORIZED, ONLINE, SUCCESS, ForeignMaster, running_gateway


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = str(d / "ca")
    certs.create_ca(ca)
    key, cert = certs.issue(ca, "gateway", str(d / "gw"), server=True)
    roles = {"scada1": "operator", "watcher": "viewer", "intruder": "operator"}
    clients = {cn: certs.issue(ca, cn, str(d / cn), role=role) for cn, role in roles.items()}
    return {"ca": f"{ca}/ca.pem", "cert": cert, "key": key, "clients": clients}


def _client(pki, cn: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    key, cert = pki["clients"][cn]
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory, pki):
    with running_gateway(tmp_path_factory.mktemp("dnp3tls"), host="127.0.0.1",
                         tls_cert=pki["cert"], tls_key=pki["key"], tls_ca=pki["ca"],
                         tls_allow=["scada1", "watcher"]) as gw:
        yield gw


def test_an_allowed_master_polls_over_tls(tls_gateway, pki):
    points = ForeignMaster(tls_gateway.port, _client(pki, "scada1")).integrity_poll()
    assert points.ai[537][1] == ONLINE
    status = tls_gateway.app.adapters[0].status()
    assert status["tls"] is True and "scada1" in (status["peer"] or "")


def test_an_operator_commands_and_a_viewer_is_not_authorized(tls_gateway, pki):
    commands = tls_gateway.commands
    operator = ForeignMaster(tls_gateway.port, _client(pki, "scada1"))
    assert operator.direct_operate_analog(88, 610) == SUCCESS
    assert commands.persisted_dict()["active_power_limit"]["p_limit_pct"] == 61.0
    before = commands.persisted_dict()
    viewer = ForeignMaster(tls_gateway.port, _client(pki, "watcher"))
    assert viewer.integrity_poll().ai[537][1] == ONLINE  # a viewer reads
    assert viewer.direct_operate_analog(88, 100) == NOT_AUTHORIZED
    assert commands.persisted_dict() == before
    status = tls_gateway.app.adapters[0].status()
    assert status["role"] == "viewer" and status["may_command"] is False
    assert "may not command" in status["commands"]["last_refusal"]
    # audited by the core, with who sent it; the operator's write too
    audit = open(tls_gateway.app.core.audit.path).read()
    assert "role=viewer" in audit and "refused" in audit and "role=operator" in audit


def test_a_master_off_the_allow_list_is_dropped_and_changes_nothing(tls_gateway, pki):
    commands = tls_gateway.commands
    before = commands.persisted_dict()
    refused_before = tls_gateway.app.adapters[0].status()["connections_refused"]
    with pytest.raises(MasterRunnerError):  # the link dies under the master
        ForeignMaster(tls_gateway.port, _client(pki, "intruder")).direct_operate_analog(88, 10)
    status = tls_gateway.app.adapters[0].status()
    assert "intruder" not in str(status["peer"])
    assert status["connections_refused"] == refused_before + 1
    assert "intruder" in status["last_refused"]
    assert commands.persisted_dict() == before


def test_a_plain_master_cannot_talk_to_the_tls_outstation(tls_gateway):
    with pytest.raises(MasterRunnerError):  # no TLS handshake: no answer at all
        ForeignMaster(tls_gateway.port).integrity_poll()
