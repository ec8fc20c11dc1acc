"""How ``agent.poll_period = "auto"`` chooses: from the link's measured cycles, the
bytes they carry and the baud rate, leaving a share of the line to other masters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from inverter_agent import config
from inverter_agent.core.pollrate import MIN_PERIOD, SHARE_FREE, PollRate, auto_timeout, rtu_wire_s


@dataclass
class Stats:
    bytes_in: int = 0
    bytes_out: int = 0
    transactions: int = 0


@dataclass
class Serial:
    baud: int

    @property
    def char_time(self) -> float:
        return 10 / self.baud


class FakeLink:
    """Counts like a transport; ``serial`` only for RTU."""

    def __init__(self, baud: int | None = None) -> None:
        self.stats = Stats()
        if baud is not None:
            self.serial = Serial(baud)


def feed(rate: PollRate, link: FakeLink, cycles: list[tuple[str, int, int, float]]):
    choice = None
    for kind, nbytes, tx, wall in cycles:
        rate.before_poll()
        link.stats.bytes_in += nbytes
        link.stats.transactions += tx
        choice = rate.after_poll(wall, True, kind) or choice
    return choice


def warm(n_fast: int = 7, fast=(150, 2, 0.002), slow=(220, 3, 0.003)):
    return [("full", 600, 6, 0.01)] + [("fast", *fast)] * n_fast + [("fast+123", *slow)]


def test_a_quick_tcp_link_gets_the_50_ms_floor():
    link = FakeLink()
    choice = feed(PollRate(link), link, warm())
    assert choice is not None and choice.period_s == MIN_PERIOD
    assert "50 ms floor" in choice.reason and "TCP" in choice.reason
    assert choice.rtt_s == pytest.approx(0.001)


def test_a_9600_baud_line_is_paced_by_its_bytes_and_leaves_a_share_free():
    link = FakeLink(9600)
    # A pty answers at once: the wire time at 9600 baud is what counts.
    choice = feed(PollRate(link), link, warm(fast=(90, 2, 0.002), slow=(150, 3, 0.003)))
    wire = rtu_wire_s(90, 4, 9600)
    assert choice.fast_busy_s == pytest.approx(wire)
    assert choice.period_s >= wire / (1 - SHARE_FREE)
    assert choice.period_s >= rtu_wire_s(150, 6, 9600)  # the slow cycle fits in a period
    assert "9600 baud" in choice.reason
    assert choice.trip_latency_s > 0.16  # and status / the log say so


def test_115200_baud_fits_the_floor():
    link = FakeLink(115200)
    choice = feed(PollRate(link), link, warm(fast=(90, 2, 0.002), slow=(150, 3, 0.003)))
    assert choice.period_s == MIN_PERIOD


def test_a_slow_device_turnaround_counts_even_on_a_fast_line():
    link = FakeLink(115200)
    choice = feed(PollRate(link), link, warm(fast=(90, 2, 0.080), slow=(150, 3, 0.120)))
    assert choice.period_s == pytest.approx(max(0.080 / (1 - SHARE_FREE), 0.120), abs=0.002)


def test_rediscovery_chooses_again_and_failed_polls_do_not_count():
    link = FakeLink()
    rate = PollRate(link)
    assert feed(rate, link, warm()) is not None
    assert feed(rate, link, [("full", 600, 6, 0.01)]) is None and rate.choice is None
    rate.before_poll()
    assert rate.after_poll(0.5, False, "") is None  # a timeout is not the link's speed
    assert feed(rate, link, warm()[1:]).period_s == MIN_PERIOD


def test_auto_is_the_default_and_an_explicit_period_still_works(tmp_path):
    assert config.load(None)["agent.poll_period"] == "auto"
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\npoll_period = 0.5\n")
    assert config.load(str(path))["agent.poll_period"] == 0.5
    path.write_text('[agent]\npoll_period = "auto"\n')
    assert config.load(str(path))["agent.poll_period"] == "auto"
    path.write_text('[agent]\npoll_period = "fastest"\n')
    with pytest.raises(config.ConfigError, match="'auto' or 0.05 <= value"):
        config.load(str(path))


def test_auto_timeouts_fit_the_longest_read_on_the_wire():
    rtu = {"modbus_rtu": "/dev/x", "baud": 9600, "parity": "N", "stopbits": 1, "timeout": None}
    assert auto_timeout(rtu) > rtu_wire_s(8 + 255, 2, 9600)
    assert config.link_timeout(rtu, "auto") == auto_timeout(rtu)
    fast = {**rtu, "baud": 115200}
    assert auto_timeout(fast) < 0.2
    assert config.link_timeout({**rtu, "timeout": 0.3}, "auto") == 0.3


def test_the_site_meter_on_the_same_bus_counts_in_the_busy_time():
    """A meter read after every cycle on the inverter's RS-485 line holds that line too:
    its measured read time is added to each cycle's busy time and the reason says so."""
    alone_link, shared_link = FakeLink(9600), FakeLink(9600)
    cycles = warm(fast=(200, 2, 0.002))  # the share governs (fast cycle / 0.75 > longest)
    alone = feed(PollRate(alone_link), alone_link, cycles)
    rate = PollRate(shared_link)
    meter_reads = iter([None] + [0.030] * 20)  # not read before the first cycle
    rate.sharers.append(("site meter", lambda: next(meter_reads)))
    shared = feed(rate, shared_link, cycles)
    assert alone is not None and shared is not None
    assert shared.shared_busy_s == pytest.approx(0.030)
    assert shared.fast_busy_s == pytest.approx(alone.fast_busy_s + 0.030)
    assert shared.worst_busy_s == pytest.approx(alone.worst_busy_s + 0.030)
    # The share left free is kept with the meter counted: a longer period.
    assert shared.period_s == pytest.approx(shared.fast_busy_s / (1 - SHARE_FREE), abs=1e-3)
    assert shared.period_s == pytest.approx(alone.period_s + 0.030 / (1 - SHARE_FREE), abs=2e-3)
    assert "site meter" in shared.reason and "30.0 ms" in shared.reason
    assert "site meter" not in alone.reason and alone.shared_busy_s == 0.0
    assert shared.as_dict()["shared_busy_s"] == pytest.approx(0.030)
