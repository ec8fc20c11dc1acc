"""The ``[security]`` config section as the objects every adapter takes."""

from __future__ import annotations

from inverter_agent import config as config_mod

from .access import AccessPolicy
from .audit import AuditLog
from .tls import TlsSettings


def security_from_config(cfg: config_mod.Config
                         ) -> tuple[TlsSettings | None, AccessPolicy | None, AuditLog]:
    """(TlsSettings or None, AccessPolicy or None, AuditLog) from the [security] section."""
    tls = None
    if cfg["security.tls_cert"] or cfg["security.tls_key"]:
        if not (cfg["security.tls_cert"] and cfg["security.tls_key"] and cfg["security.tls_ca"]):
            raise config_mod.ConfigError("[security] TLS needs tls_cert, tls_key and tls_ca "
                                         "(--tls-cert, --tls-key, --tls-ca) together")
        missing = config_mod.file_errors(cfg, ("security",))
        if missing:  # each with its file and key, before TlsSettings names only a path
            raise config_mod.config_errors(missing)
        tls = TlsSettings(cert=cfg["security.tls_cert"], key=cfg["security.tls_key"],
                          ca=tuple(cfg["security.tls_ca"]), crl=tuple(cfg["security.tls_crl"]),
                          allow=tuple(cfg["security.tls_allow"]) or None,
                          min_version=cfg["security.tls_min_version"])
    access = None
    if tls is not None or cfg["security.users"] or cfg["security.fingerprints"]:
        access = AccessPolicy.from_config({"fingerprints": cfg["security.fingerprints"] or None,
                                           "use_ou": cfg["security.role_from_ou"],
                                           "users": cfg["security.users"] or None})
    audit = AuditLog(cfg["agent.state_dir"], max_bytes=cfg["security.audit_bytes"],
                     retain_s=cfg["security.audit_retain_days"] * 86400.0)
    return tls, access, audit
