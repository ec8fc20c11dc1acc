"""Issue 18, protection in the device, end to end: the agent (its default steering)
against the simulator started from a 1547 profile carrying 707-710; settings written
over MMS; the device's own protection is the simulator's, run from its registers.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import time

from inverter_agent.adapters.mms import client as mms
from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from tests.core.test_native_trip import RULE21, device_curve
from tests.corpus.runner import _events, _state_dir, _status

from .conftest import LD, wait_for

POLL = 0.1


def test_trip_settings_over_mms_reach_the_device_and_a_panel_change_is_corrected(
        agent_factory, tmp_path):
    state = _state_dir(str(tmp_path))
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[functions]\nverify_every = 2.0\n")
    with SimProcess("--profile", str(PROFILE_DIR / "1547-native-protection.json"),
                    "--tau", "0.2", "--seed", "3") as sim:
        agent = agent_factory("--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--state-dir",
                              state, "--config", str(cfg), poll_period=POLL)
        wait_for(lambda: device_curve(sim, 708, "MustTrip") == RULE21[708]["must"],
                 timeout=15, what="the profile's HV must-trip in 708")
        client = mms.connect("127.0.0.1", agent.port)
        try:
            t0 = time.monotonic()  # HV2 (index 1) clearing time 0.16 s -> 0.14 s
            client.write_float(f"{LD}/DHVT1.RtCrv.crvPts(1).xVal", "SP", 0.14)
            wait_for(lambda: (120.0, 0.14) in device_curve(sim, 708, "MustTrip"), timeout=15,
                     interval=0.1, what="the new HV2 clearing time in 708")
            took = time.monotonic() - t0
        finally:
            client.close()
        print(f"\nHV2 clearing time written over MMS: in the device's 708 after {took:.2f} s")
        assert took <= 15.0
        assert sim.control.get_point(708, "Ena") == 1
        # A change at the panel: the low-voltage protection switched off.
        sim.control.set_point(707, "Ena", 0)
        wait_for(lambda: sim.control.get_point(707, "Ena") == 1, timeout=10,
                 what="707 on again")
        alarms = wait_for(lambda: [a for a in (_status(state).get("functions") or {})
                                   .get("alarms", ()) if a.startswith("lv_trip")] or
                          [e for e in _events(state) if e["kind"] == "native_curve_mismatch"
                           and e["detail"].startswith("lv_trip")],
                          timeout=5, what="an alarm naming lv_trip")
        assert alarms
        steering = _status(state)["functions"]["steering"]
        assert {f: steering[f]["by"] for f in ("lv_trip", "hv_trip", "lf_trip", "hf_trip")} \
            == dict.fromkeys(("lv_trip", "hv_trip", "lf_trip", "hf_trip"), "native")


def test_a_device_refusing_its_hv_trip_program_falls_back_for_that_function_only(
        agent_factory, tmp_path):
    state = _state_dir(str(tmp_path))
    with SimProcess("--profile", str(PROFILE_DIR / "1547-refuses-hv-trip.json"),
                    "--tau", "0.2", "--seed", "3") as sim:
        agent = agent_factory("--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--state-dir",
                              state, poll_period=POLL)
        wait_for(lambda: [e for e in _events(state) if e["kind"] == "native_fallback"],
                 timeout=15, what="native_fallback event")
        wait_for(lambda: device_curve(sim, 707, "MustTrip") == RULE21[707]["must"],
                 timeout=10, what="the LV must-trip in 707")
        with mms.connect("127.0.0.1", agent.port) as con:
            health = wait_for(lambda: con.read_value(f"{LD}/DHVT1.Health.stVal", "ST") == 3,
                              timeout=5, what="DHVT1.Health Alarm over MMS")
            assert health
            assert con.read_value(f"{LD}/DLVT1.Health.stVal", "ST") != 3
        steering = _status(state)["functions"]["steering"]
        assert steering["hv_trip"]["by"] == "gateway"
        assert [f for f in ("lv_trip", "lf_trip", "hf_trip", "volt_var", "enter_service",
                            "freq_watt") if steering[f]["by"] != "native"] == []
        # For that function only: nothing curtailed, nothing ceased.
        assert sim.control.get_point(703, "ES") == 1
        assert sim.control.get_point(708, "Ena") == 1
        kinds = {e["kind"] for e in _events(state)}
        assert not {"trip", "cease_to_energize", "momentary_cessation"} & kinds
