"""Device certificates for MMS over TLS: key, signing request, install, expiry.

The device key is an ECDSA P-256 key, created on the device and never leaving
it (mode 0600). ``inverter-agent certs request`` writes a certificate signing
request for the utility's PKI; ``install`` checks that the signed certificate
matches the key and chains to the given CA bundle before it replaces
anything; ``show`` prints subjects and expiry and warns ahead of time.

For benches and tests, ``ca`` creates a small local CA and ``sign`` issues
client or device certificates from it, with the IEC 62351-8 style role of a
client carried in the subject's organizational unit (OU=viewer, operator,
engineer or secadmin).

What a standard client needs to validate the gateway (RFC 5280, and what
OpenSSL's ``X509_V_FLAG_X509_STRICT`` checks, the default of Python 3.13's
``ssl.create_default_context``): the server certificate names the gateway
in subjectAltName (host names as dNSName, addresses as iPAddress; the CN is
not looked at), carries keyUsage digitalSignature (ECDSA signs the
handshake), extendedKeyUsage serverAuth, a subject key identifier and an
authority key identifier that matches the CA's subject key identifier; the
CA carries basicConstraints CA (critical), keyUsage keyCertSign and cRLSign
(critical) and a subject key identifier. The CSR asks for the same names and
usages, so a PKI that copies requested extensions gets it right too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from inverter_agent.core.files import write_atomic

KEY_FILE = "device.key"
CSR_FILE = "device.csr"
CERT_FILE = "device.crt"
CA_FILE = "ca.pem"
ROLES = ("viewer", "operator", "engineer", "secadmin")


class CertError(Exception):
    """A certificate operation was refused; the message says why."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: str, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def _write_public(path: str, data: bytes) -> None:
    write_atomic(path, data, mode=0o644)


def _name(cn: str, org: str | None = None, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attrs)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_host_name(name: str) -> bool:
    """A DNS name a certificate may carry as dNSName (RFC 1123 labels, optional ``*.``)."""
    labels = name.removeprefix("*.").rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def _sans(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            if not is_host_name(n):
                raise CertError(f"subjectAltName {n!r} is neither an IP address nor a "
                                "host name") from None
            out.append(x509.DNSName(n.lower()))
    return out


def default_server_names(cn: str | None = None) -> list[str]:
    """Names a device certificate carries when none are given: the CN if it is a
    host name, this machine's host name, localhost, 127.0.0.1 and ::1. (No DNS
    lookup: a device without a network must not wait on one.)"""
    names = [cn or "", socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    out: list[str] = []
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if not is_host_name(name):
                continue
            name = name.lower()
        if name not in out:
            out.append(name)
    return out


def _server_names(cn: str, sans: list[str] | None) -> list[str]:
    names = list(sans) if sans else default_server_names(cn)
    _sans(names)  # refuse anything that is neither a name nor an address, early
    return names


#: keyUsage of an end-entity (EC key: the handshake is signed; nothing is encrypted to it).
_LEAF_KEY_USAGE = x509.KeyUsage(digital_signature=True, content_commitment=False,
                                key_encipherment=False, data_encipherment=False,
                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                encipher_only=False, decipher_only=False)
#: keyUsage of the bench CA.
_CA_KEY_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False)


def load_key(path: str) -> ec.EllipticCurvePrivateKey:
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path}: not an EC private key")
    return key


def create_key(path: str) -> ec.EllipticCurvePrivateKey:
    """A new P-256 key at ``path`` (0600). Refuses to overwrite an existing key."""
    if os.path.exists(path):
        raise CertError(f"{path} exists; a device key is never overwritten (remove it first "
                        "if you really mean to re-key the device)")
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key


def create_csr(folder: str, cn: str, org: str | None = None,
               sans: list[str] | None = None) -> str:
    """Key (created if missing) and a CSR in ``folder``; returns the CSR path.

    The CSR asks for a TLS server certificate: subjectAltName ``sans`` (host
    names and IP addresses; :func:`default_server_names` when none are
    given), keyUsage digitalSignature and extendedKeyUsage serverAuth and
    clientAuth (the gateway is also a TLS client, e.g. of IEEE 2030.5).
    """
    names = _server_names(cn, sans)
    os.makedirs(folder, mode=0o750, exist_ok=True)
    key_path = os.path.join(folder, KEY_FILE)
    key = load_key(key_path) if os.path.exists(key_path) else create_key(key_path)
    builder = (x509.CertificateSigningRequestBuilder().subject_name(_name(cn, org))
               .add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
               .add_extension(_LEAF_KEY_USAGE, critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    csr = builder.sign(key, hashes.SHA256())
    path = os.path.join(folder, CSR_FILE)
    _write_public(path, csr.public_bytes(serialization.Encoding.PEM))
    return path


def load_certs(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertError(f"{path}: no PEM certificates ({exc})") from None
    if not certs:
        raise CertError(f"{path}: no certificates")
    return certs


def verify_chain(cert: x509.Certificate, cas: list[x509.Certificate],
                 at: dt.datetime | None = None) -> None:
    """Check that ``cert`` is signed by one of ``cas`` and is within its validity."""
    at = at or _now()
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CertError(f"certificate {cert.subject.rfc4514_string()} is not valid now "
                        f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                        f"{cert.not_valid_after_utc:%Y-%m-%d})")
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
            return
        except (ValueError, TypeError, InvalidSignature):  # signature or key type mismatch
            continue
    raise CertError(f"certificate {cert.subject.rfc4514_string()} is not issued by any CA "
                    "in the bundle")


def install(folder: str, cert_path: str, ca_path: str) -> x509.Certificate:
    """Install a signed device certificate and the CA bundle, after checking both."""
    key = load_key(os.path.join(folder, KEY_FILE))
    cert = load_certs(cert_path)[0]
    cas = load_certs(ca_path)
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or \
            pub.public_numbers() != key.public_key().public_numbers():
        raise CertError(f"{cert_path} does not belong to this device's key")
    verify_chain(cert, cas)
    _write_public(os.path.join(folder, CA_FILE),
                  b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cas))
    _write_public(os.path.join(folder, CERT_FILE), cert.public_bytes(serialization.Encoding.PEM))
    return cert


@dataclass(frozen=True, slots=True)
class Expiry:
    subject: str
    issuer: str
    not_after: dt.datetime
    days_left: float

    @property
    def warning(self) -> str | None:
        if self.days_left < 0:
            return f"EXPIRED {-self.days_left:.0f} days ago"
        if self.days_left < 30:
            return f"expires in {self.days_left:.0f} days: renew now"
        return None


def expiry(path: str, at: dt.datetime | None = None) -> list[Expiry]:
    at = at or _now()
    return [Expiry(c.subject.rfc4514_string(), c.issuer.rfc4514_string(),
                   c.not_valid_after_utc,
                   (c.not_valid_after_utc - at).total_seconds() / 86400)
            for c in load_certs(path)]


def role_of(cert: x509.Certificate) -> str | None:
    """The role a client certificate carries (subject OU), if it names one."""
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        if str(attr.value) in ROLES:
            return str(attr.value)
    return None


# -- a local CA for benches and tests -------------------------------------------------

def create_ca(folder: str, cn: str = "inverter-agent bench CA", days: int = 3650) -> str:
    """A bench CA in ``folder`` (ca.key 0600, ca.pem); returns the certificate path."""
    os.makedirs(folder, mode=0o750, exist_ok=True)
    key = create_key(os.path.join(folder, "ca.key"))
    name = _name(cn)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = os.path.join(folder, "ca.pem")
    _write_public(path, cert.public_bytes(serialization.Encoding.PEM))
    return path


def issue(ca_folder: str, cn: str, out_folder: str, role: str | None = None,
          server: bool = False, days: int = 365, sans: list[str] | None = None,
          not_before: dt.datetime | None = None) -> tuple[str, str]:
    """Key and certificate signed by the bench CA; returns (key path, cert path).

    A ``server`` certificate names ``sans`` in subjectAltName
    (:func:`default_server_names` when none are given); a client certificate
    carries ``sans`` only if given. Both get keyUsage digitalSignature, the
    extended key usage of their side and subject/authority key identifiers.
    """
    if role is not None and role not in ROLES:
        raise CertError(f"role {role!r}: one of {', '.join(ROLES)}")
    if server:
        sans = _server_names(cn, sans)
    elif sans:
        _sans(sans)
    ca_key = load_key(os.path.join(ca_folder, "ca.key"))
    ca_cert = load_certs(os.path.join(ca_folder, "ca.pem"))[0]
    os.makedirs(out_folder, mode=0o750, exist_ok=True)
    key_path = os.path.join(out_folder, f"{cn}.key")
    key = create_key(key_path)
    start = not_before or (_now() - dt.timedelta(minutes=5))
    builder = (x509.CertificateBuilder().subject_name(_name(cn, ou=role))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_LEAF_KEY_USAGE, critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server
                    else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(_authority_key_id(ca_cert), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(sans)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = os.path.join(out_folder, f"{cn}.crt")
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI naming the CA's SKI (or, for a CA made before it carried one, its key)."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def revoke(ca_folder: str, cert_paths: list[str], crl_path: str) -> str:
    """A CRL from the bench CA revoking the given certificates."""
    ca_key = load_key(os.path.join(ca_folder, "ca.key"))
    ca_cert = load_certs(os.path.join(ca_folder, "ca.pem"))[0]
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(_now() - dt.timedelta(minutes=1))
               .next_update(_now() + dt.timedelta(days=7))
               .add_extension(_authority_key_id(ca_cert), critical=False))
    for p in cert_paths:
        c = load_certs(p)[0]
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(c.serial_number)
            .revocation_date(_now() - dt.timedelta(minutes=1)).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_public(crl_path, crl.public_bytes(serialization.Encoding.PEM))
    return crl_path
