"""Var commands go out in the base the device's control is set to (hal.inverter).

The HAL's ``VArPct`` is percent of the device's var maximum in the commanded
direction (hal.ratings precedence); 123 ``VArPct_Mod`` and 704 ``VarSetMod``
decide what the device reads it as.
"""

from __future__ import annotations

import math

import pytest

from hal.inverter import UnsupportedControl, _control_points
from hal.sunspec import models as sm


def model(mid: int, **values) -> sm.DecodedModel:
    layout = sm.lay_out(mid)
    raw: dict = {}
    sfs = {k: v for k, v in values.items() if k.endswith("_SF")}
    raw.update(sfs)
    for path, v in values.items():
        if path in sfs:
            continue
        slot = layout.slot(path)
        raw[path] = v if slot.point.type.kind == "float" or slot.point.sf is None else \
            sm.to_raw(v, slot, sm.scale_exponent(slot, raw))
    regs = sm.encode(layout, raw)
    return sm.decode(mid, 40002, regs)


RATINGS = model(121, WMax=5000, VAMax=5000, VArMaxQ1=3000, VArMaxQ4=-2000, WMax_SF=0,
                VAMax_SF=0, VArMax_SF=0)


@pytest.mark.parametrize(("mode", "pct", "points"), [
    (None, 50.0, {"VArMaxPct": 50.0, "VArPct_Mod": 2}),
    (0, 50.0, {"VArMaxPct": 50.0, "VArPct_Mod": 2}),
    (2, -50.0, {"VArMaxPct": -50.0}),
    (1, 50.0, {"VArWMaxPct": 30.0}),  # 1500 var of 5000 W
    (1, -50.0, {"VArWMaxPct": -20.0}),  # absorbing max 2000 var
])
def test_123_var_percent_in_the_device_base(mode, pct, points):
    c123 = model(123, VArPct_Mod=mode, VArPct_SF=-1) if mode is not None else model(123)
    got = _control_points(123, "VArPct", pct, {121: RATINGS, 123: c123})
    assert got.keys() == points.keys()
    assert all(math.isclose(got[k], v) for k, v in points.items())


def test_123_percent_of_available_vars_uses_122():
    c123 = model(123, VArPct_Mod=3, VArPct_SF=-1)
    s122 = model(122, VArAval=2500, VArAval_SF=0)
    got = _control_points(123, "VArPct", 50.0, {121: RATINGS, 122: s122, 123: c123})
    assert math.isclose(got["VArAvalPct"], 60.0)  # 1500 of 2500 available
    with pytest.raises(UnsupportedControl, match="VArAval"):
        _control_points(123, "VArPct", 50.0, {121: RATINGS, 123: c123})


@pytest.mark.parametrize(("mode", "key", "value"), [
    (None, "VarSetPct", 50.0), (1, "VarSetPct", 50.0), (0, "VarSetPct", 30.0),
    (3, "VarSetPct", 30.0), (4, "VarSet", 1500.0)])
def test_704_var_setpoint_in_the_device_base(mode, key, value):
    c704 = model(704, VarSetMod=mode) if mode is not None else model(704)
    got = _control_points(704, "VArPct", 50.0, {121: RATINGS, 704: c704})
    assert math.isclose(got[key], value)
    if mode is None:
        assert got["VarSetMod"] == 1


def test_an_unknown_var_maximum_is_refused_not_assumed():
    c123 = model(123, VArPct_Mod=1, VArPct_SF=-1)
    with pytest.raises(UnsupportedControl, match="var maximum unknown"):
        _control_points(123, "VArPct", 50.0, {123: c123})
    c704 = model(704, VarSetMod=2)
    with pytest.raises(UnsupportedControl):
        _control_points(704, "VArPct", 50.0, {121: RATINGS, 704: c704})


@pytest.mark.parametrize(("mid", "mode", "pct"), [
    (123, 1, 50.0), (123, 1, -50.0), (123, 2, 40.0), (704, 0, 50.0), (704, 3, -50.0),
    (704, 4, 50.0), (704, 1, 40.0)])
def test_the_var_setpoint_reads_back_as_it_was_written(mid, mode, pct):
    """Read-back in the written meaning: a device in another base is not rewritten every
    cycle as if it had lost the setpoint (issue 22: the writes also re-arm timers)."""
    from hal.inverter import _var_pct_read
    from hal.reading import GOOD, Reading

    extra = {"VArPct_SF": -1} if mid == 123 else {"VarSetPct_SF": -1, "VarSet_SF": 0}
    mode_key = "VArPct_Mod" if mid == 123 else "VarSetMod"
    ctl = model(mid, **{mode_key: mode}, **extra)
    pts = _control_points(mid, "VArPct", pct, {121: RATINGS, mid: ctl})
    written = model(mid, **{mode_key: mode}, **extra, **{k: v for k, v in pts.items()
                                                         if k != mode_key})
    plain = written.values.get("VArMaxPct" if mid == 123 else "VarSetPct")
    got = _var_pct_read({121: RATINGS, mid: written}, Reading(plain, GOOD, 0.0), 0.0)
    assert got.quality.good and math.isclose(got.value, pct, abs_tol=0.2)
