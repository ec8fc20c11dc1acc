"""The ``[ieee2030_5]`` section: this adapter's config keys (no engine imported here)."""

from __future__ import annotations

from collections.abc import Mapping
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


def _nmi(v: str) -> str | None:
    return None if v.isalnum() and len(v) <= 32 else "letters and digits, at most 32"


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
    "connection_point_id": Key(str, None, check=_nmi,
                               doc="CSIP-AUS: the connection point's id (the NMI), PUT "
                                   "where the server's EndDevice links a ConnectionPoint"),
    "profile": Key(str, "auto", choices=("csip", "csip-aus", "auto"),
                   doc="CSIP (US, Rule 21) or CSIP-AUS (dynamic operating envelopes); "
                       "auto: CSIP-AUS if the server's DeviceCapability declares its "
                       "namespace"),
}


def enabled(cfg: Any) -> bool:
    """The client runs when a server is configured."""
    return bool(cfg["ieee2030_5.server"])


def loopback_config(port: int, tls: Mapping[str, str]) -> dict[str, Any]:
    """The keys that enable this adapter against a server on loopback ``port``, with the
    device certificate, key and CA in ``tls`` (the contract test's)."""
    return {"ieee2030_5.server": f"https://127.0.0.1:{port}", "ieee2030_5.cert": tls["cert"],
            "ieee2030_5.key": tls["key"], "ieee2030_5.ca": tls["ca"]}
