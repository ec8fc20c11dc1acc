"""What of security is MMS's own: its ports and its secure-default wording.

The rules themselves are shared by every adapter and live in
:mod:`inverter_agent.security` (roles and ``AccessPolicy`` in ``access``,
``TlsSettings`` in ``tls``, admission limits in ``admission``, the bind check
in ``bind``). :class:`~inverter_agent.adapters.mms.server.MmsServer` applies
them through libiec61850 (the TLS configuration in ``server.py``; the
authenticator, access checks and admission in ``guard.py``).

With TLS the role comes from the client certificate; without TLS an ACSE
password can be used (ACSE carries no user name, so passwords must differ
between users). Without TLS and without users (no policy), every client has
full rights: :func:`check_bind` only lets that happen on loopback unless the
operator opts in explicitly. A client cannot renegotiate a TLS 1.2 session
(see ``hardening.refuse_client_renegotiation``). MMS over TLS listens on
:data:`TLS_PORT` (3782) unless told otherwise.
"""

from __future__ import annotations

from inverter_agent.security import bind

#: Conventional port of MMS over TLS (plain MMS is 102).
TLS_PORT = 3782
#: Port used without TLS when none is given: an unprivileged stand-in for 102.
PLAIN_PORT = 10102


def check_bind(host: str, tls_enabled: bool, allow_insecure: bool) -> None:
    """Refuse plain MMS on a non-loopback address unless ``allow_insecure``.

    Plain MMS has no encryption and (without ACSE passwords) no authentication:
    every client gets full rights. With the opt-in it is allowed and a loud
    WARNING is logged. Raises :class:`~inverter_agent.security.errors.InsecureBindError`.
    """
    bind.check_bind(host, tls_enabled, allow_insecure, protocol="MMS",
                    tls_hint="TLS (--tls-cert/--tls-key/--tls-ca)", passwords="ACSE passwords")
