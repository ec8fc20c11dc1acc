"""Roles and the access policy, without a protocol: certificate and password identities."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from inverter_agent.security import certs
from inverter_agent.security.access import (
    RIGHT_CONTROL,
    RIGHT_READ,
    RIGHT_SECADMIN,
    RIGHT_WRITE,
    AccessPolicy,
    Identity,
    PasswordUser,
    fingerprint,
)
from inverter_agent.security.errors import SecurityConfigError
from inverter_agent.security.passwords import hash_password


def _der(path: str) -> bytes:
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def client_certs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    certs.create_ca(str(root / "ca"))
    return {cn: _der(certs.issue(str(root / "ca"), cn, str(root / "cli"), role=role)[1])
            for cn, role in (("eng1", "engineer"), ("view1", "viewer"), ("norole", None))}


@pytest.mark.parametrize("role, rights", [
    ("viewer", {RIGHT_READ}), ("operator", {RIGHT_READ, RIGHT_CONTROL}),
    ("engineer", {RIGHT_READ, RIGHT_WRITE}), ("secadmin", {RIGHT_READ, RIGHT_SECADMIN}),
    ("nobody", set()),
])
def test_each_role_has_exactly_its_rights(role, rights):
    identity = Identity("user x", role, "password", "127.0.0.1:1")
    all_rights = {RIGHT_READ, RIGHT_CONTROL, RIGHT_WRITE, RIGHT_SECADMIN}
    assert {r for r in all_rights if identity.can(r)} == rights
    assert identity.describe() == f"user x role={role} from 127.0.0.1:1"


def test_role_from_the_certificate_ou(client_certs):
    identity, reason = AccessPolicy().certificate_identity(client_certs["eng1"], "10.0.0.1:5")
    assert reason == "" and identity is not None
    assert (identity.role, identity.method, identity.peer) == ("engineer", "tls", "10.0.0.1:5")
    fp = fingerprint(client_certs["eng1"])
    assert identity.who == f"cert OU=engineer,CN=eng1 sha256:{fp[:16]}"


def test_a_fingerprint_mapping_wins_over_the_ou_in_any_spelling(client_certs):
    fp = fingerprint(client_certs["view1"]).upper()
    spelled = "SHA256:" + ":".join(fp[i:i + 2] for i in range(0, len(fp), 2))
    policy = AccessPolicy(fingerprints={spelled: "operator"})
    identity, _ = policy.certificate_identity(client_certs["view1"], "?")
    assert identity is not None and identity.role == "operator"


def test_a_certificate_without_a_role_is_refused(client_certs):
    identity, reason = AccessPolicy().certificate_identity(client_certs["norole"], "?")
    assert identity is None and "no role" in reason and "CN=norole" in reason
    identity, reason = AccessPolicy(use_ou=False).certificate_identity(client_certs["eng1"],
                                                                       "?")
    assert identity is None and "no role" in reason
    identity, reason = AccessPolicy().certificate_identity(b"\x30\x03junk", "?")
    assert identity is None and reason == "client certificate not parseable"


def test_unknown_roles_and_plain_passwords_are_refused_in_the_config():
    with pytest.raises(SecurityConfigError, match="unknown role 'root'"):
        AccessPolicy(fingerprints={"ab" * 32: "root"})
    with pytest.raises(SecurityConfigError, match="role 'root': one of viewer"):
        PasswordUser("root", hash_password("x", n=2 ** 12))
    with pytest.raises(SecurityConfigError, match="hash"):
        AccessPolicy(users={"x": {"role": "viewer", "hash": "s3cret"}})


def test_the_password_names_the_user():
    policy = AccessPolicy.from_config({"users": {
        "alice": {"role": "engineer", "hash": hash_password("a-pw", n=2 ** 12)},
        "bob": {"role": "viewer", "hash": hash_password("b-pw", n=2 ** 12)}}})
    alice, _ = policy.password_identity(b"a-pw", "10.0.0.2:7")
    bob, _ = policy.password_identity(b"b-pw", "?")
    assert alice == Identity("user alice", "engineer", "password", "10.0.0.2:7")
    assert bob is not None and bob.who == "user bob" and bob.role == "viewer"
    assert policy.password_identity(b"c-pw", "?") == (None, "wrong password")
    assert AccessPolicy().password_identity(b"x", "?") == (None, "no password users configured")


def test_wrong_passwords_lock_password_logins_out():
    policy = AccessPolicy(users={"alice": PasswordUser("engineer", hash_password("pw", n=2 ** 12))},
                          max_failures=2, lockout_s=60.0)
    assert policy.password_identity(b"bad", "?")[0] is None
    assert policy.password_identity(b"pw", "?")[0] is not None  # success forgets the failure
    assert policy.password_identity(b"bad", "?")[0] is None
    assert policy.password_identity(b"bad", "?")[0] is None
    identity, reason = policy.password_identity(b"pw", "?")  # right, but locked out now
    assert identity is None and reason == "password login locked for 60 s after 2 wrong passwords"
