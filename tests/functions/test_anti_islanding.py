"""Anti-islanding supervision (1547-2018 8.1, Rule 21 Hh.2.a)."""

import pytest

from inverter_agent.functions import anti_islanding as ai
from inverter_agent.functions.anti_islanding import (
    AntiIslandingSettings,
    AntiIslandingState,
    AntiIslandingStatus,
)
from inverter_agent.functions.measurements import AntiIslandingReport


@pytest.mark.parametrize(("report", "status", "cease"), [
    (None, AntiIslandingStatus.NOT_REPORTED, False),
    (AntiIslandingReport.UNKNOWN, AntiIslandingStatus.NOT_REPORTED, False),
    (AntiIslandingReport.ENABLED, AntiIslandingStatus.OK, False),
    (AntiIslandingReport.DISABLED, AntiIslandingStatus.DISABLED_ALARM, True),
    (AntiIslandingReport.TRIPPED, AntiIslandingStatus.TRIPPED, True),
])
def test_reported_state_maps_to_status(report, status, cease):
    out, _ = ai.step(AntiIslandingSettings(), report, 60.0, AntiIslandingState(), 0.0)
    assert out.status is status and out.cease is cease


def test_disabled_is_alarm_only_when_configured():
    s = AntiIslandingSettings(cease_on_disabled=False)
    out, _ = ai.step(s, AntiIslandingReport.DISABLED, 60.0, AntiIslandingState(), 0.0)
    assert out.status is AntiIslandingStatus.DISABLED_ALARM and not out.cease


def test_rocof_window_trips_only_after_its_duration():
    s = AntiIslandingSettings(rocof_enabled=True, rocof_hz_per_s=1.0, rocof_time_s=0.5)
    state, f, t, trips = AntiIslandingState(), 60.0, 0.0, []
    for k in range(1, 11):  # 2 Hz/s for 1 s, sampled at 0.1 s
        t, f = k / 10, 60.0 + k / 5
        out, state = ai.step(s, AntiIslandingReport.ENABLED, f, state, t)
        trips.append((t, out.rocof_trip))
    first = next(t for t, tr in trips if tr)
    assert first == pytest.approx(0.7)  # above threshold from the 2nd sample (0.2 s) + 0.5 s
    out, state = ai.step(s, AntiIslandingReport.ENABLED, f, state, t + 0.1)  # flat again
    assert not out.rocof_trip


def test_rocof_disabled_by_default():
    state, t = AntiIslandingState(), 0.0
    for k in range(20):
        out, state = ai.step(AntiIslandingSettings(), None, 60.0 + k, state, t + k * 0.1)
        assert not out.rocof_trip
