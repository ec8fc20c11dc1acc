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
