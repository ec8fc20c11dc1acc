"""The ``[ieee2030_5]`` section: this adapter's config keys (no engine imported here)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from inverter_agent.config import Key


def _https_url(v: str) -> str | None:

    u = urlparse(v)
    try:
        port_ok = u.port is None or 1 <= u.port <= 65535
    except ValueError:
        port_ok = False
    if u.scheme != "https" or not u.hostname or not port_ok or u.path not in ("", "/"):
        return "https://HOST[:PORT] (IEEE 2030.5 is TLS only)"
    return None


KEYS: dict[str, Key] = {
    "server": Key(str, None, check=_https_url,
                  doc="the utility's IEEE 2030.5 server; leave out to disable the client"),
    "cert": Key(str, None, path=True,
                doc="device certificate (PEM): the LFDI is derived from it"),
    "key": Key(str, None, path=True, doc="device private key (PEM, mode 0600)"),
    "ca": Key(str, None, path=True,
              doc="the utility's CA bundle that signs the server certificate"),
    "check_hostname": Key(bool, True, doc="the server certificate must name the host"),
    "server_2018_compat": Key(bool, True,
                              doc="the server is IEEE 2030.5-2018 (Rule 21 / CSIP): send "
                                  "no 2023 attributes"),
    "max_poll_interval": Key(float, None, min=10.0, max=86400.0,
                             doc="ceiling on the server's poll rates, seconds (commissioning "
                                 "and tests; a server may ask for 900 s); none: obey it"),
    "post_rate": Key(float, 300.0, min=10.0, max=86400.0,
                     doc="seconds between telemetry posts when the server gives no "
                         "postRate (CSIP practice: 300)"),
    "pin": Key(int, None, min=0, max=999999,
               doc="registration PIN the utility gave; checked against the server's"),
    "dcap_path": Key(str, "/dcap", doc="path of the DeviceCapability resource"),
}


def enabled(cfg: Any) -> bool:
    """The client runs when a server is configured."""
    return bool(cfg["ieee2030_5.server"])
