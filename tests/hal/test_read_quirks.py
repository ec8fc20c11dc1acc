"""Devices that refuse some reads: the HAL splits, learns and carries on (real sockets).

Profiles from the corpus: a device that answers exception 2 to any read touching
its unimplemented registers (pysunspec2 #89), one that serves at most 50 registers
per read and only on point boundaries (node-red-contrib-modbus #233, pysunspec2
#16), and an SMA-style 1547 device at unit 126 with no end model (bikeshedder/sunspec
#20) and 701 longer than one read.
"""

from __future__ import annotations

import pytest

from hal.inverter import Inverter
from hal.reading import NOT_IMPLEMENTED
from hal.sunspec.device import plan_reads
from hal.sunspec.scan import ModelLocation
from hal.transport import RetryPolicy, TcpTransport
from simulator import SimProcess
from simulator.profile import PROFILE_DIR, load_profile

FAST = RetryPolicy(timeout=0.5, retries=1, backoff=0.02, backoff_max=0.05)


def _poll(name: str, polls: int = 3):
    prof = load_profile(PROFILE_DIR / f"{name}.json")
    with SimProcess("--profile", prof.path) as sim:
        t = TcpTransport("127.0.0.1", sim.tcp_port, FAST)
        try:
            inv = Inverter(t, unit=prof.unit)
            snaps = [inv.poll() for _ in range(polls)]
            tx = t.stats.transactions
            inv.poll()
            per_poll = t.stats.transactions - tx
        finally:
            t.close()
    return inv, snaps[-1], per_poll


def test_exception_2_spans_are_split_and_only_the_refused_points_are_lost():
    inv, snap, per_poll = _poll("exception2-unimplemented-span")
    assert inv.last_error is None
    dev = inv.device
    assert len(dev.holes) == 5  # TmpSnk, TmpTrns, TmpOt, Ris, Ris_SF
    for name in ("W", "Hz", "PhVphA", "PhVphB", "PhVphC", "WAval", "WMaxLimPct"):
        assert snap[name].quality.good, name
    # learned: the next polls plan around the holes instead of splitting again
    assert per_poll <= 4


def test_a_device_with_a_small_read_limit_on_point_boundaries_loses_nothing():
    inv, snap, per_poll = _poll("max-read-50")
    assert inv.last_error is None
    dev = inv.device
    assert dev.max_read <= 50 and not dev.holes
    for name in ("W", "VA", "Hz", "PhVphA", "PhVphC", "WH", "VNom", "WMax", "VArMaxAbs"):
        assert snap[name].quality.good, name


def test_sma_style_1547_device_without_end_model_at_unit_126():
    inv, snap, _ = _poll("1547-sma-unit126-no-end-marker")
    assert inv.last_error is None
    assert inv.device.map.model_ids == [1, 701, 702, 703, 704, 705]
    assert not inv.device.holes  # 701 (153 registers) read in two cuts on point boundaries
    assert snap["ACType"].value == "three" and snap["WH"].quality.good


def test_phases_the_device_lacks_are_unimplemented_even_when_they_read_zero():
    inv, snap, _ = _poll("101-unused-phases-zero")
    assert snap["ACType"].value == "single"
    assert snap["PhVphA"].quality.good
    for name in ("PhVphB", "PhVphC", "AphB", "AphC"):
        assert snap[name].quality == NOT_IMPLEMENTED and snap[name].value is None, name


@pytest.mark.parametrize(("bounds", "expect"), [
    (set(), [(0, 125), (125, 28)]),
    ({0, 2, 124, 126, 153}, [(0, 124), (124, 29)]),  # 124..126 is one 32-bit point
])
def test_reads_are_cut_on_point_boundaries_when_known(bounds, expect):
    loc = ModelLocation(701, 0, 151, True)
    spans = plan_reads([loc], bounds=bounds)
    assert [(s.address, s.count) for s in spans] == expect
