"""docs/arbitration.md, row by row: who wins each conflict between sources of command.

Each test drives the real settings service (persisted settings, MMS-style
operator commands, a utility schedule as the 2030.5 adapter fills it) and the
real engine, and checks the setpoints the inverter would be sent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inverter_agent.arbitration import ScheduledControl, UtilityControl, UtilitySchedule, select
from inverter_agent.events import EventLog
from inverter_agent.functions import EngineState, Measurements, ReactiveMode, step
from inverter_agent.settings_service import SettingsService
from inverter_agent.settings_store import SettingsStore

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0  # wall-clock (epoch) time of the scenario


class World:
    """A settings service with a utility schedule and a wall clock we move."""

    def __init__(self, tmp_path: Path, **persisted) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.now = T0
        self.events = EventLog(str(tmp_path))
        self.svc = SettingsService(SettingsStore(str(tmp_path), "rule21"), self.events,
                                   revert_after_s=None)
        self.svc.wall = lambda: self.now
        self.schedule = UtilitySchedule(source="ieee2030_5")
        self.svc.attach_utility(self.schedule)
        if persisted:
            self.svc.write(persisted, who="test")

    def event(self, ident: str, control: UtilityControl, start: float = -10, end: float = 600,
              primacy: int = 0, created: float = 0.0) -> None:
        self.schedule.put_event(ScheduledControl(ident, T0 + start, T0 + end, control,
                                                 primacy, T0 + created, "ieee2030_5"))
        self.svc.tick()

    def default(self, control: UtilityControl | None) -> None:
        self.schedule.set_default(control)
        self.svc.tick()

    def at(self, dt: float) -> None:
        self.now = T0 + dt
        self.svc.tick()

    def setpoints(self, v_pu: float = 1.0, seconds: float = 60.0):
        """Run the engine on the effective settings for ``seconds`` at ``v_pu``."""
        settings = self.svc.effective()
        state = EngineState.initial(0.0, in_service=True)
        sp = None
        t = 0.0
        while t <= seconds:
            meas = Measurements(valid=True, v_pu=(v_pu,), f_hz=60.0, p_pu=0.9, q_pu=0.0,
                                connected=True)
            sp, state, _ = step(settings, meas, state, t)
            t += 0.5
        return sp


def limit(pct: float) -> UtilityControl:
    return UtilityControl(p_limit_pct=pct)


def test_A1_trip_beats_every_limit(tmp_path):
    w = World(tmp_path)
    w.event("e1", limit(80.0))
    w.svc.operate("p_limit_pct", 70.0, "mms op")
    w.svc.operate("p_limit_enabled", True, "mms op")
    sp = w.setpoints(v_pu=1.25, seconds=2.0)  # HV2: clearing time 0.16 s
    assert sp.connect is False
    assert "clearing time" in sp.cause


def test_A2_momentary_cessation_beats_a_connect(tmp_path):
    w = World(tmp_path)
    w.event("e1", UtilityControl(connect=True, energize=True, p_limit_pct=90.0))
    sp = w.setpoints(v_pu=0.40, seconds=0.5)  # LV3: momentary cessation (Rule 21)
    assert sp.connect is False
    assert sp.cause == "momentary cessation"


@pytest.mark.parametrize("row, event, operator, expected", [
    ("A3", 50.0, 70.0, 50.0),
    ("A4", 50.0, 30.0, 30.0),
])
def test_A3_A4_lower_limit_wins_event_vs_operator(tmp_path, row, event, operator, expected):
    w = World(tmp_path)
    w.event("e1", limit(event))
    w.svc.operate("p_limit_pct", operator, "mms op")
    w.svc.operate("p_limit_enabled", True, "mms op")
    assert w.setpoints().p_limit_pct == pytest.approx(expected), row


def test_A5_utility_limit_never_lifts_a_lower_persisted_one(tmp_path):
    w = World(tmp_path, **{"active_power_limit.enabled": True,
                           "active_power_limit.p_limit_pct": 40.0})
    w.event("e1", limit(60.0))
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)


def test_A6_default_control_applies_outside_events(tmp_path):
    w = World(tmp_path)
    w.default(limit(70.0))
    assert w.svc.in_force().event is None
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)


def test_A7_event_replaces_default_for_its_window(tmp_path):
    w = World(tmp_path)
    w.default(limit(70.0))
    w.event("e1", limit(50.0), start=10, end=70)
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)  # before the event
    w.at(10)
    assert w.setpoints().p_limit_pct == pytest.approx(50.0)
    w.at(70)  # end is exclusive
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)


def test_A7_an_event_updated_in_place_applies_its_new_values(tmp_path):
    w = World(tmp_path)
    w.event("e1", limit(50.0))
    w.event("e1", limit(35.0))  # the server changed the event (same mRID)
    assert w.setpoints().p_limit_pct == pytest.approx(35.0)


def test_A8_after_the_event_the_persisted_settings(tmp_path):
    w = World(tmp_path)
    w.event("e1", limit(50.0), start=-10, end=30)
    assert w.svc.effective().active_power_limit.enabled
    w.at(30)
    assert not w.svc.effective().active_power_limit.enabled
    assert w.setpoints().p_limit_pct == pytest.approx(100.0)
    assert w.schedule.events() == []  # ended events are forgotten (bounded)


def test_A9_autonomous_volt_watt_keeps_running_lowest_wins(tmp_path):
    w = World(tmp_path)
    w.event("e1", limit(80.0))
    # Rule 21 volt-watt: 1.06 pu -> 100 %, 1.10 pu -> 0 %; at 1.088 pu it asks 30 %.
    sp = w.setpoints(v_pu=1.088, seconds=90.0)
    assert sp.p_limit_pct == pytest.approx(30.0, abs=1.0)
    assert sp.cause == "volt-watt"


def test_A10_utility_reactive_mode_replaces_volt_var_for_the_event(tmp_path):
    w = World(tmp_path)
    assert w.svc.effective().volt_var.enabled
    w.event("e1", UtilityControl(fixed_pf=(0.95, True)), start=-10, end=60)
    sp = w.setpoints(v_pu=1.05)
    assert sp.reactive_mode is ReactiveMode.CONSTANT_PF
    assert (sp.pf, sp.pf_absorbing) == (pytest.approx(0.95), True)
    w.at(60)
    sp = w.setpoints(v_pu=1.05)
    assert sp.reactive_mode is ReactiveMode.CONSTANT_Q  # volt-var, commanded as var
    assert sp.q_pct < 0  # absorbing at high voltage


def test_A11_event_mode_ranks_above_operator_mode(tmp_path):
    w = World(tmp_path)
    w.svc.operate("constant_var_enabled", True, "mms op")
    w.event("e1", UtilityControl(fixed_pf=(0.97, False)))
    sp = w.setpoints()
    assert sp.reactive_mode is ReactiveMode.CONSTANT_PF
    assert sp.pf == pytest.approx(0.97)


def test_A12_operator_mode_ranks_above_default_control(tmp_path):
    w = World(tmp_path)
    w.default(UtilityControl(fixed_var_pct=-20.0))
    assert w.setpoints().reactive_mode is ReactiveMode.CONSTANT_Q
    w.svc.operate("fixed_pf_enabled", True, "mms op")
    assert w.setpoints().reactive_mode is ReactiveMode.CONSTANT_PF


def test_A13_event_disconnect_beats_operator_connect(tmp_path):
    w = World(tmp_path)
    w.svc.operate("connect", True, "mms op")
    w.event("e1", UtilityControl(connect=False))
    sp = w.setpoints()
    assert sp.connect is False and sp.cause == "permit service off"


def test_A14_event_connect_never_lifts_operator_disconnect(tmp_path):
    w = World(tmp_path)
    w.svc.operate("connect", False, "mms op")
    w.event("e1", UtilityControl(connect=True, energize=True))
    assert w.setpoints().connect is False


def test_A15_program_primacy_lower_value_first(tmp_path):
    w = World(tmp_path)
    w.event("low-priority", limit(20.0), primacy=1)
    w.event("high-priority", limit(60.0), primacy=0)
    assert w.svc.in_force().event.ident == "high-priority"
    assert w.setpoints().p_limit_pct == pytest.approx(60.0)


def test_A16_equal_primacy_newest_wins(tmp_path):
    w = World(tmp_path)
    w.event("older", limit(20.0), created=-100)
    w.event("newer", limit(60.0), created=-50)
    assert w.svc.in_force().event.ident == "newer"
    assert w.setpoints().p_limit_pct == pytest.approx(60.0)


def test_A17_invalid_utility_command_refused_local_settings_stay(tmp_path):
    w = World(tmp_path)
    before = w.svc.effective()
    w.event("bad", UtilityControl(fixed_pf=(0.5, False), p_limit_pct=10.0))
    assert w.svc.effective() == before  # nothing of it applied, not even its limit
    kinds = [e["kind"] for e in w.events.read()]
    assert "utility_control_refused" in kinds
    # and a local change still goes through while it is in force
    w.svc.operate("p_limit_pct", 55.0, "mms op")
    w.svc.operate("p_limit_enabled", True, "mms op")
    assert w.setpoints().p_limit_pct == pytest.approx(55.0)


def test_A17_the_adapter_can_ask_first(tmp_path):
    """The same refusal, asked before the event is accepted (so 2030.5 can answer it)."""
    w = World(tmp_path)
    assert "pf" in (w.svc.check_utility(UtilityControl(fixed_pf=(0.5, False))) or "")
    assert w.svc.check_utility(UtilityControl(p_limit_pct=10.0)) is None
    assert w.svc.effective().active_power_limit.enabled is False  # asking changed nothing


def test_A18_schedule_runs_to_its_end_without_the_link(tmp_path):
    w = World(tmp_path)
    w.default(limit(70.0))
    w.event("e1", limit(40.0), start=-10, end=120)
    w.schedule.comms = {"state": "lost"}  # the adapter lost its server: nothing else changes
    w.at(119)
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)
    w.at(120)
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)
    w.default(None)
    assert w.setpoints().p_limit_pct == pytest.approx(100.0)


def test_A19_schedule_kept_across_a_restart(tmp_path):
    path = str(tmp_path / "utility_schedule.json")
    first = UtilitySchedule("ieee2030_5", path=path)
    first.set_default(limit(70.0))
    first.put_event(ScheduledControl("e1", T0 - 10, T0 + 60, UtilityControl(
        p_limit_pct=40.0, fixed_pf=(0.95, True)), 0, T0 - 20, "ieee2030_5"))
    again = UtilitySchedule("ieee2030_5", path=path)  # the gateway restarted, no server
    assert again.default() == limit(70.0)
    assert again.events() == first.events()
    w = World(tmp_path / "svc")
    w.svc.attach_utility(again)
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)
    # a damaged or tampered file is not half applied
    Path(path).write_text(Path(path).read_text().replace("40.0", "400.0"))
    assert UtilitySchedule("ieee2030_5", path=path).events() == []
    assert UtilitySchedule("ieee2030_5", path=path).default() is None
    Path(path).write_text("{not json")
    assert UtilitySchedule("ieee2030_5", path=path).events() == []


def test_select_is_pure_and_ignores_events_out_of_their_window():
    e = ScheduledControl("x", 100.0, 200.0, limit(10.0))
    assert select([e], None, 99.9).event is None
    assert select([e], None, 100.0).event is e
    assert select([e], None, 200.0).event is None


def test_every_row_of_the_docs_table_has_a_test():
    rows = re.findall(r"^\| (A\d+) \|", (ROOT / "docs" / "arbitration.md").read_text(), re.M)
    assert rows, "no rows found in docs/arbitration.md"
    source = Path(__file__).read_text()
    tests = source.split("def test_every")[0]
    missing = [r for r in rows if f"_{r}_" not in tests and f'"{r}"' not in tests]
    assert not missing, f"rows without a test: {missing}"
