"""CSIP-AUS limits at the connection point with a site meter configured.

opModExpLimW is then held at the PCC by the core (``UtilityControl.export_limit_w``,
closed on the meter's export: tests/core/test_site_meter.py), not turned into a
generation limit; opModImpLimW stays refused with 252 and the reason.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from py20305.connectors.control_errors import ControlError
from py20305.connectors.registry import ConnectorConfigRegistry
from py20305.events import processor
from py20305.json_form import serialize_der_control

from inverter_agent.adapters.ieee2030_5.client import refusing_dispatcher
from inverter_agent.core.arbitration import UtilityControl, UtilitySchedule

from .test_csip_aus import MRID, connector, derc


def meter_connector():
    conn = connector()
    conn.site_meter = True
    return conn


@pytest.mark.parametrize("limits, expected", [
    ({"opModExpLimW": (1500, 0)}, UtilityControl(export_limit_w=1500.0)),
    ({"opModExpLimW": (15, 2)}, UtilityControl(export_limit_w=1500.0)),
    ({"opModExpLimW": (0, 0)}, UtilityControl(export_limit_w=0.0)),
    # The generation limit still becomes the core's limit; the export limit is held apart.
    ({"opModExpLimW": (1000, 0), "opModGenLimW": (4000, 0)},
     UtilityControl(p_limit_pct=80.0, export_limit_w=1000.0)),
])
def test_with_a_site_meter_the_export_limit_is_held_at_the_pcc(limits, expected, caplog):
    conn = meter_connector()
    d = derc(**limits)
    with caplog.at_level(logging.WARNING):
        control = conn.translate(serialize_der_control(d)["control_base"])
    assert control == expected
    assert conn.check_derc(d, []) is None
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "held at the connection point with the site meter" in said
    assert "applied as a generation limit" not in said


def test_without_a_site_meter_the_same_limit_is_a_generation_limit():
    control = connector().translate(serialize_der_control(
        derc(opModExpLimW=(1500, 0)))["control_base"])
    assert control == UtilityControl(p_limit_pct=30.0)


def test_an_import_limit_is_refused_252_with_the_reason_even_with_a_meter():
    conn = meter_connector()
    dispatcher = refusing_dispatcher(conn)(ConnectorConfigRegistry([]),
                                             lfdi_resolver=lambda href: None)
    with pytest.raises(ControlError, match="cannot be held by a PV inverter") as exc:
        asyncio.run(dispatcher.apply_control(
            "/edev/0", derc(opModImpLimW=(1000, 0), opModExpLimW=(1000, 0)), []))
    assert processor.response_code_for_dispatch_error(exc.value) == 252
    assert "(Response 252)" in conn.refused[MRID]


def test_an_export_limit_survives_a_restart_in_the_schedule_file(tmp_path):
    path = str(tmp_path / "utility_schedule.json")
    UtilitySchedule("ieee2030_5", path).set_default(UtilityControl(export_limit_w=1200.0))
    assert UtilitySchedule("ieee2030_5", path).default() == \
        UtilityControl(export_limit_w=1200.0)
