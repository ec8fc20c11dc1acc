"""The core's command API audits what every adapter hands in, whatever the protocol."""

from inverter_agent.core.api import Commands, Core
from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.security.audit import AuditLog, verify


def _core(tmp_path):
    audit = AuditLog(str(tmp_path))
    service = SettingsService(SettingsStore(str(tmp_path), "rule21"), EventLog(str(tmp_path)))
    return Core({"INV1": Commands("INV1", service, audit)}, audit=audit), audit


def test_a_utility_command_received_or_refused_is_audited(tmp_path):
    core, audit = _core(tmp_path)
    core.record("utility_event", "2030.5 event 1a2b start", "ieee2030_5")
    core.record("utility_control_refused", "2030.5 control 3c4d: pf below minimum",
                "ieee2030_5")
    entries = [e for e in audit.entries() if e["who"] == "ieee2030_5"]
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("command.utility_event", "ok"), ("command.utility_control_refused", "refused")]
    assert verify(audit).ok


def test_settings_and_controls_are_audited_accepted_and_refused(tmp_path):
    core, audit = _core(tmp_path)
    cmd = core.commands("INV1")
    cmd.write({"fixed_pf.pf_min_injecting": 0.95}, who="dnp3 master 1")
    try:
        cmd.operate("no_such_control", True, who="dnp3 master 1")
    except CommandRefused as exc:
        assert exc.cause is RefusalCause.NOT_SUPPORTED and exc.audited
    else:
        raise AssertionError("an unknown control was accepted")
    got = [(e["action"], e["outcome"], e.get("object")) for e in audit.entries()
           if e["who"] == "dnp3 master 1"]
    assert got == [("setting.write", "ok", "fixed_pf.pf_min_injecting"),
                   ("control.operate", "refused", "no_such_control")]


def test_the_plant_limit_is_a_core_command_audited_either_way(tmp_path):
    from inverter_agent.core.site import PlantService

    audit = AuditLog(str(tmp_path))
    plant = PlantService(str(tmp_path), "PLANT", None)
    core = Core({}, audit=audit, plant=plant)
    core.write_plant("w_max", 3000.0, who="mms CN=eng1")
    try:
        core.write_plant("w_max", -5.0, who="mms CN=eng1")
    except CommandRefused as exc:
        assert exc.cause is RefusalCause.INVALID_VALUE
    else:
        raise AssertionError("a negative plant limit was accepted")
    assert plant.limit.w_max == 3000.0  # the refused value changed nothing
    got = [(e["outcome"], e.get("new")) for e in audit.entries() if e["who"] == "mms CN=eng1"]
    assert got == [("ok", 3000.0), ("refused", -5.0)]
