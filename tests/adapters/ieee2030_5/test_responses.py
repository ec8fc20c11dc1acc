"""Each row of the refusal table (responses.py, README "Responses"): the core's refusal
cause -> the IEEE 2030.5 Response status on the wire.

A DERControl parsed from XML the 2030.5 XSD accepts goes through the gateway's
dispatcher at activation; the refusal it raises is turned into a code by py20305's own
event-processor mapping (with the gateway's wrapper installed), and py20305's own
Response builder posts it, to a 2018 (CSIP) server, to a recorder standing in for the
server; the posted DERControlResponse is validated against the XSD and its status read.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files

import pytest
from lxml import etree
from py20305.connectors.control_errors import ControlError
from py20305.connectors.registry import ConnectorConfigRegistry
from py20305.events import processor
from py20305.events.response import ResponseTracker, post_der_response
from py20305.models.sep.sep import Dercontrol1
from py20305.xml.serialization import from_xml, to_xml, validate_xml

from inverter_agent.adapters.ieee2030_5 import responses
from inverter_agent.adapters.ieee2030_5.client import refusing_dispatcher
from inverter_agent.adapters.ieee2030_5.connector import GatewayConnector
from inverter_agent.adapters.ieee2030_5.maps import REFUSALS
from inverter_agent.adapters.ieee2030_5.site_view import SiteView
from inverter_agent.core.arbitration import UtilitySchedule
from inverter_agent.core.commands import RefusalCause

from .test_curves import derc_xml

NS = "urn:ieee:std:2030.5:ns"
SCHEMA = etree.XMLSchema(etree.parse(str(files("py20305") / "schemas" / "sep2_schema_2018.xsd")))


class Server:
    """Where py20305 posts the Response (a 2018 server: CSIP)."""

    server_2018_compat = True
    csip_aus_mode = False

    def __init__(self) -> None:
        self.posted: list[bytes] = []

    async def post(self, path: str, resource: object) -> int:
        self.posted.append(to_xml(resource, server_2018_compat=True))
        return 201


def wire_status(derc, exc: BaseException) -> int:
    """The status py20305 posts for a dispatch that raised ``exc``."""
    server = Server()
    code = processor.response_code_for_dispatch_error(exc)
    asyncio.run(post_der_response(server, derc, code, b"\x01" * 20, ResponseTracker()))
    (body,) = server.posted
    doc = etree.fromstring(body)
    assert SCHEMA.validate(doc), SCHEMA.error_log.last_error
    assert doc.tag == f"{{{NS}}}DERControlResponse"
    return int(doc.findtext(f"{{{NS}}}status"))


LIMIT = "<opModMaxLimW>5000</opModMaxLimW>"  # valid: what the core's check refuses


#: (cause, DERControlBase, what the core's check says): a refusal of that cause.
ROWS = [
    (RefusalCause.NOT_SUPPORTED, "<opModFixedW>5000</opModFixedW>", None),
    (RefusalCause.INVALID_VALUE, "<opModMaxLimW>20000</opModMaxLimW>", None),
    (RefusalCause.CONFLICT, "<opModFixedPFInjectW><displacement>95</displacement>"
     "<excitation>false</excitation><multiplier>-2</multiplier></opModFixedPFInjectW>"
     "<opModFixedVar><refType>2</refType><value>1000</value></opModFixedVar>", None),
    (RefusalCause.NOT_AUTHORIZED, LIMIT, "limits come from the plant controller here"),
    (RefusalCause.BLOCKED, LIMIT, "held off: the inverter is tripped"),
    (RefusalCause.EXPIRED, LIMIT, "the event ended before it could apply"),
]


def test_the_table_names_every_cause():
    assert set(REFUSALS) == set(RefusalCause)
    assert {c for c, _b, _w in ROWS} == set(RefusalCause)


@pytest.mark.parametrize("cause, base, core_says", ROWS, ids=[c.name for c, _b, _w in ROWS])
def test_each_refusal_cause_is_answered_with_its_response_status(cause, base, core_says):
    xml = derc_xml(base, reply=True)
    assert validate_xml(xml.encode()) == [], xml  # a control the 2030.5 schema accepts
    derc = from_xml(xml, Dercontrol1)
    conn = GatewayConnector(UtilitySchedule(), SiteView(lambda: None),
                            validate=lambda c: (cause, core_says) if core_says else None)
    dispatcher = refusing_dispatcher(conn)(ConnectorConfigRegistry([]),
                                             lfdi_resolver=lambda href: None)
    with pytest.raises(ControlError) as exc:
        asyncio.run(dispatcher.apply_control("/edev/0", derc, []))
    expected = {"NOT_SUPPORTED": 252, "CONFLICT": 252, "NOT_AUTHORIZED": 252, "BLOCKED": 252,
                "INVALID_VALUE": 253, "EXPIRED": 254}[cause.name]
    assert wire_status(derc, exc.value) == expected
    assert f"(Response {expected})" in conn.refused["0b000000000000000000000000000001"]


def test_a_control_the_gateway_takes_is_not_refused():
    derc = from_xml(derc_xml(LIMIT, reply=True), Dercontrol1)
    conn = GatewayConnector(UtilitySchedule(), SiteView(lambda: None))
    assert conn.check_derc(derc, []) is None
    assert conn.refused == {}


def test_other_failures_keep_py20305s_own_codes():
    """The wrapper answers only what carries a code; the rest is py20305's table."""
    responses.install()
    from py20305.connectors.control_errors import OptOutError

    assert processor.response_code_for_dispatch_error(OptOutError("customer")) == 4
    assert processor.response_code_for_dispatch_error(RuntimeError("?")) == 251
