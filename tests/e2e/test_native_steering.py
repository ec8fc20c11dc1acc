"""Issue 18, first slice, end to end: on an IEEE 1547-2018 device that has 705 the
device's own volt-var carries the gateway's curve, with no immediate reactive
writes; a device that refuses adoption gets gateway-steered volt-var, alone.

The agent runs with its default configuration (``[functions] steering`` "auto")
against the simulator started from a corpus profile; writes are counted by the
simulator per point (its control channel's ``writes``), Q is the simulated
plant's. Tolerance: IEEE 1547-2018 Table 3, Q within 5 % of rated VA.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from tests.corpus.runner import _controls, _events, _state_dir, _status, curve_q_pct

from .conftest import wait_for

POLL = 0.1
VA = 10000.0  # both profiles' rated VA
STEP_S = 10.0  # how long the 1.06 pu step is held and its writes counted


def _writes(sim: SimProcess) -> dict[str, int]:
    return sim.control.unit_state(1)["writes"]


def _q_err_pct(sim: SimProcess, v_pu: float) -> float:
    var = sim.control.unit_state(1)["plant"]["var"]
    return 100.0 * var / VA - curve_q_pct(v_pu)


def _step(sim: SimProcess) -> tuple[float, dict[str, int]]:
    """1.06 pu for STEP_S: the Q error at the end and the master writes during the step."""
    before = _writes(sim)
    sim.control.set_grid(v_pu=1.06)
    wait_for(lambda: abs(_q_err_pct(sim, 1.06)) <= 5.0, timeout=10, interval=0.2,
             what="Q on the curve")
    time.sleep(max(0.0, STEP_S - 1.0))
    err = _q_err_pct(sim, 1.06)
    after = _writes(sim)
    during = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    return err, during


@contextmanager
def _gateway(profile: str, agent_factory, tmp_path) -> Iterator[tuple[SimProcess, str]]:
    """The simulator from ``profile`` and the agent on it with its default steering."""
    state = _state_dir(str(tmp_path))
    with SimProcess("--profile", str(PROFILE_DIR / f"{profile}.json"), "--tau", "0.2",
                    "--seed", "7") as sim:
        agent_factory("--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--state-dir", state,
                      poll_period=POLL)
        yield sim, state


def test_a_705_device_runs_volt_var_itself_with_no_reactive_writes(agent_factory, tmp_path):
    with _gateway("1547-native-volt-var-selector", agent_factory, tmp_path) as (sim, state):
        wait_for(lambda: sim.control.get_point(705, "Crv[1].Pt[4].V") == 108.0, timeout=15,
                 what="the gateway's curve adopted into 705")
        w0 = sim.control.unit_state(1)["plant"]["w"]
        err, during = _step(sim)
        writes = _writes(sim)
        steering = wait_for(lambda: (_status(state).get("functions") or {}).get("steering"),
                            timeout=8, what="steering in status.json")
        print(f"\nnative 705: Q error {err:+.2f} % of rated VA at 1.06 pu; master writes "
              f"during the {STEP_S:.0f} s step: {sum(during.values())} {during}; "
              f"whole run: VarSetPct {writes.get('704/VarSetPct', 0)}, "
              f"VarSetEna {writes.get('704/VarSetEna', 0)}")
        assert abs(err) <= 5.0
        assert writes.get("704/VarSetPct", 0) == 0  # no immediate reactive writes at all
        assert sim.control.get_point(704, "VarSetEna") == 0
        assert sim.control.get_point(705, "Ena") == 1
        assert steering["volt_var"]["by"] == "native"
        c = _controls(sim, 1)
        assert c["connected"] and not c["limited"]
        assert sim.control.unit_state(1)["plant"]["w"] >= 0.95 * w0
        kinds = [e["kind"] for e in _events(state)]
        assert "native_curve_programmed" in kinds and "native_fallback" not in kinds


def test_a_device_refusing_adoption_gets_gateway_volt_var_alone(agent_factory, tmp_path):
    with _gateway("1547-refuses-adoption", agent_factory, tmp_path) as (sim, state):
        fallback = wait_for(lambda: [e for e in _events(state)
                                     if e["kind"] == "native_fallback"], timeout=15,
                            what="native_fallback event")
        w0 = sim.control.unit_state(1)["plant"]["w"]
        err, during = _step(sim)
        functions = wait_for(lambda: (_status(state).get("functions") or {}).get("alarms")
                             and _status(state)["functions"], timeout=8, what="alarm in status")
        print(f"\nrefused adoption: Q error {err:+.2f} % of rated VA at 1.06 pu; master writes "
              f"during the {STEP_S:.0f} s step: {sum(during.values())} {during}")
        assert fallback[0]["detail"].startswith("volt_var:")
        assert abs(err) <= 5.0
        assert sim.control.get_point(704, "VarSetEna") == 1  # the gateway carries volt-var
        assert functions["steering"]["volt_var"]["by"] == "gateway"
        assert functions["health"] == 3 and "volt_var" in functions["alarms"][0]
        c = _controls(sim, 1)  # for volt-var only: nothing curtailed or ceased
        assert c["connected"] and not c["limited"]
        assert sim.control.unit_state(1)["plant"]["w"] >= 0.95 * w0
        kinds = [e["kind"] for e in _events(state)]
        assert not {"trip", "cease_to_energize", "momentary_cessation"} & set(kinds)
