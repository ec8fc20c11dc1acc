"""TLS settings are checked before anything listens; the server certificate's expiry."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from inverter_agent.security import certs
from inverter_agent.security.errors import SecurityConfigError
from inverter_agent.security.tls import (
    CBC_TLS12_SUITES,
    TLS13_SUITES,
    TlsSettings,
    cert_status,
    log_cert_status,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = certs.create_ca(str(root / "ca"))
    key, cert = certs.issue(str(root / "ca"), "gw", str(root / "srv"), server=True,
                            sans=["127.0.0.1"])
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    _, expired = certs.issue(str(root / "ca"), "old", str(root / "srv"), days=1,
                             not_before=long_ago)
    return {"ca": ca, "key": key, "cert": cert, "expired": expired}


def test_tls_settings_refuse_weak_suites_and_versions(pki):
    base = dict(cert=pki["cert"], key=pki["key"], ca=pki["ca"])
    TlsSettings(**base)
    with pytest.raises(SecurityConfigError, match="forward secrecy"):
        TlsSettings(**base, suites=(0x003C,))  # TLS_RSA_WITH_AES_128_CBC_SHA256
    with pytest.raises(SecurityConfigError, match="CBC suites refused"):
        TlsSettings(**base, suites=(CBC_TLS12_SUITES[0],))
    with pytest.raises(SecurityConfigError, match="forward secrecy"):
        TlsSettings(**base, suites=())
    with pytest.raises(SecurityConfigError, match="min_version '1.1'"):
        TlsSettings(**base, min_version="1.1")
    with pytest.raises(SecurityConfigError, match="does not exist"):
        TlsSettings(cert="/nonexistent.crt", key=pki["key"], ca=pki["ca"])


def test_tls_settings_need_a_ca_and_a_non_empty_allow_list(pki):
    with pytest.raises(SecurityConfigError, match="at least one CA"):
        TlsSettings(cert=pki["cert"], key=pki["key"], ca=())
    with pytest.raises(SecurityConfigError, match="allow-list is empty"):
        TlsSettings(cert=pki["cert"], key=pki["key"], ca=pki["ca"], allow=())
    with pytest.raises(SecurityConfigError, match="/missing.crl does not exist"):
        TlsSettings(cert=pki["cert"], key=pki["key"], ca=pki["ca"], crl="/missing.crl")


def test_one_path_or_several_become_tuples(pki):
    tls = TlsSettings(cert=pki["cert"], key=pki["key"], ca=pki["ca"], allow=[pki["cert"]],
                      min_version="1.3", suites=TLS13_SUITES)
    assert tls.ca == (pki["ca"],) and tls.crl == () and tls.allow == (pki["cert"],)


def test_cert_status_warns_ahead_of_time(pki):
    fresh = cert_status(pki["cert"])
    assert fresh.warning is None and 360 < fresh.days_left <= 365
    soon = cert_status(pki["cert"], at=dt.datetime.now(dt.UTC) + dt.timedelta(days=350))
    assert soon.warning and "renew" in soon.warning
    gone = cert_status(pki["expired"])
    assert gone.days_left < 0 and "EXPIRED" in gone.warning
    assert gone.as_dict()["days_left"] < 0 and "CN=old" in gone.as_dict()["subject"]


def test_the_log_names_the_certificate_and_warns_when_it_needs_attention(pki, caplog):
    with caplog.at_level(logging.INFO, logger="inverter_agent.security.tls"):
        log_cert_status(pki["cert"], what="MMS TLS server certificate")
        log_cert_status(pki["expired"])
    fine, expired = caplog.records[-2:]
    assert fine.levelname == "INFO"
    assert fine.getMessage().startswith("MMS TLS server certificate CN=gw")
    assert expired.levelname == "WARNING"
    assert expired.getMessage().startswith("TLS server certificate CN=old")
    assert "EXPIRED" in expired.getMessage()
