"""docs/arbitration.md, row by row: who wins each conflict between sources of command.

Each test drives the real settings service (persisted settings, MMS-style
operator commands, one utility schedule per source as an adapter fills it) and
the real engine, and checks the setpoints the inverter would be sent. The
property test at the end drives the pure layers of ``core/arbitration.py``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.core.arbitration import (
    ScheduledControl,
    UtilityControl,
    UtilitySchedule,
    by_priority,
    compose,
    plant_cap,
    schedule_path,
    select,
    storage_setpoint,
)
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import (
    EngineState,
    Measurements,
    ReactiveMode,
    get_profile,
    settings_to_dict,
    step,
)
from inverter_agent.functions.set_active_power import StorageState

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0  # wall-clock (epoch) time of the scenario


class World:
    """A settings service with utility schedules (2030.5, and DNP3 when a test uses it)
    and a wall clock we move."""

    def __init__(self, tmp_path: Path, order: tuple[str, ...] | None = None,
                 **persisted) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.now = T0
        self.events = EventLog(str(tmp_path))
        self.svc = SettingsService(SettingsStore(str(tmp_path), "rule21"), self.events,
                                   revert_after_s=None,
                                   **({} if order is None else {"utility_order": order}))
        self.svc.wall = lambda: self.now
        self.schedules: dict[str, UtilitySchedule] = {}
        self.schedule = self.source("ieee2030_5")
        if persisted:
            self.svc.write(persisted, who="test")

    def source(self, name: str) -> UtilitySchedule:
        """The schedule of source ``name``, attached on first use (as its adapter would)."""
        if name not in self.schedules:
            self.schedules[name] = UtilitySchedule(source=name)
            self.svc.attach_utility(self.schedules[name])
        return self.schedules[name]

    def event(self, ident: str, control: UtilityControl, start: float = -10, end: float = 600,
              primacy: int = 0, created: float = 0.0, source: str = "ieee2030_5") -> None:
        self.source(source).put_event(ScheduledControl(ident, T0 + start, T0 + end, control,
                                                       primacy, T0 + created, source))
        self.svc.tick()

    def default(self, control: UtilityControl | None, source: str = "ieee2030_5") -> None:
        self.source(source).set_default(control)
        self.svc.tick()

    def at(self, dt: float) -> None:
        self.now = T0 + dt
        self.svc.tick()

    def setpoints(self, v_pu: float = 1.0, seconds: float = 60.0, f_hz: float = 60.0):
        """Run the engine on the effective settings for ``seconds`` at ``v_pu``, ``f_hz``."""
        settings = self.svc.effective()
        state = EngineState.initial(0.0, in_service=True)
        sp = None
        t = 0.0
        while t <= seconds:
            meas = Measurements(valid=True, v_pu=(v_pu,), f_hz=f_hz, p_pu=0.9, q_pu=0.0,
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


#: A utility volt-var curve (% of setMaxVar = rated var) unlike the Rule 21 default
#: (% of rated VA, -44 % VA = -100 % var at 1.08 pu).
UTILITY_VV = ((0.92, 30.0), (0.98, 0.0), (1.02, 0.0), (1.08, -30.0))


def vv_event(curve=UTILITY_VV, **more) -> UtilityControl:
    return UtilityControl(volt_var_curve=curve, volt_var_q_base="rated_var", **more)


def test_A20_utility_volt_var_curve_replaces_and_enables_for_the_event(tmp_path):
    w = World(tmp_path, **{"volt_var.enabled": False})
    persisted = w.svc.effective().volt_var
    assert w.setpoints(v_pu=1.08).reactive_mode is ReactiveMode.NONE
    w.event("e1", vv_event(), start=-10, end=60)
    vv = w.svc.effective().volt_var
    assert vv.enabled and [(p.v_pu, p.q_pct) for p in vv.curve] == list(UTILITY_VV)
    assert vv.q_base.value == "rated_var"
    sp = w.setpoints(v_pu=1.08)
    assert sp.reactive_mode is ReactiveMode.CONSTANT_Q
    assert sp.q_pct == pytest.approx(-30.0, abs=0.5)  # % of rated var, as the utility sent
    w.at(60)  # the event ends: the persisted curve (and its disabled state) returns
    assert w.svc.effective().volt_var == persisted
    assert w.setpoints(v_pu=1.08).reactive_mode is ReactiveMode.NONE


def test_A20_the_utility_curve_is_visible_over_mms(tmp_path):
    from inverter_agent.adapters.mms.binding import FunctionBinding

    w = World(tmp_path)
    w.event("e1", vv_event(), start=-10, end=60)
    shown = FunctionBinding(None, w.svc)._settings_values()  # what the MMS model shows
    ld = "INV1"
    assert shown[f"{ld}/DVVR1.VVArCrv.numPts"] == 4
    assert [(shown[f"{ld}/DVVR1.VVArCrv.crvPts.{i}.xVal"],
             shown[f"{ld}/DVVR1.VVArCrv.crvPts.{i}.yVal"]) for i in range(4)] == [
        (pytest.approx(100 * v), pytest.approx(q)) for v, q in UTILITY_VV]
    w.at(60)
    shown = FunctionBinding(None, w.svc)._settings_values()
    assert shown[f"{ld}/DVVR1.VVArCrv.crvPts.3.yVal"] == pytest.approx(-44.0)  # persisted


def test_A21_utility_volt_watt_curve_replaces_and_enables_for_the_event(tmp_path):
    w = World(tmp_path, **{"volt_watt.enabled": False})
    persisted = w.svc.effective().volt_watt
    w.event("e1", UtilityControl(volt_watt_curve=((1.02, 100.0), (1.06, 20.0))), end=60)
    assert w.svc.effective().volt_watt.enabled
    sp = w.setpoints(v_pu=1.05, seconds=90.0)
    assert sp.p_limit_pct == pytest.approx(40.0, abs=1.0)  # 100 - 0.75 * 80
    assert sp.cause == "volt-watt"
    w.at(60)
    assert w.svc.effective().volt_watt == persisted
    assert w.setpoints(v_pu=1.05, seconds=90.0).p_limit_pct == pytest.approx(100.0)


def test_A22_default_volt_var_curve_yields_to_an_event_reactive_mode(tmp_path):
    w = World(tmp_path)
    w.default(vv_event())
    assert w.setpoints(v_pu=1.08).q_pct == pytest.approx(-30.0, abs=0.5)  # the default's
    w.event("e1", UtilityControl(fixed_pf=(0.95, True)), start=-10, end=60)
    assert w.setpoints(v_pu=1.08).reactive_mode is ReactiveMode.CONSTANT_PF
    w.at(60)
    assert w.setpoints(v_pu=1.08).q_pct == pytest.approx(-30.0, abs=0.5)  # the default again


def test_A23_a_curve_and_a_fixed_reactive_mode_in_one_control_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one reactive mode"):
        vv_event(fixed_pf=(0.95, True))
    with pytest.raises(ValueError, match="one reactive mode"):
        vv_event(fixed_var_pct=-10.0)
    # a curve and a limit together are one control, both applied
    w = World(tmp_path)
    w.event("e1", vv_event(p_limit_pct=50.0))
    sp = w.setpoints(v_pu=1.08)
    assert (sp.p_limit_pct, sp.q_pct) == (pytest.approx(50.0), pytest.approx(-30.0, abs=0.5))


@pytest.mark.parametrize("curve, why", [
    (((0.92, 30.0), (1.02, 0.0), (0.98, 0.0), (1.08, -30.0)), "must not decrease"),
    (((0.92, 130.0), (1.08, -30.0)), "q_pct = 130"),
    (tuple((0.9 + 0.02 * i, 0.0) for i in range(9)), "2 to 8 points"),
])
def test_A24_a_bad_utility_curve_is_refused_whole_nothing_changes(tmp_path, curve, why):
    w = World(tmp_path)
    before = w.svc.effective()
    assert why in (w.svc.check_utility(vv_event(curve)) or "")  # the adapter asks first
    w.event("bad", vv_event(curve, p_limit_pct=10.0))  # and if it reached the core anyway
    assert w.svc.effective() == before
    assert "utility_control_refused" in [e["kind"] for e in w.events.read()]


#: A utility droop (opModFreqDroop dBOF 100, dBUF 200, kOF 30, kUF 40, openLoopTms 200)
#: in the core's units: Hz, per unit, seconds.
UTILITY_DROOP = (0.1, 0.2, 0.03, 0.04, 2.0)


def test_A25_utility_freq_droop_replaces_and_enables_for_the_event(tmp_path):
    from inverter_agent.adapters.mms.binding import FunctionBinding

    w = World(tmp_path, **{"freq_watt.enabled": False})
    persisted = w.svc.effective().freq_watt
    assert w.setpoints(f_hz=60.3).p_limit_pct == pytest.approx(100.0)  # droop off
    w.event("e1", UtilityControl(freq_droop=UTILITY_DROOP), end=60)
    fw = w.svc.effective().freq_watt
    assert (fw.enabled, fw.db_of_hz, fw.db_uf_hz, fw.k_of, fw.k_uf, fw.response_time_s) == (
        True, *UTILITY_DROOP)
    # 1547 droop on the pre-disturbance 90 %: 90 - 100 * (60.3 - 60.1) / (60 * 0.03)
    sp = w.setpoints(f_hz=60.3, seconds=30.0)
    assert sp.p_limit_pct == pytest.approx(90.0 - 100 * 0.2 / 1.8, abs=0.5)
    shown = FunctionBinding(None, w.svc)._settings_values()  # the same state over MMS
    assert shown["INV1/DHFW1.DbUfHz.setMag.f"] == pytest.approx(0.2)
    assert shown["INV1/DHFW1.HzStr.setMag.f"] == pytest.approx(60.1)
    w.at(60)  # the event ends: the persisted droop (and its disabled state) returns
    assert w.svc.effective().freq_watt == persisted
    assert w.setpoints(f_hz=60.3).p_limit_pct == pytest.approx(100.0)


def test_A25_open_loop_time_zero_keeps_the_persisted_response_time(tmp_path):
    w = World(tmp_path, **{"freq_watt.response_time_s": 7.0})
    w.event("e1", UtilityControl(freq_droop=(*UTILITY_DROOP[:4], None)))
    fw = w.svc.effective().freq_watt
    assert (fw.k_of, fw.response_time_s) == (0.03, 7.0)


def test_A26_default_droop_outside_events_the_persisted_one_during_an_event(tmp_path):
    w = World(tmp_path)
    persisted = w.svc.effective().freq_watt
    w.default(UtilityControl(freq_droop=UTILITY_DROOP))
    assert w.svc.effective().freq_watt.k_of == 0.03  # the default's
    w.event("e1", limit(50.0), start=-10, end=60)  # an event without droop
    assert w.svc.effective().freq_watt == persisted  # a default applies outside events only
    assert w.setpoints().p_limit_pct == pytest.approx(50.0)
    w.at(60)
    assert w.svc.effective().freq_watt.k_of == 0.03  # the default's again


@pytest.mark.parametrize("droop, why", [
    ((0.1, 0.2, 0.01, 0.04, 2.0), "freq_watt.k_of"),  # kOF 10: 1 %, below 1547's 2 %
    ((2.0, 0.2, 0.03, 0.04, 2.0), "freq_watt.db_of_hz"),  # a 2 Hz deadband
    ((0.1, 0.2, 0.03, 0.04, 0.1), "freq_watt.response_time_s"),  # 0.1 s
])
def test_A27_a_droop_the_validator_refuses_is_refused_whole_nothing_changes(tmp_path, droop,
                                                                            why):
    w = World(tmp_path)
    before = w.svc.effective()
    assert why in (w.svc.check_utility(UtilityControl(freq_droop=droop)) or "")
    w.event("bad", UtilityControl(freq_droop=droop, p_limit_pct=10.0))  # reached the core
    assert w.svc.effective() == before
    assert "utility_control_refused" in [e["kind"] for e in w.events.read()]


def test_A28_a_frequency_watt_curve_is_refused_and_the_local_droop_runs_on(tmp_path):
    from inverter_agent.adapters.ieee2030_5.translate import ControlRejected, control_from_base

    w = World(tmp_path, **{"freq_watt.enabled": True})
    before = w.svc.effective()
    with pytest.raises(ControlRejected, match="send opModFreqDroop"):
        control_from_base({"op_mod_freq_watt": {"href": "/derp/0/dc/1"},
                           "op_mod_max_lim_w": {"value": 5000}})
    assert w.svc.effective() == before  # nothing reached the schedule
    assert w.setpoints(f_hz=60.3).p_limit_pct < 90.0  # the persisted droop still acts


def test_A29_an_operator_limit_replaces_the_persisted_one_until_released(tmp_path):
    w = World(tmp_path, **{"active_power_limit.enabled": True,
                           "active_power_limit.p_limit_pct": 40.0})
    w.svc.operate("p_limit_pct", 70.0, "mms op")
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)
    w.svc.operate("p_limit_pct", None, "mms op")  # released
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)


def test_A30_the_plant_cap_is_the_last_layer_and_never_lifts_a_limit(tmp_path):
    w = World(tmp_path)
    w.event("e1", limit(80.0))
    capped = plant_cap(w.setpoints(), 50.0)
    assert (capped.p_limit_pct, capped.cause) == (pytest.approx(50.0), "plant limit")
    w.event("e1", limit(30.0))
    lower = w.setpoints()
    assert plant_cap(lower, 50.0) == lower
    assert plant_cap(lower, None) == lower


def test_A31_dnp3_and_mms_writes_are_one_persisted_layer_under_a_utility_event(tmp_path):
    from inverter_agent.core.api import Commands

    w = World(tmp_path)
    port = Commands("INV1", w.svc)  # what every adapter writes through
    w.event("e1", limit(40.0))
    port.write({"active_power_limit.p_limit_pct": 60.0, "active_power_limit.enabled": True},
               who="dnp3 master 1")
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)  # the event, during its window
    port.write({"active_power_limit.p_limit_pct": 50.0}, who="mms CN=eng1")
    w.at(700)  # the event has ended
    w.svc.tick()
    assert w.setpoints().p_limit_pct == pytest.approx(50.0)  # the last persisted write
    assert port.persisted_dict()["active_power_limit"]["p_limit_pct"] == 50.0


def test_A32_an_export_limit_at_the_pcc_caps_generation_at_limit_plus_load(tmp_path):
    from inverter_agent.core.arbitration import pcc_cap
    from inverter_agent.core.plant import InverterView, allocate
    from inverter_agent.functions.export_limit import CLOSED_LOOP, export_cap

    w = World(tmp_path)
    # Meter: the site exports 1500 W while the inverter makes 3000 W: load 1500 W.
    cap = export_cap(1000.0, -1500.0, 3000.0, 5000.0)
    assert (cap.mode, cap.cap_w) == (CLOSED_LOOP, 2500.0)
    share = allocate(cap.cap_w, [InverterView("INV1", True, 3000.0, w_rtg=5000.0)], {})
    capped = pcc_cap(w.setpoints(), share.caps_pct["INV1"])
    assert (capped.p_limit_pct, capped.cause) == (pytest.approx(50.0), "export limit")
    w.event("e1", limit(30.0))  # a lower limit from anyone stays
    lower = w.setpoints()
    assert pcc_cap(lower, share.caps_pct["INV1"]) == lower


def test_A33_without_usable_meter_data_the_export_limit_is_a_generation_limit():
    from inverter_agent.functions.export_limit import FALLBACK, export_cap

    for site_w, why in ((None, None), (-1500.0, "meter link down"), (None, "no site meter")):
        cap = export_cap(1000.0, site_w, 3000.0, 5000.0, why_invalid=why)
        assert (cap.mode, cap.cap_w) == (FALLBACK, 1000.0)


def test_A34_export_limits_from_several_sources_combine_the_lowest_wins():
    from inverter_agent.core.arbitration import InForce, export_limit_w

    ev = ScheduledControl("e", 0.0, 100.0, UtilityControl(export_limit_w=1000.0))
    in_force = [InForce(ev, None, "ieee2030_5"),
                InForce(None, UtilityControl(export_limit_w=800.0), "dnp3"),
                InForce(None, UtilityControl(p_limit_pct=50.0), "other")]
    assert export_limit_w(in_force) == 800.0
    assert export_limit_w(in_force[2:]) is None


# -- several utility sources at once (rows S) ----------------------------------------------

@pytest.mark.parametrize("row, ieee, dnp3, expected", [
    ("S1", 60.0, 40.0, 40.0),
    ("S2", 50.0, 70.0, 50.0),
])
def test_S1_S2_the_lowest_limit_of_any_source_wins(tmp_path, row, ieee, dnp3, expected):
    for order in (("dnp3", "ieee2030_5"), ("ieee2030_5", "dnp3")):  # whatever the order
        w = World(tmp_path / "-".join(order), order=order)
        w.event("e1", limit(ieee))
        w.event("d1", limit(dnp3), source="dnp3")
        assert w.setpoints().p_limit_pct == pytest.approx(expected), (row, order)


def test_S3_a_default_applies_outside_its_own_sources_events(tmp_path):
    w = World(tmp_path)
    w.default(limit(70.0))
    w.event("d1", limit(80.0), source="dnp3")
    assert w.svc.in_force("ieee2030_5").event is None
    assert w.svc.in_force("dnp3").event.ident == "d1"
    assert w.setpoints().p_limit_pct == pytest.approx(70.0)
    w.default(None)
    assert w.setpoints().p_limit_pct == pytest.approx(80.0)


@pytest.mark.parametrize("disconnecting", ["ieee2030_5", "dnp3"])
def test_S4_a_disconnect_from_either_source_wins(tmp_path, disconnecting):
    w = World(tmp_path)
    for source in ("ieee2030_5", "dnp3"):
        w.event(f"e-{source}", UtilityControl(connect=source != disconnecting,
                                              energize=source != disconnecting), source=source)
    sp = w.setpoints()
    assert sp.connect is False and sp.cause == "permit service off"


def test_S5_the_higher_priority_sources_event_sets_the_reactive_mode(tmp_path):
    w = World(tmp_path / "default-order")
    w.event("e1", UtilityControl(fixed_pf=(0.95, True)))
    w.event("d1", UtilityControl(fixed_var_pct=-20.0), source="dnp3")
    sp = w.setpoints()
    assert (sp.reactive_mode, sp.q_pct) == (ReactiveMode.CONSTANT_Q, pytest.approx(-20.0))
    w = World(tmp_path / "2030.5-first", order=("ieee2030_5", "dnp3"))
    w.event("e1", UtilityControl(fixed_pf=(0.95, True)))
    w.event("d1", UtilityControl(fixed_var_pct=-20.0), source="dnp3")
    sp = w.setpoints()
    assert (sp.reactive_mode, sp.pf, sp.pf_absorbing) == (
        ReactiveMode.CONSTANT_PF, pytest.approx(0.95), True)


def test_S6_any_event_ranks_above_any_default(tmp_path):
    w = World(tmp_path)
    w.default(vv_event(), source="dnp3")
    w.event("e1", UtilityControl(fixed_pf=(0.95, True)), start=-10, end=60)
    assert w.setpoints(v_pu=1.08).reactive_mode is ReactiveMode.CONSTANT_PF
    w.at(60)
    assert w.setpoints(v_pu=1.08).q_pct == pytest.approx(-30.0, abs=0.5)  # DNP3's curve


def test_S7_events_then_the_operators_mode_then_defaults(tmp_path):
    w = World(tmp_path)
    w.svc.operate("fixed_pf_enabled", True, "mms op")
    w.default(UtilityControl(fixed_var_pct=-20.0), source="dnp3")
    assert w.setpoints().reactive_mode is ReactiveMode.CONSTANT_PF  # the operator's
    w.event("d1", UtilityControl(fixed_var_pct=-20.0), source="dnp3")
    sp = w.setpoints()
    assert (sp.reactive_mode, sp.q_pct) == (ReactiveMode.CONSTANT_Q, pytest.approx(-20.0))


def test_S8_each_curve_from_the_highest_ranked_command_carrying_one(tmp_path):
    w = World(tmp_path)
    curve_a, curve_b = ((1.02, 100.0), (1.06, 20.0)), ((1.03, 100.0), (1.07, 0.0))
    w.event("e1", vv_event(volt_watt_curve=curve_a))
    w.event("d1", UtilityControl(volt_watt_curve=curve_b), source="dnp3")
    eff = w.svc.effective()
    assert [(p.v_pu, p.p_pct) for p in eff.volt_watt.curve] == list(curve_b)
    assert eff.volt_var.enabled
    assert [(p.v_pu, p.q_pct) for p in eff.volt_var.curve] == list(UTILITY_VV)


@pytest.mark.parametrize("bad", ["dnp3", "ieee2030_5"])
def test_S9_an_invalid_source_is_left_out_whole_the_other_applies(tmp_path, bad):
    w = World(tmp_path)
    good = "ieee2030_5" if bad == "dnp3" else "dnp3"
    w.event("bad", UtilityControl(fixed_pf=(0.5, False), p_limit_pct=10.0), source=bad)
    w.event("good", limit(50.0), source=good)
    eff = w.svc.effective()
    assert eff.volt_var.enabled and not eff.fixed_pf.enabled  # the persisted mode
    assert w.setpoints().p_limit_pct == pytest.approx(50.0)
    refused = [e for e in w.events.read() if e["kind"] == "utility_control_refused"]
    assert [e["who"] for e in refused] == [bad]


def test_S10_each_sources_schedule_in_its_own_file(tmp_path):
    assert schedule_path(str(tmp_path), "ieee2030_5") == str(tmp_path / "utility_schedule.json")
    paths = {s: schedule_path(str(tmp_path), s) for s in ("ieee2030_5", "dnp3")}
    assert len(set(paths.values())) == 2
    for s, pct in (("ieee2030_5", 60.0), ("dnp3", 40.0)):
        UtilitySchedule(s, path=paths[s]).put_event(
            ScheduledControl(f"e-{s}", T0 - 10, T0 + 60, limit(pct), 0, T0 - 20, s))
    w = World(tmp_path / "svc")  # restarted: each source reads back its own file
    for s in paths:
        w.svc.attach_utility(UtilitySchedule(s, path=paths[s]))
    assert w.svc.in_force("dnp3").event.ident == "e-dnp3"
    assert w.setpoints().p_limit_pct == pytest.approx(40.0)
    # one source's file never feeds another
    assert UtilitySchedule("ieee2030_5", path=paths["dnp3"]).events() == []


def test_S11_utility_comms_reports_each_source(tmp_path):
    w = World(tmp_path)
    w.schedule.comms.update(state="connected", last_contact=T0 - 5)
    one = w.svc.utility_comms()
    assert (one["state"], one["since_contact_s"]) == ("connected", 5.0)
    w.source("dnp3").comms.update(state="connected", last_contact=T0 - 2)
    assert w.svc.utility_comms()["state"] == "connected"
    w.schedule.comms.update(state="lost")
    both = w.svc.utility_comms()
    assert both["state"] == "lost" and both["since_contact_s"] == 5.0
    assert list(both["sources"]) == ["dnp3", "ieee2030_5"]  # highest priority first
    assert both["sources"]["dnp3"] == {"state": "connected", "since_contact_s": 2.0}


def test_by_priority_names_first_then_the_rest_alphabetically():
    assert by_priority(["ieee2030_5", "zeta", "dnp3", "alpha"]) == [
        "dnp3", "ieee2030_5", "alpha", "zeta"]
    assert by_priority(["dnp3", "ieee2030_5"], ("ieee2030_5",)) == ["ieee2030_5", "dnp3"]


# -- property: the effective limit is never above any layer's limit in force ---------------

PERSISTED = settings_to_dict(get_profile("rule21"))
PCT = st.floats(0.0, 100.0, allow_nan=False)
OPT = st.none() | PCT


@settings(max_examples=150, deadline=None)
@given(persisted=st.tuples(st.booleans(), PCT), operator=OPT,
       sources=st.fixed_dictionaries({s: st.tuples(OPT, OPT, st.booleans())
                                      for s in ("ieee2030_5", "dnp3")}),
       cap=OPT, dnp3_first=st.booleans())
def test_the_effective_limit_is_never_above_any_layers_limit_in_force(
        persisted, operator, sources, cap, dnp3_first):
    enabled, pct = persisted
    base = {**PERSISTED, "active_power_limit": {
        **PERSISTED["active_power_limit"], "enabled": enabled, "p_limit_pct": pct}}
    temporary = {} if operator is None else {"active_power_limit.p_limit_pct": operator,
                                             "active_power_limit.enabled": True}
    in_force, limits = [], [] if cap is None else [cap]
    # the local layer: the operator's limit replaces the persisted one (row A29)
    if operator is not None:
        limits.append(operator)
    elif enabled:
        limits.append(pct)
    order = ("dnp3", "ieee2030_5") if dnp3_first else ("ieee2030_5", "dnp3")
    for s in by_priority(sources, order):
        event_pct, default_pct, event_live = sources[s]
        events = [] if event_pct is None else [ScheduledControl(
            "e", T0 - (1 if event_live else 100), T0 + 60 if event_live else T0 - 50,
            limit(event_pct), source=s)]
        default = None if default_pct is None else limit(default_pct)
        f = select(events, default, T0, s)
        in_force.append(f)
        if f.control is not None:
            limits.append(f.control.p_limit_pct)
    composed = compose(base, temporary, in_force)
    assert composed.left_out == ()
    state = EngineState.initial(0.0, in_service=True)
    meas = Measurements(valid=True, v_pu=(1.0,), f_hz=60.0, p_pu=0.5, q_pu=0.0, connected=True)
    sp, _, _ = step(composed.settings, meas, state, 0.0)
    final = plant_cap(sp, cap)
    assert all(final.p_limit_pct <= lim + 1e-9 for lim in limits), (final, limits)
    if limits:
        assert final.p_limit_pct == pytest.approx(min(limits))  # and no lower than asked


def test_select_is_pure_and_ignores_events_out_of_their_window():
    e = ScheduledControl("x", 100.0, 200.0, limit(10.0))
    assert select([e], None, 99.9).event is None
    assert select([e], None, 100.0).event is e
    assert select([e], None, 200.0).event is None


# -- storage: set active power (rows B) ----------------------------------------------------

BAT = StorageState(soc_pct=50.0, wh_rtg=10000.0, w_cha_max=5000.0, w_dis_max=4000.0,
                   reserve_pct=20.0, soc_max_pct=95.0, w_rtg=5000.0)


def storage_sp(w: World, v_pu: float = 1.0, seconds: float = 60.0, bat=BAT,
               cap: float | None = None):
    """The engine on the effective settings with a battery, then the plant cap and the
    storage arbitration, as the controller runs them."""
    settings = w.svc.effective()
    state = EngineState.initial(0.0, in_service=True)
    sp, t = None, 0.0
    while t <= seconds:
        meas = Measurements(valid=True, v_pu=(v_pu,), f_hz=60.0, p_pu=0.5, q_pu=0.0,
                            connected=True, storage=bat)
        sp, state, _ = step(settings, meas, state, t)
        t += 0.5
    return storage_setpoint(plant_cap(sp, cap), BAT.w_rtg)


def battery(w: World, pct: float | None = None, watts: float | None = None, **kw) -> None:
    d = {"set_active_power.enabled": True}
    if pct is not None:
        d["set_active_power.w_pct"] = pct
    if watts is not None:
        d["set_active_power.w"] = watts
    d.update({f"set_active_power.{k}": v for k, v in kw.items()})
    w.svc.write(d, who="test")


def test_B1_a_limit_never_makes_up_a_storage_command(tmp_path):
    from tests.core.test_storage import hybrid, hybrid_snapshot, run

    w = World(tmp_path)
    w.event("e1", limit(20.0))
    sp = storage_sp(w)
    assert sp.p_limit_pct == pytest.approx(20.0) and sp.storage_w is None
    # the controller: the limit goes to WMaxLimPct, nothing to 124
    c, inv = hybrid(tmp_path / "c")
    c.apply_settings(w.svc.effective())
    run(c, hybrid_snapshot(w=1000.0), seconds=60.0)
    assert any(x.get("WMaxLimPct") == pytest.approx(20.0) for x in inv.writes)
    assert inv.storage == []


def test_B2_a_limit_bounds_a_discharge(tmp_path):
    w = World(tmp_path)
    battery(w, pct=80.0)
    w.event("e1", limit(30.0))
    sp = storage_sp(w, bat=dataclasses.replace(BAT, w_dis_max=5000.0))
    assert sp.storage_w == pytest.approx(0.30 * 5000.0)
    assert "active power limit" in sp.storage_cause
    # the plant cap too (the last layer)
    w.event("e1", limit(100.0))
    sp = storage_sp(w, bat=dataclasses.replace(BAT, w_dis_max=5000.0), cap=10.0)
    assert sp.storage_w == pytest.approx(500.0)


def test_B3_no_limit_bounds_a_charge(tmp_path):
    w = World(tmp_path)
    battery(w, pct=-50.0)
    w.event("e1", limit(20.0))
    sp = storage_sp(w)
    assert sp.p_limit_pct == pytest.approx(20.0)
    assert sp.storage_w == pytest.approx(-2500.0) and sp.storage_cause == ""


@pytest.mark.parametrize("v_pu", [1.25, 0.40])  # must trip (HV2); momentary cessation (LV3)
def test_B4_protection_first_the_battery_holds_zero(tmp_path, v_pu):
    w = World(tmp_path)
    battery(w, watts=3000.0)
    sp = storage_sp(w, v_pu=v_pu, seconds=2.0)
    assert sp.connect is False and sp.storage_w == 0.0
    assert "cease to energize" in sp.storage_cause


@pytest.mark.parametrize("mode", ["volt_var", "fixed_pf"])
def test_B5_reactive_setpoints_unchanged_while_charging(tmp_path, mode):
    w0, w1 = World(tmp_path / "a"), World(tmp_path / "b")
    for w in (w0, w1):
        if mode == "fixed_pf":
            w.svc.write({"volt_var.enabled": False, "fixed_pf.enabled": True,
                         "fixed_pf.pf": 0.9, "fixed_pf.absorbing": True}, who="test")
    battery(w1, watts=-3000.0)
    a, b = storage_sp(w0, v_pu=1.04), storage_sp(w1, v_pu=1.04)
    assert b.storage_w == -3000.0 and a.storage_w is None
    assert (a.reactive_mode, a.pf, a.pf_absorbing, a.q_pct) == \
        (b.reactive_mode, b.pf, b.pf_absorbing, b.q_pct)
    assert a.reactive_mode is not ReactiveMode.NONE


def test_B6_no_discharge_at_the_reserve(tmp_path):
    w = World(tmp_path)
    battery(w, watts=3000.0)
    assert storage_sp(w, bat=dataclasses.replace(BAT, soc_pct=20.0)).storage_w == 0.0
    battery(w, watts=3000.0, reserve_pct=60.0)  # the site's reserve above the device's
    sp = storage_sp(w)
    assert sp.storage_w == 0.0 and "reserve 60" in sp.storage_cause
    battery(w, watts=-3000.0)
    assert storage_sp(w).storage_w == -3000.0  # a charge is still taken


def test_B7_no_charge_at_the_highest_soc(tmp_path):
    w = World(tmp_path)
    full = dataclasses.replace(BAT, soc_pct=95.0)
    battery(w, watts=-3000.0)
    sp = storage_sp(w, bat=full)
    assert sp.storage_w == 0.0 and "full" in sp.storage_cause
    battery(w, watts=2000.0)
    assert storage_sp(w, bat=full).storage_w == 2000.0


def test_B8_beyond_the_rate_limited_never_passed_through(tmp_path):
    from hal.storage import storage_points
    from tests.hal.test_storage import M124, model

    w = World(tmp_path)
    battery(w, watts=9000.0)
    sp = storage_sp(w)
    assert sp.storage_w == 4000.0 and "discharge rate" in sp.storage_cause
    battery(w, watts=-9000.0)
    assert storage_sp(w).storage_w == -5000.0
    with pytest.raises(ValueError, match="beyond"):
        storage_points(9000.0, {124: model(124, **M124)})  # the HAL refuses, never clips


def test_B9_storage_not_understood_no_command_functions_run_on(tmp_path):
    from tests.core.test_storage import hybrid, hybrid_snapshot, run

    w = World(tmp_path)
    battery(w, watts=2000.0)
    assert storage_sp(w, bat=None).storage_w is None  # nothing to command
    c, inv = hybrid(tmp_path / "c", enabled=True, w=2000.0)
    run(c, hybrid_snapshot(w=2000.0), seconds=0.4)
    sp = run(c, hybrid_snapshot(w=2000.0, soc=None), seconds=0.4, t0=1.0)
    assert inv.storage[-1][0] is None and sp is not None
    assert c.status.standing_aside is None
    assert any("state of charge missing" in a for a in c.status.alarms)


def test_B10_event_then_operator_then_persisted_battery_setpoint(tmp_path):
    w = World(tmp_path)
    battery(w, watts=-1000.0)
    w.svc.operate("storage_w", 1500.0, "mms op")
    w.event("e1", UtilityControl(storage_w_pct=-40.0), end=100)
    assert storage_sp(w).storage_w == pytest.approx(-2000.0)
    w.at(200)  # the event is over
    assert storage_sp(w).storage_w == pytest.approx(1500.0)
    w.svc.operate("storage_w", None, "mms op")
    assert storage_sp(w).storage_w == pytest.approx(-1000.0)


def test_B11_an_operators_setpoint_ranks_above_the_default(tmp_path):
    w = World(tmp_path)
    w.default(UtilityControl(storage_w_pct=30.0))
    assert storage_sp(w).storage_w == pytest.approx(1500.0)
    w.svc.operate("storage_w", -500.0, "mms op")
    assert storage_sp(w).storage_w == pytest.approx(-500.0)


def test_every_row_of_the_docs_table_has_a_test():
    rows = re.findall(r"^\| ([ABS]\d+) \|", (ROOT / "docs" / "arbitration.md").read_text(),
                      re.M)
    assert rows, "no rows found in docs/arbitration.md"
    source = Path(__file__).read_text()
    tests = source.split("def test_every")[0]
    missing = [r for r in rows if f"_{r}_" not in tests and f'"{r}"' not in tests]
    assert not missing, f"rows without a test: {missing}"
