"""Security settings of the MMS server: TLS, roles, passwords, secure defaults.

IEC 62351-3/-4 style transport security and IEC 62351-8 style roles for
:class:`~inverter_agent.adapters.mms.server.MmsServer`. Nothing here talks to
libiec61850; the server applies it (see ``server.py``).

TLS (:class:`TlsSettings`)
    Mutual authentication: the server presents ``cert``/``key`` and requires a
    client certificate that chains to one of ``ca`` (and is in ``allow`` when
    that list is given), is within its validity and is not in a ``crl``. TLS
    1.2 is the minimum, and only forward-secret AEAD suites are offered: ECDHE
    with GCM or ChaCha20-Poly1305 for TLS 1.2 (libiec61850's default list has
    TLS_RSA_WITH_AES_128_CBC_SHA256, the IEC 62351-4:2018 "mandatory" suite,
    which has no forward secrecy) and the TLS 1.3 suites, which are always
    (EC)DHE and AEAD. A client cannot renegotiate a TLS 1.2 session (see
    ``hardening.refuse_client_renegotiation``). MMS over TLS listens on
    :data:`TLS_PORT` (3782) unless told otherwise.

Roles (:class:`AccessPolicy`)
    Every association gets an :class:`Identity` with one role from
    :data:`ROLE_RIGHTS`. With TLS the role comes from the client certificate:
    its SHA-256 fingerprint in ``AccessPolicy.fingerprints`` if listed, else
    the subject OU (``certs.role_of``). Without TLS an ACSE password can be
    used: ``AccessPolicy.users`` maps a user name to a role and a salted hash
    (:func:`hash_password`); the password a client sends is compared with
    every user's hash and the one that matches is the user (ACSE carries no
    user name, so passwords must differ between users). An association
    without a role is refused. Without TLS and without users (no policy),
    every client has full rights: :func:`check_bind` only lets that happen on
    loopback unless the operator opts in explicitly.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# cryptography (and certs, built on it) are imported where a certificate is handled:
# about 10 MB of the agent's memory that plain MMS never needs.

log = logging.getLogger(__name__)

#: Conventional port of MMS over TLS (plain MMS is 102).
TLS_PORT = 3782
#: Port used without TLS when none is given: an unprivileged stand-in for 102.
PLAIN_PORT = 10102

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


class SecurityConfigError(ValueError):
    """A security setting is missing, unreadable or unsafe; the message says which."""


class InsecureBindError(SecurityConfigError):
    """Plain MMS was asked to listen beyond loopback without the explicit opt-in."""


# --- TLS ------------------------------------------------------------------------------------

def _paths(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | os.PathLike):
        return (os.fspath(value),)
    return tuple(os.fspath(v) for v in value)


@dataclass(frozen=True)
class TlsSettings:
    """Files for MMS over TLS (PEM). ``ca`` and ``crl`` take one path or several.

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


def log_cert_status(path: str, warn_days: float = EXPIRY_WARNING_DAYS) -> CertStatus:
    """:func:`cert_status`, logged (WARNING when it needs attention)."""
    status = cert_status(path, warn_days)
    if status.warning:
        log.warning("MMS TLS server certificate %s (%s): %s", status.subject, path,
                    status.warning)
    else:
        log.info("MMS TLS server certificate %s valid for %.0f more days", status.subject,
                 status.days_left)
    return status


# --- passwords ---------------------------------------------------------------------------------

_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def hash_password(password: str, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"],
                  p: int = _SCRYPT["p"]) -> str:
    """Salted scrypt hash for the config: ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: bytes, encoded: str) -> bool:
    """True if ``password`` matches the :func:`hash_password` string ``encoded``."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password, salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class PasswordUser:
    """A user for ACSE password authentication: role and salted hash (never the password)."""

    role: str
    hash: str

    def __post_init__(self) -> None:
        if self.role not in ROLE_RIGHTS:
            raise SecurityConfigError(f"role {self.role!r}: one of {', '.join(ROLE_RIGHTS)}")
        if not self.hash.startswith("scrypt$") or self.hash.count("$") != 5:
            raise SecurityConfigError("password must be given as a hash_password() string, "
                                      "never in plain text")


# --- identities and the policy ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Identity:
    """Who an association is: for audit entries, logs and access decisions."""

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
    """Maps an authenticated client to a role (certificate or ACSE password).

    ``fingerprints``: certificate SHA-256 (hex, colons allowed) -> role; wins over
    the subject OU. ``use_ou``: take the role from the subject OU when the
    fingerprint is not listed. ``users``: user -> :class:`PasswordUser` (or a
    ``{"role": ..., "hash": ...}`` dict). ``max_failures`` wrong passwords within
    ``lockout_s`` lock password logins out for ``lockout_s`` (from every address:
    the 1.6.1 authenticator is not told the caller's address).
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


# --- secure defaults ---------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; False for wildcards and anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls_enabled: bool, allow_insecure: bool) -> None:
    """Refuse plain MMS on a non-loopback address unless ``allow_insecure``.

    Plain MMS has no encryption and (without ACSE passwords) no authentication:
    every client gets full rights. With the opt-in it is allowed and a loud
    WARNING is logged. Raises :class:`InsecureBindError`.
    """
    if tls_enabled or is_loopback(host):
        return
    if not allow_insecure:
        raise InsecureBindError(
            f"refusing plain (unencrypted, unauthenticated) MMS on {host or '*'}: configure "
            "TLS (--tls-cert/--tls-key/--tls-ca), bind 127.0.0.1, or opt in explicitly with "
            "allow_insecure")
    log.warning("!!! INSECURE: plain MMS listening on %s without TLS: anyone who can reach "
                "this address can read and, without ACSE passwords, change settings and "
                "operate the inverter !!!", host or "*")


# --- admission: the connection cap must not lock everyone out ----------------------------------

#: Roles for which the last connection slot is kept free (IEC 62351-8 OPERATOR, ENGINEER,
#: SECADM: the ones that can act on the inverter or on its security).
PRIVILEGED_ROLES = frozenset({"operator", "engineer", "secadmin"})


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """How the MMS server keeps its few connection slots (5 in the bundled library)
    usable for the clients that need them.

    ``associate_within_s``: a connection (plain or TLS, handshake included) that
    has not completed its MMS association this long after it was accepted is
    closed. ``rate``/``burst``: a peer address may open ``burst`` connections
    at once and ``rate`` per second after that, not counting those that
    associate; one that opens more is put in penalty. ``failures`` failed
    connections (no association in time, closed before associating, refused
    TLS handshake or association) within
    ``failure_window_s`` put the peer in penalty too. A peer in penalty
    (``penalty_s``) is refused before it takes a slot: the listening socket
    drops its connection attempts (SYN) in the kernel, so its client retries
    after 1 s, 3 s, ...; the connections it still has are closed, except
    those of :data:`PRIVILEGED_ROLES`. ``pending_per_peer``: unassociated
    connections one peer may hold at a time. ``reserved``: with roles
    enforced, this many of the server's slots are kept for
    :data:`PRIVILEGED_ROLES`: a viewer (or any other role) is refused when its
    association would take one of them.
    """

    associate_within_s: float = 1.0
    rate: float = 5.0
    burst: int = 10
    failures: int = 50
    failure_window_s: float = 10.0
    penalty_s: float = 10.0
    pending_per_peer: int = 3
    reserved: int = 1

    def __post_init__(self) -> None:
        for name in ("associate_within_s", "rate", "failure_window_s", "penalty_s"):
            if not getattr(self, name) > 0:
                raise SecurityConfigError(f"admission {name} must be > 0")
        for name in ("burst", "failures", "pending_per_peer"):
            if getattr(self, name) < 1:
                raise SecurityConfigError(f"admission {name} must be >= 1")
        if self.reserved < 0:
            raise SecurityConfigError("admission reserved must be >= 0")

    def describe(self) -> str:
        return (f"association within {self.associate_within_s:g} s; per peer address "
                f"more than {self.burst} connections at once or {self.rate:g}/s after, or "
                f"{self.failures} failures in {self.failure_window_s:g} s -> "
                f"{self.penalty_s:g} s penalty; {self.reserved} slot(s) kept for "
                f"{'/'.join(sorted(PRIVILEGED_ROLES))}")


class Admission:
    """Per peer address: token bucket of unassociated connections, failures, penalty.

    Pure bookkeeping (time is an argument); the server asks :meth:`opened` for
    every connection it sees accepted and reports :meth:`associated` and
    :meth:`failed`. At most ``max_peers`` addresses are remembered (the least
    recently seen are forgotten first), so a scan from many addresses costs
    bounded memory.
    """

    def __init__(self, limits: AdmissionLimits | None = None, max_peers: int = 4096) -> None:
        self.limits = limits or AdmissionLimits()
        self.max_peers = max_peers
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}   # host -> (tokens, at)
        self._failures: dict[str, list[float]] = {}
        self._penalty: dict[str, float] = {}                # host -> until

    def _bucket(self, host: str, now: float) -> float:
        tokens, at = self._tokens.get(host, (float(self.limits.burst), now))
        return min(float(self.limits.burst), tokens + (now - at) * self.limits.rate)

    def opened(self, host: str, now: float) -> str | None:
        """A connection from ``host`` was accepted: None to let it try to associate,
        else why it is to be closed at once."""
        with self._lock:
            until = self._penalty.get(host)
            if until is not None and now < until:
                return (f"in penalty for {until - now:.0f} s more after "
                        f"{self.limits.failures} failed connections")
            tokens = self._bucket(host, now)
            if tokens < 1.0:
                self._tokens[host] = (tokens, now)
                self._penalty[host] = now + self.limits.penalty_s
                return (f"connecting faster than {self.limits.rate:g}/s "
                        f"(burst {self.limits.burst}): {self.limits.penalty_s:g} s penalty")
            self._tokens[host] = (tokens - 1.0, now)
            self._trim()
            return None

    def associated(self, host: str, now: float) -> None:
        """An association from ``host`` succeeded: that connection costs no token, and
        the address's failures so far are forgiven (a client that reconnects often but
        properly, or whose attempts timed out while the gateway was busy, is not put in
        penalty for it)."""
        with self._lock:
            tokens = self._bucket(host, now)
            self._tokens[host] = (min(float(self.limits.burst), tokens + 1.0), now)
            self._failures.pop(host, None)

    def failed(self, host: str, now: float) -> bool:
        """A connection from ``host`` failed; True if that put it in penalty."""
        with self._lock:
            window = self.limits.failure_window_s
            recent = [t for t in self._failures.get(host, ()) if now - t < window]
            recent.append(now)
            self._failures[host] = recent[-self.limits.failures:]
            if len(recent) >= self.limits.failures and self._penalty.get(host, 0) <= now:
                self._penalty[host] = now + self.limits.penalty_s
                self._failures[host] = []
                return True
            return False

    def penalised(self, now: float) -> list[str]:
        with self._lock:
            return [h for h, until in self._penalty.items() if until > now]

    def _trim(self) -> None:
        if len(self._tokens) <= self.max_peers:
            return
        for host in sorted(self._tokens, key=lambda h: self._tokens[h][1])[:self.max_peers // 4]:
            self._tokens.pop(host, None)
            self._failures.pop(host, None)
            self._penalty.pop(host, None)
