"""Storage over DNP3 (issue 20): the simulated 1547 hybrid with 713 / 802 / 124 (its own
process) -> the gateway (App: HAL, core, DNP3 adapter) -> dnp3py's master, and
yadnp3's (opendnp3) for the SoC and a discharge.

Shown: the AN2018-001 storage points (capacity, charging rating, SoC, reserve, battery
power, charging state) equal the device's within 1 %; the charge / discharge mode
(AO93 target in % of the maximum active power, BO18 enable) charges and discharges the
battery through the core's set active power within 10 s; a target beyond the battery's
discharge rate is limited to it, one beyond the type is refused OUT_OF_RANGE; a
discharge stops at the reserve set on AO100; switching the mode off releases the
battery. On a PV-only inverter the mode is refused NOT_SUPPORTED and the storage points
are OFFLINE.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from simulator import wait_until
from simulator.profile import PROFILE_DIR

from .conftest import (
    NOT_SUPPORTED,
    ONLINE,
    OUT_OF_RANGE,
    SUCCESS,
    ForeignMaster,
    Gateway,
    running_gateway,
)

FOLLOW_S = 10.0
#: The ONLINE bit of an IEEE 1815 flags octet (clear: OFFLINE / not served).
ONLINE_BIT = 0x01


def near(a: float, b: float, rel: float = 0.01, floor: float = 0.0) -> bool:
    return abs(a - b) <= max(rel * abs(b), floor)


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory) -> Iterator[Gateway]:
    args = ("--profile", str(PROFILE_DIR / "hybrid-1547-713-802.json"), "--dc", "500")
    with running_gateway(tmp_path_factory.mktemp("dnp3sto"), sim_args=args) as gw:
        wait_until(lambda: (v := gw.view()) is not None and v.storage is not None
                   and v.storage.problem is None and v.storage.soc_pct.quality.good,
                   timeout=20)
        yield gw


def battery(gw: Gateway) -> dict:
    return gw.sim.control.unit_state()["battery"]


def test_storage_points_equal_the_device(hybrid):
    master = ForeignMaster(hybrid.port)
    bat = battery(hybrid)
    points = master.integrity_poll()
    ai, bi = points.ai, points.bi
    cha_max = hybrid.sim.control.get_point(124, "WChaMax")
    assert ai[16][1] == ONLINE and near(ai[16][0], bat["wh_rtg"]), ai[16]
    assert near(ai[5][0], -cha_max) and near(ai[33][0], -cha_max)
    assert near(ai[47][0] / 10, bat["soc"], floor=0.1) and ai[47][1] == ONLINE
    assert near(ai[961][0] / 10, bat["soc"], floor=0.1)
    assert near(ai[958][0] / 10, bat["reserve"], floor=0.1)
    assert near(ai[966][0], bat["w"], floor=10)
    assert ai[44][0] < 0  # it can take a charge now (negative: charging)
    assert bi[37] == (True, ONLINE)  # supports the charge / discharge mode
    assert bi[20] == (False, ONLINE) and bi[4] == (False, ONLINE) and bi[7] == (False, ONLINE)


def test_charge_and_discharge_through_the_mode_then_released(hybrid):
    master = ForeignMaster(hybrid.port)
    w_rtg = hybrid.view().good("WRtg")
    assert master.direct_operate_analog(93, -500) == SUCCESS  # -50.0 %: charge
    assert master.direct_operate_binary(18, True) == SUCCESS
    want = -0.5 * w_rtg
    t0 = time.monotonic()
    wait_until(lambda: near(battery(hybrid)["w"], want, floor=10), timeout=FOLLOW_S)
    print(f"charge {want:g} W followed in {time.monotonic() - t0:.1f} s")
    wait_until(lambda: master.integrity_poll().bi[20] == (True, ONLINE), timeout=5)
    points = master.integrity_poll()
    assert points.ai[154] == (-500.0, ONLINE) and points.bi[70] == (True, ONLINE)
    assert near(points.ai[966][0], battery(hybrid)["w"], floor=0.02 * abs(want))
    # beyond the discharge rate (100 % of 5000 W, the battery gives 4000 W): limited
    dis_max = hybrid.view().storage.w_dis_max.value
    assert master.direct_operate_analog(93, 1000) == SUCCESS
    wait_until(lambda: battery(hybrid)["w"] > 0.9 * dis_max, timeout=FOLLOW_S)
    time.sleep(1.0)
    assert battery(hybrid)["w"] <= dis_max + 10
    assert hybrid.view().storage.setpoint_w <= dis_max
    # beyond the point's range: refused, nothing changed
    assert master.direct_operate_analog(93, 1001) == OUT_OF_RANGE
    assert hybrid.commands.persisted_dict()["set_active_power"]["w_pct"] == 100.0
    # off: released (124 no longer commanded)
    assert master.direct_operate_binary(18, False) == SUCCESS
    wait_until(lambda: hybrid.sim.control.get_point(124, "StorCtl_Mod") == 0, timeout=FOLLOW_S)


def test_a_discharge_stops_at_the_reserve_set_on_ao100(hybrid):
    master = ForeignMaster(hybrid.port)
    assert master.direct_operate_analog(93, 500) == SUCCESS  # +50.0 %: discharge
    assert master.direct_operate_binary(18, True) == SUCCESS
    wait_until(lambda: battery(hybrid)["w"] > 1000, timeout=FOLLOW_S)
    reserve = int((battery(hybrid)["soc"] - 0.2) * 10)  # just below the SoC, x0.1 %
    assert master.direct_operate_analog(100, reserve) == SUCCESS
    wait_until(lambda: abs(battery(hybrid)["w"]) < 10, timeout=40)
    assert battery(hybrid)["soc"] >= reserve / 10 - 0.1
    wait_until(lambda: master.integrity_poll().bi[7] == (True, ONLINE), timeout=5)
    assert master.integrity_poll().ai[161] == (float(reserve), ONLINE)
    assert master.direct_operate_binary(18, False) == SUCCESS
    assert master.direct_operate_analog(100, 0) == SUCCESS


def test_a_pv_only_inverter_refuses_the_mode_and_serves_no_storage(tmp_path):
    with running_gateway(tmp_path) as gw:
        master = ForeignMaster(gw.port)
        assert master.direct_operate_binary(18, True) == NOT_SUPPORTED
        assert master.direct_operate_analog(93, -500) == NOT_SUPPORTED
        assert master.direct_operate_binary(18, False) == SUCCESS  # off is always taken
        assert gw.commands.persisted_dict()["set_active_power"]["enabled"] is False
        points = master.integrity_poll()
        for i in (16, 47, 961):
            assert not points.ai[i][1] & ONLINE_BIT, (i, points.ai[i])


def test_yadnp3_reads_the_soc_and_discharges_the_battery(hybrid):
    """The same over opendnp3's master (yadnp3; x86_64 wheels only, else skipped)."""
    pytest.importorskip("opendnp3", reason="yadnp3 not installed (x86_64 wheels only)")
    from .test_yadnp3 import yad_master

    with yad_master(hybrid.port) as master:
        points = master.integrity_poll()
        assert near(points.ai[47][0] / 10, battery(hybrid)["soc"], floor=0.1)
        assert points.ai[47][1] == ONLINE and points.bi[37] == (True, ONLINE)
        assert master.analog(93, 400) == SUCCESS  # +40.0 % of 5000 W: 2000 W
        assert master.latch(18, True) == SUCCESS
        wait_until(lambda: near(battery(hybrid)["w"], 2000.0, floor=10), timeout=FOLLOW_S)
        assert master.latch(18, False) == SUCCESS
    wait_until(lambda: hybrid.sim.control.get_point(124, "StorCtl_Mod") == 0, timeout=FOLLOW_S)
