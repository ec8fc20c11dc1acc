"""Registration completes within 10 s of the inverter's first good poll, against
GridAPPS-D's IEEE 2030.5 server, with an inverter that answers at once and with one that
answers slowly (the simulator's ``--fault delay``: every Modbus answer late).

Each gateway is ``inverter-agent run`` against its simulator; when the inverter first
answered is the gateway's own "inverter link up" log line; when each resource was
accepted is in ``status`` (``ieee2030_5.resources``); what the server holds is read back
from it with the device's certificate (the ratings of the simulated inverter).
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.request
from datetime import datetime

import pytest
from lxml import etree

from simulator import SimProcess

from .conftest import config_toml
from .test_gridappsd_e2e import Gateway, wait_for

pytestmark = pytest.mark.timeout(300)
NS = {"s": "urn:ieee:std:2030.5:ns"}
MUST = ("DERCapability", "DERSettings", "DERStatus", "DERAvailability")


def logged_at(gw: Gateway, what: str) -> float:
    """Wall time of the gateway's first log line with ``what``."""
    m = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*" + re.escape(what), gw.log(),
                  re.M)
    assert m, f"no log line with {what!r}"
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1e3


def server_get(server, path: str) -> etree._Element:
    ctx = ssl.create_default_context(cafile=server.vars["IEEE2030_5_CA"])
    ctx.load_cert_chain(server.vars["IEEE2030_5_CLIENT_CERT"], server.vars["IEEE2030_5_CLIENT_KEY"])
    with urllib.request.urlopen(f"{server.url}{path}", context=ctx, timeout=10) as resp:
        return etree.fromstring(resp.read())


def watts(doc: etree._Element, name: str) -> float:
    el = doc.find(f"s:{name}", NS)
    return int(el.findtext("s:value", namespaces=NS)) * 10.0 ** int(
        el.findtext("s:multiplier", namespaces=NS))


@pytest.mark.parametrize("kind, sim_args, poll_period, rating", [
    ("fast", ("--tau", "0.2", "--w-rtg", "5000"), 0.2, 5000.0),
    # three-phase, silent until discovery at the server has finished, then every answer
    # 0.3 s late (polled every 2 s): the first full read takes seconds, and comes after
    # the server was ready (the case of issue 21, made so rather than left to timing)
    ("slow", ("--tau", "0.2", "--phases", "3", "--w-rtg", "7000", "--fault", "silent"),
     2.0, 7000.0),
])
def test_der_resources_put_within_10_s_of_the_first_good_poll(gridappsd, tmp_path, kind,
                                                              sim_args, poll_period, rating):
    with SimProcess(*sim_args) as sim:
        t0 = time.time()
        gw = Gateway(tmp_path, sim, config_toml(gridappsd), poll_period=poll_period)
        try:
            if kind == "slow":
                wait_for(lambda: "IEEE 2030.5: discovered" in gw.log(), 60,
                         "slow: discovery at the server")
                sim.control.fault("delay:0.3")
            def registered():
                res = gw.utility().get("resources") or {}
                return res if all((res.get(n) or {}).get("last_ok") for n in MUST) else None

            try:
                res = wait_for(registered, 60, f"{kind}: DER resources accepted")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{gw.utility().get('resources')}\n"
                                     f"{gw.log()[-3000:]}") from None
            up = logged_at(gw, "inverter link up")  # the first good poll
            discovered = logged_at(gw, "IEEE 2030.5: discovered")
            if kind == "slow":  # the server was ready before the ratings
                assert discovered < up, "the slow inverter answered before discovery ended"
            for name in MUST:
                r = res[name]
                assert r["result"].startswith("ok (HTTP 20"), (name, r)
                assert r["last_ok"] - up <= 10.0, f"{name} PUT {r['last_ok'] - up:.1f} s " \
                                                  "after the first good poll"
                assert r["last_ok"] >= up - 0.5, f"{name} PUT before the inverter was read"
            print(f"{kind}: link up {up - t0:.1f} s after start; PUTs "
                  + ", ".join(f"{n} +{res[n]['last_ok'] - up:.1f} s" for n in MUST))
            # what the server now holds: this inverter's rating
            cap = server_get(gridappsd, res["DERCapability"]["href"])
            assert watts(cap, "rtgMaxW") == rating
            settings = server_get(gridappsd, res["DERSettings"]["href"])
            assert watts(settings, "setMaxW") == rating
            status = server_get(gridappsd, res["DERStatus"]["href"])
            connect = int(status.findtext("s:genConnectStatus/s:value", namespaces=NS), 16)
            assert connect & 1, "DERStatus says not connected though the inverter runs"
            # nothing refused along the way, no day-long wait in the log
            assert "WMaxRtg is required" not in gw.log() and "WMax is required" not in gw.log()
        finally:
            gw.stop()
