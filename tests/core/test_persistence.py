"""Settings persistence and the event log: atomic, validated, bounded."""

import dataclasses
import json
import os

from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_store import SettingsStore
from inverter_agent.functions import get_profile


def test_saved_settings_come_back_after_restart(tmp_path):
    store = SettingsStore(str(tmp_path), "rule21")
    s = get_profile("rule21")
    s = dataclasses.replace(s, enter_service=dataclasses.replace(s.enter_service, delay_s=42.0))
    store.save(s)
    loaded, origin = SettingsStore(str(tmp_path), "rule21").load()
    assert loaded.enter_service.delay_s == 42.0 and "persisted" in origin
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]  # no temp file left


def test_no_file_means_profile_defaults(tmp_path):
    loaded, origin = SettingsStore(str(tmp_path), "ieee1547-2018-cat-a").load()
    assert loaded == get_profile("ieee1547-2018-cat-a") and "defaults" in origin


def test_an_invalid_file_is_set_aside_and_defaults_run(tmp_path):
    store = SettingsStore(str(tmp_path), "rule21")
    store.save(get_profile("rule21"))
    doc = json.loads((tmp_path / "settings.json").read_text())
    doc["settings"]["enter_service"]["v_low_pu"] = 1.2  # above v_high: inconsistent window
    (tmp_path / "settings.json").write_text(json.dumps(doc))
    loaded, origin = store.load()
    assert loaded == get_profile("rule21")
    assert "refused" in origin and "enter_service.v_low_pu" in origin
    assert [f for f in os.listdir(tmp_path) if f.startswith("settings.json.bad-")]


def test_a_torn_file_is_set_aside(tmp_path):
    (tmp_path / "settings.json").write_text('{"schema": 1, "settings": {"nameplate"')
    loaded, origin = SettingsStore(str(tmp_path), "rule21").load()
    assert loaded == get_profile("rule21") and "refused" in origin


def test_event_log_stays_within_its_size_bound(tmp_path):
    log = EventLog(str(tmp_path), max_bytes=4096, keep=2)
    for i in range(500):
        log.record("trip", f"event {i} " + "x" * 40)
    files = [f for f in os.listdir(tmp_path) if f.startswith("events.jsonl")]
    assert sorted(files) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert sum(os.path.getsize(tmp_path / f) for f in files) <= 3 * 4096
    entries = log.read()
    assert entries[-1]["detail"].startswith("event 499")  # newest kept
    assert [int(e["detail"].split()[1]) for e in entries] == sorted(
        int(e["detail"].split()[1]) for e in entries)  # in order, oldest first
