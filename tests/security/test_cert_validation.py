"""Certificates from ``inverter-agent certs`` validate with strict, standard verifiers.

The CA and the server certificate come from the command line, as an operator
would make them; the gateway (``functions_server`` over TLS) serves them; the
verifiers are Python's ``ssl`` with X509_STRICT and host-name checking (what
Python 3.13's default context does) and ``openssl verify -x509_strict``.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from inverter_agent.security import certs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "adapters", "mms"))
from conftest import FunctionsServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "inverter_agent.cli", "certs"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("pki"))
    assert _cli("ca", "--dir", f"{root}/ca").returncode == 0
    r = _cli("issue", "--ca-dir", f"{root}/ca", "--cn", "gw-0001", "--out", f"{root}/srv",
             "--server", "--san", "gw-0001.grid.test", "--san", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    r = _cli("issue", "--ca-dir", f"{root}/ca", "--cn", "eng1", "--out", f"{root}/cli",
             "--role", "engineer")
    assert r.returncode == 0, r.stderr
    return {"root": root, "ca": f"{root}/ca/ca.pem", "cert": f"{root}/srv/gw-0001.crt",
            "key": f"{root}/srv/gw-0001.key", "client_cert": f"{root}/cli/eng1.crt",
            "client_key": f"{root}/cli/eng1.key"}


@pytest.fixture(scope="module")
def gateway(pki, tmp_path_factory) -> Iterator[FunctionsServer]:
    state = str(tmp_path_factory.mktemp("state"))
    server = FunctionsServer(state, "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                             "--tls-ca", pki["ca"])
    try:
        yield server
    finally:
        assert server.close() == 0


def _strict_context(pki: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    # Python 3.13's defaults, set explicitly so the test means the same on 3.11.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    ctx.load_cert_chain(pki["client_cert"], pki["client_key"])  # the gateway wants one
    return ctx


def _handshake(ctx: ssl.SSLContext, port: int, server_hostname: str) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
        return tls.getpeercert()


@pytest.mark.parametrize("name", ["gw-0001.grid.test", "127.0.0.1"])
def test_gateway_certificate_passes_strict_verification_and_host_name_check(pki, gateway,
                                                                           name):
    peer = _handshake(_strict_context(pki), gateway.port, name)
    assert ("DNS", "gw-0001.grid.test") in peer["subjectAltName"]
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]


def test_a_name_the_certificate_does_not_carry_is_refused(pki, gateway):
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        _handshake(_strict_context(pki), gateway.port, "someone-else.grid.test")


def test_openssl_strict_verify_accepts_the_chain(pki):
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver",
                        "-CAfile", pki["ca"], pki["cert"]], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient",
                        "-CAfile", pki["ca"], pki["client_cert"]], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_server_certificate_carries_what_a_tls_server_needs(pki):
    cert = certs.load_certs(pki["cert"])[0]
    ca = certs.load_certs(pki["ca"])[0]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    ca_ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ca_ku.critical and ca_ku.value.key_cert_sign and ca_ku.value.crl_sign
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_default_names_when_none_are_given(pki, tmp_path):
    r = _cli("issue", "--ca-dir", f"{pki['root']}/ca", "--cn", "gw-0002", "--out",
             str(tmp_path), "--server")
    assert r.returncode == 0, r.stderr
    cert = certs.load_certs(str(tmp_path / "gw-0002.crt"))[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert "gw-0002" in dns and "localhost" in dns and socket.gethostname().lower() in dns
    assert "127.0.0.1" in ips and "::1" in ips


def test_request_asks_for_names_and_usages(tmp_path):
    r = subprocess.run([*CLI, "request", "--dir", str(tmp_path), "--cn", "gw-0003",
                        "--san", "gw-0003.grid.test", "--san", "192.0.2.7"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    csr = x509.load_pem_x509_csr((tmp_path / certs.CSR_FILE).read_bytes())
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw-0003.grid.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert csr.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_a_bad_name_is_refused_before_anything_is_written(pki, tmp_path):
    r = _cli("issue", "--ca-dir", f"{pki['root']}/ca", "--cn", "gw-0004", "--out",
             str(tmp_path / "out"), "--server", "--san", "not a host!")
    assert r.returncode == 1 and "not a host!" in r.stderr and "host name" in r.stderr
    assert not (tmp_path / "out").exists()
    r = _cli("request", "--dir", str(tmp_path / "req"), "--cn", "gw-0004", "--san", "a..b")
    assert r.returncode == 1 and "a..b" in r.stderr
    assert not (tmp_path / "req").exists()
