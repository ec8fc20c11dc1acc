"""The CSIP-AUS profile against the CSIP-AUS schema: requests built with, and resources
read back by, the models of ``envoy-schema`` (PyPI, MIT; the models of the Envoy
CSIP-AUS utility server the cactus conformance harness runs on: a test dependency only).

- the profile is chosen by configuration or found in the server's DeviceCapability;
- the DERCapability and DERSettings the gateway PUTs parse as Envoy's DERCapability /
  DERSettings, with doeModesSupported / doeModesEnabled saying exactly what is applied
  (export and generation limits), in the server's namespace (CSIP-AUS 1.3's: py20305
  alone writes the older one, which a 1.3 server reads as "doeModesSupported missing");
- DERControls with dynamic operating envelopes, serialized by Envoy's models, parsed by
  py20305 as the gateway receives them: generation and export limits become the core's
  limit (export as a generation limit, with a warning: it errs on the safe side), import
  and load limits are refused 252, a negative limit 253; under the US profile every DOE
  limit is refused 252.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from envoy_schema.server.schema.sep2.der import (
    DERCapability,
    DERControlBase,
    DERControlResponse,
    DERSettings,
    DOESupportedMode,
)
from envoy_schema.server.schema.sep2.der_control_types import ActivePower
from envoy_schema.server.schema.sep2.device_capability import (
    DeviceCapabilityResponse,
)
from envoy_schema.server.schema.sep2.event import EventStatus
from envoy_schema.server.schema.sep2.types import DateTimeIntervalType
from py20305.connectors.control_errors import ControlError
from py20305.connectors.registry import ConnectorConfigRegistry
from py20305.events import processor
from py20305.json_form import serialize_der_control
from py20305.models.sep.sep import Dercontrol1
from py20305.xml.serialization import from_xml

from inverter_agent.adapters.ieee2030_5 import profile
from inverter_agent.adapters.ieee2030_5.client import refusing_dispatcher
from inverter_agent.adapters.ieee2030_5.connector import GatewayConnector
from inverter_agent.adapters.ieee2030_5.registration import Registrar
from inverter_agent.config import ConfigError, load
from inverter_agent.core.arbitration import UtilityControl, UtilitySchedule

from .test_registration import LFDI, Agent, Server, make, site

MRID = "0b000000000000000000000000000001"


def dcap(aus: bool) -> bytes:
    body = DeviceCapabilityResponse(href="/dcap", pollRate=900).to_xml(skip_empty=True)
    if not aus:  # a plain 2030.5 server declares no csipaus namespace
        body = body.replace(b' xmlns:csipaus="https://csipaus.org/ns/v1.3"', b"")
    return body


@pytest.mark.parametrize("configured, aus_server, expected", [
    ("auto", True, (True, profile.NS_V1_3)),
    ("auto", False, (False, None)),
    ("csip", True, (False, None)),
    ("csip-aus", False, (True, profile.NS_V1_3)),
    ("csip-aus", True, (True, profile.NS_V1_3)),
])
def test_profile_by_configuration_or_from_the_servers_namespace(configured, aus_server,
                                                                 expected):
    assert profile.choose(configured, dcap(aus_server)) == expected
    assert profile.csipaus_namespace(b'<DeviceCapability xmlns="urn:ieee:std:2030.5:ns" '
                                     b'xmlns:csipaus="https://csipaus.org/ns"/>') == \
        profile.NS_PY20305


def test_profile_key_is_checked(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('[ieee2030_5]\nprofile = "csip-nz"\n')
    with pytest.raises(ConfigError, match="profile"):
        load(str(toml))
    toml.write_text('[ieee2030_5]\nprofile = "csip-aus"\n')
    assert load(str(toml))["ieee2030_5.profile"] == "csip-aus"


def registered_aus(ns: str | None) -> Server:
    agent = Agent()
    agent.read(rtg=5000.0)
    server, reg, _ = make([agent])
    server.csip_aus_mode = True
    server.schema = None  # read back with Envoy's CSIP-AUS models below
    doe = {"DoeModesSupported": profile.DOE_APPLIED, "DoeModesEnabled": profile.DOE_APPLIED}
    aus = Registrar(reg.client, LFDI, reg.site, der_type=4, post_rate=300.0,
                    extra_nameplate=lambda: doe, extra_settings=lambda: doe, csipaus_ns=ns,
                    clock=lambda: server.now)
    asyncio.run(aus.pass_once())
    return server


def test_der_capability_and_settings_parse_as_csip_aus_with_the_doe_modes_applied():
    server = registered_aus(profile.NS_V1_3)
    bodies = {p.rsplit("/", 1)[-1]: b for _t, p, b in server.puts}
    cap = DERCapability.from_xml(bodies["dercap"])
    settings = DERSettings.from_xml(bodies["derg"])
    applied = DOESupportedMode.OP_MOD_EXPORT_LIMIT_W | DOESupportedMode.OP_MOD_GENERATION_LIMIT_W
    assert int(cap.doeModesSupported, 16) == applied
    assert int(settings.doeModesEnabled, 16) == applied
    assert cap.rtgMaxW.value * 10 ** cap.rtgMaxW.multiplier == 5000
    assert settings.setMaxW.value * 10 ** settings.setMaxW.multiplier == 5000
    assert not int(cap.doeModesSupported, 16) & (DOESupportedMode.OP_MOD_IMPORT_LIMIT_W
                                                 | DOESupportedMode.OP_MOD_LOAD_LIMIT_W)


def test_in_py20305s_own_namespace_a_1_3_server_sees_no_doe_modes():
    """Why the namespace is the server's: the same DERCapability in py20305's namespace is
    what a CSIP-AUS 1.3 server refuses (doeModesSupported is required)."""
    from pydantic import ValidationError

    server = registered_aus(None)
    body = next(b for _t, p, b in server.puts if p.endswith("dercap"))
    assert b"doeModesSupported" in body
    with pytest.raises(ValidationError, match="doeModesSupported"):
        DERCapability.from_xml(body)


def derc(**limits: tuple[int, int] | int) -> Dercontrol1:
    """A DERControl as a CSIP-AUS server serializes it (Envoy's models), parsed as the
    gateway's engine parses what it receives."""
    fields = {k: ActivePower(value=v[0], multiplier=v[1]) if isinstance(v, tuple) else v
              for k, v in limits.items()}
    xml = DERControlResponse(
        mRID=MRID.upper(), creationTime=1800000000, replyTo="/rsps", responseRequired="03",
        EventStatus_=EventStatus(currentStatus=0, dateTime=1800000000,
                                 potentiallySuperseded=False),
        interval=DateTimeIntervalType(start=1800000100, duration=600),
        DERControlBase_=DERControlBase(**fields)).to_xml(skip_empty=True)
    assert b"csipaus.org/ns/v1.3" in xml
    return from_xml(xml.decode(), Dercontrol1)


def connector(aus: bool = True, rating: float | None = 5000.0) -> GatewayConnector:
    agent = Agent()
    if rating is not None:
        agent.read(rtg=rating)
    conn = GatewayConnector(UtilitySchedule(), site([agent]))
    conn.csip_aus = aus
    return conn


@pytest.mark.parametrize("limits, pct", [
    ({"opModGenLimW": (2500, 0)}, 50.0),
    ({"opModExpLimW": (15, 2)}, 30.0),  # 15 x 10^2 W
    ({"opModExpLimW": (1000, 0), "opModGenLimW": (4000, 0)}, 20.0),  # the lower
    ({"opModExpLimW": (4000, 0), "opModMaxLimW": 5000}, 50.0),  # opModMaxLimW 50 % lower
    ({"opModExpLimW": (12000, 0)}, 100.0),  # above the rating: no limit beyond it
    ({"opModGenLimW": (1, 0)}, 0.02),
    ({"opModGenLimW": (0, 0)}, 0.0),
])
def test_generation_and_export_limits_become_the_cores_limit(limits, pct, caplog):
    conn = connector()
    d = derc(**limits)
    with caplog.at_level(logging.WARNING):
        control = conn.translate(serialize_der_control(d)["control_base"])
    assert control == UtilityControl(p_limit_pct=pct)
    assert conn.check_derc(d, []) is None
    # export never above the limit: the core's limit x the rating, at most the W asked
    for name in ("opModExpLimW", "opModGenLimW"):
        if name in limits:
            w = limits[name][0] * 10 ** limits[name][1]
            assert control.p_limit_pct / 100 * 5000 <= w + 1e-9
    said = [r.getMessage() for r in caplog.records if "opModExpLimW" in r.getMessage()]
    if "opModExpLimW" in limits:
        assert said and "applied as a generation limit (no site meter)" in said[0]
        assert "export stays at or below it" in said[0]
    else:
        assert not said


@pytest.mark.parametrize("limits, code, why", [
    ({"opModImpLimW": (1000, 0)}, 252, "op_mod_imp_lim_w"),
    ({"opModLoadLimW": (1000, 0)}, 252, "op_mod_load_lim_w"),
    ({"opModExpLimW": (1000, 0), "opModImpLimW": (1000, 0)}, 252, "op_mod_imp_lim_w"),
    ({"opModGenLimW": (-100, 0)}, 253, "a limit is not negative"),
    ({"opModExpLimW": (1, 12)}, 253, "multiplier"),
])
def test_what_is_not_applied_is_refused_with_its_code(limits, code, why):
    d = derc(**limits)
    conn = connector()
    dispatcher = refusing_dispatcher(conn)(ConnectorConfigRegistry([]),
                                             lfdi_resolver=lambda href: None)
    with pytest.raises(ControlError, match=why) as exc:
        asyncio.run(dispatcher.apply_control("/edev/0", d, []))
    assert processor.response_code_for_dispatch_error(exc.value) == code
    assert f"(Response {code})" in conn.refused[MRID]


def test_the_us_profile_refuses_every_doe_limit_252():
    conn = connector(aus=False)
    rejected = conn.check_derc(derc(opModExpLimW=(1000, 0)), [])
    assert rejected is not None and "op_mod_exp_lim_w" in str(rejected)
    assert "(Response 252)" in conn.refused[MRID]


def test_a_limit_in_w_before_the_rating_is_known_is_held_off():
    conn = connector(rating=None)
    rejected = conn.check_derc(derc(opModGenLimW=(1000, 0)), [])
    assert rejected is not None and "setMaxW is not known" in str(rejected)
    assert "(Response 252)" in conn.refused[MRID]



def test_connection_point_is_put_where_the_end_device_links_one():
    """The NMI, PUT to the EndDevice's csipaus:ConnectionPointLink (an EndDevice as Envoy
    serves it, parsed by the engine), read back as Envoy's ConnectionPoint request."""
    from envoy_schema.server.schema.csip_aus.connection_point import (
        ConnectionPointLink,
        ConnectionPointRequest,
    )
    from envoy_schema.server.schema.sep2.end_device import EndDeviceResponse
    from py20305.models.sep.sep import EndDevice

    agent = Agent()  # not read yet: the connection point does not wait for ratings
    server, reg, device = make([agent])
    server.schema = None
    edev = EndDeviceResponse(href="/edev/1", lFDI=LFDI, sFDI=123, changedTime=0, enabled=True,
                             ConnectionPointLink=ConnectionPointLink(href="/edev/1/cp"))
    device.device = from_xml(edev.to_xml(skip_empty=True).decode(), EndDevice)
    aus = Registrar(reg.client, LFDI, reg.site, der_type=4, post_rate=300.0,
                    csipaus_ns=profile.NS_V1_3, connection_point="4012345678",
                    clock=lambda: server.now)
    asyncio.run(aus.pass_once())
    ((_t, path, body),) = server.puts
    assert path == "/edev/1/cp"
    assert ConnectionPointRequest.from_xml(body).id == "4012345678"
    assert aus.status()["ConnectionPoint"]["result"] == "ok (HTTP 204)"
    assert aus.status()["DERCapability"]["result"].startswith("waiting: the inverter's")
    # a server that links no ConnectionPoint: nothing sent, status says so
    plain = EndDeviceResponse(href="/edev/1", lFDI=LFDI, sFDI=123, changedTime=0)
    device.device = from_xml(plain.to_xml(skip_empty=True).decode(), EndDevice)
    aus2 = Registrar(reg.client, LFDI, reg.site, der_type=4, post_rate=300.0,
                     csipaus_ns=profile.NS_V1_3, connection_point="4012345678",
                     clock=lambda: server.now)
    asyncio.run(aus2.pass_once())
    assert len(server.puts) == 1
    assert aus2.status()["ConnectionPoint"]["result"].startswith("waiting: the server has not")


def test_connection_point_id_is_checked(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('[ieee2030_5]\nconnection_point_id = "40 12"\n')
    with pytest.raises(ConfigError, match="connection_point_id"):
        load(str(toml))


def test_a_default_control_with_an_export_limit_applies_outside_events():
    """CSIP-AUS's default envelope (DefaultDERControl with opModExpLimW) becomes the
    core's default control; a bad update keeps the last good one."""
    from py20305.connectors.base import ScheduleNotification

    conn = connector()

    def default(w: int) -> None:
        asyncio.run(conn.on_schedule_notification(ScheduleNotification(
            stream="default_baseline", transition="default_added", status=None,
            current_status=None, mrid="dd" * 16, program_href="/derp/0", primacy=0,
            start=None, duration=None, end=None, affected_lfdis=[], randomization=(None, None),
            payload={"control_base": {"op_mod_exp_lim_w": {"value": w,
                                                            "multiplier": {"value": 0}}}})))

    default(2000)
    assert conn.schedule.default() == UtilityControl(p_limit_pct=40.0)
    default(-5)
    assert conn.schedule.default() == UtilityControl(p_limit_pct=40.0)
    assert "(Response 253)" in conn.refused["dd" * 16]
