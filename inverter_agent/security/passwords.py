"""Salted password hashes for the config (never a password in plain text).

:func:`hash_password` makes the string ``inverter-agent password-hash`` prints
and the config holds; :func:`verify_password` checks a password a client sent
against it in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

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


def is_hash(text: str) -> bool:
    """Whether ``text`` has the shape of a :func:`hash_password` string."""
    return text.startswith("scrypt$") and text.count("$") == 5
