"""The ``[dnp3]`` section: this adapter's config keys (no engine imported here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inverter_agent.config import Key, _str_list

#: DNP3 link addresses 0xFFF0-0xFFFF are reserved (broadcast, self-address).
MAX_LINK_ADDRESS = 0xFFEF

KEYS: dict[str, Key] = {
    "enabled": Key(bool, False, doc="serve DNP3 (IEEE 1815.2 outstation); off by default"),
    "host": Key(str, "127.0.0.1",
                doc="address the outstation listens on; plain DNP3 only on loopback unless "
                    "security.allow_insecure_bind"),
    "port": Key(int, 20000, min=1, max=65535, doc="TCP port (IANA DNP3: 20000)"),
    "outstation_address": Key(int, 1024, min=0, max=MAX_LINK_ADDRESS,
                              doc="this outstation's link address"),
    "master_address": Key(int, 1, min=0, max=MAX_LINK_ADDRESS,
                          doc="the master's link address; frames from any other are dropped"),
    "unsolicited": Key(bool, False,
                       doc="allow unsolicited responses (sent only once the master enables "
                           "them for a class)"),
    "event_buffer": Key(int, 2000, min=16, max=100000,
                        doc="events held per class before the oldest is lost (overflow "
                            "reported in IIN2.3)"),
    "tls_cert": Key(str, None, path=True,
                    doc="outstation certificate (PEM); default security.tls_cert"),
    "tls_key": Key(str, None, path=True, doc="its private key (PEM); default security.tls_key"),
    "tls_ca": Key(str, None, path=True, doc="CA bundle that signs master certificates; default "
                                 "security.tls_ca"),
    "tls_allow": Key(list, [], check=_str_list,
                     doc="master certificates allowed: subject names or sha256:<hex> "
                         "fingerprints (required with TLS)"),
    "idle_timeout": Key(float, 300.0, min=5.0, max=86400.0,
                        doc="seconds of master silence before its connection is closed"),
    "point_map": Key(str, None,
                     doc="JSON point map to serve instead of the built-in AN2018-001 one "
                         "(same rows as inverter_agent/adapters/dnp3/points.py)"),
}


def enabled(cfg: Any) -> bool:
    return bool(cfg["dnp3.enabled"])


def loopback_config(port: int, tls: Mapping[str, str]) -> dict[str, Any]:
    """The keys that enable this adapter on loopback ``port`` (the contract test's)."""
    return {"dnp3.enabled": True, "dnp3.host": "127.0.0.1", "dnp3.port": port}
