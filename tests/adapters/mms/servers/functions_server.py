"""Serve the function model with a real SettingsService, for tests and benchmarks.

``python -m tests.adapters.mms.servers.functions_server --state-dir DIR --port 10102``
serves :func:`~inverter_agent.adapters.mms.functions_model.functions_model_spec` bound
(:func:`~inverter_agent.adapters.mms.binding.attach_functions`) to a ``SettingsService``
persisting to ``DIR/settings.json`` (profile ``--profile``, default rule21).
Clients must run in another process (a SWIG client holds the GIL; see
``client``), so tests drive this one over stdin/stdout, one JSON line each way:

* ``{"cmd": "publish", "points": {...}}`` as ``demo_server`` (HAL readings)
* ``{"cmd": "status", "view": {...}}`` -> publish a ``status_view()`` dict
* ``{"cmd": "persisted"}`` / ``{"cmd": "effective"}`` / ``{"cmd": "temporary"}``
  -> ``{"settings": ...}``
* ``{"cmd": "tick"}`` -> ``{"reverted": bool}`` (``service.tick()``)
* ``{"cmd": "clients"}`` -> ``{"clients": n}``
* ``{"cmd": "stop"}`` -> ``{"ok": true}`` and exit.

Security options (``--tls-cert --tls-key --tls-ca --tls-crl --tls-allow``,
``--access POLICY.json``, ``--audit-dir``, ``--idle-timeout``,
``--allow-insecure``) map onto :class:`~inverter_agent.security.tls.TlsSettings`,
:class:`~inverter_agent.security.access.AccessPolicy` and the ``MmsServer``
keyword arguments the same way the agent's config does.

``--animate HZ`` publishes a demo snapshot (TotW changing, t = now) HZ times a
second, for report latency measurements. The first line printed is
``{"ready": <port>}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from inverter_agent.adapters.mms.binding import FunctionBinding, attach_functions
from inverter_agent.adapters.mms.der_model import DEFAULT_IED_NAME, DEFAULT_LD_INST
from inverter_agent.adapters.mms.functions_model import functions_model_spec
from inverter_agent.adapters.mms.hardening import route_native_output
from inverter_agent.adapters.mms.security import check_bind
from inverter_agent.adapters.mms.server import MmsServer
from inverter_agent.core.api import Commands
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.security.access import AccessPolicy
from inverter_agent.security.audit import AuditLog
from inverter_agent.security.tls import TlsSettings
from tests.adapters.mms.servers.demo_server import run_until_stopped, serve_commands

log = logging.getLogger(__name__)


def _serve(server: MmsServer, binding: FunctionBinding, service: SettingsService) -> None:
    def status(cmd: dict[str, Any]) -> dict[str, Any]:
        binding.publish_status(cmd["view"])
        return {"ok": True}

    def tick(_cmd: dict[str, Any]) -> dict[str, Any]:
        reverted = service.tick()
        binding.refresh_settings()
        return {"reverted": reverted}

    serve_commands(server, {
        "status": status,
        "persisted": lambda cmd: {"settings": service.persisted_dict()},
        "effective": lambda cmd: {"settings": service.effective_dict()},
        "temporary": lambda cmd: {"settings": service.temporary()},
        "tick": tick,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10102)
    parser.add_argument("--ied", default=DEFAULT_IED_NAME)
    parser.add_argument("--ld", default=DEFAULT_LD_INST)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--profile", default="rule21")
    parser.add_argument("--revert-after", type=float, default=300.0)
    parser.add_argument("--max-connections", type=int, default=5)
    parser.add_argument("--animate", type=float, default=0.0, metavar="HZ")
    parser.add_argument("--commands", action="store_true",
                        help="read JSON commands on stdin (stop at end of input)")
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--log-level", default="WARNING")
    security = parser.add_argument_group("security (see inverter_agent.security)")
    security.add_argument("--tls-cert", help="server certificate (PEM); enables TLS")
    security.add_argument("--tls-key", help="server key (PEM)")
    security.add_argument("--tls-ca", action="append", default=[], help="CA bundle (repeatable)")
    security.add_argument("--tls-crl", action="append", default=[], help="CRL (repeatable)")
    security.add_argument("--tls-allow", action="append", default=None,
                          help="only these client certificates (repeatable)")
    security.add_argument("--access", help="JSON file: AccessPolicy.from_config section")
    security.add_argument("--audit-dir", help="folder of the hash-chained audit log")
    security.add_argument("--audit-bytes", type=int, default=4 << 20,
                          help="size of one audit file before rotation ([security] audit_bytes)")
    security.add_argument("--idle-timeout", type=float, default=None, metavar="S")
    security.add_argument("--allow-insecure", action="store_true",
                          help="allow plain MMS on a non-loopback address")
    args = parser.parse_args(argv)
    # libiec61850 prints debug lines (e.g. "ISO_SERVER ... Connection removed" when a
    # connection is aborted) on C stdout: keep the JSON protocol on a private copy
    # of stdout and send the library's fd 1 to stderr.
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = protocol
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    route_native_output()  # the library's own prints: into the log, at DEBUG

    service = SettingsService(SettingsStore(args.state_dir, args.profile),
                              EventLog(args.state_dir), revert_after_s=args.revert_after)
    tls = None
    if args.tls_cert:
        tls = TlsSettings(args.tls_cert, args.tls_key, tuple(args.tls_ca), tuple(args.tls_crl),
                          tuple(args.tls_allow) if args.tls_allow else None)
    access = None
    if args.access:
        with open(args.access, encoding="utf-8") as fh:
            access = AccessPolicy.from_config(json.load(fh))
    check_bind(args.host, tls is not None, args.allow_insecure)
    server = MmsServer(functions_model_spec(args.ld), host=args.host, port=args.port,
                       ied_name=args.ied, max_connections=args.max_connections, tls=tls,
                       access=access, audit=AuditLog(args.audit_dir, max_bytes=args.audit_bytes)
                       if args.audit_dir else None,
                       idle_timeout_s=args.idle_timeout)
    # the core's command port: validated, persisted and audited by the core
    binding = attach_functions(server, Commands(args.ld, service, server.audit), None,
                               ld_inst=args.ld)
    server.start()
    try:
        run_until_stopped(server, animate_hz=args.animate,
                          commands=(lambda: _serve(server, binding, service))
                          if args.commands else None, seconds=args.seconds)
    finally:
        binding.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
