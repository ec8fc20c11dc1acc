"""The secure default every adapter applies: a plain listener stays on loopback."""

from __future__ import annotations

import logging

import pytest

from inverter_agent.security.bind import check_bind, is_loopback
from inverter_agent.security.errors import InsecureBindError, SecurityConfigError


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.10", False),
    ("gateway.example", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_plain_beyond_loopback_is_refused_naming_the_protocol_and_the_way_out():
    check_bind("127.0.0.1", False, False, protocol="DNP3")
    check_bind("0.0.0.0", True, False, protocol="DNP3")  # TLS: fine anywhere
    with pytest.raises(InsecureBindError) as err:
        check_bind("", False, False, protocol="DNP3", tls_hint="TLS ([dnp3] tls_cert)")
    text = str(err.value)
    assert text.startswith("refusing plain (unencrypted, unauthenticated) DNP3 on *: ")
    assert "TLS ([dnp3] tls_cert)" in text and "[security] allow_insecure_bind" in text
    from inverter_agent.config import SCHEMA
    assert "allow_insecure_bind" in SCHEMA["security"]  # the key named is a real one
    assert isinstance(err.value, SecurityConfigError)


def test_the_opt_in_allows_it_with_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="inverter_agent.security.bind"):
        check_bind("192.168.1.10", False, True, protocol="DNP3",
                   passwords="Secure Authentication")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and "INSECURE: plain DNP3 listening on 192.168.1.10" in warnings[0]
    assert "without Secure Authentication, change settings" in warnings[0]
