"""Settings service: all-or-nothing writes, persisted before acknowledged,
temporary commands and their revert on communication loss."""

import json

import pytest

from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import ControlRefused, SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import SettingsError, get_profile


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def svc(tmp_path):
    applied = []
    clock = Clock()
    s = SettingsService(SettingsStore(str(tmp_path), "rule21"), EventLog(str(tmp_path)),
                        apply=applied.append, revert_after_s=60, clock=clock)
    s.applied, s.clock, s.dir = applied, clock, tmp_path
    return s


def _file(svc):
    return json.loads((svc.dir / "settings.json").read_text())["settings"]


def test_a_valid_write_is_persisted_and_applied(svc):
    svc.write({"enter_service.delay_s": 120.0, "volt_var.response_time_s": 8.0}, who="test")
    assert _file(svc)["enter_service"]["delay_s"] == 120.0
    assert svc.applied[-1].volt_var.response_time_s == 8.0
    restarted = SettingsService(SettingsStore(str(svc.dir), "rule21"), EventLog(None))
    assert restarted.effective().enter_service.delay_s == 120.0


def test_an_invalid_write_changes_nothing(svc):
    svc.write({"enter_service.delay_s": 120.0}, who="test")
    before_file, before_applied = _file(svc), len(svc.applied)
    bad_curve = [{"v_pu": 1.02, "q_pct": 0.0}, {"v_pu": 0.98, "q_pct": 10.0}]
    for change in ({"volt_var.curve": bad_curve},
                   {"enter_service.v_low_pu": 1.04, "enter_service.v_high_pu": 1.0},
                   {"enter_service.delay_s": 120.0, "fixed_pf.pf": 0.2},
                   {"no_such.setting": 1}):
        with pytest.raises((SettingsError, KeyError)):
            svc.write(change, who="test")
    assert _file(svc) == before_file and len(svc.applied) == before_applied
    assert svc.effective().enter_service.delay_s == 120.0


def test_check_names_the_path_and_changes_nothing(svc):
    with pytest.raises(SettingsError, match=r"volt_var\.curve\[1\]\.v_pu"):
        svc.check({"volt_var.curve": [{"v_pu": 1.02, "q_pct": 0.0},
                                      {"v_pu": 0.98, "q_pct": 10.0}]})
    assert not (svc.dir / "settings.json").exists()


def test_temporary_command_overrides_then_reverts_on_comm_loss(svc):
    svc.operate("p_limit_enabled", True, who="utility")
    svc.operate("p_limit_pct", 40.0, who="utility")
    assert svc.effective().active_power_limit.p_limit_pct == 40.0
    assert not (svc.dir / "settings.json").exists()  # temporary: not persisted
    svc.clock.t += 59
    assert svc.tick() is False
    svc.heard_from_client()
    svc.clock.t += 59
    assert svc.tick() is False  # heard from within the window
    svc.clock.t += 61
    assert svc.tick() is True
    assert svc.effective().active_power_limit.enabled is False
    kinds = [e["kind"] for e in svc.events.read()]
    assert "comm_loss_revert" in kinds


def test_refused_control_changes_nothing(svc):
    with pytest.raises(ControlRefused) as info:
        svc.operate("p_limit_pct", 250.0, who="utility")
    assert info.value.cause == "invalid-value"
    assert svc.effective().active_power_limit.p_limit_pct == 100.0
    with pytest.raises(ControlRefused):
        svc.operate("self_destruct", True, who="utility")


def test_switching_a_reactive_mode_on_switches_the_others_off(svc):
    assert svc.effective().volt_var.enabled
    svc.operate("fixed_pf_enabled", True, who="fdems")
    eff = svc.effective()
    assert eff.fixed_pf.enabled and not eff.volt_var.enabled
    svc.operate("fixed_pf_enabled", None, who="fdems")  # released
    assert svc.effective().volt_var.enabled


def test_disconnect_is_permit_service_off(svc):
    svc.operate("connect", False, who="utility")
    assert svc.effective().enter_service.enabled is False
    assert get_profile("rule21").enter_service.enabled is True


def test_presence_from_the_server_keeps_commands_alive_without_any_request(svc):
    """Reads run no Python: the server's association/kernel-counter presence is asked."""
    heard = {"yes": True, "asked": 0}

    def presence() -> bool:
        heard["asked"] += 1
        return heard["yes"]

    svc.set_presence(presence)
    svc.operate("p_limit_enabled", True, who="utility")
    for _ in range(10):  # a client reading along, 100 s of cycles of 10 s
        svc.clock.t += 10
        assert svc.tick() is False
    assert heard["asked"] == 10
    heard["yes"] = False  # the client went quiet
    svc.clock.t += 30
    assert svc.tick() is False  # within revert_after of the last time it was heard
    svc.clock.t += 31
    assert svc.tick() is True
    assert svc.effective().active_power_limit.enabled is False


def test_presence_is_not_asked_while_nothing_temporary_is_active(svc):
    asked = []
    svc.set_presence(lambda: asked.append(1) or True)
    for _ in range(5):
        svc.clock.t += 10
        assert svc.tick() is False
    assert asked == []
