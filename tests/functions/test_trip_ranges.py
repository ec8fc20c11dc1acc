"""Must-trip settings held to the IEEE 1547-2018 ranges of the declared abnormal category.

Every edge of every row of Tables 11-13 and of the frequency trip table: a value
at (or, where the neighbouring setting forbids the edge itself, just inside) the
edge is accepted, one just outside it is refused by the one validator, naming
the setting.
"""

from __future__ import annotations

import dataclasses

import pytest

from inverter_agent.functions import ride_through
from inverter_agent.functions.profiles import PROFILES, get_profile
from inverter_agent.functions.settings import (
    Settings,
    SettingsError,
    settings_from_dict,
    settings_to_dict,
    validate,
)
from inverter_agent.functions.trip_ranges import FREQUENCY, VOLTAGE

# The ranges, written out again from the sources (not read from the module under
# test): name -> ((threshold lo, hi), (clearing lo, hi)). pyUL1741SB eut.py
# VoltShallTripTable (Tables 11-13) / FreqShallTripTable; OpenDER common_file_format.py.
_OV = {"OV2": ((1.20, 1.20), (0.16, 0.16)), "OV1": ((1.10, 1.20), (1.0, 13.0))}
EXPECTED_V = {
    "I": {**_OV, "UV1": ((0.0, 0.88), (2.0, 21.0)), "UV2": ((0.0, 0.50), (0.16, 2.0))},
    "II": {**_OV, "UV1": ((0.0, 0.88), (2.0, 21.0)), "UV2": ((0.0, 0.50), (0.16, 2.0))},
    "III": {**_OV, "UV1": ((0.0, 0.88), (21.0, 50.0)), "UV2": ((0.0, 0.50), (2.0, 21.0))},
}
EXPECTED_F = {"OF2": ((61.8, 66.0), (0.16, 1000.0)), "OF1": ((61.0, 66.0), (180.0, 1000.0)),
              "UF1": ((50.0, 59.0), (180.0, 1000.0)), "UF2": ((50.0, 57.0), (0.16, 1000.0))}


def _profile(category: str) -> Settings:
    if category == "I":
        return get_profile("ieee1547-2018-cat-a")
    s = get_profile("ieee1547-2018-cat-b")
    if category == "III":
        s = dataclasses.replace(
            s, nameplate=dataclasses.replace(s.nameplate, abnormal_category="III"),
            voltage_ride_through=ride_through.ieee1547_voltage_table("III"))
    return s


def _set(s: Settings, region: str, **changes: object) -> Settings:
    """``s`` with ``region`` (in either trip table) changed."""
    table = "voltage_ride_through" if region[1] == "V" else "frequency_ride_through"
    rt = getattr(s, table)
    side = "over" if region[0] == "O" else "under"
    regions = tuple(dataclasses.replace(r, **changes) if r.name == region else r
                    for r in getattr(rt, side))
    return dataclasses.replace(s, **{table: dataclasses.replace(rt, **{side: regions})})


# The other setting on the same side, moved to its far edge so that the tested
# threshold can reach its own edge (thresholds must strictly ascend / descend).
PARTNER = {"OV1": ("OV2", 1.20), "OV2": ("OV1", 1.10), "UV1": ("UV2", 0.0),
           "UV2": ("UV1", 0.88), "OF1": ("OF2", 66.0), "OF2": ("OF1", 61.0),
           "UF1": ("UF2", 50.0), "UF2": ("UF1", 59.0)}
# Edges no table can reach (the partner holds it): tested just inside.
JUST_INSIDE = {("OV1", "threshold", 1.20): 1.199, ("UV1", "threshold", 0.0): 0.001,
               ("OF1", "threshold", 66.0): 65.99, ("UF1", "threshold", 50.0): 50.01}
STEP = 0.01  # pu, Hz or s beyond an edge


def _cases():
    rows = [(cat, name, r) for cat, table in EXPECTED_V.items() for name, r in table.items()]
    rows += [(cat, name, r) for cat in EXPECTED_V for name, r in EXPECTED_F.items()]
    for cat, name, (threshold, clearing) in rows:
        for field, (lo, hi) in (("threshold", threshold), ("clearing_time_s", clearing)):
            for edge, outside in ((lo, lo - STEP), (hi, hi + STEP)):
                inside = JUST_INSIDE.get((name, field, edge), edge)
                # Beyond such an edge the order of the thresholds already refuses it.
                said = "threshold" if (name, field, edge) in JUST_INSIDE \
                    else rf"\.{field} = {outside!r}"
                yield pytest.param(cat, name, field, inside, outside, said,
                                   id=f"{cat}-{name}-{field}-{edge:g}")


@pytest.mark.parametrize(("category", "name", "field", "inside", "outside", "said"),
                         list(_cases()))
def test_each_edge_inside_accepted_outside_refused(category, name, field, inside, outside,
                                                   said):
    s = _profile(category)
    if field == "threshold":
        partner, at = PARTNER[name]
        s = _set(s, partner, threshold=at)
    validate(_set(s, name, **{field: inside}))
    with pytest.raises(SettingsError, match=said):
        validate(_set(s, name, **{field: outside}))


def test_the_module_tables_are_the_ones_the_sources_give():
    got_v = {c: {n: (r.threshold, r.clearing_s) for n, r in t.items()}
             for c, t in VOLTAGE.items()}
    assert got_v == EXPECTED_V
    assert {n: (r.threshold, r.clearing_s) for n, r in FREQUENCY.items()} == EXPECTED_F


@pytest.mark.parametrize("category", ["I", "II", "III"])
def test_category_defaults_pass(category):
    validate(_profile(category))


def test_every_profile_passes_and_declares_its_category():
    cats = {name: get_profile(name).nameplate.abnormal_category for name in PROFILES}
    assert cats == {"rule21": "", "ieee1547-2018-cat-a": "I", "ieee1547-2018-cat-b": "II"}


def test_cat_ii_uv1_clearing_time_of_cat_iii_is_refused():
    """Category II may not borrow Category III's longer undervoltage clearing time."""
    s = _profile("II")
    with pytest.raises(SettingsError, match=r"under\[0\]\.clearing_time_s = 30\.0"):
        validate(_set(s, "UV1", clearing_time_s=30.0))
    validate(_set(_profile("III"), "UV1", clearing_time_s=30.0))


def test_a_must_trip_setting_cannot_be_removed_or_left_without_clearing_time():
    s = _profile("II")
    rt = s.voltage_ride_through
    without_ov2 = dataclasses.replace(
        s, voltage_ride_through=dataclasses.replace(rt, over=rt.over[:1]))
    with pytest.raises(SettingsError, match=r"voltage_ride_through\.over = \['OV1'\]"):
        validate(without_ov2)
    with pytest.raises(SettingsError, match=r"over\[0\]\.clearing_time_s = None"):
        validate(_set(s, "OV1", clearing_time_s=None,
                      mode=ride_through.RegionMode.PERMISSIVE_OPERATION))
    renamed = _set(s, "OF1", name="HF1")
    with pytest.raises(SettingsError, match=r"frequency_ride_through\.over"):
        validate(renamed)


def test_a_disabled_table_is_still_held_to_the_ranges():
    s = _set(_profile("II"), "OV1", clearing_time_s=20.0)
    off = dataclasses.replace(
        s, voltage_ride_through=dataclasses.replace(s.voltage_ride_through, enabled=False))
    with pytest.raises(SettingsError, match=r"over\[0\]\.clearing_time_s = 20\.0"):
        validate(off)


def test_unknown_category_and_non_60_hz_are_refused():
    s = _profile("II")
    with pytest.raises(SettingsError, match=r"nameplate\.abnormal_category = 'IV'"):
        validate(dataclasses.replace(
            s, nameplate=dataclasses.replace(s.nameplate, abnormal_category="IV")))
    # The 60 Hz table moved to 50 Hz (sane there), under a 1547 category: refused.
    rt = s.frequency_ride_through
    at_50 = dataclasses.replace(
        rt, over=tuple(dataclasses.replace(r, threshold=r.threshold - 10.0) for r in rt.over),
        under=tuple(dataclasses.replace(r, threshold=r.threshold - 10.0) for r in rt.under))
    s50 = dataclasses.replace(s, nameplate=dataclasses.replace(s.nameplate, f_nom_hz=50.0),
                              frequency_ride_through=at_50,
                              enter_service=dataclasses.replace(
                                  s.enter_service, f_low_hz=49.5, f_high_hz=50.1))
    with pytest.raises(SettingsError, match=r"nameplate\.f_nom_hz = 50\.0"):
        validate(s50)


def test_the_category_cannot_be_changed_over_a_profile():
    """A persisted file or partial update may not loosen the ranges by changing or
    clearing the category the profile fixes."""
    base = _profile("II")
    for cat in ("", "III"):
        with pytest.raises(SettingsError, match=r"nameplate\.abnormal_category"):
            settings_from_dict({"nameplate": {"abnormal_category": cat}}, base=base)
    d = settings_to_dict(base)
    d["voltage_ride_through"]["under"][0]["clearing_time_s"] = 40.0
    with pytest.raises(SettingsError, match=r"under\[0\]\.clearing_time_s = 40\.0"):
        settings_from_dict(d, base=base)
    assert settings_from_dict(settings_to_dict(base), base=base) == base
