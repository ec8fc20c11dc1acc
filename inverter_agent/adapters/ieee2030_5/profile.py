"""The CSIP-AUS profile: which one the server speaks, and the DOE modes this gateway applies.

CSIP-AUS (SA TS 5573) extends IEEE 2030.5 with dynamic operating envelopes
in watts (``csipaus:opModExpLimW`` / ``opModImpLimW`` / ``opModGenLimW`` /
``opModLoadLimW``) and requires ``csipaus:doeModesSupported`` in
DERCapability (a server refuses one without it) and ``doeModesEnabled`` in
DERSettings. ``[ieee2030_5] profile`` chooses: ``csip`` (US, Rule 21),
``csip-aus``, or ``auto``: CSIP-AUS when the server's DeviceCapability
declares a csipaus namespace.

The namespace itself differs between CSIP-AUS versions
(``https://csipaus.org/ns`` up to 1.2, ``https://csipaus.org/ns/v1.3`` in
1.3); py20305 writes the first only, and a 1.3 server does not see an
element in it (its ``doeModesSupported`` "is missing": HTTP 400). So the
namespace is taken from the server's own DeviceCapability and what the
gateway sends is put in it (:func:`in_namespace`).

DOE modes (DOEControlType bits): 0 export limit, 1 import limit,
2 generation limit, 3 load limit. What this gateway applies, and so
advertises in doeModesSupported and doeModesEnabled, is :data:`DOE_APPLIED`:
the generation limit (onto the core's active-power limit) and the export
limit, applied without a site meter as a generation limit: export =
generation - site load <= generation <= limit, so export never exceeds the
limit (it errs on the safe side: local load is not credited). The import and
load limits are not applied (a PV gateway without a site meter or a load it
controls has nothing to hold them with) and are refused with Response 252.
"""

from __future__ import annotations

import re
from typing import Any

#: py20305's csipaus namespace (CSIP-AUS up to 1.2), and CSIP-AUS 1.3's.
NS_PY20305 = "https://csipaus.org/ns"
NS_V1_3 = "https://csipaus.org/ns/v1.3"
#: DOEControlType bits.
DOE_EXPORT, DOE_IMPORT, DOE_GENERATION, DOE_LOAD = 1 << 0, 1 << 1, 1 << 2, 1 << 3
DOE_APPLIED = DOE_EXPORT | DOE_GENERATION
#: VPPControlType bits (CSIP-AUS 1.3): 0 opModStorageTargetW, applied where the core
#: commands a battery (translate.Storage), advertised in vppModesSupported / Enabled.
VPP_STORAGE_TARGET = 1 << 0

_NS_DECL = re.compile(rb'xmlns(?::\w+)?="(https?://csipaus\.org/ns[^"]*)"')


def csipaus_namespace(dcap_body: bytes) -> str | None:
    """The csipaus namespace a server's DeviceCapability declares, or None (plain CSIP)."""
    m = _NS_DECL.search(dcap_body or b"")
    return m.group(1).decode() if m else None


def choose(configured: str, dcap_body: bytes) -> tuple[bool, str | None]:
    """(CSIP-AUS?, its namespace) for ``[ieee2030_5] profile`` and the server's dcap."""
    ns = csipaus_namespace(dcap_body)
    if configured == "csip":
        return False, None
    if configured == "csip-aus":
        return True, ns or NS_V1_3
    return ns is not None, ns


def in_namespace(body: bytes, ns: str | None) -> bytes:
    """``body`` as py20305 wrote it, its csipaus elements in the server's namespace."""
    if not ns or ns == NS_PY20305:
        return body
    return body.replace(f'"{NS_PY20305}"'.encode(), f'"{ns}"'.encode())


def aus_modes(site: Any) -> dict[str, int]:
    """The CSIP-AUS modes registration states (DERCapability and DERSettings): the DOE
    limits applied, and opModStorageTargetW where the core commands a battery (``site``:
    the adapter's SiteView)."""
    return {"DoeModesSupported": DOE_APPLIED, "DoeModesEnabled": DOE_APPLIED,
            "VppModes": VPP_STORAGE_TARGET if site.storage_understood()[0] else 0}


def with_vpp_modes(body: bytes, bits: int | None, element: str) -> bytes:
    """``body`` (a DERCapability or DERSettings py20305 wrote with its doeModes element)
    with ``csipaus:<element>`` (vppModesSupported / vppModesEnabled: VPPControlType, one
    hex octet) after the doeModes one, where ``bits`` is set; py20305 writes no VPP modes.
    """
    if not bits:
        return body
    doe = b"doeModesSupported" if element == "vppModesSupported" else b"doeModesEnabled"
    close = b"</csipaus:" + doe + b">"
    if close not in body:
        return body
    vpp = f"<csipaus:{element}>{bits & 0xFF:02X}</csipaus:{element}>".encode()
    return body.replace(close, close + vpp, 1)
