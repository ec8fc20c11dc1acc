"""Security every protocol adapter shares (MMS, IEEE 2030.5, DNP3, ...).

- ``access``: IEC 62351-8 style roles (:data:`~.access.ROLE_RIGHTS`), the
  :class:`~.access.Identity` of a session and the :class:`~.access.AccessPolicy`
  that gives it a role from a client certificate or a password.
- ``passwords``: salted scrypt hashes for the config (``hash_password``).
- ``tls``: :class:`~.tls.TlsSettings` (certificate, key, CA, CRL, allow-list,
  forward-secret AEAD suites, minimum version; checked before anything listens)
  and the server certificate's expiry (``cert_status``).
- ``admission``: :class:`~.admission.AdmissionLimits` and
  :class:`~.admission.Admission`, so that a flood or a silent peer cannot take
  every connection slot (per-address rate, failures, penalty, slots kept for
  privileged roles).
- ``bind``: ``check_bind``, the secure default that keeps a plain listener on
  loopback unless the operator opts in.
- ``audit``: the hash-chained audit log and the aggregation of refusals.
- ``certs``: the device key, signing requests, installing certificates, a
  bench CA.
- ``config``: ``security_from_config(cfg)``, the ``[security]`` section as TLS
  settings, access policy and audit log.
- ``errors``: ``SecurityConfigError`` (and ``InsecureBindError``).

Nothing here knows a protocol or imports an adapter (``tests/test_layering.py``);
each adapter applies these to its own engine (MMS: ``adapters/mms/``). Nothing is
imported here, so that a plain server never loads ``cryptography``.
"""
