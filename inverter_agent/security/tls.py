"""TLS settings of a server, checked before anything listens, and its certificate's expiry.

IEC 62351-3 style transport security for every adapter that serves TLS.
Mutual authentication: the server presents ``cert``/``key`` and requires a
client certificate that chains to one of ``ca`` (and is in ``allow`` when
that list is given), is within its validity and is not in a ``crl``. TLS 1.2
is the minimum, and only forward-secret AEAD suites are offered: ECDHE with
GCM or ChaCha20-Poly1305 for TLS 1.2 (libiec61850's default list has
TLS_RSA_WITH_AES_128_CBC_SHA256, the IEC 62351-4:2018 "mandatory" suite,
which has no forward secrecy) and the TLS 1.3 suites, which are always
(EC)DHE and AEAD. Nothing here talks to a TLS library: each adapter applies
:class:`TlsSettings` to its own (MMS: ``adapters/mms/server.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import SecurityConfigError

# cryptography (and certs, built on it) are imported where a certificate is handled:
# about 10 MB of the agent's memory that a plain server never needs.

log = logging.getLogger(__name__)

#: TLS 1.2 suites with an ephemeral ECDH key exchange and an AEAD cipher (IANA
#: numbers). The CBC-SHA256 variants (0xC023, 0xC027) are left out: CBC with
#: MAC-then-encrypt is the construction padding-oracle attacks live on, and
#: every client that can do ECDHE can do GCM.
ECDHE_TLS12_SUITES: tuple[int, ...] = (
    0xC02B,  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    0xC02C,  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    0xC02F,  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    0xC030,  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    0xCCA9,  # TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    0xCCA8,  # TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
)
#: Forward-secret but not AEAD: refused in :class:`TlsSettings` with that reason.
CBC_TLS12_SUITES: tuple[int, ...] = (0xC023, 0xC024, 0xC027, 0xC028, 0xC009, 0xC00A, 0xC013,
                                     0xC014)
#: TLS 1.3 suites (key exchange is always ephemeral in TLS 1.3 without PSK).
TLS13_SUITES: tuple[int, ...] = (0x1301, 0x1302, 0x1303)

#: Warn this many days before the server certificate expires.
EXPIRY_WARNING_DAYS = 30


def _paths(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | os.PathLike):
        return (os.fspath(value),)
    return tuple(os.fspath(v) for v in value)


@dataclass(frozen=True)
class TlsSettings:
    """Files for a TLS server (PEM). ``ca`` and ``crl`` take one path or several.

    ``allow``: None accepts any client certificate the CAs signed; a list of
    certificate files accepts only those certificates (and still checks chain,
    time and CRL). ``min_version`` is "1.2" or "1.3"; lower is refused.
    """

    cert: str
    key: str
    ca: tuple[str, ...]
    crl: tuple[str, ...] = ()
    allow: tuple[str, ...] | None = None
    min_version: str = "1.2"
    suites: tuple[int, ...] = field(default=ECDHE_TLS12_SUITES + TLS13_SUITES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ca", _paths(self.ca))
        object.__setattr__(self, "crl", _paths(self.crl))
        if self.allow is not None:
            object.__setattr__(self, "allow", _paths(self.allow))
        if self.min_version not in ("1.2", "1.3"):
            raise SecurityConfigError(f"TLS min_version {self.min_version!r}: 1.2 or 1.3")
        if not self.ca:
            raise SecurityConfigError("TLS needs at least one CA bundle to check clients")
        if self.allow is not None and not self.allow:
            raise SecurityConfigError("TLS allow-list is empty: no client could connect")
        cbc = [f"0x{s:04X}" for s in self.suites if s in CBC_TLS12_SUITES]
        if cbc:
            raise SecurityConfigError(f"TLS CBC suites refused (AEAD only): {cbc}")
        forward_secret = set(ECDHE_TLS12_SUITES) | set(TLS13_SUITES)
        weak = [f"0x{s:04X}" for s in self.suites if s not in forward_secret]
        if weak or not self.suites:
            raise SecurityConfigError(f"TLS suites without forward secrecy refused: {weak}")
        for path in (self.cert, self.key, *self.ca, *self.crl, *(self.allow or ())):
            if not os.path.isfile(path):
                raise SecurityConfigError(f"TLS file {path} does not exist")


# --- certificate expiry ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CertStatus:
    """Expiry of one certificate, for the status view and the start-up log."""

    path: str
    subject: str
    not_after: dt.datetime
    days_left: float
    warning: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "subject": self.subject,
                "not_after": self.not_after.isoformat(), "days_left": round(self.days_left, 1),
                "warning": self.warning}


def cert_status(path: str, warn_days: float = EXPIRY_WARNING_DAYS,
                at: dt.datetime | None = None) -> CertStatus:
    """Days left on the (first) certificate in ``path``; ``warning`` set under ``warn_days``."""
    from inverter_agent.security import certs

    first = certs.expiry(path, at)[0]
    if first.days_left < 0:
        warning: str | None = f"certificate EXPIRED {-first.days_left:.0f} days ago"
    elif first.days_left < warn_days:
        warning = f"certificate expires in {first.days_left:.0f} days: renew it now"
    else:
        warning = None
    return CertStatus(path, first.subject, first.not_after, first.days_left, warning)


def log_cert_status(path: str, warn_days: float = EXPIRY_WARNING_DAYS,
                    what: str = "TLS server certificate") -> CertStatus:
    """:func:`cert_status`, logged (WARNING when it needs attention); ``what`` names the
    certificate in the log ("MMS TLS server certificate")."""
    status = cert_status(path, warn_days)
    if status.warning:
        log.warning("%s %s (%s): %s", what, status.subject, path, status.warning)
    else:
        log.info("%s %s valid for %.0f more days", what, status.subject, status.days_left)
    return status
