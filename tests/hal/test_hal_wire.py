"""The HAL over real wires: discovery, polling and controls against the simulator
on loopback TCP and on a pseudo-terminal (RTU framing), and every link fault."""

from __future__ import annotations

import time

import pytest

from hal.inverter import Inverter, OperatingState
from hal.reading import Detail, Validity
from hal.sunspec.device import SunSpecDevice
from hal.sunspec.scan import NotSunSpec, discover
from hal.transport import (
    DeviceException,
    RetryPolicy,
    RtuTransport,
    SerialSettings,
    TcpTransport,
    TransportError,
)
from simulator import SimProcess, wait_until

FAST = RetryPolicy(timeout=0.3, retries=1, backoff=0.02, backoff_max=0.05)


@pytest.fixture(scope="module")
def sim():
    with SimProcess("--tau", "0.2", "--seed", "3", pty=True) as proc:
        yield proc


@pytest.fixture
def fresh(sim):
    sim.control.reset()
    return sim


@pytest.fixture
def tcp(fresh):
    t = TcpTransport("127.0.0.1", fresh.tcp_port, FAST)
    yield t
    t.close()


@pytest.fixture
def rtu(fresh):
    t = RtuTransport(SerialSettings(fresh.pty_path, baud=115200), FAST)
    yield t
    t.close()


@pytest.mark.parametrize("base", [40000, 0, 50000])
def test_discovery_finds_models_at_each_base(base):
    with SimProcess("--base", str(base)) as s:
        t = TcpTransport("127.0.0.1", s.tcp_port, FAST)
        try:
            dmap = discover(t, 1)
        finally:
            t.close()
    assert dmap.base == base
    assert dmap.model_ids == [1, 103, 120, 121, 122, 123]
    assert dmap.models[0].address == base + 2


def test_discovery_over_rtu_on_a_pty(rtu):
    dmap = discover(rtu, 1)
    assert dmap.model_ids == [1, 103, 120, 121, 122, 123]


def test_discovery_in_any_order_and_in_the_float_and_1547_families():
    with SimProcess("--models", "1,113,120,121,122,123,701,702,703,704",
                    "--shuffle-seed", "7") as s:
        t = TcpTransport("127.0.0.1", s.tcp_port, FAST)
        try:
            dmap = discover(t, 1)
            inv = Inverter(t)
            inv.connect()
            r = inv.poll()
        finally:
            t.close()
    assert sorted(dmap.model_ids) == [1, 113, 120, 121, 122, 123, 701, 702, 703, 704]
    assert dmap.model_ids[1:] != sorted(dmap.model_ids[1:])  # really shuffled
    assert r["W"].quality.good and r["W"].value > 0
    assert r["PhVphA"].value == pytest.approx(240.0, abs=1.0)
    assert r["AntiIslEna"].quality.good  # 704 reports anti-islanding enable


def test_a_timeout_at_one_base_moves_on_to_the_next():
    # A device that ignores reads at 40000 (times out) but has SunSpec at 0.
    # The simulator answers every address it lacks with exception 2, so the
    # silent base is produced by a transport that drops those requests.
    class SilentAt40000:
        def __init__(self, inner):
            self.inner, self.description = inner, inner.description

        def read_holding(self, address, count, unit):
            if address == 40000:
                raise TransportError("timeout")
            return self.inner.read_holding(address, count, unit)

        def write_registers(self, *a):
            self.inner.write_registers(*a)

        def close(self):
            self.inner.close()

    with SimProcess("--base", "0") as s:
        t = SilentAt40000(TcpTransport("127.0.0.1", s.tcp_port, FAST))
        try:
            assert discover(t, 1).base == 0
        finally:
            t.close()


def test_no_sunspec_anywhere_is_reported_not_raised_as_link_failure(tcp):
    with pytest.raises(NotSunSpec):
        discover(tcp, 1, bases=(1000, 2000))


def test_poll_tracks_the_grid_and_carries_quality_and_time(fresh, tcp):
    inv = Inverter(tcp)
    inv.connect()
    fresh.control.set_grid(v_pu=1.05, f_hz=60.2)
    before = time.time()
    r = poll_until(inv, lambda x: abs(x["PhVphA"].value - 252.0) < 0.5, timeout=5)
    assert r["Hz"].value == pytest.approx(60.2, abs=0.01)
    assert r["PhVphA"].quality.good
    assert before <= r["PhVphA"].timestamp <= time.time()  # stamped by this poll
    assert -1.0 <= r["PF"].value <= 1.0  # percent on the wire, a fraction here
    assert r["WRtg"].value == pytest.approx(5000)
    assert r["St"].value == OperatingState.MPPT


def test_controls_land_scaled_even_after_the_device_changes_its_scale_factor(fresh, tcp):
    inv = Inverter(tcp)
    inv.connect()
    inv.write_controls({"WMaxLimPct": 42.5, "WMaxLim_Ena": True})
    ctl = fresh.control.unit_state(1)["controls"]["123"]
    assert ctl["WMaxLimPct"] == pytest.approx(42.5) and ctl["WMaxLimPct_SF"] == -1
    fresh.control.set_sf("WMaxLimPct_SF", -2)  # the device rescales at run time
    inv.write_controls({"WMaxLimPct": 37.25})
    ctl = fresh.control.unit_state(1)["controls"]["123"]
    assert ctl["WMaxLimPct"] == pytest.approx(37.25) and ctl["WMaxLimPct_SF"] == -2
    # and the inverter follows: output settles near 37.25 % of 5000 W
    r = poll_until(inv, lambda x: abs(x["W"].value - 1862.5) < 50, timeout=5)
    assert r["W"].value == pytest.approx(0.3725 * 5000, rel=0.05)
    assert r["WMaxLimPct"].value == pytest.approx(37.25)


def test_a_revert_timer_goes_out_with_its_control_and_the_device_reverts(fresh, tcp):
    """Issue 22: the HAL names each control's revert timer, writes it with the control,
    reads it back by name, and the device reverts when it runs out (the order of the
    writes is not checked here)."""
    inv = Inverter(tcp)
    inv.connect()
    inv.poll()
    caps = inv.capabilities().controls
    assert {"Conn_RvrtTms", "WMaxLimPct_RvrtTms", "OutPFSet_RvrtTms", "VArPct_RvrtTms"} <= \
        set(caps)
    t0 = time.monotonic()
    inv.write_controls({"WMaxLimPct": 30.0, "WMaxLim_Ena": True, "WMaxLimPct_RvrtTms": 2})
    ctl = fresh.control.unit_state(1)["controls"]["123"]
    assert ctl["WMaxLimPct_RvrtTms"] == 2 and ctl["WMaxLim_Ena"] == 1
    r = poll_until(inv, lambda x: x["WMaxLimPct_RvrtTms"].value is not None, timeout=5)
    assert r["WMaxLimPct_RvrtTms"].value == 2  # read back by name
    wait_until(lambda: fresh.control.unit_state(1)["controls"]["123"]["WMaxLim_Ena"] == 0,
               timeout=10)
    reverted = time.monotonic() - t0
    # The 2 s timer is the behaviour: not before it ran out (t0 is before the write, so
    # load can only make this later), and not long after (2.5 s of room for a loaded
    # machine).
    assert 1.5 < reverted < 2 + 2.5, reverted
    poll_until(inv, lambda x: x["W"].value > 3500, timeout=5)  # all it has again


def test_pf_and_var_controls_and_disconnect(fresh, tcp):
    inv = Inverter(tcp)
    inv.connect()
    inv.write_controls({"OutPFSet": -0.9, "OutPFSet_Ena": True})
    r = poll_until(inv, lambda x: abs(x["PF"].value + 0.9) < 0.02, timeout=5)
    assert r["PF"].value == pytest.approx(-0.9, abs=0.02)  # absorbing: negative (EEI)
    inv.write_controls({"OutPFSet_Ena": False, "VArPct": 50.0, "VArPct_Ena": True})
    r = poll_until(inv, lambda x: abs(x["VAr"].value - 1100) < 30, timeout=5)
    assert r["VAr"].value == pytest.approx(0.5 * 2200, rel=0.05)
    inv.write_controls({"Conn": False})
    r = poll_until(inv, lambda x: abs(x["W"].value) < 1, timeout=5)
    assert r["Conn"].value is False


def test_dead_link_turns_readings_invalid_keeps_last_value_and_recovers(fresh, tcp):
    inv = Inverter(tcp)
    good = inv.poll()
    assert good["W"].quality.good
    fresh.control.fault("silent")
    tx, failures = tcp.stats.transactions, tcp.stats.failures
    t0 = time.monotonic()
    bad = inv.poll()
    elapsed = time.monotonic() - t0
    # The poll gives up after one transaction's retries, not one timeout per model ...
    assert tcp.stats.failures - failures == 1
    assert tcp.stats.transactions - tx == FAST.retries + 1
    # ... and each attempt ends at the policy's timeout (pymodbus's own default is 3 s);
    # the room beyond the budget is for a loaded machine.
    assert elapsed < FAST.timeout * (FAST.retries + 1) + 2.0, elapsed
    assert bad["W"].quality.validity == Validity.INVALID
    assert Detail.OLD_DATA in bad["W"].quality.detail
    assert bad["W"].value == good["W"].value
    assert inv.last_error
    fresh.control.fault("none")
    again = inv.poll()
    assert again["W"].quality.good and inv.last_error is None


@pytest.mark.parametrize("mode", ["garbage", "truncated", "bad_crc", "delay:1.0"])
def test_broken_frames_are_link_failures_not_crashes(fresh, mode, rtu):
    dev = SunSpecDevice(rtu, discover(rtu, 1))
    fresh.control.fault(mode)
    with pytest.raises(TransportError):
        dev.read_models([103])
    fresh.control.fault("none")
    time.sleep(1.1)  # let a late answer drain before the next exchange
    assert dev.read_models([103])[103].values["W"] is not None


def test_exception_responses_are_device_exceptions(fresh, tcp):
    dev = SunSpecDevice(tcp, discover(tcp, 1))
    fresh.control.fault("exception:4")
    with pytest.raises(DeviceException) as info:
        dev.read_models([103])
    assert info.value.code == 4
    fresh.control.fault("none")


def test_rtu_recovers_when_the_pty_disappears_and_comes_back(fresh, rtu):
    inv = Inverter(rtu)
    assert inv.poll()["W"].quality.good
    fresh.control.pty_cycle(down_s=0.5)
    # While it is gone (and right after), polls fail cleanly; then they recover.
    r = poll_until(inv, lambda x: x["W"].quality.good, timeout=10)
    assert r["W"].value > 0


def test_reads_are_coalesced(fresh, tcp):
    inv = Inverter(tcp)
    inv.connect()
    inv.poll()  # first poll also reads the nameplate models
    before = tcp.stats.transactions
    inv.poll()
    # 103 + 122 + 123 are contiguous after model 1 (about 120 registers): at most 2 reads.
    assert tcp.stats.transactions - before <= 2


def poll_until(inv, pred, timeout):
    """Poll until ``pred(readings)`` holds; return those readings."""
    last = {}

    def once():
        nonlocal last
        last = inv.poll()
        return last if last["W"].quality.good and pred(last) else None

    try:
        return wait_until(once, timeout=timeout)
    except Exception as exc:
        raise AssertionError(f"condition not met in {timeout} s; last poll {last}") from exc



@pytest.mark.parametrize("models,phases", [
    ("1,101,120,121,122,123", 1), ("1,102,120,121,122,123", 2),
    ("1,111,120,121,122,123", 1), ("1,112,120,121,122,123", 2),
    ("1,113,120,121,122,123", 3), ("1,701,702,703,704", 3)])
def test_every_inverter_family_polls_the_same_names(models, phases):
    with SimProcess("--models", models, "--phases", str(phases)) as s:
        t = TcpTransport("127.0.0.1", s.tcp_port, FAST)
        try:
            inv = Inverter(t)
            inv.connect()
            r = inv.poll()
        finally:
            t.close()
    for name in ("W", "VAr", "Hz", "PhVphA", "WRtg"):
        assert r[name].quality.good, (name, r[name])
    assert r["W"].value == pytest.approx(3880, rel=0.02)
    assert r["Hz"].value == pytest.approx(60.0, abs=0.01)


def test_kernel_rs485_mode_on_a_port_without_it_is_a_clear_link_error(fresh):
    # A pty has no RS-485 mode: the driver refuses the ioctl, as a UART without
    # RS-485 support would. The error says what to change.
    t = RtuTransport(SerialSettings(fresh.pty_path, baud=115200, rs485="kernel"), FAST)
    try:
        with pytest.raises(TransportError, match="kernel RS-485 mode cannot be set"):
            t.read_holding(40000, 2, 1)
    finally:
        t.close()
    plain = RtuTransport(SerialSettings(fresh.pty_path, baud=115200, rs485="none"), FAST)
    try:
        assert plain.read_holding(40000, 2, 1) == [0x5375, 0x6E53]
    finally:
        plain.close()
