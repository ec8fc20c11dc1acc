"""Several inverters behind one gateway: three simulated inverters (unit ids 1, 2
and 3) on one pseudo-terminal RS-485 bus, the agent in its own process with one
logical device per inverter plus the plant, and an MMS client in this one."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from hal.reading import Detail, Validity
from inverter_agent.adapters.mms import client as mms
from simulator import SimProcess

from .conftest import wait_for

PLANT = "GWPLANT"
UNITS = (1, 2, 3)


@pytest.fixture(scope="module")
def bus() -> Iterator[SimProcess]:
    with SimProcess("--tau", "0.2", "--seed", "7", "--units", "1,2,3", pty=True) as proc:
        yield proc


@pytest.fixture
def site(bus, agent_factory):
    bus.control.reset()
    for u in UNITS:
        bus.control.fault("none", unit=u)
    agent = agent_factory("--modbus-rtu", bus.pty_path, "--baud", "115200",
                          "--units", "1,2,3")
    wait_for(lambda: _value(agent, f"{PLANT}/GGIO1.IntIn1", "ST") == 3, timeout=20,
             what="all three inverters reporting")
    return agent


def _leaves(agent, ref: str, fc: str) -> dict:
    return agent.mms.read(ref, fc)


def _value(agent, ref: str, fc: str = "MX"):
    leaves = _leaves(agent, ref, fc)
    return next(v for k, v in leaves.items() if k.endswith(("mag.f", "stVal", "setMag.f",
                                                            "mxVal.f")))


def _mv(agent, ref: str):
    leaves = _leaves(agent, ref, "MX")
    return leaves["mag.f"], mms.quality_from_bits(leaves["q"])


def _inverter_totw(agent, ld: str):
    return _mv(agent, f"GW{ld}/MMXU1.TotW")


def test_three_inverters_on_one_bus_one_disappears_the_others_keep_functions_and_totals(
        bus, site):
    agent = site
    # One logical device per inverter plus the plant view.
    lds = set(agent.mms.logical_devices())
    assert {"GWINV1", "GWINV2", "GWINV3", PLANT} <= lds, lds

    def totals_match(expected_lds):
        tot, q = _mv(agent, f"{PLANT}/MMXU1.TotW")
        parts = [_inverter_totw(agent, ld) for ld in expected_lds]
        if not all(p[1].good for p in parts):
            return None
        s = sum(p[0] for p in parts)
        return (tot, q, s) if abs(tot - s) <= 0.02 * s + 20 else None

    tot, q, s = wait_for(lambda: totals_match(("INV1", "INV2", "INV3")), timeout=10,
                         what="plant total = sum of three")
    assert q.good and tot > 3 * 3000, (tot, q)
    assert _value(agent, f"{PLANT}/LLN0.Health", "ST") == 1

    # Unit 2 stops answering on the bus.
    bus.control.fault("silent", unit=2)
    wait_for(lambda: not _inverter_totw(agent, "INV2")[1].good, timeout=5,
             what="INV2 invalid")
    _, q2 = _inverter_totw(agent, "INV2")
    assert q2.validity == Validity.INVALID and Detail.FAILURE in q2.detail
    wait_for(lambda: _value(agent, f"{PLANT}/GGIO1.IntIn1", "ST") == 2, timeout=5,
             what="two reporting")
    assert _value(agent, f"{PLANT}/GGIO1.IntIn2", "ST") == 3
    assert _value(agent, f"{PLANT}/LLN0.Health", "ST") == 2  # Warning: some missing
    tot, q, s = wait_for(lambda: totals_match(("INV1", "INV3")), timeout=5,
                         what="plant total = sum of the two that answer")
    assert q.validity == Validity.QUESTIONABLE and Detail.INACCURATE in q.detail
    assert tot < 2 * 5000 + 50  # not counting the missing one

    # The others keep their functions: a voltage rise makes volt-var absorb on 1 and 3.
    bus.control.set_grid(v_pu=1.07)

    def absorbing():
        q1, q3 = (bus.control.unit_state(u)["plant"]["var"] for u in (1, 3))
        return (q1, q3) if q1 < -300 and q3 < -300 else None

    wait_for(absorbing, timeout=15, what="units 1 and 3 absorbing vars")
    # ... and keep being polled at the cycle rate while unit 2 stays silent.
    stamps = []
    for _ in range(4):
        leaves = _leaves(agent, "GWINV1/MMXU1.PhV.phsA", "MX")
        stamps.append(leaves["t"])
        time.sleep(0.6)
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    assert abs(stamps[-1] - time.time()) < 3.0  # fresh: room for a loaded machine

    # Unit 2 comes back: it is tried again within the dead-link retry (5 s).
    bus.control.set_grid(v_pu=1.0)
    bus.control.fault("none", unit=2)
    wait_for(lambda: _value(agent, f"{PLANT}/GGIO1.IntIn1", "ST") == 3, timeout=12,
             what="three reporting again")
    tot, q, _ = wait_for(lambda: totals_match(("INV1", "INV2", "INV3")), timeout=10,
                         what="sum of three again")
    wait_for(lambda: _mv(agent, f"{PLANT}/MMXU1.TotW")[1].good, timeout=5,
             what="total good again")

    # The health view shows every inverter, the plant and the site cycle.
    status = wait_for(lambda: _status(agent), timeout=10, what="status.json")
    assert set(status["inverters"]) == {"INV1", "INV2", "INV3"}
    assert status["inverters"]["INV2"]["failed_polls"] >= 2
    assert status["inverters"]["INV1"]["failed_polls"] == 0
    assert status["plant"]["totals"]["configured"] == 3


def _status(agent):
    path = os.path.join(agent.state_dir, "status.json")
    try:
        with open(path) as fh:
            st = json.load(fh)
    except (OSError, ValueError):
        return None
    return st if "inverters" in st else None


def _limit_pct(bus, unit: int) -> float:
    return bus.control.unit_state(unit)["controls"]["123"]["WMaxLimPct"]


def test_plant_limit_is_shared_by_rating_and_a_lost_inverter_keeps_its_share(bus, site):
    agent = site
    con = agent.mms
    con.operate(f"{PLANT}/DWMX1.WMaxSpt", 6000.0)  # APC set point: a persisted setting
    con.operate(f"{PLANT}/DWMX1.Mod", 1)  # on
    # Three 5 kW inverters: each is held to 6000 / 15000 = 40 % of its rating.
    wait_for(lambda: all(abs(_limit_pct(bus, u) - 40.0) < 0.2 for u in UNITS), timeout=10,
             what="40 % at every inverter")
    wait_for(lambda: (t := _mv(agent, f"{PLANT}/MMXU1.TotW")) and t[1].good
             and abs(t[0] - 6000) < 300, timeout=10, what="plant near its limit")
    assert _value(agent, f"{PLANT}/DWMX1.LimAct", "ST") is True

    # Unit 3 is lost while held to 2000 W: that stays reserved for it.
    bus.control.fault("silent", unit=3)
    wait_for(lambda: _value(agent, f"{PLANT}/GGIO1.IntIn1", "ST") == 2, timeout=5,
             what="two reporting")
    con.operate(f"{PLANT}/DWMX1.WMaxSpt", 3000.0)
    # (3000 - 2000 reserved) / 10000 W of the two that answer = 10 %.
    wait_for(lambda: all(abs(_limit_pct(bus, u) - 10.0) < 0.2 for u in (1, 2)), timeout=10,
             what="10 % at the two that answer")
    assert abs(_limit_pct(bus, 3) - 40.0) < 0.2  # nobody could write to it

    # A bad limit is refused over MMS and the old one stays, in the model and on disk.
    with pytest.raises(mms.MmsClientError):
        con.operate(f"{PLANT}/DWMX1.WMaxSpt", -5.0)
    assert _value(agent, f"{PLANT}/DWMX1.WMaxSpt", "MX") == pytest.approx(3000.0)
    with open(os.path.join(agent.state_dir, "plant.json")) as fh:
        saved = json.load(fh)
    assert saved["w_max"] == pytest.approx(3000.0) and saved["enabled"] is True
    time.sleep(1.0)
    assert all(abs(_limit_pct(bus, u) - 10.0) < 0.2 for u in (1, 2))
