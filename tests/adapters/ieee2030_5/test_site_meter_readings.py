"""The site meter's readings posted as the site's MirrorUsagePoint, against GridAPPS-D.

The simulator (its own process) has an inverter and a SunSpec meter at the PCC; the
HAL reads both over Modbus TCP; the 2030.5 client (in this process, recording
what it sends) runs against GridAPPS-D's server with a site meter configured. It
mirrors the inverter as before (roleFlags 0x49) and the meter as the premises
aggregation point (roleFlags 0x03), its W import positive (IEEE 2030.5 flow
"forward"), equal to what the meter reads.
"""

from __future__ import annotations

import time

import pytest

from hal.inverter import Inverter
from hal.meter import Meter
from hal.reading import GOOD, Reading
from hal.transport import RetryPolicy, TcpTransport
from inverter_agent.adapters.ieee2030_5.client import ClientSettings, Ieee2030Client
from inverter_agent.adapters.ieee2030_5.site_view import SiteView
from inverter_agent.config import load as load_config
from inverter_agent.core.arbitration import UtilitySchedule
from inverter_agent.core.view import CycleView, InverterView, SiteMeterView
from simulator import SimProcess

from .conftest import config_toml
from .test_gridappsd_e2e import Recorder

pytestmark = pytest.mark.timeout(240)
NS = "{urn:ieee:std:2030.5:ns}"
#: roleFlags (HexBinary16): isMirror | isPremisesAggregationPoint; the DER's own mirror.
SITE, DER = "0003", "0049"


def _mups(sent: list[tuple[str, str, bytes]]) -> list:
    from lxml import etree

    return [etree.fromstring(body) for _m, _u, body in sent
            if etree.fromstring(body).tag == f"{NS}MirrorUsagePoint"]


def _w_type(mup) -> tuple[str, int, int]:
    """(mRID, flowDirection, powerOfTenMultiplier) of the MUP's W reading (uom 38)."""
    for mmr in mup.iter(f"{NS}MirrorMeterReading"):
        rt = mmr.find(f"{NS}ReadingType")
        if rt is not None and rt.findtext(f"{NS}uom") == "38":
            return (mmr.findtext(f"{NS}mRID"), int(rt.findtext(f"{NS}flowDirection")),
                    int(rt.findtext(f"{NS}powerOfTenMultiplier") or 0))
    raise AssertionError("no W reading in the MUP")


def _w_readings(mup, sent) -> list[float]:
    """Every W value posted for the MUP's W reading (in the MUP or posted to it since),
    scaled by its powerOfTenMultiplier."""
    from lxml import etree

    mrid, _flow, mult = _w_type(mup)
    out = []
    for _m, _u, body in sent:
        for mmr in etree.fromstring(body).iter(f"{NS}MirrorMeterReading"):
            if mmr.findtext(f"{NS}mRID") == mrid:
                out += [int(r.findtext(f"{NS}value")) * 10.0 ** mult
                        for r in mmr.iter(f"{NS}Reading")]
    return out


def test_the_meter_is_mirrored_as_the_site_with_import_positive_w(gridappsd, tmp_path):
    with SimProcess("--meter", "2:203", "--dc", "4000", "--meter-load", "1500") as sim:
        t = TcpTransport("127.0.0.1", sim.tcp_port, RetryPolicy(timeout=1.0))
        inv, meter = Inverter(t, unit=1), Meter(t, 2, model=203)
        snap = dict(inv.poll(time.time()))
        snap["link"] = Reading(True, GOOD, time.time())
        readings = meter.poll(time.time())
        site_w = readings["W"].value
        truth = sim.control.state()["units"]
        t.close()
    assert site_w == pytest.approx(1500.0 - truth["1"]["plant"]["w"], abs=30.0)
    assert site_w < 0  # exporting

    def view() -> CycleView:
        return CycleView(time.time(), (InverterView("INV1", snap, True),),
                         site=SiteMeterView("SITE", readings, True))

    toml = tmp_path / "agent.toml"
    toml.write_text(config_toml(gridappsd) + "[meter]\nenabled = true\nunit = 2\n"
                    "[inverter]\nmodbus_tcp = \"127.0.0.1:502\"\n")
    settings = ClientSettings.from_config(load_config(str(toml)))
    client = Ieee2030Client(settings, UtilitySchedule("ieee2030_5"), SiteView(view))
    client.site_meter = client.connector.site_meter = True
    client.traffic_recorder = recorder = Recorder()
    client.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            flags = {m.findtext(f"{NS}roleFlags") for m in _mups(recorder.sent)}
            site = [m for m in _mups(recorder.sent) if m.findtext(f"{NS}roleFlags") == SITE]
            if DER in flags and site and _w_readings(site[-1], recorder.sent):
                break
            time.sleep(0.2)
        else:
            from lxml import etree

            raise AssertionError(f"no site MUP with W posted: {sorted(flags)} " + " | ".join(
                etree.tostring(m).decode()[:1500] for m in _mups(recorder.sent)[:2]))
    finally:
        client.stop()
    der = [m for m in _mups(recorder.sent) if m.findtext(f"{NS}roleFlags") == DER]
    assert der and site
    # Two distinct mirrors: the DER's and the site's, under one EndDevice.
    assert site[-1].findtext(f"{NS}mRID") != der[-1].findtext(f"{NS}mRID")
    assert site[-1].findtext(f"{NS}deviceLFDI") == der[-1].findtext(f"{NS}deviceLFDI")
    # The site's W is the meter's. 2030.5 posts a magnitude with a flowDirection: at the
    # premises aggregation point forward (1) is import, reverse (19) export; this site
    # exports (the meter's W, import positive, is negative), so reverse.
    _mrid, flow, _mult = _w_type(site[-1])
    assert flow == 19
    w = _w_readings(site[-1], recorder.sent)
    assert w and w[-1] == pytest.approx(-site_w, abs=max(10.0, abs(site_w) * 0.01)), (w, site_w)
    # The DER's W is the inverter's output, delivered (forward).
    assert _w_type(der[-1])[1] == 1 and _w_readings(der[-1], recorder.sent)[-1] > 0
