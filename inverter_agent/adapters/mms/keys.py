"""The ``[mms]`` section: this adapter's config keys (no engine imported here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inverter_agent.config import Key, _ident

KEYS: dict[str, Key] = {
    "enabled": Key(bool, True, doc="serve IEC 61850 MMS (on by default)"),
    "host": Key(str, "127.0.0.1", doc="address the MMS server binds"),
    "port": Key(int, None, min=1, max=65535,
                doc="default 3782 with TLS (IEC 62351-3), 102 without"),
    "ied_name": Key(str, "GW", check=_ident),
    "ld_inst": Key(str, "INV1", check=_ident,
                   doc="logical device of the inverter (of the first, with several)"),
    "max_connections": Key(int, 5, min=1, max=5,
                           doc="concurrent MMS associations; the bundled libiec61850 is "
                               "built to accept at most 5 (CONFIG_MAXIMUM_TCP_CLIENT_"
                               "CONNECTIONS), whatever is asked"),
    "libiec61850": Key(str, None, path=True,
                       doc="path of a libiec61850 shared object to serve MMS with (a "
                           "build of the official release, e.g. /usr/local/lib/"
                           "libiec61850.so on armhf); default $INVERTER_AGENT_LIBIEC61850, "
                           "else the one bundled with pyiec61850-ng; version checked at "
                           "start"),
}


def enabled(cfg: Any) -> bool:
    return bool(cfg["mms.enabled"])


def loopback_config(port: int, tls: Mapping[str, str]) -> dict[str, Any]:
    """The keys that enable this adapter on loopback ``port`` (the contract test's)."""
    return {"mms.enabled": True, "mms.host": "127.0.0.1", "mms.port": port}
