"""Storage over IEEE 2030.5 end to end (issue 20), against GridAPPS-D's server: the
simulated 124-only hybrid (Fronius GEN24 map), ``inverter-agent run`` and the server,
three processes on loopback.

- the storage fields the gateway registers (DERCapability rtgMaxWh / rtgMaxChargeRateW /
  rtgMaxDischargeRateW, DERSettings setMax*, DERStatus stateOfChargeStatus), read back
  from the server, equal the device's within 1 %;
- an opModFixedW event posted through the server's admin API charges the battery in its
  window (within 10 s of its start) and is released after; a discharge event discharges
  it and stops at the reserve (the device's, moved just below the SoC), the gateway
  holding 0 W; a setpoint beyond the battery's rate (opModFixedW 120 %) is refused and
  never reaches model 124.
"""

from __future__ import annotations

import time

import pytest
from lxml import etree

from simulator import SimProcess
from simulator.profile import PROFILE_DIR

from .conftest import config_toml
from .test_gridappsd_e2e import POLL, Gateway, wait_for
from .test_registration_e2e import MUST, NS, server_get, watts

pytestmark = pytest.mark.timeout(300)
FOLLOW_S = 10.0
#: (start offset s, duration s, opModFixedW hundredths)
#: Each at least one poll (POLL) after it is posted, and none overlapping another (one
#: program: an overlapping newer event would supersede an older one).
CHARGE = (25, 12, -5000)  # 50 % of setMaxChargeRateW 6000 W: -3000 W
DISCHARGE = (50, 40, 5000)  # 50 % of setMaxDischargeRateW 6000 W: +3000 W
BEYOND = (2, 10, 12000)  # 120 %: beyond the rate, refused


def near(a: float, b: float, rel: float = 0.01, floor: float = 0.0) -> bool:
    return abs(a - b) <= max(rel * abs(b), floor)


@pytest.fixture(scope="module")
def sim():
    with SimProcess("--profile", str(PROFILE_DIR / "hybrid-124-only.json"), "--dc", "500",
                    "--tau", "0.2", "--seed", "20") as proc:
        yield proc


@pytest.fixture(scope="module")
def gateway(gridappsd, sim, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gw"), sim, config_toml(gridappsd))
    try:
        def registered():
            res = gw.utility().get("resources") or {}
            return res if all((res.get(n) or {}).get("last_ok") for n in MUST) else None
        wait_for(registered, 40, "registration")
        yield gw
    finally:
        gw.stop()


def battery(sim) -> dict:
    return sim.control.unit_state()["battery"]


def resource(gridappsd, gw, name: str) -> etree._Element:
    return server_get(gridappsd, gw.utility()["resources"][name]["href"])


def test_storage_fields_at_the_server_equal_the_device(gridappsd, gateway, sim):
    bat = battery(sim)
    ratings = sim.control.unit_state()["controls"]["124"]
    cap = resource(gridappsd, gateway, "DERCapability")
    settings = resource(gridappsd, gateway, "DERSettings")
    for doc, prefix in ((cap, "rtg"), (settings, "set")):
        assert near(watts(doc, f"{prefix}MaxWh"), bat["wh_rtg"]), etree.tostring(doc)
        assert near(watts(doc, f"{prefix}MaxChargeRateW"), ratings["WChaMax"])
        assert near(watts(doc, f"{prefix}MaxDischargeRateW"),
                    ratings.get("WDisChaMax") or ratings["WChaMax"])
    assert int(cap.findtext("s:modesSupported", namespaces=NS), 16) & (1 << 7)  # FixedW

    def soc_at_server():
        st = resource(gridappsd, gateway, "DERStatus")
        v = st.findtext("s:stateOfChargeStatus/s:value", namespaces=NS)
        return (st,) if v is not None and near(int(v) / 100.0, battery(sim)["soc"]) else None
    (status,) = wait_for(soc_at_server, 15, "SoC at the server")
    print("SoC at the server", status.findtext("s:stateOfChargeStatus/s:value",
                                                namespaces=NS), "device", battery(sim)["soc"])
    assert status.find("s:storageModeStatus", NS) is not None
    av = resource(gridappsd, gateway, "DERAvailability")
    assert av.find("s:statWAvail", NS) is not None
    assert av.find("s:availabilityDuration", NS) is not None


@pytest.fixture(scope="module")
def timeline(gridappsd, gateway):
    t0 = time.time()
    posted = {"t0": t0}
    for name, (off, dur, pct) in (("charge", CHARGE), ("discharge", DISCHARGE),
                                  ("beyond", BEYOND)):
        posted[name] = (gridappsd.post_event(t0 + off, dur, f"<opModFixedW>{pct}</opModFixedW>"),
                        int(t0 + off), dur)
    return posted


def test_a_setpoint_beyond_the_rate_is_refused_and_never_reaches_124(gateway, sim, timeline):
    mrid, start, dur = timeline["beyond"]
    # seen at the next poll of the program (at most POLL s after it was posted)
    u = wait_for(lambda: mrid in gateway.utility().get("refused", {}) and gateway.utility(),
                 timeline["t0"] + POLL + 5 - time.time(), "refused")
    assert "opModFixedW" in u["refused"][mrid] and "(Response 253)" in u["refused"][mrid]
    assert not any(e["mrid"] == mrid for e in u["events"])  # never in the core's schedule
    while time.time() < start + dur:  # in its window: nothing written to 124
        assert sim.control.get_point(124, "StorCtl_Mod") == 0
        time.sleep(0.5)
    assert sim.control.get_point(124, "StorCtl_Mod") == 0


def test_a_charge_event_charges_in_its_window_and_is_released_after(gateway, sim, timeline):
    mrid, start, dur = timeline["charge"]
    wait_for(lambda: any(e["mrid"] == mrid for e in gateway.utility()["events"]),
             start - time.time() - 0.3, "event received before its start")
    assert sim.control.get_point(124, "StorCtl_Mod") == 0  # not before its start
    t = wait_for(lambda: near(battery(sim)["w"], -3000.0, floor=10) and time.time(),
                 start + FOLLOW_S - time.time(), "battery charging at 3000 W")
    print(f"charge followed {t - start:.1f} s after the event's start")
    assert t >= start - 0.5
    soc0 = battery(sim)["soc"]
    t_rel = wait_for(lambda: sim.control.get_point(124, "StorCtl_Mod") == 0 and time.time(),
                     start + dur + 5 - time.time(), "released after the event")
    print(f"released {t_rel - (start + dur):.1f} s after the event's end")
    assert t_rel >= start + dur - 0.5
    assert battery(sim)["soc"] >= soc0  # it charged
    wait_for(lambda: abs(battery(sim)["w"]) < 10, 5, "battery idle after the release")


def test_a_discharge_event_discharges_and_stops_at_the_reserve(gateway, sim, timeline):
    mrid, start, dur = timeline["discharge"]
    wait_for(lambda: near(battery(sim)["w"], 3000.0, floor=10), start + FOLLOW_S - time.time(),
             "battery discharging at 3000 W")
    reserve = battery(sim)["soc"] - 0.15  # the device's reserve, just below the SoC
    sim.control.set_point(124, "MinRsvPct", reserve)
    # the gateway holds 0 W in the window (124 still commanded), the battery stops
    wait_for(lambda: sim.control.get_point(124, "StorCtl_Mod") != 0
             and abs(sim.control.get_point(124, "OutWRte")) < 0.1
             and abs(battery(sim)["w"]) < 10, 30, "discharge stopped at the reserve")
    assert time.time() < start + dur, "stopped by the event's end, not the reserve"
    assert battery(sim)["soc"] >= reserve - 0.1
    soc = battery(sim)["soc"]
    time.sleep(2.0)  # held
    assert battery(sim)["soc"] >= soc - 0.01
    wait_for(lambda: sim.control.get_point(124, "StorCtl_Mod") == 0,
             start + dur + 5 - time.time(), "released after the event")
