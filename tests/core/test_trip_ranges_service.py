"""No path through the settings service loosens the trip settings past the
1547-2018 ranges of the profile's category: a write, a persisted file, or a
change of the category itself (functions/trip_ranges.py)."""

import json
import re

import pytest

from inverter_agent.core.events import EventLog
from inverter_agent.core.settings_service import SettingsService
from inverter_agent.core.settings_store import SCHEMA_VERSION, SettingsStore
from inverter_agent.functions import SettingsError, get_profile, settings_to_dict

PROFILE = "ieee1547-2018-cat-b"  # abnormal Category II


def _service(tmp_path):
    return SettingsService(SettingsStore(str(tmp_path), PROFILE), EventLog(None))


def _save(tmp_path, settings: dict) -> None:
    (tmp_path / "settings.json").write_text(json.dumps(
        {"schema": SCHEMA_VERSION, "profile": PROFILE, "settings": settings}))


def test_a_write_past_the_range_or_of_the_category_is_refused(tmp_path):
    svc = _service(tmp_path)
    svc.write({"enter_service.delay_s": 120.0}, who="test")
    before = (tmp_path / "settings.json").read_bytes()
    over = settings_to_dict(get_profile(PROFILE))["voltage_ride_through"]["over"]
    over[0]["clearing_time_s"] = 13.5  # OV1: Table 12 allows 1-13 s
    for change in ({"voltage_ride_through.over": over},
                   {"nameplate.abnormal_category": ""},
                   {"nameplate.abnormal_category": "III"}):
        with pytest.raises(SettingsError):
            svc.check(change)
        with pytest.raises(SettingsError):
            svc.write(change, who="test")
    assert (tmp_path / "settings.json").read_bytes() == before
    assert svc.effective().voltage_ride_through.over[0].clearing_time_s == 2.0
    assert svc.effective().nameplate.abnormal_category == "II"
    over[0]["clearing_time_s"] = 13.0  # the edge lands
    svc.write({"voltage_ride_through.over": over}, who="test")
    assert svc.effective().voltage_ride_through.over[0].clearing_time_s == 13.0


@pytest.mark.parametrize(("category", "why"), [
    ("", r"nameplate\.abnormal_category = ''"),  # clearing it would lift the ranges
    ("II", r"under\[0\]\.clearing_time_s = 40\.0"),
])
def test_a_persisted_file_that_loosens_is_set_aside(tmp_path, category, why):
    d = settings_to_dict(get_profile(PROFILE))
    d["nameplate"]["abnormal_category"] = category
    d["voltage_ride_through"]["under"][0]["clearing_time_s"] = 40.0  # UV1: 2-21 s
    _save(tmp_path, d)
    svc = _service(tmp_path)
    assert re.search(rf"persisted file refused: .*{why}", svc.origin), svc.origin
    assert not (tmp_path / "settings.json").exists()  # set aside
    assert svc.effective().voltage_ride_through.under[0].clearing_time_s == 10.0
    assert svc.effective().nameplate.abnormal_category == "II"
