"""Batteries end to end (issue 20): the simulated hybrids of the corpus, the whole agent
and an MMS client, each in its own process over loopback.

On both hybrid profiles (124 only; 1547 with 713 / 802): the storage state over MMS
(DSTO1, DBAT1) equals the device's within 1 %; a charge and a discharge setpoint
operated on DWGC1 reach model 124 and the battery follows within 10 s, with no
alarm, no stand-aside and no curtailment; a discharge stops at the reserve; a
setpoint beyond the battery's rate is limited, never passed through.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from open61850.data import FloatData, IntData, StructureData
from open61850.mms import MmsClient, operate

from simulator import SimProcess
from simulator.profile import PROFILE_DIR

from .conftest import LD, wait_for

PROFILES = ("hybrid-124-only", "hybrid-1547-713-802")
FOLLOW_S = 10.0


@pytest.fixture(scope="module", params=PROFILES)
def hybrid(request):
    # A little PV: the inverter is energizing when the agent starts (in service at once;
    # one that is off enters service by the book, 300 s under Rule 21, and holds the
    # battery at 0 W until then: protection first, row B4).
    with SimProcess("--profile", str(PROFILE_DIR / f"{request.param}.json"), "--dc", "500",
                    "--tau", "0.2", "--seed", "20") as proc:
        yield proc


@pytest.fixture
def rig(hybrid, agent_factory):
    hybrid.control.reset()
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{hybrid.tcp_port}")
    wait_for(lambda: agent.read("DSTO1.SocEffWhPct")[1].good, timeout=20,
             what="storage served")
    client = MmsClient.connect("127.0.0.1", agent.port, timeout=5)
    yield hybrid, agent, client
    client.close()


def battery(sim) -> dict:
    return sim.control.unit_state()["battery"]


def ac_w(sim) -> float:
    """The inverter's AC power: its PV power plus its battery's (+ discharge)."""
    st = sim.control.unit_state()
    return st["plant"]["w"] + st["battery"]["w"]


def near(a: float, b: float, rel: float = 0.01, floor: float = 0.0) -> bool:
    return abs(a - b) <= max(rel * abs(b), floor)


def setpoint(client, w: float) -> None:
    operate(client, f"{LD}/DWGC1.Mod", IntData(1))
    operate(client, f"{LD}/DWGC1.WSpt", StructureData([FloatData(w)]))


def sp_value(agent, attr: str) -> float:
    return agent.mms.read_value(f"{LD}/{attr}.setMag.f", "SP")


def no_alarm(agent, before: int | None = None) -> None:
    """No alarm, and the gateway's health what it was before (the 1547 profile carries a
    warning of its own: no revert timer for a cease to energize)."""
    health = agent.read("LLN0.Health", "ST")[0]
    assert health != 3 and health == (before or health), agent.log()[-2000:]
    assert agent.read("DSTO1.Health", "ST")[0] == 1
    assert agent.read("DGEN1.Health", "ST")[0] == 1
    assert agent.read("DGEN1.Trip", "ST")[0] is False


def test_storage_over_mms_equals_the_device(rig):
    sim, agent, _ = rig
    bat = battery(sim)
    soc, q, _ = agent.read("DSTO1.SocEffWhPct")
    assert q.good and near(soc, bat["soc"]), (soc, bat)
    assert near(agent.read("DSTO1.EffWh")[0], bat["wh_rtg"])
    assert near(sp_value(agent, "DSTO1.WhRtg"), bat["wh_rtg"])
    assert near(agent.read("DSTO1.SocWh")[0], bat["soc"] / 100 * bat["wh_rtg"])
    assert near(sp_value(agent, "DSTO1.UseWhMinPct"), bat["reserve"])
    assert near(sp_value(agent, "DSTO1.UseWhMaxPct"), bat["soc_max"])
    ratings = sim.control.unit_state()["controls"]["124"]
    assert near(sp_value(agent, "DSTO1.ChaWMax"), ratings["WChaMax"])
    assert agent.read("DSTO1.AvlChaW")[0] > 0 and agent.read("DSTO1.AvlDschW")[0] > 0
    assert agent.read("DBAT1.BatSt", "ST")[0] is True

    def status_storage():
        try:
            with open(os.path.join(agent.state_dir, "status.json"), encoding="utf-8") as fh:
                return (json.load(fh).get("storage") or {}).get("INV1")
        except (OSError, ValueError):
            return None

    shown = wait_for(status_storage, timeout=8, what="storage in status.json")
    assert near(shown["soc_pct"], bat["soc"]) and shown["wh_rtg"] == bat["wh_rtg"]
    assert shown["controllable"] is True and shown["problem"] is None


@pytest.mark.parametrize("w", [-3000.0, 2500.0], ids=["charge", "discharge"])
def test_a_setpoint_over_mms_reaches_124_and_the_battery_follows(rig, w):
    sim, agent, client = rig
    health = agent.read("LLN0.Health", "ST")[0]
    t0 = time.monotonic()
    setpoint(client, w)
    base = sim.control.get_point(124, "WChaMax")
    # Mod on first (the setpoint then held is 0 W), then WSpt: wait for the window of w
    wait_for(lambda: sim.control.get_point(124, "StorCtl_Mod") == 3
             and near(sim.control.get_point(124, "OutWRte"), 100 * w / base, floor=0.1),
             timeout=FOLLOW_S, what="124 window written")
    assert near(sim.control.get_point(124, "InWRte"), -100 * w / base, floor=0.1)
    wait_for(lambda: near(battery(sim)["w"], w, floor=10), timeout=FOLLOW_S,
             what="battery follows")
    assert time.monotonic() - t0 < FOLLOW_S
    # the device's battery power over MMS: DBAT1.Watt where it states one (802), and the
    # AC power (PV + battery; negative while charging from the grid) for both
    wait_for(lambda: near(agent.read("MMXU1.TotW")[0], ac_w(sim), floor=0.01 * abs(w)),
             timeout=FOLLOW_S, what="TotW")
    if w < -1000:
        assert agent.read("MMXU1.TotW")[0] < 0  # charging from the grid: negative, good
        assert agent.read("MMXU1.TotW")[1].good
    models = sim.control.unit_state()["models"]
    if 802 in models:
        wait_for(lambda: near(agent.read("DBAT1.Watt")[0], battery(sim)["w"], floor=10),
                 timeout=5, what="DBAT1.Watt")
    else:  # 124 only: no battery power stated, served invalid rather than assumed
        assert not agent.read("DBAT1.Watt")[1].good
    assert near(agent.read("DWGC1.ReqW")[0], w, floor=1)
    wait_for(lambda: agent.read("DBAT1.ChaSt", "ST")[0] is (w < 0)
             and agent.read("DBAT1.DschSt", "ST")[0] is (w > 0), timeout=5,
             what="charge state")
    no_alarm(agent, health)
    # no curtailment: the AC limit stays at 100 %, nothing ceased
    assert sim.control.get_point(123 if 123 in models else 704, "WMaxLimPct") == 100.0
    status = agent.mms.read_value(f"{LD}/DGEN1.NotFlw.stVal", "ST")
    assert "storage" not in status


def test_a_discharge_stops_at_the_reserve(rig):
    sim, agent, client = rig
    setpoint(client, 4000.0)  # 0.04 % of a 10 kWh battery per second
    wait_for(lambda: near(battery(sim)["w"], 4000.0, floor=10), timeout=FOLLOW_S,
             what="discharging")
    reserve = battery(sim)["soc"] - 0.15  # the site's reserve, just below the SoC
    client.write(f"{LD}/DWGC1.SocUseMinPct.setMag.f [SP]", FloatData(reserve))
    wait_for(lambda: abs(battery(sim)["w"]) < 10, timeout=40, what="discharge stopped")
    # SoC is read in 0.1 % steps every 2 s: the stop lands within that of the reserve
    assert battery(sim)["soc"] >= reserve - 0.1, (battery(sim), reserve)
    assert agent.read("DWGC1.ReqW")[0] == 0.0
    assert agent.read("DSTO1.AvlDschW")[0] == 0.0
    soc = battery(sim)["soc"]
    time.sleep(2.0)  # held: no further discharge
    assert battery(sim)["soc"] >= soc - 0.01
    no_alarm(agent)


def test_a_setpoint_beyond_the_rate_is_limited_never_passed_through(rig):
    sim, agent, client = rig
    dis_max = sp_value(agent, "DSTO1.DschWMax")
    setpoint(client, 50_000.0)
    wait_for(lambda: sim.control.get_point(124, "StorCtl_Mod") == 3, timeout=FOLLOW_S,
             what="124 written")
    wait_for(lambda: near(agent.read("DWGC1.ReqW")[0], dis_max, floor=1), timeout=FOLLOW_S,
             what="limited to the rate")
    base = sim.control.get_point(124, "WChaMax")
    assert sim.control.get_point(124, "OutWRte") <= 100.0 * dis_max / base + 0.1
    pv = sim.control.unit_state()["plant"]["w"]
    room = min(dis_max, sp_value(agent, "DINV1.WRtg") - pv)  # the AC rating holds too
    wait_for(lambda: battery(sim)["w"] > 0.9 * room, timeout=FOLLOW_S, what="discharging")
    assert battery(sim)["w"] <= dis_max + 10
    setpoint(client, -50_000.0)
    wait_for(lambda: battery(sim)["w"] < -0.9 * base, timeout=FOLLOW_S, what="charging")
    assert sim.control.get_point(124, "InWRte") <= 100.0 + 1e-6
    assert battery(sim)["w"] >= -base - 10


def test_a_storage_command_without_a_battery_is_refused_and_nothing_changes(
        fresh_sim, agent_factory):
    """The default simulator is PV only: DWGC1 on, a setpoint or a reserve over MMS is
    refused (AddCause not-supported for an operate, a refused write for SP) and the
    persisted setting stays what it was; switching the mode off is still taken."""
    from inverter_agent.adapters.mms import client as mms_client

    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{fresh_sim.tcp_port}")
    wait_for(lambda: agent.read("MMXU1.TotW")[1].good, timeout=20, what="first cycle")
    con = agent.mms
    settings = os.path.join(agent.state_dir, "settings.json")

    def persisted() -> bytes | None:
        try:
            with open(settings, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    con.operate(f"{LD}/DWGC1.Mod", 5)  # off: always taken, and a settings file exists
    before = persisted()
    assert before is not None
    assert json.loads(before)["settings"]["set_active_power"]["enabled"] is False
    for ref, value in (("DWGC1.Mod", 1), ("DWGC1.WSpt", 2500.0), ("DWGC1.WSpt", -3000.0)):
        with pytest.raises(mms_client.MmsControlError) as refused:
            con.operate(f"{LD}/{ref}", value)
        assert refused.value.add_cause == 1, (ref, value)  # not-supported
    with pytest.raises(mms_client.MmsClientError):
        con.write_float(f"{LD}/DWGC1.SocUseMinPct.setMag.f", "SP", 30.0)
    assert persisted() == before
    assert con.read_value(f"{LD}/DWGC1.Mod.stVal", "ST") == 5
    assert "no storage" in agent.log()
