"""The device layer on an explicit clock: model 123 window, ramp and reversion timers."""

from __future__ import annotations

import pytest

from simulator.device import Inverter
from simulator.plant import Grid, PlantParams, Ratings
from simulator.registers import RegisterImage

R = Ratings()
GRID = Grid.nominal(R)


def make(seed: int = 0) -> Inverter:
    img = RegisterImage(40000, [1, 103, 120, 121, 122, 123], R, unit_id=1)
    inv = Inverter(img, PlantParams(ratings=R, tau_s=0.1), seed=seed)
    inv.settle(0.0, GRID)
    return inv


def write(inv: Inverter, now: float, **points: float) -> None:
    """Write engineering values as a master would (through the checked Modbus path)."""
    img = inv.image
    pm = img.find(123)
    assert pm is not None
    for path, value in points.items():
        slot = pm.layout.slot(path)
        exp = img._exponent(pm, slot) or 0
        regs = slot.point.type.encode(round(value / 10.0 ** exp), slot.point.size)
        inv.on_write(now, img.write(pm.address + slot.offset, regs))


def run(inv: Inverter, t0: float, t1: float, dt: float = 0.05) -> float:
    t = t0
    while t < t1 - 1e-9:
        t += dt
        inv.step(t, dt, GRID)
    return t


def test_window_delays_the_command_randomly_within_winTms():
    inv = make(seed=3)
    write(inv, 0.0, WMaxLimPct_WinTms=10, WMaxLimPct=50.0, WMaxLim_Ena=1)
    pending = inv._g123["wmax"].pending_at
    assert pending is not None and 1.0 <= pending <= 10.0  # seed 3: 2.38 s
    t = run(inv, 0.0, pending - 0.5)
    assert inv.commands.w_limit is None and inv.state.w > 3800
    run(inv, t, pending + 2.0)
    assert inv.commands.w_limit == pytest.approx(2500)
    assert inv.state.w == pytest.approx(2500, abs=5)


def test_ramp_time_moves_the_limit_linearly():
    inv = make()
    write(inv, 0.0, WMaxLimPct_RmpTms=10, WMaxLimPct=20.0, WMaxLim_Ena=1)
    run(inv, 0.0, 5.0)
    # halfway from 100 % to 20 %: 60 % of 5000 W
    assert inv.commands.w_limit == pytest.approx(3000, abs=30)
    run(inv, 5.0, 11.0)
    assert inv.commands.w_limit == pytest.approx(1000)


def test_revert_timers_restore_defaults():
    inv = make()
    write(inv, 0.0, Conn_RvrtTms=3, Conn=0)
    run(inv, 0.0, 2.0)
    assert inv.state.w == 0 and inv.image.get(123, "Conn") == 0
    run(inv, 2.0, 4.0)
    assert inv.image.get(123, "Conn") == 1 and inv.state.w > 3000
    write(inv, 4.0, OutPFSet_RvrtTms=2, OutPFSet=0.9, OutPFSet_Ena=1)
    run(inv, 4.0, 5.0)
    assert inv.commands.pf == pytest.approx(0.9) and inv.state.var > 1000
    run(inv, 5.0, 7.0)
    assert inv.commands.pf is None and inv.image.get(123, "OutPFSet_Ena") == 0


def make_1547() -> Inverter:
    img = RegisterImage(40000, [1, 701, 702, 703, 704], R, unit_id=1)
    inv = Inverter(img, PlantParams(ratings=R, tau_s=0.1))
    inv.settle(0.0, GRID)
    return inv


def write_model(inv: Inverter, model: int, now: float, **points: float) -> None:
    """One write-multiple transaction per point, in the order given, as a master does."""
    img = inv.image
    pm = img.find(model)
    assert pm is not None
    for path, value in points.items():
        path = path.replace("__", ".")
        slot = pm.layout.slot(path)
        exp = img._exponent(pm, slot) or 0
        regs = slot.point.type.encode(round(value / 10.0 ** exp), slot.point.size)
        inv.on_write(now, img.write(pm.address + slot.offset, regs))


def test_123_a_rewrite_restarts_the_timer_and_silence_reverts_the_var_setpoint():
    inv = make()
    write(inv, 0.0, WMaxLimPct_RvrtTms=3, VArPct_RvrtTms=3, WMaxLimPct=20.0, WMaxLim_Ena=1,
          VArMaxPct=50.0, VArPct_Ena=1)
    run(inv, 0.0, 2.0)
    write(inv, 2.0, WMaxLimPct=20.0, VArPct_Ena=1)  # the gateway's refresh
    run(inv, 2.0, 4.5)  # past the first deadline (3 s), within the second (5 s)
    assert inv.commands.w_limit == pytest.approx(1000) and inv.commands.var is not None
    run(inv, 4.5, 5.5)
    assert inv.image.get(123, "WMaxLim_Ena") == 0 and inv.image.get(123, "VArPct_Ena") == 0
    assert inv.commands.w_limit is None and inv.commands.var is None
    run(inv, 5.5, 7.0)
    # its own settings: all it has available
    assert inv.state.w == pytest.approx(inv.state.w_avail, rel=0.01) and abs(inv.state.var) < 50


def test_123_without_a_revert_time_a_command_stays():
    inv = make()
    write(inv, 0.0, WMaxLimPct=20.0, WMaxLim_Ena=1)
    run(inv, 0.0, 30.0, dt=0.5)
    assert inv.commands.w_limit == pytest.approx(1000)


@pytest.mark.parametrize("group,points,check", [
    ("WMaxLimPct", {"WMaxLimPct": 20.0, "WMaxLimPctEna": 1},
     lambda c: c.w_limit is not None and abs(c.w_limit - 1000) < 1),
    ("VarSet", {"VarSetMod": 1, "VarSetPct": 50.0, "VarSetEna": 1},
     lambda c: c.var is not None and c.var > 500),
    ("PFWInj", {"PFWInj__PF": 0.9, "PFWInj__Ext": 1, "PFWInjEna": 1},
     lambda c: c.pf == pytest.approx(-0.9)),
])
def test_704_a_control_reverts_to_its_reversion_settings_when_not_rewritten(
        group, points, check):
    inv = make_1547()
    write_model(inv, 704, 0.0, **{f"{group}RvrtTms": 3}, **points)
    run(inv, 0.0, 2.0)
    assert check(inv.commands)
    assert inv.image.get(704, f"{group}RvrtRem") in (1, 2)
    write_model(inv, 704, 2.0, **points)  # the gateway's refresh restarts the timer
    run(inv, 2.0, 4.5)
    assert check(inv.commands)
    run(inv, 4.5, 5.5)
    assert inv.image.get(704, f"{group}Ena") == 0  # EnaRvrt: the device's own setting
    assert inv.image.get(704, f"{group}RvrtRem") == 0
    assert not check(inv.commands)
