"""SunSpec codec: layouts from the shipped definitions, sentinels, scale factors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.sunspec import models as m
from hal.sunspec.device import plan_reads
from hal.sunspec.scan import ModelLocation

COUNTS = {"NCrv": 2, "NPt": 4, "NCrvSet": 1, "NProf": 1, "NStr": 2, "IVLen": 1,
          "NPrt": 1, "NMod": 1, "NCtl": 1}


def test_every_shipped_model_lays_out_and_round_trips():
    ids = m.known_model_ids()
    assert {1, 103, 113, 120, 121, 122, 123, 701, 704, 705} <= set(ids)
    for mid in ids:
        layout = m.lay_out(mid, counts=COUNTS)
        regs = m.encode(layout, {})
        assert regs[0] == mid and regs[1] == layout.length
        decoded = m.decode(mid, 40002, regs)
        # Nothing was set: every point but ID, L and the group counts reads as "no value".
        set_points = {p for p, v in decoded.raw.items() if v is not None}
        assert set_points <= {"ID", "L"} | set(layout.counts), (mid, set_points)


def test_repeating_groups_take_their_count_from_the_count_point():
    layout = m.lay_out(705, counts={"NCrv": 3, "NPt": 4})
    regs = m.encode(layout, {"NCrv": 3, "NPt": 4, "V_SF": -2,
                             "Crv[3].Pt[4].V": 10950, "Crv[3].Pt[4].Var": -4400})
    decoded = m.decode(705, 0, regs)
    assert decoded.values["Crv[3].Pt[4].V"] == pytest.approx(109.5)
    assert "Crv[4].Pt[1].V" not in decoded.values
    assert decoded.layout.length == layout.length


def test_legacy_count_zero_groups_fill_the_model_length():
    one = m.lay_out(126, counts={"curve": 1})
    two_len = one.length + (one.length - sum(
        s.point.size for p, s in one.slots.items() if "." not in p and p not in ("ID", "L")))
    two = m.lay_out(126, length=two_len)
    assert "curve[2].V1" in two.slots and "curve[3].V1" not in two.slots


def test_unimplemented_sentinels_become_no_value():
    layout = m.lay_out(103)
    regs = m.encode(layout, {"W": 1500, "W_SF": 0})
    regs[layout.slot("Hz").offset] = 0xFFFF  # uint16 sentinel
    regs[layout.slot("VAr").offset] = 0x8000  # int16 sentinel
    d = m.decode(103, 0, regs)
    assert d.values["W"] == 1500
    assert d.raw["Hz"] is None and d.values["Hz"] is None
    assert d.raw["VAr"] is None


def test_value_without_implemented_scale_factor_is_no_value():
    layout = m.lay_out(103)
    d = m.decode(103, 0, m.encode(layout, {"W": 1500}))  # W_SF left at 0x8000
    assert d.raw["W"] == 1500 and d.values["W"] is None


@settings(max_examples=200)
@given(raw=st.integers(-32767, 32767), sf=st.integers(-4, 4))
def test_scale_factor_applies_both_ways(raw, sf):
    layout = m.lay_out(103)
    d = m.decode(103, 0, m.encode(layout, {"VAr": raw, "VAr_SF": sf}))
    assert d.values["VAr"] == pytest.approx(raw * 10.0 ** sf)
    slot = layout.slot("VAr")
    assert m.to_raw(d.values["VAr"], slot, sf) == raw


def test_float_models_decode_without_scale_factors():
    layout = m.lay_out(113)
    d = m.decode(113, 0, m.encode(layout, {"W": 1234.5, "Hz": 59.98}))
    assert d.values["W"] == pytest.approx(1234.5)
    assert d.values["Hz"] == pytest.approx(59.98, abs=1e-4)
    assert d.values["VAr"] is None  # NaN is the float sentinel


def test_to_raw_refuses_values_the_register_cannot_hold():
    slot = m.lay_out(123).slot("WMaxLimPct")  # uint16 with WMaxLimPct_SF
    assert m.to_raw(55.5, slot, -1) == 555
    with pytest.raises(ValueError, match="outside the register range"):
        m.to_raw(7000.0, slot, -1)
    with pytest.raises(ValueError, match="scale factor"):
        m.to_raw(50.0, slot, None)


def test_strings_round_trip():
    layout = m.lay_out(1)
    d = m.decode(1, 0, m.encode(layout, {"Mn": "ACME", "SN": "X-1"}))
    assert d.values["Mn"] == "ACME" and d.values["SN"] == "X-1"


def test_length_mismatch_is_reported():
    with pytest.raises(m.ModelDefinitionError, match="L=51"):
        m.lay_out(103, length=51)


def test_unknown_model_has_no_definition():
    with pytest.raises(m.ModelDefinitionError):
        m.model_definition(59999)


def test_reads_coalesce_up_to_125_registers():
    locs = [ModelLocation(1, 40002, 66, True), ModelLocation(103, 40070, 50, True),
            ModelLocation(120, 40122, 26, True), ModelLocation(123, 40250, 24, True)]
    spans = plan_reads(locs)
    assert all(s.count <= 125 for s in spans)
    covered = {a for s in spans for a in range(s.address, s.address + s.count)}
    for loc in locs:
        assert set(range(loc.address, loc.end)) <= covered
    # 40002..40148 is contiguous (146 regs): two reads; 123 stands apart: one more.
    assert len(spans) == 3
