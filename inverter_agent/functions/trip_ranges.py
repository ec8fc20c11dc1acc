"""IEEE 1547-2018 ranges of allowable must-trip settings, by abnormal performance category.

The general settings ranges (:mod:`.ranges`, :func:`settings._check_ride_through`)
only keep a trip table sane. A DER that declares an abnormal performance category
(``nameplate.abnormal_category``) must also keep each must-trip setting within the
range 1547-2018 allows for that category: the Area EPS operator may pick values
inside it, nobody may pick one outside it. :func:`check` holds the voltage and
frequency trip tables to these ranges; the validator calls it, so every path
(profile, persisted file, IEC 61850 write, core command, and any utility source
that ever reaches a trip table) is refused the same way and nothing changes.

Sources of every number (the standard's own text is not public; two independent
public implementations agree on each value used here):

- Voltage, Tables 11 (Category I), 12 (II), 13 (III): ua-kxie/UL1741SB
  ``pyUL1741SB/eut.py`` ``VoltShallTripTable.AOPCatI/II/III`` (min/max of each
  threshold and clearing time); the union of the three agrees with EPRI OpenDER
  ``common_file_format.py`` range warnings ("IEEE 1547-2018 Clause 6.4.1":
  OV2 1.2 pu / 0.16 s fixed, OV1 1.1-1.2 pu / 1-13 s, UV1 0-0.88 pu / 2-50 s,
  UV2 0-0.5 pu / 0.16-21 s).
- Frequency, the 6.5.1 frequency trip table (same for all categories, at 60 Hz):
  OpenDER ``common_file_format.py`` ("IEEE 1547-2018 Clause 6.5.1") and
  ``pyUL1741SB/eut.py`` ``FreqShallTripTable.MaxRange``: OF2 61.8-66 Hz /
  0.16-1000 s, OF1 61.0-66 Hz / 180-1000 s, UF1 50-59 Hz / 180-1000 s,
  UF2 50-57 Hz / 0.16-1000 s.

California Rule 21's own ranges (tariff Tables Hh-1 / Hh-2) are not confirmed
from a citable source, so the ``rule21`` profile declares no category and keeps
the general sanity ranges only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .ranges import check_range, fail
from .ride_through import RideThroughSettings

#: The abnormal performance categories 1547-2018 defines; "" declares none.
CATEGORIES = ("I", "II", "III")

#: The nominal frequency the 1547-2018 frequency trip ranges are stated for.
F_NOM_1547_HZ = 60.0


@dataclass(frozen=True)
class TripRange:
    """Allowed threshold (pu or Hz) and clearing time (s) of one must-trip setting."""

    threshold: tuple[float, float]
    clearing_s: tuple[float, float]


# Tables 11-13 (pyUL1741SB VoltShallTripTable; OpenDER Clause 6.4.1 checks).
_OV2 = TripRange((1.20, 1.20), (0.16, 0.16))  # fixed in every category
_OV1 = TripRange((1.10, 1.20), (1.0, 13.0))  # same in every category
_UV_I_II = {"UV1": TripRange((0.0, 0.88), (2.0, 21.0)),
            "UV2": TripRange((0.0, 0.50), (0.16, 2.0))}

#: Voltage trip ranges by category, region name -> range (over: OV*, under: UV*).
VOLTAGE: dict[str, dict[str, TripRange]] = {
    "I": {"OV2": _OV2, "OV1": _OV1, **_UV_I_II},  # Table 11
    "II": {"OV2": _OV2, "OV1": _OV1, **_UV_I_II},  # Table 12
    "III": {"OV2": _OV2, "OV1": _OV1,  # Table 13
            "UV1": TripRange((0.0, 0.88), (21.0, 50.0)),
            "UV2": TripRange((0.0, 0.50), (2.0, 21.0))},
}

#: Frequency trip ranges at 60 Hz, all categories (6.5.1; OpenDER, pyUL1741SB).
FREQUENCY: dict[str, TripRange] = {
    "OF2": TripRange((61.8, 66.0), (0.16, 1000.0)),
    "OF1": TripRange((61.0, 66.0), (180.0, 1000.0)),
    "UF1": TripRange((50.0, 59.0), (180.0, 1000.0)),
    "UF2": TripRange((50.0, 57.0), (0.16, 1000.0)),
}


def _check_table(path: str, rt: RideThroughSettings, allowed: Mapping[str, TripRange],
                 why: str) -> None:
    """Exactly the table's must-trip settings, each within its range."""
    for side, regions, prefix in (("over", rt.over, "O"), ("under", rt.under, "U")):
        want = sorted(n for n in allowed if n.startswith(prefix))
        have = sorted(r.name for r in regions)
        if have != want:
            fail(f"{path}.{side}", have, f"{why} requires exactly the must-trip settings "
                 f"{', '.join(want)}")
        for i, reg in enumerate(regions):
            r = allowed[reg.name]
            p = f"{path}.{side}[{i}]"
            check_range(f"{p}.threshold", reg.threshold, *r.threshold)
            if reg.clearing_time_s is None:
                fail(f"{p}.clearing_time_s", None, f"{why}: {reg.name} must trip; allowed "
                     f"range [{r.clearing_s[0]:g}, {r.clearing_s[1]:g}]")
            check_range(f"{p}.clearing_time_s", reg.clearing_time_s, *r.clearing_s)


def check(category: str, f_nom_hz: float, voltage: RideThroughSettings,
          frequency: RideThroughSettings) -> None:
    """Raise :class:`~.ranges.SettingsError` unless both trip tables are within the
    1547-2018 ranges for ``category`` ("" = none declared: nothing to check).

    A table switched off (``enabled`` False) is checked all the same: its values
    are still what the device is given when it is switched back on.
    """
    if not category:
        return
    if category not in CATEGORIES:
        fail("nameplate.abnormal_category", category,
             f"one of {', '.join(CATEGORIES)}, or empty for none")
    if f_nom_hz != F_NOM_1547_HZ:
        fail("nameplate.f_nom_hz", f_nom_hz, "IEEE 1547-2018 trip ranges are for 60 Hz; "
             "clear nameplate.abnormal_category for another nominal frequency")
    _check_table("voltage_ride_through", voltage, VOLTAGE[category],
                 f"1547-2018 Category {category} (Tables 11-13)")
    _check_table("frequency_ride_through", frequency, FREQUENCY,
                 "1547-2018 6.5.1 frequency trip table")
