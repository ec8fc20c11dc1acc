"""The one error every security setting raises when it is missing, unreadable or unsafe."""

from __future__ import annotations


class SecurityConfigError(ValueError):
    """A security setting is missing, unreadable or unsafe; the message says which."""


class InsecureBindError(SecurityConfigError):
    """A plain (unencrypted) server was asked to listen beyond loopback without the
    explicit opt-in."""
