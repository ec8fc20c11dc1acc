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
