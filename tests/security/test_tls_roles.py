"""MMS security: TLS (mutual auth, CRL, allow-list, expiry, suites, versions), roles, ACSE
passwords, idle timeouts and the audit trail.

Servers run in ``functions_server`` subprocesses (a real SettingsService behind them);
clients run here: the libiec61850 TLS client through SWIG, an ACSE-password client
through ctypes on the same library (the SWIG API has no IedConnection_getConnectionParameters),
and Python's ``ssl`` as a raw TLS client for the suite and version checks.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from inverter_agent.adapters.mms import security
from inverter_agent.adapters.mms.security import check_bind
from inverter_agent.security import certs
from inverter_agent.security.audit import AuditLog, verify
from inverter_agent.security.errors import InsecureBindError
from inverter_agent.security.passwords import hash_password
from inverter_agent.security.tls import TlsSettings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "adapters", "mms"))
from conftest import FunctionsServer, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)

LD = "GWINV1"
SETTING = f"{LD}/DGEN1.OvPFRtg.setMag.f"  # fixed_pf.pf_min_injecting, accepts 0.95
CONTROL = f"{LD}/DGEN1.RlsCmd"  # direct-operate control: release temporary commands
IED_ERROR_ACCESS_DENIED = 21


# --- PKI --------------------------------------------------------------------------------------

class Pki:
    def __init__(self, root: str) -> None:
        self.root = root
        self.ca = certs.create_ca(f"{root}/ca")
        self.other_ca = certs.create_ca(f"{root}/other-ca", cn="someone else's CA")
        self.server_key, self.server_cert = certs.issue(f"{root}/ca", "gw", f"{root}/srv",
                                                        server=True, sans=["127.0.0.1"])
        self.clients: dict[str, tuple[str, str]] = {}
        for cn, role in (("eng1", "engineer"), ("view1", "viewer"), ("op1", "operator"),
                         ("norole", None), ("revoked1", "engineer")):
            self.clients[cn] = certs.issue(f"{root}/ca", cn, f"{root}/cli", role=role)
        self.clients["stranger"] = certs.issue(f"{root}/other-ca", "stranger", f"{root}/cli",
                                               role="engineer")
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        self.clients["expired1"] = certs.issue(f"{root}/ca", "expired1", f"{root}/cli",
                                               role="engineer", days=1, not_before=long_ago)
        self.crl = certs.revoke(f"{root}/ca", [self.clients["revoked1"][1]], f"{root}/ca.crl")

    def rsa_server(self) -> tuple[str, str]:
        """An RSA server certificate: the only kind with which TLS_RSA_* suites could be
        chosen, so the forward-secrecy check means something."""
        ca_key = certs.load_key(f"{self.root}/ca/ca.key")
        ca_cert = certs.load_certs(self.ca)[0]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-rsa")]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        key_path, cert_path = f"{self.root}/srv/gw-rsa.key", f"{self.root}/srv/gw-rsa.crt"
        with open(key_path, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        with open(cert_path, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("pki")))


class SecureServer(FunctionsServer):
    def __init__(self, root: str, *args: str) -> None:
        self.audit_dir = os.path.join(root, "audit")
        os.makedirs(os.path.join(root, "state"), exist_ok=True)
        super().__init__(os.path.join(root, "state"), "--audit-dir", self.audit_dir, *args)

    def audit(self) -> list[dict[str, Any]]:
        return AuditLog(self.audit_dir).entries()

    def audit_ok(self) -> bool:
        return verify(AuditLog(self.audit_dir)).ok


def _tls_args(pki: Pki, *extra: str) -> list[str]:
    return ["--tls-cert", pki.server_cert, "--tls-key", pki.server_key, "--tls-ca", pki.ca,
            *extra]


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory) -> Iterator[SecureServer]:
    server = SecureServer(str(tmp_path_factory.mktemp("tls")),
                          *_tls_args(pki, "--tls-crl", pki.crl))
    try:
        yield server
    finally:
        assert server.close() == 0


# --- clients ---------------------------------------------------------------------------------

def _iec() -> Any:
    import pyiec61850.pyiec61850 as iec

    return iec


class TlsClient:
    """libiec61850 TLS client (SWIG): IedConnection_createWithTlsSupport."""

    def __init__(self, pki: Pki, cn: str | None, port: int) -> None:
        iec = _iec()
        self.config = iec.TLSConfiguration_create()
        iec.TLSConfiguration_setClientMode(self.config)
        if cn is not None:
            key, cert = pki.clients[cn]
            assert iec.TLSConfiguration_setOwnCertificateFromFile(self.config, cert)
            assert iec.TLSConfiguration_setOwnKeyFromFile(self.config, key, None)
        assert iec.TLSConfiguration_addCACertificateFromFile(self.config, pki.ca)
        self.con = iec.IedConnection_createWithTlsSupport(self.config)
        iec.IedConnection_setConnectTimeout(self.con, 3000)
        iec.IedConnection_setRequestTimeout(self.con, 3000)
        result = iec.IedConnection_connect(self.con, "127.0.0.1", port)
        self.error = int(result[1] if isinstance(result, (tuple, list)) else result)

    def read_float(self, ref: str, fc: str = "SP") -> tuple[float, int]:
        iec = _iec()
        value, error = iec.IedConnection_readFloatValue(self.con, ref,
                                                        getattr(iec, f"IEC61850_FC_{fc}"))
        return value, int(error)

    def write_float(self, ref: str, value: float, fc: str = "SP") -> int:
        iec = _iec()
        result = iec.IedConnection_writeFloatValue(self.con, ref,
                                                   getattr(iec, f"IEC61850_FC_{fc}"), value)
        return int(result[1] if isinstance(result, (tuple, list)) else result)

    def operate(self, ref: str, value: bool) -> tuple[bool, int]:
        iec = _iec()
        control = iec.ControlObjectClient_create(ref, self.con)
        assert control is not None, ref
        ctl_val = iec.MmsValue_newBoolean(value)
        try:
            ok = bool(iec.ControlObjectClient_operate(control, ctl_val, 0))
            cause = int(iec.ControlObjectClient_getLastApplError(control).addCause)
        finally:
            iec.MmsValue_delete(ctl_val)
            iec.ControlObjectClient_destroy(control)
        return ok, cause

    def close(self) -> None:
        iec = _iec()
        iec.IedConnection_close(self.con)
        iec.IedConnection_destroy(self.con)
        iec.TLSConfiguration_destroy(self.config)


class PasswordClient:
    """Plain MMS with an ACSE password, through ctypes (SWIG lacks the parameter accessors)."""

    def __init__(self, port: int, password: str | None) -> None:
        from inverter_agent.adapters.mms import _native

        lib = self.lib = ctypes.CDLL(_native.library_path())
        P = ctypes.c_void_p
        for name, res, args in (
                ("IedConnection_create", P, []),
                ("IedConnection_getMmsConnection", P, [P]),
                ("MmsConnection_getIsoConnectionParameters", P, [P]),
                ("AcseAuthenticationParameter_create", P, []),
                ("AcseAuthenticationParameter_setAuthMechanism", None, [P, ctypes.c_int]),
                ("AcseAuthenticationParameter_setPassword", None, [P, ctypes.c_char_p]),
                ("IsoConnectionParameters_setAcseAuthenticationParameter", None, [P, P]),
                ("IedConnection_setConnectTimeout", None, [P, ctypes.c_uint32]),
                ("IedConnection_setRequestTimeout", None, [P, ctypes.c_uint32]),
                ("IedConnection_connect", None,
                 [P, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]),
                ("IedConnection_readFloatValue", ctypes.c_float,
                 [P, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]),
                ("IedConnection_writeFloatValue", None,
                 [P, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int,
                  ctypes.c_float]),
                ("IedConnection_close", None, [P]),
                ("IedConnection_destroy", None, [P])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.con = lib.IedConnection_create()
        lib.IedConnection_setConnectTimeout(self.con, 3000)
        lib.IedConnection_setRequestTimeout(self.con, 3000)
        if password is not None:
            params = lib.MmsConnection_getIsoConnectionParameters(
                lib.IedConnection_getMmsConnection(self.con))
            auth = lib.AcseAuthenticationParameter_create()
            lib.AcseAuthenticationParameter_setAuthMechanism(auth, 1)  # ACSE_AUTH_PASSWORD
            lib.AcseAuthenticationParameter_setPassword(auth, password.encode())
            lib.IsoConnectionParameters_setAcseAuthenticationParameter(params, auth)
        error = ctypes.c_int(0)
        lib.IedConnection_connect(self.con, ctypes.byref(error), b"127.0.0.1", port)
        self.error = error.value

    def read_float(self, ref: str, fc: int = 2) -> tuple[float, int]:
        error = ctypes.c_int(0)
        value = self.lib.IedConnection_readFloatValue(self.con, ctypes.byref(error),
                                                      ref.encode(), fc)
        return value, error.value

    def write_float(self, ref: str, value: float, fc: int = 2) -> int:
        error = ctypes.c_int(0)
        self.lib.IedConnection_writeFloatValue(self.con, ctypes.byref(error), ref.encode(), fc,
                                               value)
        return error.value

    def close(self) -> None:
        self.lib.IedConnection_close(self.con)
        self.lib.IedConnection_destroy(self.con)


def _entries(server: SecureServer, action: str, outcome: str | None = None
             ) -> list[dict[str, Any]]:
    return [e for e in server.audit() if e["action"] == action
            and (outcome is None or e["outcome"] == outcome)]


# --- TLS with roles ---------------------------------------------------------------------------

def test_engineer_certificate_writes_a_setting(pki, tls_server):
    client = TlsClient(pki, "eng1", tls_server.port)
    try:
        assert client.error == 0
        assert client.write_float(SETTING, 0.95) == 0
        value, error = client.read_float(SETTING)
        assert error == 0 and abs(value - 0.95) < 1e-6
    finally:
        client.close()
    assert tls_server.persisted()["fixed_pf"]["pf_min_injecting"] == 0.95
    assert wait_until(lambda: _entries(tls_server, "setting.write", "ok"))
    write = _entries(tls_server, "setting.write", "ok")[-1]
    assert write["object"] == "fixed_pf.pf_min_injecting" and write["new"] == 0.95
    assert "CN=eng1" in write["who"] and "role=engineer" in write["who"]
    assert "old" in write
    associate = _entries(tls_server, "mms.associate", "ok")[-1]
    assert "CN=eng1" in associate["who"] and associate["role"] == "engineer"
    assert tls_server.audit_ok()


def test_viewer_reads_but_cannot_write_or_operate(pki, tls_server):
    before = tls_server.persisted()
    file_before = tls_server.file_bytes()
    client = TlsClient(pki, "view1", tls_server.port)
    try:
        assert client.error == 0
        _, error = client.read_float(SETTING)
        assert error == 0
        assert client.write_float(SETTING, 0.97) == IED_ERROR_ACCESS_DENIED
        ok, cause = client.operate(CONTROL, False)
        assert not ok and cause == 20  # AddCause no-access-authority
    finally:
        client.close()
    assert tls_server.persisted() == before
    assert tls_server.file_bytes() == file_before
    refused = _entries(tls_server, "mms.write", "refused")
    assert any("CN=view1" in e["who"] and e["object"].endswith("OvPFRtg.setMag.f")
               for e in refused)
    assert any("CN=view1" in e["who"] for e in _entries(tls_server, "mms.control", "refused"))
    assert tls_server.audit_ok()


def test_operator_operates_but_cannot_write(pki, tls_server):
    client = TlsClient(pki, "op1", tls_server.port)
    try:
        assert client.error == 0
        assert client.write_float(SETTING, 0.97) == IED_ERROR_ACCESS_DENIED
        ok, _ = client.operate(CONTROL, True)
        assert ok
    finally:
        client.close()
    assert any("CN=op1" in e["who"] for e in _entries(tls_server, "control.operate", "ok"))


def test_certificate_without_role_is_refused(pki, tls_server):
    client = TlsClient(pki, "norole", tls_server.port)
    try:
        assert client.error != 0
    finally:
        client.close()
    assert any("no role" in e.get("reason", "")
               for e in _entries(tls_server, "mms.associate", "refused"))


@pytest.mark.parametrize("cn", ["stranger", "revoked1", "expired1", None])
def test_bad_client_certificates_are_refused(pki, tls_server, cn):
    before = len(_entries(tls_server, "mms.tls", "refused"))
    client = TlsClient(pki, cn, tls_server.port)
    try:
        assert client.error != 0, f"{cn} was let in"
    finally:
        client.close()
    assert wait_until(lambda: len(_entries(tls_server, "mms.tls", "refused")) > before)
    assert not any(cn and f"CN={cn}" in e["who"]
                   for e in _entries(tls_server, "mms.associate", "ok"))
    assert tls_server.audit_ok()


def test_refusal_reasons_name_the_problem(pki, tls_server):
    for cn in ("revoked1", "expired1"):
        TlsClient(pki, cn, tls_server.port).close()
    reasons = " ".join(e.get("reason", "") for e in _entries(tls_server, "mms.tls", "refused"))
    assert "revoked" in reasons and "expired" in reasons


def test_plain_client_against_tls_port_is_refused(tls_server):
    from inverter_agent.adapters.mms.client import MmsClientError, connect

    before = len(_entries(tls_server, "mms.tls", "refused"))
    with pytest.raises(MmsClientError):
        connect("127.0.0.1", tls_server.port, timeout=2, attempts=1).close()
    assert wait_until(lambda: len(_entries(tls_server, "mms.tls", "refused")) > before)


def test_allow_list_admits_only_listed_certificates(pki, tmp_path):
    server = SecureServer(str(tmp_path), *_tls_args(pki, "--tls-allow", pki.clients["eng1"][1]))
    try:
        listed = TlsClient(pki, "eng1", server.port)
        assert listed.error == 0
        listed.close()
        unlisted = TlsClient(pki, "view1", server.port)  # same CA, valid, not listed
        assert unlisted.error != 0
        unlisted.close()
        assert wait_until(lambda: _entries(server, "mms.tls", "refused"))
        assert server.audit_ok()
    finally:
        assert server.close() == 0


def test_fingerprint_mapping_overrides_the_ou(pki, tmp_path):
    view_cert = certs.load_certs(pki.clients["view1"][1])[0]
    fp = view_cert.fingerprint(hashes.SHA256()).hex(":")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"fingerprints": {fp: "engineer"}}))
    server = SecureServer(str(tmp_path), *_tls_args(pki, "--access", str(policy)))
    try:
        client = TlsClient(pki, "view1", server.port)
        assert client.error == 0
        assert client.write_float(SETTING, 0.95) == 0
        client.close()
    finally:
        assert server.close() == 0


# --- suites and versions (Python ssl as a raw TLS client) ---------------------------------------

@pytest.fixture(scope="module")
def rsa_tls_server(pki, tmp_path_factory) -> Iterator[SecureServer]:
    key, cert = pki.rsa_server()
    server = SecureServer(str(tmp_path_factory.mktemp("rsa")), "--tls-cert", cert,
                          "--tls-key", key, "--tls-ca", pki.ca)
    try:
        yield server
    finally:
        assert server.close() == 0


def _handshake(pki: Pki, port: int, ciphers: str | None, minimum: ssl.TLSVersion,
               maximum: ssl.TLSVersion) -> tuple[str, str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    ctx.check_hostname = False
    key, cert = pki.clients["eng1"]
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version, ctx.maximum_version = minimum, maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        name, version, _ = tls.cipher()
        return name, version


def test_tls12_negotiates_ecdhe_only(pki, rsa_tls_server):
    name, version = _handshake(pki, rsa_tls_server.port, None, ssl.TLSVersion.TLSv1_2,
                               ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and name.startswith("ECDHE-"), name
    # An RSA server certificate makes static-RSA key exchange possible: it must be refused.
    with pytest.raises(ssl.SSLError):
        _handshake(pki, rsa_tls_server.port, "AES128-GCM-SHA256:AES256-GCM-SHA384:"
                   "AES128-SHA256:AES256-SHA256:AES128-SHA", ssl.TLSVersion.TLSv1_2,
                   ssl.TLSVersion.TLSv1_2)
    # Finite-field DHE is forward-secret but not in the list either.
    with pytest.raises(ssl.SSLError):
        _handshake(pki, rsa_tls_server.port, "DHE-RSA-AES128-GCM-SHA256",
                   ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)


def test_ecdsa_server_negotiates_ecdhe(pki, tls_server):
    name, _ = _handshake(pki, tls_server.port, None, ssl.TLSVersion.TLSv1_2,
                         ssl.TLSVersion.TLSv1_2)
    assert name.startswith("ECDHE-ECDSA-"), name


def test_tls13_works(pki, tls_server):
    _, version = _handshake(pki, tls_server.port, None, ssl.TLSVersion.TLSv1_3,
                            ssl.TLSVersion.TLSv1_3)
    assert version == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(pki, tls_server, version):
    before = len(_entries(tls_server, "mms.tls", "refused"))
    with pytest.raises(ssl.SSLError) as info:
        _handshake(pki, tls_server.port, "ALL:@SECLEVEL=0", version, version)
    if "NO_PROTOCOLS_AVAILABLE" in str(info.value):
        pytest.skip("local OpenSSL cannot offer this version at all")
    assert "PROTOCOL_VERSION" in str(info.value)  # the server's alert, not a local refusal
    # Refusals of unauthenticated peers are aggregated: the first of a kind from an
    # address is written at once, repeats are counted into one entry per window.
    assert wait_until(lambda: len(_entries(tls_server, "mms.tls", "refused")) > before
                      or any("nsecure" in e.get("reason", "") or "version" in
                             e.get("reason", "").lower()
                             for e in _entries(tls_server, "mms.tls", "refused")))


# --- ACSE passwords (no TLS) ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def password_server(tmp_path_factory) -> Iterator[SecureServer]:
    root = tmp_path_factory.mktemp("acse")
    policy = root / "policy.json"
    policy.write_text(json.dumps({"users": {
        "alice": {"role": "viewer", "hash": hash_password("alice-pw", n=2 ** 12)},
        "bob": {"role": "engineer", "hash": hash_password("bob-pw", n=2 ** 12)},
    }, "max_failures": 50}))
    server = SecureServer(str(root), "--access", str(policy))
    try:
        yield server
    finally:
        assert server.close() == 0


def test_password_viewer_reads_but_cannot_write(password_server):
    before = password_server.persisted()
    client = PasswordClient(password_server.port, "alice-pw")
    try:
        assert client.error == 0
        _, error = client.read_float(SETTING)
        assert error == 0
        assert client.write_float(SETTING, 0.97) == IED_ERROR_ACCESS_DENIED
    finally:
        client.close()
    assert password_server.persisted() == before
    refused = _entries(password_server, "mms.write", "refused")
    assert any("user alice role=viewer" in e["who"] for e in refused)
    assert password_server.audit_ok()


def test_password_engineer_writes(password_server):
    client = PasswordClient(password_server.port, "bob-pw")
    try:
        assert client.error == 0
        assert client.write_float(SETTING, 0.95) == 0
    finally:
        client.close()
    assert password_server.persisted()["fixed_pf"]["pf_min_injecting"] == 0.95


@pytest.mark.parametrize("password", ["wrong", None])
def test_wrong_or_missing_password_is_refused(password_server, password):
    client = PasswordClient(password_server.port, password)
    try:
        assert client.error != 0
    finally:
        client.close()
    assert _entries(password_server, "mms.associate", "refused")
    assert password_server.audit_ok()
    audit_text = open(os.path.join(password_server.audit_dir, "audit.jsonl")).read()
    assert "wrong" not in audit_text.replace("wrong password", "")  # never the password


# --- idle timeout ------------------------------------------------------------------------------

def test_idle_connection_is_closed(tmp_path):
    server = SecureServer(str(tmp_path), "--idle-timeout", "1")
    try:
        from inverter_agent.adapters.mms.client import connect

        con = connect("127.0.0.1", server.port, timeout=2)
        try:
            assert server.command({"cmd": "clients"})["clients"] == 1
            assert wait_until(lambda: server.command({"cmd": "clients"})["clients"] == 0,
                              timeout=6)
        finally:
            con.close()
        assert _entries(server, "mms.idle_close")
        # A client that keeps asking is not idle.
        con = connect("127.0.0.1", server.port, timeout=2)
        try:
            for _ in range(8):
                con.read(SETTING, "SP")
                time.sleep(0.25)
            assert server.command({"cmd": "clients"})["clients"] == 1
        finally:
            con.close()
    finally:
        assert server.close() == 0


# --- units ---------------------------------------------------------------------------------------

def test_check_bind():
    check_bind("127.0.0.1", False, False)
    check_bind("::1", False, False)
    check_bind("0.0.0.0", True, False)
    with pytest.raises(InsecureBindError, match="TLS"):
        check_bind("0.0.0.0", False, False)
    with pytest.raises(InsecureBindError, match=r"plain .*MMS on 192.168.1.10: .*--tls-cert"):
        check_bind("192.168.1.10", False, False)


def test_check_bind_opt_in_warns(caplog):
    check_bind("0.0.0.0", False, True)
    assert any(r.levelname == "WARNING" and "INSECURE" in r.message
               and "plain MMS" in r.message and "ACSE passwords" in r.message
               for r in caplog.records)


def test_default_port_is_3782_with_tls(pki):
    from inverter_agent.adapters.mms.functions_model import functions_model_spec
    from inverter_agent.adapters.mms.server import MmsServer

    spec = functions_model_spec(LD.removeprefix("GW"))
    tls = TlsSettings(pki.server_cert, pki.server_key, (pki.ca,))
    assert MmsServer(spec, tls=tls).port == security.TLS_PORT == 3782
    assert MmsServer(spec).port == security.PLAIN_PORT
