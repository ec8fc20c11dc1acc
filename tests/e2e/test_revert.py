"""Issue 22: when the gateway dies, the inverter does not stay commanded.

The simulator (serving a device profile, with SunSpec revert timers) and the
agent run as processes over loopback TCP. The gateway curtails to 20 % and
holds a var setpoint; then it is killed (SIGKILL) or frozen (SIGSTOP): within
the revert time the device is back on its own settings and produces what it
has available. Restarted during an active utility event, the gateway puts the
event's limit back before the device reverts.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from inverter_agent.core.arbitration import ScheduledControl, UtilityControl, UtilitySchedule
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import get_profile, settings_from_dict, settings_to_dict
from inverter_agent.security import certs
from simulator import SimProcess
from simulator.profile import PROFILE_DIR, load_profile
from tests.e2e.conftest import AgentProcess, free_port

POLL = 0.2
REVERT_S = 4  # [functions] revert_timeout for the kill / freeze runs
RESTART_REVERT_S = 15  # longer than an agent start on a loaded test machine
LEGACY, IEEE1547 = "123-var-base-wmax", "704-var-base-vamax"
PROFILES = [LEGACY, IEEE1547]


def device(sim: SimProcess, unit: int = 1) -> dict[str, Any]:
    """What the device has been told and what it produces."""
    st = sim.control.unit_state(unit)
    c = st["controls"]
    if "123" in c:
        m = c["123"]
        limit = m["WMaxLimPct"] if m["WMaxLim_Ena"] == 1 else None
        var_on = m["VArPct_Ena"] == 1
        timers = (m["WMaxLimPct_RvrtTms"], m["VArPct_RvrtTms"])
    else:
        m = c["704"]
        limit = m["WMaxLimPct"] if m["WMaxLimPctEna"] == 1 else None
        var_on = m["VarSetEna"] == 1
        timers = (m["WMaxLimPctRvrtTms"], m["VarSetRvrtTms"])
    return {"limit": limit, "var_on": var_on, "timers": timers, **st["plant"]}


def _until(fn, timeout: float, interval: float = 0.05) -> tuple[Any, float]:
    """(first truthy value of fn(), monotonic time it was seen); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last, time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s (last {last!r})")


def _state(root: str, limit_and_var: bool) -> str:
    d = settings_to_dict(get_profile("rule21"))
    if limit_and_var:  # the gateway's own settings: curtail to 20 %, hold 30 % vars
        d["active_power_limit"].update(enabled=True, p_limit_pct=20.0)
        d["volt_var"]["enabled"] = False
        d["constant_var"].update(enabled=True, q_pct=30.0)
    state = os.path.join(root, "state")
    os.makedirs(state, exist_ok=True)
    SettingsStore(state, "rule21").save(settings_from_dict(d))
    return state


def _agent(root: str, sim: SimProcess, config: str) -> AgentProcess:
    a = AgentProcess(root, "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--config", config,
                     poll_period=POLL)
    return a.start()


def _commanded(sim: SimProcess, w_max: float, revert_s: int) -> bool:
    d = device(sim)
    return (d["limit"] == pytest.approx(20.0, abs=0.2) and d["var_on"]
            and d["timers"] == (revert_s, revert_s) and d["w"] <= 0.2 * w_max + 50
            and d["var"] > 0.1 * w_max)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
@pytest.mark.parametrize("name", PROFILES)
def test_a_dead_or_frozen_gateway_leaves_the_device_on_its_own_settings(tmp_path, name, how):
    prof = load_profile(PROFILE_DIR / f"{name}.json")
    w_max = prof.ratings.w_max
    root = str(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(f"[functions]\nrevert_timeout = {REVERT_S}\n")
    _state(root, limit_and_var=True)
    with SimProcess("--profile", prof.path, "--tau", "0.2", "--seed", "7") as sim:
        agent = _agent(root, sim, str(config))
        try:
            _until(lambda: _commanded(sim, w_max, REVERT_S), timeout=30)
            # While the gateway runs it re-arms the timers: no revert over twice their time.
            end = time.monotonic() + 2 * REVERT_S
            while time.monotonic() < end:
                d = device(sim)
                assert d["limit"] is not None and d["var_on"], f"reverted while running: {d}"
                time.sleep(0.1)
            assert agent.proc is not None
            t0 = time.monotonic()
            os.kill(agent.proc.pid, getattr(signal, how))
            _, t_rev = _until(lambda: (d := device(sim))["limit"] is None and not d["var_on"],
                              timeout=REVERT_S + 5)
            after = t_rev - t0
            print(f"{name} {how}: back on its own settings {after:.2f} s after the gateway "
                  f"stopped (revert time {REVERT_S} s)")
            # The device's own timer, run out (2 s of room for a loaded machine) ...
            assert after <= REVERT_S + 2.0, after
            # ... from a refresh shortly before the stop (the gateway re-arms every third
            # of the revert time; half of it allowed for a loaded machine).
            assert after >= REVERT_S / 2 - 0.5, after
            # Producing what it has available, no var setpoint.
            d, _ = _until(lambda: (x := device(sim))["w"] >= 0.98 * x["w_avail"]
                          and abs(x["var"]) < 0.02 * w_max and x, 5)
            assert d["w_avail"] > 0.5 * w_max
            if how == "SIGSTOP":  # thawed, it steers again
                os.kill(agent.proc.pid, signal.SIGCONT)
                _until(lambda: _commanded(sim, w_max, REVERT_S), timeout=10)
        finally:
            if agent.alive():
                os.kill(agent.proc.pid, signal.SIGCONT)
            agent.terminate()


def _client_config(tmp_path, revert_s: int) -> str:
    ca = str(tmp_path / "ca")
    ca_pem = certs.create_ca(ca)
    key, cert = certs.issue(ca, "dev-1", str(tmp_path / "dev"))
    # A utility server that does not answer: the limit can only come from the schedule
    # the gateway kept in its state directory.
    config = tmp_path / "agent.toml"
    config.write_text(f'[functions]\nrevert_timeout = {revert_s}\n[ieee2030_5]\n'
                      f'server = "https://127.0.0.1:{free_port()}"\ncert = "{cert}"\n'
                      f'key = "{key}"\nca = "{ca_pem}"\n')
    return str(config)


@pytest.mark.parametrize("name", PROFILES)
def test_restarted_during_a_utility_event_the_limit_is_back_before_the_device_reverts(
        tmp_path, name):
    prof = load_profile(PROFILE_DIR / f"{name}.json")
    root = str(tmp_path)
    state = _state(root, limit_and_var=False)
    config = _client_config(tmp_path, RESTART_REVERT_S)
    now = time.time()
    # The schedule as the 2030.5 client keeps it: an event in force for ten minutes.
    UtilitySchedule(source="ieee2030_5", path=os.path.join(state, "utility_schedule.json")) \
        .put_event(ScheduledControl("ev-1", now - 5, now + 600, UtilityControl(p_limit_pct=20.0),
                                    created=now - 60, source="ieee2030_5"))

    def limited() -> bool:
        return device(sim)["limit"] == pytest.approx(20.0, abs=0.2)

    with SimProcess("--profile", prof.path, "--tau", "0.2", "--seed", "7") as sim:
        first = _agent(root, sim, config)
        second = None
        try:
            _until(lambda: limited() and device(sim)["timers"][0] == RESTART_REVERT_S, 30)
            assert first.proc is not None
            t0 = time.monotonic()
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(5)
            second = AgentProcess(root, "--modbus-tcp", f"127.0.0.1:{sim.tcp_port}",
                                  "--config", config, poll_period=POLL)
            second.start(wait_mms=False)
            back = None
            # Limited all along, past the time the device would have reverted alone.
            while time.monotonic() < t0 + RESTART_REVERT_S + 2:
                assert limited(), f"the limit lapsed {time.monotonic() - t0:.1f} s after " \
                                  f"the kill: {device(sim)}"
                if back is None and "setpoints" in second.log():
                    back = time.monotonic() - t0
                time.sleep(0.1)
            assert back is not None, second.log()[-2000:]
            print(f"{name}: the restarted gateway re-asserted the event's limit {back:.2f} s "
                  f"after the kill (revert time {RESTART_REVERT_S} s)")
            assert back < RESTART_REVERT_S
            assert "event ev-1" in second.log() or "utility_control" in second.log() or \
                "p_limit" in second.log()
        finally:
            first.terminate()
            if second is not None:
                second.terminate()


def test_a_device_without_revert_timers_is_named_in_status(tmp_path):
    """The gateway writes no timer the device lacks, and `status` says what that leaves."""
    from tests.corpus.runner import _status_command

    prof = load_profile(PROFILE_DIR / "123-no-revert-timers.json")
    root = str(tmp_path)
    state = _state(root, limit_and_var=True)
    config = tmp_path / "agent.toml"
    config.write_text(f"[functions]\nrevert_timeout = {REVERT_S}\n")
    with SimProcess("--profile", prof.path, "--tau", "0.2", "--seed", "7") as sim:
        agent = _agent(root, sim, str(config))
        try:
            _until(lambda: device(sim)["limit"] == pytest.approx(20.0, abs=0.2), 30)
            shown, _ = _until(lambda: "no revert timer" in (s := _status_command(state)) and s,
                              timeout=15, interval=0.5)
            assert "the active power limit" in shown and "the var setpoint" in shown
            assert device(sim)["timers"] == (None, None)  # never written
            agent.proc.kill()  # the limit stays: this device has nothing to end it
            agent.proc.wait(5)
            time.sleep(REVERT_S + 1)
            assert device(sim)["limit"] == pytest.approx(20.0, abs=0.2)
        finally:
            agent.terminate()


def test_a_clean_stop_lifts_a_1547_cease_that_has_no_timer(tmp_path):
    """703 ES has no revert timer: stopped cleanly while ceased, the gateway permits
    service again, and the device's own enter-service settings govern its return."""
    prof = load_profile(PROFILE_DIR / f"{IEEE1547}.json")
    root = str(tmp_path)
    _state(root, limit_and_var=False)
    config = tmp_path / "agent.toml"
    config.write_text(f"[functions]\nrevert_timeout = {REVERT_S}\n")
    with SimProcess("--profile", prof.path, "--tau", "0.2", "--seed", "7") as sim:
        agent = _agent(root, sim, str(config))
        try:
            es = lambda: sim.control.unit_state(1)["controls"]["703"]["ES"]  # noqa: E731
            _until(lambda: device(sim)["limit"] is not None, 30)  # steering
            sim.control.set_grid(v_pu=1.25)
            _until(lambda: es() == 0, 5)  # the backup trip
            rc, took = agent.terminate()
            assert rc == 0 and es() == 1, agent.log()[-2000:]
            assert "cease to energize lifted" in agent.log()
        finally:
            sim.control.set_grid(v_pu=1.0)
            agent.terminate()
