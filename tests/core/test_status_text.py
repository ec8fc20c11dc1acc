"""`status` never extrapolates a day of traffic from a short connection."""

from inverter_agent.cli import PER_DAY_MIN_S, _per_day_text


def test_a_one_second_connection_is_not_extrapolated_to_a_day():
    # one model read in 1 s (~2 kB) would print as ~175 MB/day
    text = _per_day_text(2026 * 86400.0, 1.0)
    assert "MB/day" not in text and "not extrapolated from 1 s" in text


def test_a_long_enough_connection_gives_its_daily_figure():
    assert _per_day_text(9.58e6, PER_DAY_MIN_S) == ", 9.58 MB/day per client"
    assert _per_day_text(None, 10_000.0) == ""
