"""The fast and the slow loop of ``Inverter.poll`` against the simulator over loopback TCP.

Every cycle reads the few registers the functions and the served measurements
need; status, settings and nameplate follow on their slow schedule, and a
model that was written is read back at the very next cycle. The schedule's
clock is injected so the tests need not wait for it.
"""

from __future__ import annotations

import pytest

from hal.inverter import Inverter
from hal.poll_plan import SLOW_PERIODS
from hal.transport import RetryPolicy, TcpTransport
from simulator import SimProcess

FAST = RetryPolicy(timeout=0.5, retries=1, backoff=0.02, backoff_max=0.05)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def sim():
    with SimProcess("--tau", "0.05", "--seed", "5") as proc:
        yield proc


@pytest.fixture
def inv(sim):
    sim.control.reset()
    clock = Clock()
    t = TcpTransport("127.0.0.1", sim.tcp_port, FAST)
    inverter = Inverter(t, clock=clock)
    inverter.clock = clock  # for the tests
    yield inverter
    t.close()


def _bytes(t: TcpTransport) -> int:
    return t.stats.bytes_in + t.stats.bytes_out


def test_a_fast_cycle_reads_a_fraction_of_a_full_one(inv):
    t = inv.transport
    b0 = _bytes(t)
    full = inv.poll()
    full_bytes = _bytes(t) - b0
    assert inv.last_poll_kind == "full"
    b1, tx1 = _bytes(t), t.stats.transactions
    fast = inv.poll()
    assert inv.last_poll_kind == "fast"
    fast_bytes = _bytes(t) - b1
    assert t.stats.transactions - tx1 <= 2
    assert fast_bytes * 4 < full_bytes, (fast_bytes, full_bytes)
    # Everything the full poll named is still there, and the fast points are fresh.
    assert set(fast) == set(full)
    for name in ("W", "VAr", "Hz", "PhVphA", "St", "WRtg", "WMaxLimPct"):
        assert fast[name].quality.good, name


def test_the_slow_loop_rereads_settings_right_after_a_write(inv):
    inv.poll()
    inv.poll()
    assert inv.poll()["WMaxLimPct"].value == pytest.approx(100.0)
    inv.write_controls({"WMaxLimPct": 40.0, "WMaxLim_Ena": True})
    r = inv.poll()  # no time has passed on the schedule's clock
    assert inv.last_poll_kind == "fast+123"
    assert r["WMaxLimPct"].value == pytest.approx(40.0)
    assert r["WMaxLim_Ena"].value is True
    inv.poll()
    assert inv.last_poll_kind == "fast"  # read back once, then back to the schedule


def test_the_slow_loop_sees_a_setting_the_device_changed_itself(inv, sim):
    inv.poll()
    assert inv.poll()["WMaxLimPct"].value == pytest.approx(100.0)
    sim.control.set_point(123, "WMaxLimPct", 70.0)  # another master, or the front panel
    assert inv.poll()["WMaxLimPct"].value == pytest.approx(100.0)  # not yet due
    assert inv.last_poll_kind == "fast"
    seen = None
    # Due within one status period; one slow model a cycle, so a few cycles at most.
    inv.clock.t += SLOW_PERIODS["status"] * 2.01
    for _ in range(8):
        r = inv.poll()
        if r["WMaxLimPct"].value == pytest.approx(70.0):
            seen = inv.last_poll_kind
            break
    assert seen == "fast+123"


def test_a_fast_cycle_carries_at_most_one_slow_model(inv):
    inv.poll()
    inv.clock.t += 10_000  # everything overdue
    kinds = [inv.poll() and inv.last_poll_kind for _ in range(6)]
    assert all(k == "fast" or (k.startswith("fast+") and "," not in k) for k in kinds)
    slow = {k for k in kinds if k != "fast"}
    assert len(slow) >= 5, kinds  # 1, 120, 121, 122, 123 and 103 in turn


def test_only_the_definitions_of_the_devices_models_are_loaded(sim):
    from hal.sunspec.models import known_model_ids, model_definition

    model_definition.cache_clear()
    t = TcpTransport("127.0.0.1", sim.tcp_port, FAST)
    try:
        inv = Inverter(t)
        inv.poll()
        inv.poll()
        ids = set(inv.device.map.model_ids)
    finally:
        t.close()
    assert model_definition.cache_info().currsize == len(ids)  # not the 100+ shipped
    assert len(known_model_ids()) > 5 * len(ids)
