"""What an inverter sends back is input too: mutated and random Modbus responses.

A device on a real socket (TCP) and a pseudo-terminal (RTU) answers half the
requests with a malformed frame that carries different register values
(tests/hal/fuzz_modbus.py lists the mutations: another unit or transaction,
wrong function echo, wrong byte or MBAP length, bad CRC, truncated, padded,
garbage before, random bytes, every exception code, silence, a stray second
frame). Bounded here (a few hundred frames); ``make bench`` runs 100,000.
"""

from __future__ import annotations

import pytest

from simulator.profile import PROFILE_DIR
from tests.hal.fuzz_modbus import MUTATIONS, fuzz_run

PROFILE = str(PROFILE_DIR / "exception2-unimplemented-span.json")


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_malformed_answers_never_crash_hang_grow_or_pass_as_good(transport):
    r = fuzz_run(PROFILE, frames=500, tcp=transport == "tcp", seed=11, timeout=0.05,
                 time_limit=40.0)
    assert r["frames"] >= 500, r  # bounded by count, not by the time limit
    assert r["raised"] == [], r
    assert r["wrong_good"] == [], r
    assert r["slow_polls"] == 0 and r["max_poll_s"] <= r["poll_bound_s"], r
    assert r["good_polls"] > 0 and r["failed_polls"] > 0, r  # both paths exercised
    expected = set(MUTATIONS) - ({"wrong_tid"} if transport == "rtu" else {"bad_crc"})
    assert expected <= set(r["mutations"]), r["mutations"]
    assert r["mem_growth_bytes"] < 1_000_000, r
