"""Storage over IEEE 2030.5 (issue 20), without a server: what the site view reports of
the core's StorageView, what registration PUTs (checked against the 2030.5 XSD by the
fake server of test_registration), and how opModFixedW / opModTargetW / CSIP-AUS
opModStorageTargetW translate onto the core's set active power, or are refused with why.
"""

from __future__ import annotations

import pytest
from envoy_schema.server.schema.sep2.der import DERControlBase, DERControlResponse
from envoy_schema.server.schema.sep2.der_control_types import ActivePower
from envoy_schema.server.schema.sep2.event import EventStatus
from envoy_schema.server.schema.sep2.types import DateTimeIntervalType
from py20305.models.sep.sep import Dercontrol1
from py20305.xml.serialization import from_xml

from hal.reading import GOOD, Reading
from inverter_agent.adapters.ieee2030_5.connector import GatewayConnector
from inverter_agent.adapters.ieee2030_5.registration import Registrar
from inverter_agent.adapters.ieee2030_5.responses import response_code
from inverter_agent.adapters.ieee2030_5.site_view import (
    CTRL_FIXED_W,
    STORAGE_CHARGING,
    STORAGE_DISCHARGING,
    SiteView,
)
from inverter_agent.adapters.ieee2030_5.translate import ControlRejected
from inverter_agent.core.arbitration import ScheduledControl, UtilityControl, UtilitySchedule
from inverter_agent.core.storage import storage_view
from inverter_agent.core.view import CycleView, inverter_view

from .test_registration import HREFS, LFDI, Agent, Server, run, watts

NS = {"s": "urn:ieee:std:2030.5:ns"}
MRID = "0b000000000000000000000000000002"


class Hybrid(Agent):
    """A fake agent whose snapshot has a battery (the HAL's storage names)."""

    def battery(self, soc: float = 50.0, wh: float | None = 10240.0, w: float = -3000.0,
                cha: float = 6000.0, dis: float = 5000.0, rsv: float = 10.0) -> None:
        for name, v in (("StorSoC", soc), ("StorWhRtg", wh), ("StorW", w),
                        ("StorWChaMax", cha), ("StorWDisChaMax", dis), ("StorRsvPct", rsv),
                        ("StorSoCMax", 100.0), ("StorChaSt", 4), ("StorCtl_Mod", 0),
                        ("StorWhAvail", None if wh is None else (soc - rsv) / 100 * wh)):
            if v is not None:
                self.last_snapshot[name] = Reading(v, GOOD, 0.0)
            else:
                self.last_snapshot.pop(name, None)


def hybrid_site(agents) -> SiteView:
    def view() -> CycleView:
        invs = []
        for i, a in enumerate(agents):
            s = a.last_snapshot
            rtg = s["WRtg"].value if "WRtg" in s else None
            invs.append(inverter_view(f"INV{i}", s, bool(s.get("link") and s["link"].value),
                                      storage=storage_view(s, rtg)))
        return CycleView(0.0, tuple(invs))
    return SiteView(view)


def make(agents):
    from types import SimpleNamespace

    server = Server()
    device = SimpleNamespace(lfdi=bytes.fromhex(LFDI), device=SimpleNamespace(post_rate=None),
                             **HREFS)
    client = SimpleNamespace(http=server, state=SimpleNamespace(end_devices={"/edev/1": device}),
                             timebase=None)
    reg = Registrar(client, LFDI, hybrid_site(agents), der_type=4, post_rate=300.0,
                    clock=lambda: server.now)
    return server, reg


def number(doc, path: str) -> float:
    return float(doc.findtext(path, namespaces=NS))


def test_storage_fields_equal_the_batterys_in_every_resource():
    agent = Hybrid()
    agent.read(rtg=6000.0)
    agent.battery(soc=47.0, wh=10240.0, w=-3000.0, cha=6000.0, dis=5000.0, rsv=10.0)
    server, reg = make([agent])
    run(reg, server, 0.0)
    cap, sett = server.last("der_capability_href"), server.last("der_settings_href")
    assert watts(cap, "rtgMaxWh") == pytest.approx(10240.0, rel=0.01)
    assert watts(cap, "rtgMaxChargeRateW") == 6000.0
    assert watts(cap, "rtgMaxDischargeRateW") == 5000.0
    assert watts(sett, "setMaxWh") == pytest.approx(10240.0, rel=0.01)
    assert watts(sett, "setMaxChargeRateW") == 6000.0
    assert watts(sett, "setMaxDischargeRateW") == 5000.0
    modes = int(cap.findtext("s:modesSupported", namespaces=NS), 16)
    assert modes & CTRL_FIXED_W
    status = server.last("der_status_href")
    assert number(status, "s:stateOfChargeStatus/s:value") == 4700  # PerCent: hundredths
    assert number(status, "s:storageModeStatus/s:value") == STORAGE_CHARGING
    av = server.last("der_availability_href")
    # PV available 6000 W (the fake's WAval) + the battery's 5000 W above its reserve
    assert watts(av, "statWAvail") == pytest.approx(11000.0, rel=0.01)
    # (47 - 10) % of 10240 Wh at 5000 W: 2.73 h
    assert number(av, "s:availabilityDuration") == pytest.approx(
        0.37 * 10240 / 5000 * 3600, rel=0.01)
    assert number(av, "s:reservePercent") == 1000


def test_a_pv_only_site_reports_no_storage_and_no_fixed_w_mode():
    agent = Agent()
    agent.read(rtg=5000.0)
    server, reg = make([agent])
    run(reg, server, 0.0)
    cap = server.last("der_capability_href")
    assert cap.find("s:rtgMaxWh", NS) is None and cap.find("s:rtgMaxChargeRateW", NS) is None
    assert not int(cap.findtext("s:modesSupported", namespaces=NS), 16) & CTRL_FIXED_W
    assert server.last("der_status_href").find("s:stateOfChargeStatus", NS) is None


def test_capability_and_settings_are_sent_again_when_the_storage_ratings_become_known():
    agent = Hybrid()
    agent.read(rtg=6000.0)
    agent.battery(wh=None)  # the capacity not read yet
    server, reg = make([agent])
    run(reg, server, 1.0)
    assert server.count("der_capability_href") == 1
    assert server.last("der_capability_href").find("s:rtgMaxWh", NS) is None
    agent.battery(wh=10240.0)
    run(reg, server, 3.0)
    assert server.count("der_capability_href") == 2
    assert server.count("der_settings_href") == 2
    assert watts(server.last("der_capability_href"), "rtgMaxWh") == pytest.approx(10240, rel=0.01)
    assert watts(server.last("der_settings_href"), "setMaxWh") == pytest.approx(10240, rel=0.01)
    agent.battery(wh=10240.0, cha=4000.0)  # a rating that changes: sent again
    run(reg, server, 5.0)
    assert watts(server.last("der_capability_href"), "rtgMaxChargeRateW") == 4000.0


def test_discharging_and_holding_modes():
    agent = Hybrid()
    agent.read(rtg=6000.0)
    agent.battery(w=2500.0)
    st = hybrid_site([agent]).status()
    assert st["storageModeStatus"]["value"] == STORAGE_DISCHARGING


def connector(agent, aus: bool = False) -> GatewayConnector:
    conn = GatewayConnector(UtilitySchedule(), hybrid_site([agent]))
    conn.csip_aus = aus
    return conn


def hybrid(**kw) -> Hybrid:
    agent = Hybrid()
    agent.read(rtg=6000.0)
    agent.battery(**kw)
    return agent


@pytest.mark.parametrize("hundredths, battery_w", [
    (-5000, -3000.0),  # 50 % of setMaxChargeRateW 6000 W: charge 3000 W
    (5000, 2500.0),  # 50 % of setMaxDischargeRateW 5000 W: discharge 2500 W
    (-10000, -6000.0), (0, 0.0),
])
def test_fixed_w_becomes_the_cores_set_active_power(hundredths, battery_w):
    control = connector(hybrid()).translate({"op_mod_fixed_w": {"value": hundredths}})
    assert control.storage_w_pct == pytest.approx(battery_w / 6000.0 * 100.0)


def test_fixed_w_without_a_battery_is_refused_252_with_why():
    agent = Agent()
    agent.read(rtg=5000.0)
    conn = GatewayConnector(UtilitySchedule(), hybrid_site([agent]))
    with pytest.raises(ControlRejected, match="no storage") as exc:
        conn.translate({"op_mod_fixed_w": {"value": 5000}})
    assert response_code(exc.value.cause) == 252


def test_fixed_w_with_a_battery_not_understood_is_refused_252_naming_it():
    conn = connector(hybrid(wh=None))
    with pytest.raises(ControlRejected, match="energy capacity missing") as exc:
        conn.translate({"op_mod_fixed_w": {"value": -5000}})
    assert response_code(exc.value.cause) == 252


@pytest.mark.parametrize("value", [10001, -10001, 1.5, None, "x"])
def test_fixed_w_out_of_its_type_is_253(value):
    with pytest.raises(ControlRejected) as exc:
        connector(hybrid()).translate({"op_mod_fixed_w": {"value": value}})
    assert response_code(exc.value.cause) == 253


def test_target_w_is_refused_252_with_why():
    with pytest.raises(ControlRejected, match="total output") as exc:
        connector(hybrid()).translate({"op_mod_target_w": {"value": 2000, "multiplier": 0}})
    assert response_code(exc.value.cause) == 252


def storage_derc(value: int, multiplier: int = 0) -> Dercontrol1:
    """A CSIP-AUS DERControl with opModStorageTargetW as Envoy's models write it."""
    xml = DERControlResponse(
        mRID=MRID.upper(), creationTime=1800000000, replyTo="/rsps", responseRequired="03",
        EventStatus_=EventStatus(currentStatus=0, dateTime=1800000000,
                                 potentiallySuperseded=False),
        interval=DateTimeIntervalType(start=1800000100, duration=600),
        DERControlBase_=DERControlBase(opModStorageTargetW=ActivePower(
            value=value, multiplier=multiplier))).to_xml(skip_empty=True)
    assert b"opModStorageTargetW" in xml
    return from_xml(xml.decode(), Dercontrol1)


def test_csip_aus_storage_target_reaches_the_scheduled_event():
    conn = connector(hybrid(), aus=True)
    # the schedule's relay (py20305's JSON form) carries no storage target: an empty control
    conn.schedule.put_event(ScheduledControl(ident=MRID, start=0.0, end=600.0,
                                             control=UtilityControl(), primacy=1, created=0.0,
                                             source="ieee2030_5"))
    assert conn.check_derc(storage_derc(-3000), []) is None
    event = next(e for e in conn.schedule.events() if e.ident == MRID)
    assert event.control.storage_w_pct == pytest.approx(-50.0)


def test_csip_aus_storage_target_beyond_the_rating_is_253_and_leaves_the_schedule():
    conn = connector(hybrid(), aus=True)
    conn.schedule.put_event(ScheduledControl(ident=MRID, start=0.0, end=600.0,
                                             control=UtilityControl(), primacy=1, created=0.0,
                                             source="ieee2030_5"))
    rejected = conn.check_derc(storage_derc(9000), [])
    assert rejected is not None and "beyond the DER's rating" in str(rejected)
    assert "(Response 253)" in conn.refused[MRID]
    assert all(e.ident != MRID for e in conn.schedule.events())


def test_the_us_profile_refuses_a_storage_target_252():
    conn = connector(hybrid(), aus=False)
    rejected = conn.check_derc(storage_derc(-3000), [])
    assert rejected is not None and "op_mod_storage_target_w" in str(rejected)
    assert "(Response 252)" in conn.refused[MRID]


def test_a_moving_soc_is_sent_at_the_post_rate_a_mode_change_at_once():
    agent = Hybrid()
    agent.read(rtg=6000.0)
    agent.battery(soc=50.0, w=-3000.0)
    server, reg = make([agent])
    run(reg, server, 1.0)
    assert server.count("der_status_href") == 1
    for i in range(20):  # charging: the SoC rises every read, for 10 s
        agent.battery(soc=50.0 + 0.01 * i, w=-3000.0)
        run(reg, server, server.now + 0.5)
    assert server.count("der_status_href") == 1  # the post rate (300 s) not reached
    agent.battery(soc=50.2, w=2000.0)  # now discharging: a change of state
    run(reg, server, server.now + 1.0)
    assert server.count("der_status_href") == 2
    status = server.last("der_status_href")
    assert number(status, "s:storageModeStatus/s:value") == STORAGE_DISCHARGING
    assert number(status, "s:stateOfChargeStatus/s:value") == 5020


@pytest.mark.parametrize("has_battery", [True, False])
def test_csip_aus_vpp_modes_say_the_storage_target_is_applied_where_it_is(has_battery):
    """DERCapability / DERSettings as a CSIP-AUS 1.3 server reads them (Envoy's models):
    vppModesSupported / vppModesEnabled bit 0 (opModStorageTargetW) where the core
    commands a battery, absent on a PV-only site."""
    from envoy_schema.server.schema.sep2.der import DERCapability, DERSettings, VPPControlType

    from inverter_agent.adapters.ieee2030_5 import profile

    agent = Hybrid()
    agent.read(rtg=6000.0)
    if has_battery:
        agent.battery()
    server, reg = make([agent])
    server.csip_aus_mode, server.schema = True, None  # read back with Envoy's models
    aus = Registrar(reg.client, LFDI, reg.site, der_type=4, post_rate=300.0,
                    extra_nameplate=lambda: profile.aus_modes(reg.site),
                    extra_settings=lambda: profile.aus_modes(reg.site),
                    csipaus_ns=profile.NS_V1_3, clock=lambda: server.now)
    run(aus, server, 0.0)
    bodies = {p.rsplit("/", 1)[-1]: b for _t, p, b in server.puts}
    cap, settings = DERCapability.from_xml(bodies["dercap"]), DERSettings.from_xml(bodies["derg"])
    if has_battery:
        assert int(cap.vppModesSupported, 16) == VPPControlType.OP_MOD_STORAGE_TARGET_W
        assert int(settings.vppModesEnabled, 16) == VPPControlType.OP_MOD_STORAGE_TARGET_W
    else:
        assert cap.vppModesSupported is None and settings.vppModesEnabled is None
    assert int(cap.doeModesSupported, 16) == profile.DOE_APPLIED
