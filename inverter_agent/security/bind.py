"""Secure defaults: a plain (unencrypted) server listens on loopback only, unless told.

Plain transport has no encryption and, without passwords, no authentication:
every client gets full rights. :func:`check_bind` refuses such a listener on
any address but loopback unless the operator opts in explicitly, and then
logs a loud WARNING. Each adapter calls it before anything listens, naming
itself and how it is secured.
"""

from __future__ import annotations

import ipaddress
import logging

from .errors import InsecureBindError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; False for wildcards and anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The opt-in, as a config key and a flag, named by the refusal.
OPT_IN = "[security] allow_insecure_bind = true (or --allow-insecure-bind)"


def check_bind(host: str, tls_enabled: bool, allow_insecure: bool, *, protocol: str,
               tls_hint: str = "TLS", passwords: str = "passwords",
               opt_in: str = OPT_IN) -> None:
    """Refuse plain ``protocol`` on a non-loopback address unless ``allow_insecure``.

    ``tls_hint`` says how to configure TLS (the adapter's options); ``passwords``
    names its password authentication, for the warning; ``opt_in`` the key (and flag)
    that allows it. Raises
    :class:`~inverter_agent.security.errors.InsecureBindError`.
    """
    if tls_enabled or is_loopback(host):
        return
    if not allow_insecure:
        raise InsecureBindError(
            f"refusing plain (unencrypted, unauthenticated) {protocol} on {host or '*'}: "
            f"configure {tls_hint}, bind 127.0.0.1, or opt in explicitly with {opt_in}")
    log.warning("!!! INSECURE: plain %s listening on %s without TLS: anyone who can reach "
                "this address can read and, without %s, change settings and operate the "
                "inverter !!!", protocol, host or "*", passwords)
