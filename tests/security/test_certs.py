"""Device key, CSR, install and expiry with real X.509 material."""

import datetime as dt
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509

from inverter_agent.security import certs


@pytest.fixture
def ca(tmp_path):
    certs.create_ca(str(tmp_path / "ca"))
    return str(tmp_path / "ca")


def _sign_csr(ca_dir, csr_path, out):
    # What the utility's PKI does with our CSR (here: the bench CA).
    from cryptography.hazmat.primitives import hashes, serialization
    csr = x509.load_pem_x509_csr(open(csr_path, "rb").read())
    ca_key = certs.load_key(os.path.join(ca_dir, "ca.key"))
    ca_cert = certs.load_certs(os.path.join(ca_dir, "ca.pem"))[0]
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=20)).sign(ca_key, hashes.SHA256()))
    open(out, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    return out


def test_key_is_private_and_csr_names_the_device(tmp_path):
    tls = str(tmp_path / "tls")
    csr_path = certs.create_csr(tls, "GW-0001", org="Utility", sans=["gw1.example", "192.0.2.7"])
    mode = stat.S_IMODE(os.stat(os.path.join(tls, certs.KEY_FILE)).st_mode)
    assert mode == 0o600
    csr = x509.load_pem_x509_csr(open(csr_path, "rb").read())
    assert csr.is_signature_valid
    assert "CN=GW-0001" in csr.subject.rfc4514_string()
    with pytest.raises(certs.CertError, match="never overwritten"):
        certs.create_key(os.path.join(tls, certs.KEY_FILE))


def test_install_checks_key_and_chain_then_reports_expiry(tmp_path, ca):
    tls = str(tmp_path / "tls")
    csr_path = certs.create_csr(tls, "GW-0001")
    signed = _sign_csr(ca, csr_path, str(tmp_path / "signed.pem"))
    cert = certs.install(tls, signed, os.path.join(ca, "ca.pem"))
    assert "GW-0001" in cert.subject.rfc4514_string()
    [e] = certs.expiry(os.path.join(tls, certs.CERT_FILE))
    assert 19 < e.days_left < 21 and "renew" in e.warning


def test_install_refuses_a_certificate_for_another_key_or_from_another_ca(tmp_path, ca):
    tls = str(tmp_path / "tls")
    certs.create_csr(tls, "GW-0001")
    _, other = certs.issue(ca, "someone-else", str(tmp_path / "o"), server=True)
    with pytest.raises(certs.CertError, match="does not belong"):
        certs.install(tls, other, os.path.join(ca, "ca.pem"))
    certs.create_ca(str(tmp_path / "ca2"), cn="another CA")
    signed = _sign_csr(str(tmp_path / "ca2"), os.path.join(tls, certs.CSR_FILE),
                       str(tmp_path / "s2.pem"))
    with pytest.raises(certs.CertError, match="not issued by any CA"):
        certs.install(tls, signed, os.path.join(ca, "ca.pem"))
    assert not os.path.exists(os.path.join(tls, certs.CERT_FILE))


def test_role_travels_in_the_client_certificate(tmp_path, ca):
    _, path = certs.issue(ca, "op1", str(tmp_path / "c"), role="operator")
    assert certs.role_of(certs.load_certs(path)[0]) == "operator"
    with pytest.raises(certs.CertError):
        certs.issue(ca, "x", str(tmp_path / "c"), role="admin")


def test_certs_command_request_and_show(tmp_path, ca):
    tls = str(tmp_path / "tls")
    run = [sys.executable, "-m", "inverter_agent.cli", "certs"]
    r = subprocess.run(run + ["request", "--dir", tls, "--cn", "GW-7"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    signed = _sign_csr(ca, os.path.join(tls, certs.CSR_FILE), str(tmp_path / "s.pem"))
    r = subprocess.run(run + ["install", "--dir", tls, "--cert", signed, "--ca",
                              os.path.join(ca, "ca.pem")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["show", "--dir", tls], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "CN=GW-7" in r.stdout and "renew" in r.stdout
    assert "PRIVATE" not in r.stdout  # never prints key material
