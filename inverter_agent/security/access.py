"""Roles and the access policy: who a connection is, and what its role may do.

IEC 62351-8 style roles for every adapter. Every session gets an
:class:`Identity` with one role from :data:`ROLE_RIGHTS`. With TLS the role
comes from the client certificate: its SHA-256 fingerprint in
``AccessPolicy.fingerprints`` if listed, else the subject OU
(``certs.role_of``). Without TLS a password can be used:
``AccessPolicy.users`` maps a user name to a role and a salted hash
(:func:`~inverter_agent.security.passwords.hash_password`); the password a
client sends is compared with every user's hash and the one that matches is
the user (MMS's ACSE carries no user name, so passwords must differ between
users). A session without a role is refused; how a refusal reaches the
client is the adapter's business.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SecurityConfigError
from .passwords import is_hash, verify_password

# cryptography (and certs, built on it) are imported where a certificate is handled:
# about 10 MB of the agent's memory that a plain server never needs.

RIGHT_READ = "read"
RIGHT_CONTROL = "control"
RIGHT_WRITE = "write"
RIGHT_SECADMIN = "secadmin"

#: What each role may do (IEC 62351-8 VIEWER, OPERATOR, ENGINEER, SECADM, simplified):
#: reading covers reads, directory browsing and report subscriptions; ``write``
#: is setting writes (FC SP); ``control`` is operate/select.
ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({RIGHT_READ}),
    "operator": frozenset({RIGHT_READ, RIGHT_CONTROL}),
    "engineer": frozenset({RIGHT_READ, RIGHT_WRITE}),
    "secadmin": frozenset({RIGHT_READ, RIGHT_SECADMIN}),
}


@dataclass(frozen=True, slots=True)
class PasswordUser:
    """A user for password authentication: role and salted hash (never the password)."""

    role: str
    hash: str

    def __post_init__(self) -> None:
        if self.role not in ROLE_RIGHTS:
            raise SecurityConfigError(f"role {self.role!r}: one of {', '.join(ROLE_RIGHTS)}")
        if not is_hash(self.hash):
            raise SecurityConfigError("password must be given as a hash_password() string, "
                                      "never in plain text")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is: for audit entries, logs and access decisions."""

    who: str        # "cert CN=eng1 sha256:ab12cd34..." or "user alice"
    role: str
    method: str     # "tls" or "password"
    peer: str = "?"

    def can(self, right: str) -> bool:
        return right in ROLE_RIGHTS.get(self.role, frozenset())

    def describe(self) -> str:
        return f"{self.who} role={self.role} from {self.peer}"


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lower-case hex without separators."""
    return hashlib.sha256(der).hexdigest()


def _normalise_fingerprint(text: str) -> str:
    return text.lower().replace(":", "").removeprefix("sha256").strip()


class AccessPolicy:
    """Maps an authenticated client to a role (certificate or password).

    ``fingerprints``: certificate SHA-256 (hex, colons allowed) -> role; wins over
    the subject OU. ``use_ou``: take the role from the subject OU when the
    fingerprint is not listed. ``users``: user -> :class:`PasswordUser` (or a
    ``{"role": ..., "hash": ...}`` dict). ``max_failures`` wrong passwords within
    ``lockout_s`` lock password logins out for ``lockout_s`` (from every address:
    libiec61850 1.6.1's authenticator is not told the caller's address).
    """

    def __init__(self, fingerprints: Mapping[str, str] | None = None, use_ou: bool = True,
                 users: Mapping[str, PasswordUser | Mapping[str, str]] | None = None,
                 max_failures: int = 5, lockout_s: float = 60.0) -> None:
        self.fingerprints = {_normalise_fingerprint(k): v for k, v in (fingerprints or {}).items()}
        for fp, role in self.fingerprints.items():
            if role not in ROLE_RIGHTS:
                raise SecurityConfigError(f"fingerprint {fp[:16]}...: unknown role {role!r}")
        self.use_ou = use_ou
        self.users: dict[str, PasswordUser] = {
            name: u if isinstance(u, PasswordUser) else PasswordUser(u["role"], u["hash"])
            for name, u in (users or {}).items()}
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def certificate_identity(self, der: bytes, peer: str) -> tuple[Identity | None, str]:
        """(identity, "") for a TLS client certificate with a role, else (None, reason).

        The certificate itself was already validated by the TLS layer.
        """
        from cryptography import x509

        from inverter_agent.security import certs

        fp = fingerprint(der)
        try:
            cert = x509.load_der_x509_certificate(der)
            subject = cert.subject.rfc4514_string()
        except ValueError:
            return None, "client certificate not parseable"
        role = self.fingerprints.get(fp)
        if role is None and self.use_ou:
            role = certs.role_of(cert)
        who = f"cert {subject} sha256:{fp[:16]}"
        if role is None:
            return None, f"{who}: no role (subject OU or fingerprint mapping)"
        return Identity(who, role, "tls", peer), ""

    def password_identity(self, password: bytes, peer: str) -> tuple[Identity | None, str]:
        """(identity, "") if ``password`` matches a user's hash, else (None, reason)."""
        # libiec61850 1.6.1 does not tell the authenticator who is calling, so the
        # lockout counts wrong passwords from everybody (it slows guessing down;
        # certificates, which need no password, are not affected).
        host = "*"
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(host, []) if now - t < self.lockout_s]
            self._failures[host] = recent
            if len(recent) >= self.max_failures:
                return None, f"password login locked for {self.lockout_s:g} s after " \
                    f"{len(recent)} wrong passwords"
        match = None
        for name, user in self.users.items():  # every hash is computed: no timing hint
            if verify_password(password, user.hash) and match is None:
                match = (name, user)
        if match is None:
            with self._lock:
                self._failures.setdefault(host, []).append(now)
            return None, "wrong password" if self.users else "no password users configured"
        with self._lock:
            self._failures.pop(host, None)
        name, user = match
        return Identity(f"user {name}", user.role, "password", peer), ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> AccessPolicy:
        """From a config section ``{"fingerprints": {fp: role}, "use_ou": bool,
        "users": {name: {"role": r, "hash": h}}, "max_failures": n, "lockout_s": s}``."""
        config = config or {}
        return cls(config.get("fingerprints"), bool(config.get("use_ou", True)),
                   config.get("users"), int(config.get("max_failures", 5)),
                   float(config.get("lockout_s", 60.0)))
