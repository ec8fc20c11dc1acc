"""Issue 18, never leave a device with fewer functions than it had, across a restart:
the gateway killed while it held the device's own volt-var off for a temporary fixed
power factor, the device's PF released by its own 704 timer, the gateway started
again (as systemd restarts it) with persisted settings that have volt-var off and no
reactive mode on: the device's own volt-var, as the gateway first saw it, is on again.

Before the record in the state directory (``device_own.json``), the restarted gateway
read 705 ``Ena`` 0, left there by its killed predecessor, as the device's own, and the
device stayed with no reactive function at all.

Processes over loopback: the simulator (1547-native-protection: 705 and reactive modes
that exclude each other), the agent (``inverter-agent run`` with its DNP3 outstation)
and dnp3py's master, which sends the temporary PF (AN2018-001: reversion timeout
AO209, PF AO210, enable BO28). The revert timers are longer than the window
(``revert_timeout`` 10 s against a 5 s window), so the device's PF timer releases PF
after the window ended: the gateway comes back to its persisted settings, not to the
window. The device's registers are read through the simulator's control channel.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import get_profile, settings_from_dict, settings_to_dict
from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from tests.adapters.dnp3.conftest import SUCCESS, ForeignMaster
from tests.corpus.runner import _events, _status
from tests.e2e.conftest import AgentProcess, free_port
from tests.e2e.test_native_temporary_curve import _accepts, _until

PROFILE = str(PROFILE_DIR / "1547-native-protection.json")
POLL = 0.2
WINDOW_S = 5  # the master's PF reversion timeout (AO209)
REVERT_S = 10  # [functions] revert_timeout: the device's PF timer, past the window


def _point(sim: SimProcess, model: int, name: str) -> int:
    return int(sim.control.get_point(model, name))


def _restored(state: str, after: float) -> list[dict[str, Any]]:
    return [e for e in _events(state) if e["kind"] == "native_restored"
            and e["detail"].startswith("volt_var") and e["time"] >= after]


def test_a_restart_after_a_kill_in_a_temporary_pf_gives_the_device_its_volt_var_back(
        tmp_path):
    root = str(tmp_path)
    state = os.path.join(root, "state")
    os.makedirs(state)
    d = settings_to_dict(get_profile("rule21"))
    d["volt_var"]["enabled"] = False  # no reactive mode on: volt-var left to the device
    SettingsStore(state, "rule21").save(settings_from_dict(d))
    dnp3_port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f"[dnp3]\nenabled = true\nport = {dnp3_port}\n"
                      f"[functions]\nrevert_timeout = {REVERT_S}\n")
    with SimProcess("--profile", PROFILE, "--tau", "0.2", "--seed", "7") as sim:
        args = ("--modbus-tcp", f"127.0.0.1:{sim.tcp_port}", "--config", str(config))
        assert _point(sim, 705, "Ena") == 1  # the device runs its own volt-var
        agent = AgentProcess(root, *args, poll_period=POLL).start()
        again = None
        try:
            _until(lambda: os.path.exists(os.path.join(state, "device_own.json")),
                   time.monotonic() + 30, "the device's own settings recorded")
            _until(lambda: _accepts(dnp3_port), time.monotonic() + 30, "the DNP3 outstation")
            master = ForeignMaster(dnp3_port)
            assert _point(sim, 705, "Ena") == 1  # left to the device: nothing written
            _until(lambda: _own_recorded(state), time.monotonic() + 10, "status: own_recorded")
            first = _own_recorded(state)
            statuses = master.operate_in_turn([("AO", 209, WINDOW_S), ("AO", 210, 95),
                                               ("BO", 28, True)])
            sent = time.monotonic()
            assert statuses == [SUCCESS] * 3
            # The PF mode in force: 705 Ena written 0 (reactive modes exclude each other).
            _until(lambda: _point(sim, 704, "PFWInjEna") == 1
                   and _point(sim, 705, "Ena") == 0, sent + 15, "the temporary PF in force")
            assert time.monotonic() < sent + WINDOW_S  # inside the window
            assert agent.proc is not None
            os.kill(agent.proc.pid, signal.SIGKILL)
            agent.proc.wait(5)
            killed = time.monotonic()
            released = _until(lambda: _point(sim, 704, "PFWInjEna") == 0,
                              time.monotonic() + REVERT_S + 5, "the device's PF timer")
            assert released >= sent + WINDOW_S  # the window is over
            assert _point(sim, 705, "Ena") == 0  # no reactive function left: the gap
            print(f"\nkilled {killed - sent:.2f} s into the {WINDOW_S} s window, PF "
                  f"released by the device {released - killed:.2f} s after the kill")
            os.remove(os.path.join(state, "status.json"))  # the next one is the restart's
            started, wall = time.monotonic(), time.time()
            again = AgentProcess(root, *args, poll_period=POLL).start()
            on = _until(lambda: _point(sim, 705, "Ena") == 1, started + 15,
                        "the device's own volt-var on again")
            print(f"705 Ena 1 again {on - started:.2f} s after the agent was started again")
            _until(lambda: _restored(state, wall - 1.0), time.monotonic() + 5,
                   "a native_restored event")
            assert _point(sim, 704, "PFWInjEna") == 0  # no PF of the gateway's either
            _until(lambda: _own_recorded(state) == first, time.monotonic() + 10,
                   "status: the first record")
            assert again.alive()
        finally:
            for a in (again, agent):
                if a is not None:
                    a.terminate()


def _own_recorded(state: str) -> str | None:
    """``functions.own_recorded`` of the agent's status.json (when the device's own
    settings were recorded: the first start's record, kept); None while there is none."""
    return (_status(state).get("functions") or {}).get("own_recorded")
