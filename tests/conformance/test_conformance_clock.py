"""The bench's wall-to-monotonic mapping (event log times on the bench clock)."""

from __future__ import annotations

import time

from inverter_agent.conformance.bench import wall_minus_clock

OFFSET = 1000.0  # wall - monotonic on the fake clocks
STALL = 0.2  # a preemption between reading one clock and the other


class StallingClocks:
    """Fake monotonic and wall clocks sharing one time line; the first wall read is
    preceded by a stall, as when the process is descheduled between the two reads."""

    def __init__(self) -> None:
        self.now = 50.0
        self.stalls = 1

    def clock(self) -> float:
        self.now += 1e-6
        return self.now

    def wall(self) -> float:
        if self.stalls:
            self.stalls -= 1
            self.now += STALL
        self.now += 1e-6
        return self.now + OFFSET


def test_one_pair_read_across_a_stall_is_off_by_the_stall():
    c = StallingClocks()
    # What a single read of each clock gives: wall times look early by the stall.
    assert wall_minus_clock(c.clock, c.wall, tries=1) - OFFSET > STALL / 4


def test_tightest_bracket_gives_the_offset_despite_a_stall():
    c = StallingClocks()
    assert abs(wall_minus_clock(c.clock, c.wall) - OFFSET) < 1e-5


def test_real_clocks_map_a_wall_time_to_its_monotonic_time():
    off = wall_minus_clock()
    m = time.monotonic()
    w = time.time()
    m2 = time.monotonic()
    assert m - 0.01 <= w - off <= m2 + 0.01
