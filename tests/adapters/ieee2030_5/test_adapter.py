"""The 2030.5 adapter without the big server: value checks, config, LFDI, the connector's
handling of the engine's schedule relay, and a server that sends garbage."""

from __future__ import annotations

import asyncio
import http.server
import math
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from py20305.connectors.base import ScheduleNotification
from py20305.connectors.control_errors import ControlError, InvalidControlValueError
from py20305.events.response import response_code_for_dispatch_error
from py20305.security import compute_lfdi, compute_sfdi

from inverter_agent.adapters.ieee2030_5.client import ClientSettings, Ieee2030Client
from inverter_agent.adapters.ieee2030_5.connector import GatewayConnector
from inverter_agent.adapters.ieee2030_5.identity import lfdi_sfdi
from inverter_agent.adapters.ieee2030_5.site_view import SiteView, alarm_bits
from inverter_agent.adapters.ieee2030_5.translate import ControlRejected, control_from_base
from inverter_agent.config import ConfigError, load
from inverter_agent.core.arbitration import UtilityControl, UtilitySchedule
from inverter_agent.security import certs

from .conftest import free_port


@pytest.mark.parametrize("base, expected", [
    ({"op_mod_max_lim_w": {"value": 5000, "disabled": False}}, UtilityControl(p_limit_pct=50.0)),
    ({"op_mod_max_lim_w": {"value": 0}}, UtilityControl(p_limit_pct=0.0)),
    ({"op_mod_max_lim_w": {"value": 10000, "disabled": True}}, UtilityControl()),
    ({"op_mod_connect": False, "op_mod_energize": True},
     UtilityControl(connect=False, energize=True)),
    ({"op_mod_fixed_pfinject_w": {"displacement": 95, "multiplier": -2, "excitation": True}},
     UtilityControl(fixed_pf=(0.95, True))),
    ({"op_mod_fixed_var": {"ref_type": 2, "value": {"value": -2500}}},
     UtilityControl(fixed_var_pct=-25.0)),
    # as py20305 relays it from a real server: simple types wrapped
    ({"op_mod_fixed_pfinject_w": {"displacement": 97, "multiplier": {"value": -2},
                                  "excitation": False}}, UtilityControl(fixed_pf=(0.97, False))),
    ({"op_mod_fixed_var": {"ref_type": {"value": 2}, "value": {"value": 1000}}},
     UtilityControl(fixed_var_pct=10.0)),
    (None, UtilityControl()),
])
def test_controls_translate_into_core_units(base, expected):
    assert control_from_base(base) == expected


@pytest.mark.parametrize("base, why", [
    ({"op_mod_max_lim_w": {"value": 20000}}, "opModMaxLimW = 20000"),  # 200 %
    ({"op_mod_max_lim_w": {"value": -1}}, "opModMaxLimW = -1"),
    ({"op_mod_max_lim_w": {"value": math.nan}}, "opModMaxLimW = nan"),
    ({"op_mod_max_lim_w": {"value": 50.5}}, "opModMaxLimW = 50.5"),
    ({"op_mod_max_lim_w": {"value": True}}, "opModMaxLimW = True"),
    ({"op_mod_connect": "yes"}, "opModConnect"),
    ({"op_mod_fixed_pfinject_w": {"displacement": 150, "multiplier": -2}}, "power factor"),
    ({"op_mod_fixed_pfinject_w": {"displacement": 0, "multiplier": 0}}, "power factor"),
    ({"op_mod_fixed_var": {"ref_type": 1, "value": {"value": 10}}}, "refType = 1"),
    ({"op_mod_fixed_var": {"ref_type": 2, "value": {"value": 30000}}}, "opModFixedVar.value"),
    ({"op_mod_fixed_pfabsorb_w": {"displacement": 9, "multiplier": -1}}, "absorb"),
    ({"op_mod_fixed_w": {"value": 5000}}, "opModFixedW: no storage"),  # PV only
    ({"op_mod_target_w": {"value": 5000}}, "op_mod_target_w"),
    ({"op_mod_hvrtmust_trip": {"href": "/dc_1"}}, "op_mod_hvrtmust_trip"),  # protection: ours
    ({"op_mod_fixed_pfinject_w": {"displacement": 95, "multiplier": -2},
      "op_mod_fixed_var": {"ref_type": 2, "value": {"value": 10}}}, "one reactive mode"),
])
def test_absurd_or_unsupported_controls_are_refused_whole(base, why):
    with pytest.raises(ControlRejected, match=why.replace("(", r"\(")):
        control_from_base(base)


def _notification(stream: str, transition: str, mrid: str, base: dict | None,
                  start: int | None = None, duration: int | None = None, primacy: int = 0,
                  program: str = "/derp_1") -> ScheduleNotification:
    return ScheduleNotification(
        stream=stream, transition=transition,
        status=None if stream != "control" else transition, current_status=None, mrid=mrid,
        program_href=program, primacy=primacy, start=start, duration=duration,
        end=None if start is None else start + duration, affected_lfdis=[],
        randomization=(None, None),
        payload={"mrid": mrid, "creation_time": 1, "control_base": base})


def test_connector_feeds_the_core_schedule_and_refuses_bad_events():
    schedule = UtilitySchedule("ieee2030_5")
    records: list[tuple[str, str]] = []
    conn = GatewayConnector(schedule, SiteView(lambda: None), lambda: 2.0,
                            lambda k, d: records.append((k, d)))
    run = asyncio.run
    run(conn.on_schedule_notification(_notification(
        "control", "scheduled", "aa" * 16, {"op_mod_max_lim_w": {"value": 4000}}, 1000, 60)))
    (event,) = schedule.events()
    assert (event.start, event.end, event.control.p_limit_pct) == (998.0, 1058.0, 40.0)
    # an absurd one: refused, never in the schedule, reported once
    bad = _notification("control", "scheduled", "bb" * 16, {"op_mod_max_lim_w": {"value": 9e9}},
                        1000, 60)
    run(conn.on_schedule_notification(bad))
    run(conn.on_schedule_notification(bad))
    assert [e.ident for e in schedule.events()] == ["aa" * 16]
    assert "bb" * 16 in conn.refused
    assert [k for k, _ in records].count("utility_control_refused") == 1
    # cancelled / superseded events leave the schedule
    run(conn.on_schedule_notification(_notification("control", "cancelled", "aa" * 16, None)))
    assert schedule.events() == []
    # default controls: the lowest primacy program's; a bad update keeps the last good one
    run(conn.on_schedule_notification(_notification(
        "default_baseline", "default_added", "cc" * 16, {"op_mod_max_lim_w": {"value": 7000}},
        primacy=5, program="/derp_2")))
    run(conn.on_schedule_notification(_notification(
        "default_baseline", "default_added", "dd" * 16, {"op_mod_max_lim_w": {"value": 9000}},
        primacy=1, program="/derp_1")))
    assert schedule.default() == UtilityControl(p_limit_pct=90.0)
    run(conn.on_schedule_notification(_notification(
        "default_baseline", "default_updated", "dd" * 16, {"op_mod_max_lim_w": {"value": -5}},
        primacy=1, program="/derp_1")))
    assert schedule.default() == UtilityControl(p_limit_pct=90.0)
    # a relay the connector cannot read does not escape into the engine
    run(conn.on_schedule_notification(_notification("control", "scheduled", "ee" * 16,
                                                    {"op_mod_max_lim_w": "x"}, 1, 1)))


def test_activation_checks_answer_with_the_csip_rejection():
    conn = GatewayConnector(UtilitySchedule(), SiteView(lambda: None))
    asyncio.run(conn.update_p_lim({"p_lim_mode_enable": 1, "p_lim_w": 50.0}))
    with pytest.raises(InvalidControlValueError):
        asyncio.run(conn.update_p_lim({"p_lim_mode_enable": 1, "p_lim_w": 200.0}))
    with pytest.raises(InvalidControlValueError):
        asyncio.run(conn.update_p_lim({"p_lim_mode_enable": 1, "p_lim_w": math.nan}))
    # curves: checked whole before activation (check_derc), the core applies them
    assert asyncio.run(conn.update_qv({"qv_mode_enable": 1})) is None
    with pytest.raises(ControlError) as exc:
        asyncio.run(conn.update_freq_watt({"fw_mode_enable": 1}))
    assert response_code_for_dispatch_error(exc.value) == 252  # not applicable


def test_trips_and_cessation_raise_the_derstatus_alarms_csip_logs():
    assert alarm_bits({"tripped": True, "voltage_region": "HV2"}) == 1 << 1
    assert alarm_bits({"state": "momentary_cessation", "voltage_region": "LV3"}) == 1 << 2
    assert alarm_bits({"tripped": True, "frequency_region": "HF2"}) == 1 << 3
    assert alarm_bits({"tripped": True, "out_of_service_kind": "anti_islanding_trip"}) == 1 << 7
    assert alarm_bits({"tripped": True, "out_of_service_kind": "rocof_trip"}) == 1 << 7
    # the kind decides, never the text: a voltage trip whose text names islanding is no island
    assert alarm_bits({"tripped": True, "out_of_service_kind": "voltage_trip",
                       "out_of_service_cause": "ROCOF anti-islanding"}) == 0
    assert alarm_bits({"state": "continuous"}) == 0


def test_config_section_is_checked(tmp_path):
    good = load(None, {"ieee2030_5.server": "https://utility.example:8443",
                       "ieee2030_5.max_poll_interval": 10})
    assert good["ieee2030_5.check_hostname"] is True and good["ieee2030_5.post_rate"] == 300.0
    for key, value, why in (("server", "http://x", "TLS only"),
                            ("server", "https://h:99999", "https://HOST"),
                            ("max_poll_interval", 5, "out of range"),
                            ("post_rate", 1e6, "out of range"),
                            ("pin", -1, "out of range")):
        with pytest.raises(ConfigError, match=why):
            load(None, {f"ieee2030_5.{key}": value})
    f = tmp_path / "a.toml"
    f.write_text('[ieee2030_5]\nserver = "https://h"\npoll_ceiling = 10\n')
    with pytest.raises(ConfigError, match="unknown key 'poll_ceiling'"):
        load(str(f))
    with pytest.raises(ConfigError, match="cert, key, ca"):
        ClientSettings.from_config(load(None, {"ieee2030_5.server": "https://h"}))
    missing = {f"ieee2030_5.{k}": str(tmp_path / f"no-{k}.pem") for k in ("cert", "key", "ca")}
    with pytest.raises(ConfigError, match=r"command line: \[ieee2030_5\] cert: .*no-cert"
                                          r"\.pem: no such file"):
        ClientSettings.from_config(load(None, {"ieee2030_5.server": "https://h", **missing}))


def test_lfdi_command_matches_the_engine(tmp_path):
    certs.create_ca(str(tmp_path / "ca"))
    _key, cert = certs.issue(str(tmp_path / "ca"), "dev-1", str(tmp_path / "dev"))
    pem = Path(cert).read_bytes()
    lfdi, sfdi = lfdi_sfdi(pem)
    assert lfdi == compute_lfdi(pem.decode()) and sfdi == compute_sfdi(lfdi)
    assert len(lfdi) == 40 and sum(map(int, str(sfdi))) % 10 == 0  # the SFDI check digit
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "lfdi", "--cert", cert],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["LFDI", lfdi, "SFDI", str(sfdi)]
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "lfdi", "--cert",
                        str(tmp_path / "ca" / "ca.key")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "not a certificate" in r.stderr


class _Garbage(http.server.BaseHTTPRequestHandler):
    """A 2030.5 'server' that answers every GET with broken XML (a fault no real server
    we can run produces on demand)."""

    bodies = [b"<DeviceCapability xmlns='urn:ieee:std:2030.5:ns'><unclosed",
              b"<DeviceCapability xmlns='urn:ieee:std:2030.5:ns' href='/dcap'>"
              b"<NoSuchElement>1</NoSuchElement><pollRate>-5</pollRate></DeviceCapability>",
              b"\x00\xff not xml at all"]
    hits = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.bodies[type(self).hits % len(self.bodies)]
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/sep+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_a):
        pass


def test_malformed_server_answers_are_refused_nothing_crashes(tmp_path):
    ca = tmp_path / "ca"
    certs.create_ca(str(ca))
    skey, scert = certs.issue(str(ca), "server", str(tmp_path / "s"), server=True,
                              sans=["127.0.0.1"])
    ckey, ccert = certs.issue(str(ca), "dev", str(tmp_path / "c"))
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Garbage)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(scert, skey)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    schedule = UtilitySchedule("ieee2030_5")
    settings = ClientSettings(server=f"https://127.0.0.1:{port}", cert=ccert, key=ckey,
                              ca=str(ca / "ca.pem"), max_poll_interval=10)
    client = Ieee2030Client(settings, schedule, SiteView(lambda: None))
    try:
        client.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _Garbage.hits < 3:
            time.sleep(0.1)
        assert _Garbage.hits >= 3, "the client stopped retrying"
        st = client.status()
        assert st["state"] == "lost" and st["last_error"]
        assert schedule.events() == [] and schedule.default() is None
        assert client._thread.is_alive()  # retrying with back-off, not dead
    finally:
        t0 = time.monotonic()
        client.stop()
        httpd.shutdown()
    assert time.monotonic() - t0 < 6 and not client._thread.is_alive()


def test_run_refuses_to_start_with_unusable_2030_5_tls_material(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[ieee2030_5]\nserver = "https://127.0.0.1:9"\n'
                   f'cert = "{tmp_path}/none.crt"\nkey = "{tmp_path}/none.key"\n'
                   f'ca = "{tmp_path}/none.pem"\n')
    r = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "run", "--config", str(cfg),
                        "--modbus-tcp", "127.0.0.1:9", "--mms-port", str(free_port()),
                        "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"{cfg}: [ieee2030_5] cert: {tmp_path}/none.crt: no such file" in r.stderr


def test_several_inverters_are_one_site_end_device():
    """Ratings and readings are the site's sums (one EndDevice; limits by % of rating)."""
    from hal.reading import GOOD, LINK_FAILURE, Reading
    from inverter_agent.core.view import CycleView, inverter_view

    def agent(w, rtg, up=True, st=4):
        q = GOOD if up else LINK_FAILURE
        snap = {k: Reading(v, q, 0.0) for k, v in (
            ("W", w), ("VAr", -0.1 * w), ("VA", w), ("A", w / 240), ("Hz", 60.0),
            ("PhVphA", 240.0), ("WRtg", rtg), ("VARtg", rtg), ("WMax", rtg), ("VNom", 240.0),
            ("VArRtgQ1", 0.44 * rtg), ("VArRtgQ4", -0.44 * rtg), ("WAval", rtg), ("St", st))}
        snap["link"] = Reading(up, GOOD, 0.0)
        return inverter_view(f"INV{int(rtg)}", snap, up)

    view = CycleView(0.0, (agent(3000.0, 5000.0), agent(1000.0, 3000.0),
                           agent(0.0, 9999.0, up=False)))
    site = SiteView(lambda: view)
    m = site.monitoring()
    assert m["W"] == 4000.0 and m["Var"] == -400.0 and m["Hz"] == 60.0
    n = site.nameplate()
    assert n["WMaxRtg"] == 8000.0 and n["VarMaxAbsRtg"] == pytest.approx(0.44 * 8000)
    assert site.configuration()["WMax"] == 8000.0  # the inverter that does not answer: out
    st = site.status()
    assert st["connectStatus"]["value"] & 1 and st["inverterStatus"]["value"] == 4
    assert site.availability()["statWAvail"]["value"] == 8000
