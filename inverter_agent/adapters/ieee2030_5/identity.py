"""LFDI and SFDI from the device certificate (IEEE 2030.5-2018 6.3.4).

LFDI: the first 160 bits of the SHA-256 hash of the certificate (DER), as 40
hex digits. SFDI: the first 36 bits of the LFDI as a decimal number, followed
by a check digit that makes the sum of all digits a multiple of 10. Computed
here with ``cryptography`` alone, so ``inverter-agent lfdi`` needs no engine;
the tests check it against py20305's own and against the test server's.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def lfdi_sfdi(cert: bytes) -> tuple[str, int]:
    """(LFDI hex, SFDI) of a PEM or DER certificate; raises ValueError if it is neither."""
    try:
        c = x509.load_pem_x509_certificate(cert) if b"-----BEGIN" in cert else \
            x509.load_der_x509_certificate(cert)
    except ValueError as exc:
        raise ValueError(f"not a certificate (PEM or DER): {exc}") from None
    lfdi = hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest()[:40]
    return lfdi, sfdi_of(lfdi)


def lfdi_text(lfdi: bytes | str) -> str:
    """An LFDI as py20305's state holds it (bytes or text) in lower-case hex."""
    return (lfdi.hex() if isinstance(lfdi, bytes) else str(lfdi)).lower()


def sfdi_of(lfdi: str) -> int:
    value = int(lfdi[:9], 16)  # 36 bits
    check = (10 - sum(map(int, str(value))) % 10) % 10
    return value * 10 + check
