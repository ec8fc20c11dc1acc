"""docs/arbitration.md rows D: DNP3's timed commands with MMS and IEEE 2030.5 at once.

Each test drives the adapter's real reversion (``adapters/dnp3/reversion.py``: a
master's command with a reversion timeout becomes an event of the core's DNP3
schedule) on the real core (``Core``, ``Commands``, the settings service), an
IEEE 2030.5 event in the core's 2030.5 schedule as that adapter puts it, MMS
setting writes and operator commands through the same command port, and the
real engine for the setpoints the inverter would be sent. The wall clock is
moved, not waited for.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inverter_agent.adapters.dnp3.reversion import Reversion
from inverter_agent.core.api import Commands, Core
from inverter_agent.core.arbitration import ScheduledControl, UtilityControl
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import EngineState, Measurements, ReactiveMode, step

DOC = Path(__file__).resolve().parents[3] / "docs" / "arbitration.md"
T0 = 1_800_000_000.0
MMS, MASTER = "mms CN=eng1", "dnp3 master 1"


class Site:
    """One inverter's core as the gateway composes it, a DNP3 reversion on it, a clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = T0
        self.svc = SettingsService(SettingsStore(str(tmp_path), "rule21"),
                                   EventLog(str(tmp_path)), revert_after_s=None)
        self.svc.wall = lambda: self.now
        self.port = Commands("INV1", self.svc)
        self.core = Core({"INV1": self.port})
        self.dnp3 = Reversion(self.core, self.port.persisted_dict, clock=lambda: self.now)

    def timed(self, function: str, timeout_s: float, **changes) -> None:
        """A master sets the function's reversion timeout, then enables it with ``changes``."""
        self.dnp3.timeout_s[function] = timeout_s
        written = {f"{function}.{k}": v for k, v in changes.items()}
        assert self.dnp3.command(function, {**written, f"{function}.enabled": True},
                                 MASTER, execute=True)
        self.svc.tick()

    def ieee_event(self, control: UtilityControl, end: float) -> None:
        self.core.schedule("ieee2030_5").put_event(ScheduledControl(
            "e1", T0 - 10, T0 + end, control, 0, T0 - 20, "ieee2030_5"))
        self.svc.tick()

    def at(self, dt: float) -> None:
        self.now = T0 + dt
        self.svc.tick()

    def run(self, v_pu: float = 1.0):
        """The setpoints after 30 s of the engine at ``v_pu`` on the effective settings."""
        state, sp = EngineState.initial(0.0, in_service=True), None
        for k in range(61):
            meas = Measurements(valid=True, v_pu=(v_pu,), f_hz=60.0, p_pu=0.9, q_pu=0.0,
                                connected=True)
            sp, state, _ = step(self.svc.effective(), meas, state, k * 0.5)
        return sp


def test_D1_an_expiring_dnp3_timed_limit_never_lifts_a_lower_2030_5_limit(tmp_path):
    s = Site(tmp_path)
    persisted = s.port.persisted_dict()
    s.ieee_event(UtilityControl(p_limit_pct=40.0), end=600)
    s.timed("active_power_limit", 60, p_limit_pct=60.0)
    assert s.run().p_limit_pct == pytest.approx(40.0)
    s.at(61)  # the DNP3 timeout expired: nothing is lifted
    assert s.dnp3.status()["active_power_limit"]["left_s"] is None
    assert s.run().p_limit_pct == pytest.approx(40.0)
    s.at(601)  # the 2030.5 event ended: the persisted settings (limit off)
    assert s.run().p_limit_pct == pytest.approx(100.0)
    assert s.port.persisted_dict() == persisted


def test_D2_a_lower_dnp3_timed_limit_binds_then_the_2030_5_event_again(tmp_path):
    s = Site(tmp_path)
    s.ieee_event(UtilityControl(p_limit_pct=50.0), end=600)
    s.timed("active_power_limit", 60, p_limit_pct=30.0)
    assert s.run().p_limit_pct == pytest.approx(30.0)
    s.at(61)
    assert s.run().p_limit_pct == pytest.approx(50.0)
    s.at(601)
    assert s.run().p_limit_pct == pytest.approx(100.0)


def test_D3_a_dnp3_timed_limit_over_a_persisted_mms_limit(tmp_path):
    s = Site(tmp_path)
    s.port.write({"active_power_limit.p_limit_pct": 40.0, "active_power_limit.enabled": True},
                 who=MMS)
    persisted = s.port.persisted_dict()
    s.timed("active_power_limit", 60, p_limit_pct=60.0)
    assert s.run().p_limit_pct == pytest.approx(40.0)  # a higher limit never lifts it
    s.timed("active_power_limit", 60, p_limit_pct=20.0)  # re-enabled: a new timed command
    assert s.run().p_limit_pct == pytest.approx(20.0)
    assert s.port.persisted_dict() == persisted  # timed commands are not settings
    s.at(61)
    assert s.run().p_limit_pct == pytest.approx(40.0)


def test_D4_a_dnp3_timed_limit_and_an_mms_operator_limit(tmp_path):
    s = Site(tmp_path)
    s.port.operate("p_limit_enabled", True, MMS)
    s.port.operate("p_limit_pct", 30.0, MMS)
    s.timed("active_power_limit", 60, p_limit_pct=50.0)
    assert s.run().p_limit_pct == pytest.approx(30.0)
    s.port.release(MMS)
    s.svc.tick()
    assert s.run().p_limit_pct == pytest.approx(50.0)  # the DNP3 command, still timed
    s.at(61)
    assert s.run().p_limit_pct == pytest.approx(100.0)  # the persisted settings


DNP3_VV = [{"v_pu": 0.9, "q_pct": 15.0}, {"v_pu": 1.1, "q_pct": 15.0}]
MMS_VV = [{"v_pu": 0.92, "q_pct": 44.0}, {"v_pu": 0.98, "q_pct": 0.0},
          {"v_pu": 1.02, "q_pct": 0.0}, {"v_pu": 1.08, "q_pct": -44.0}]


def _vv(s: Site) -> list[dict]:
    return s.port.effective_dict()["volt_var"]["curve"]


def test_D5_a_dnp3_timed_curve_over_a_curve_written_over_mms(tmp_path):
    s = Site(tmp_path)
    s.port.write({"volt_var.curve": MMS_VV}, who=MMS)
    s.timed("volt_var", 60, curve=DNP3_VV, q_base="rated_var")
    assert _vv(s) == DNP3_VV
    assert s.run(v_pu=1.08).q_pct == pytest.approx(15.0, abs=0.5)
    again = [dict(p, q_pct=p["q_pct"] / 2) for p in MMS_VV]
    s.port.write({"volt_var.curve": again}, who=MMS)  # persisted now, applies after
    assert _vv(s) == DNP3_VV
    assert s.port.persisted_dict()["volt_var"]["curve"] == again
    s.at(61)
    assert _vv(s) == again
    assert s.run(v_pu=1.08).q_pct < 0  # absorbing at high voltage, as the MMS curve says


def test_D6_a_dnp3_timed_curve_outranks_an_mms_operators_mode(tmp_path):
    s = Site(tmp_path)
    s.port.operate("fixed_pf_enabled", True, MMS)
    assert s.run().reactive_mode is ReactiveMode.CONSTANT_PF
    s.timed("volt_var", 60, curve=DNP3_VV, q_base="rated_var")
    sp = s.run(v_pu=1.08)
    assert (sp.reactive_mode, sp.q_pct) == (ReactiveMode.CONSTANT_Q, pytest.approx(15.0, abs=0.5))
    s.at(61)
    assert s.run().reactive_mode is ReactiveMode.CONSTANT_PF  # the operator's again


def test_D7_a_dnp3_timed_mode_over_a_2030_5_events_curve_then_back(tmp_path):
    s = Site(tmp_path)
    curve = ((0.92, 30.0), (0.98, 0.0), (1.02, 0.0), (1.08, -30.0))
    s.ieee_event(UtilityControl(volt_var_curve=curve, volt_var_q_base="rated_var"), end=600)
    s.timed("fixed_pf", 60, pf=0.95, absorbing=True)
    sp = s.run(v_pu=1.08)
    assert (sp.reactive_mode, sp.pf, sp.pf_absorbing) == (
        ReactiveMode.CONSTANT_PF, pytest.approx(0.95), True)
    s.at(61)
    assert s.run(v_pu=1.08).q_pct == pytest.approx(-30.0, abs=0.5)  # 2030.5's curve
    s.at(601)  # the persisted settings: their own volt-var curve, no fixed PF
    effective, persisted = s.port.effective_dict(), s.port.persisted_dict()
    assert (effective["volt_var"], effective["fixed_pf"]) == (
        persisted["volt_var"], persisted["fixed_pf"])


def test_D8_an_untimed_dnp3_curve_and_an_mms_curve_are_one_persisted_layer(tmp_path):
    from inverter_agent.adapters.dnp3.curves import FUNCTIONS

    s = Site(tmp_path)
    vv = FUNCTIONS["volt_var"]  # what the edit buffer writes when volt-var is pointed at it
    dnp3 = {vv.path: vv.to_points([90.0, 110.0], [15.0, 15.0]), **vv.extra}
    s.port.write(dnp3, who=MASTER)
    assert _vv(s) == DNP3_VV and s.port.persisted_dict()["volt_var"]["curve"] == DNP3_VV
    s.port.write({"volt_var.curve": MMS_VV}, who=MMS)  # the last write wins
    assert _vv(s) == MMS_VV
    s.port.write(dnp3, who=MASTER)
    assert _vv(s) == DNP3_VV == s.port.persisted_dict()["volt_var"]["curve"]


def test_every_d_row_of_the_docs_table_has_a_test():
    rows = re.findall(r"^\| (D\d+) \|", DOC.read_text(), re.M)
    assert rows, "no rows D in docs/arbitration.md"
    tests = Path(__file__).read_text().split("def test_every")[0]
    assert not [r for r in rows if f"_{r}_" not in tests]
