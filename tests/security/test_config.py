"""The [security] section becomes TLS settings, an access policy and the audit log."""

from __future__ import annotations

import pytest

from inverter_agent import config as config_mod
from inverter_agent.security import certs
from inverter_agent.security.access import AccessPolicy
from inverter_agent.security.audit import AuditLog
from inverter_agent.security.config import security_from_config
from inverter_agent.security.passwords import hash_password


def _cfg(tmp_path, **security):
    overrides = {"inverter.modbus_tcp": "127.0.0.1:1", "agent.state_dir": str(tmp_path)}
    overrides.update({f"security.{k}": v for k, v in security.items()})
    return config_mod.load(None, overrides)


def test_without_tls_or_users_there_is_no_policy_but_an_audit_log(tmp_path):
    tls, access, audit = security_from_config(_cfg(tmp_path, audit_bytes=8192))
    assert tls is None and access is None
    assert isinstance(audit, AuditLog) and audit.max_bytes == 8192


def test_tls_material_must_be_complete(tmp_path):
    with pytest.raises(config_mod.ConfigError) as err:
        security_from_config(_cfg(tmp_path, tls_cert="x.pem"))
    assert str(err.value) == ("[security] TLS needs tls_cert, tls_key and tls_ca "
                              "(--tls-cert, --tls-key, --tls-ca) together")


def test_tls_enforces_roles(tmp_path):
    ca = certs.create_ca(str(tmp_path / "ca"))
    key, cert = certs.issue(str(tmp_path / "ca"), "gw", str(tmp_path / "srv"), server=True,
                            sans=["127.0.0.1"])
    tls, access, _ = security_from_config(_cfg(tmp_path, tls_cert=cert, tls_key=key,
                                               tls_ca=[ca], tls_min_version="1.3"))
    assert tls is not None and tls.ca == (ca,) and tls.allow is None
    assert tls.min_version == "1.3"
    assert isinstance(access, AccessPolicy) and access.use_ou


def test_password_users_without_tls_make_a_policy(tmp_path):
    users = {"alice": {"role": "engineer", "hash": hash_password("pw", n=2 ** 12)}}
    tls, access, _ = security_from_config(_cfg(tmp_path, users=users, role_from_ou=False))
    assert tls is None and access is not None
    assert set(access.users) == {"alice"} and access.use_ou is False
    assert access.password_identity(b"pw", "?")[0] is not None
