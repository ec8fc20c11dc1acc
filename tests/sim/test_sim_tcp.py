"""The simulator over Modbus TCP, seen through pymodbus: discovery, models, plant, faults."""

from __future__ import annotations

import struct
import time

import pytest

from simulator import SimProcess
from simulator.testing import Device, tcp_client, tcp_exchange, wait_for

BASES = (0, 40000, 50000)


@pytest.mark.parametrize("base", BASES)
def test_suns_at_the_chosen_base_and_exception_2_elsewhere(base):
    with SimProcess("--base", str(base)) as sim:
        client = tcp_client(sim)
        try:
            dev = Device.scan(client, base)
            assert dev.order == [1, 103, 120, 121, 122, 123]
            for other in BASES:
                if other != base:
                    rr = client.read_holding_registers(other, count=2, device_id=1)
                    assert rr.isError() and rr.exception_code == 2, (other, rr)
        finally:
            client.close()


@pytest.mark.parametrize("models, order_check", [
    ("1,113,120,121,122,123", [1, 113, 120, 121, 122, 123]),
    ("1,701,702,703,704,705", [1, 701, 702, 703, 704, 705]),
    ("1,101,120,121,122,123,701,704", [1, 101, 120, 121, 122, 123, 701, 704]),
])
def test_model_families_decode(models, order_check):
    with SimProcess("--models", models, "--vv-curves", "2", "--vv-points", "5") as sim:
        client = tcp_client(sim)
        try:
            dev = Device.scan(client)
            assert dev.order == order_check
            inv = next(m for m in order_check if m in (101, 113, 701))
            w = dev.models[inv].value("W")
            assert w == pytest.approx(3880, abs=2)
            if inv == 113:
                assert dev.models[113].value("PhVphC") == pytest.approx(240.0)
            if inv == 701:
                assert dev.models[701].value("LNV") == pytest.approx(240.0)
                assert dev.models[705].value("NCrv") == 2 and dev.models[705].value("NPt") == 5
                assert "Crv[2].Pt[5].V" in dev.models[705].layout.slots
        finally:
            client.close()


def test_shuffle_seed_reorders_models_but_keeps_common_first():
    with SimProcess("--shuffle-seed", "3") as sim:
        client = tcp_client(sim)
        try:
            order = Device.scan(client).order
        finally:
            client.close()
    assert order[0] == 1 and sorted(order) == [1, 103, 120, 121, 122, 123]
    assert order != [1, 103, 120, 121, 122, 123]


def test_two_units_are_two_inverters_and_unknown_units_get_a_gateway_exception(fresh, tcp):
    fresh.control.set_dc(2000, unit=2)
    one, two = Device.scan(tcp, unit=1), Device.scan(tcp, unit=2)
    assert one.models[1].value("SN") != two.models[1].value("SN")
    wait_for(lambda: abs(two.read(103, "W") - 1940) < 5)
    assert one.read(103, "W") == pytest.approx(3880, abs=5)
    rr = tcp.read_holding_registers(40000, count=2, device_id=9)
    assert rr.isError() and rr.exception_code == 0x0B


def test_grid_voltage_and_frequency_show_in_the_measurements(fresh, dev):
    fresh.control.set_grid(v_pu=1.05, f_hz=59.5)
    wait_for(lambda: dev.read(103, "PhVphA") == pytest.approx(252.0))
    m = dev.read(103)
    assert m.value("PhVphB") == pytest.approx(252.0) and m.value("Hz") == pytest.approx(59.5)
    fresh.control.set_grid(phases_v=[230, 240, 250])
    wait_for(lambda: dev.read(103, "PhVphC") == pytest.approx(250.0))


def test_grid_script_steps_through_rows(fresh, dev):
    fresh.control.script([[0, 1.0, 60.0], [0.3, 1.08, 60.2]])
    wait_for(lambda: dev.read(103, "PhVphA") == pytest.approx(259.2), timeout=3)
    assert fresh.control.state()["grid"]["script"]


def test_power_limit_settles_within_a_few_time_constants(fresh, dev, tau):
    assert dev.write(123, "WMaxLimPct", 40.0).function_code == 16
    assert dev.read(103, "W") > 3000  # not enabled yet
    t0 = time.monotonic()
    dev.write(123, "WMaxLim_Ena", 1)
    # First order: within 40 W of the new level after ~4 tau; 8 tau and 2 s of room for
    # a loaded machine still fail a plant several times slower than its tau.
    wait_for(lambda: abs(dev.read(103, "W") - 2000) < 40, timeout=8 * tau + 2)
    assert time.monotonic() - t0 < 8 * tau + 2
    assert dev.read(103, "St") == 5  # THROTTLED
    st = fresh.control.unit_state(1)
    assert st["controls"]["123"]["WMaxLimPct"] == pytest.approx(40.0)
    assert st["effective"]["w_limit"] == pytest.approx(2000)
    assert dev.read(122, "StActCtl") & 1  # FixedW active


def test_conn_0_drives_output_to_zero_and_state_off(fresh, dev, tau):
    dev.write(123, "Conn", 0)
    wait_for(lambda: dev.read(103, "W") == 0, timeout=8 * tau + 1)
    m = dev.read(103)
    assert m.value("St") == 1 and m.value("A") == 0
    assert dev.read(122, "ECPConn") == 0
    dev.write(123, "Conn", 1)
    wait_for(lambda: dev.read(103, "W") > 3000, timeout=8 * tau + 1)


def test_power_factor_setpoint_sign_convention(fresh, dev):
    dev.write(123, "OutPFSet", -0.9)
    dev.write(123, "OutPFSet_Ena", 1)
    wait_for(lambda: dev.read(103, "PF") == pytest.approx(-90.0, abs=0.5), timeout=3)
    assert dev.read(103, "VAr") < -1000  # under-excited: absorbing
    dev.write(123, "OutPFSet", 0.95)
    wait_for(lambda: dev.read(103, "VAr") > 1000, timeout=3)


def test_var_percent_of_max(fresh, dev):
    dev.write(123, "VArMaxPct", 50.0)
    dev.write(123, "VArPct_Mod", 2)
    dev.write(123, "VArPct_Ena", 1)
    wait_for(lambda: dev.read(103, "VAr") == pytest.approx(1100, abs=20), timeout=3)


def test_revert_timer_disables_the_limit(fresh, dev):
    dev.write(123, "WMaxLimPct_RvrtTms", 1)
    dev.write(123, "WMaxLimPct", 20.0)
    dev.write(123, "WMaxLim_Ena", 1)
    wait_for(lambda: dev.read(103, "W") < 1100, timeout=3)
    wait_for(lambda: dev.read(123, "WMaxLim_Ena") == 0, timeout=3)
    wait_for(lambda: dev.read(103, "W") > 3500, timeout=3)


def test_refused_writes_change_nothing(fresh, dev, tcp):
    before = dev.raw_regs(123, "WMaxLimPct")
    rr = dev.write(123, "WMaxLimPct", 150.0)
    assert rr.isError() and rr.exception_code == 3
    assert dev.raw_regs(123, "WMaxLimPct") == before
    rr = tcp.write_registers(dev.address(103, "W"), [100], device_id=1)  # read-only
    assert rr.isError() and rr.exception_code == 3
    rr = tcp.write_register(dev.address(123, "Conn"), 5, device_id=1)  # not an enum value
    assert rr.isError() and rr.exception_code == 3
    assert dev.read(123, "Conn") == 1
    end = dev.models[123].address + dev.models[123].layout.size + 2  # past the end marker
    rr = tcp.write_register(end, 1, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    rr = tcp.read_holding_registers(end, count=1, device_id=1)
    assert rr.isError() and rr.exception_code == 2


def test_scale_factor_changes_at_run_time(fresh, dev):
    fresh.control.set_dc(2000)  # 10x the raw count must still fit an int16
    wait_for(lambda: abs(dev.read(103, "W") - 1940) < 3)
    assert dev.read(103, "W_SF") == 0
    raw_before = dev.raw_regs(103, "W")[0]
    fresh.control.set_sf("W_SF", -1, unit=1)
    m = wait_for(lambda: (lambda d: d if d.value("W_SF") == -1 else None)(dev.read(103)))
    assert m.value("W") == pytest.approx(raw_before, abs=5)  # same watts...
    assert m.raw["W"] == pytest.approx(10 * raw_before, abs=50)  # ...ten times the raw count
    fresh.control.set_sf("WMaxLimPct_SF", -2, unit=1)
    assert dev.read(123, "WMaxLimPct") == pytest.approx(100.0)
    assert dev.raw_regs(123, "WMaxLimPct") == [10000]


@pytest.mark.parametrize("mode", ["silent", "exception:6", "garbage", "truncated", "bad_crc",
                                  "delay:0.6"])
def test_fault_modes_over_tcp(fresh, mode):
    fresh.control.fault(mode)
    client = tcp_client(fresh, timeout=0.4)
    try:
        rr = None
        try:
            rr = client.read_holding_registers(40000, count=2, device_id=1)
        except Exception as exc:  # pymodbus: ModbusIOException on no usable answer
            rr = exc
        if mode == "exception:6":
            assert rr.isError() and rr.exception_code == 6
        else:
            assert isinstance(rr, Exception), rr  # nothing usable within the timeout
        good_len = 7 + 2 + 4
        wire = tcp_exchange(fresh.tcp_port, 1, struct.pack(">BHH", 3, 40000, 2),
                            wait=1.0 if mode.startswith("delay") else 0.3, expect=good_len)
        if mode == "silent":
            assert wire == b""
        elif mode == "garbage":
            assert len(wire) == good_len and wire[7:] != b"\x03\x04SunS"
        elif mode == "truncated":
            assert 0 < len(wire) < good_len
        elif mode == "bad_crc":
            assert len(wire) == good_len and wire[2:4] != b"\x00\x00" and wire[-4:] == b"SunS"
        elif mode.startswith("delay"):
            assert wire.endswith(b"SunS")
    finally:
        client.close()
    fresh.control.fault("none")


def test_fault_on_one_unit_only(fresh, tcp):
    fresh.control.fault("exception:4", unit=2)
    assert tcp.read_holding_registers(40000, count=2, device_id=2).exception_code == 4
    assert tcp.read_holding_registers(40000, count=2, device_id=1).registers[0] == 0x5375


def test_several_tcp_clients_at_once(fresh):
    clients = [tcp_client(fresh) for _ in range(4)]
    try:
        for c in clients:
            assert c.read_holding_registers(40000, count=2, device_id=1).registers == [
                0x5375, 0x6E53]
    finally:
        for c in clients:
            c.close()


def test_reset_restores_defaults(fresh, dev):
    fresh.control.set_sf("W_SF", 1)
    fresh.control.fault("exception:4", unit=2)
    dev.write(123, "Conn", 0)
    fresh.control.set_grid(v_pu=0.9)
    fresh.control.reset()
    m = dev.read(103)
    assert m.value("W_SF") == 0 and m.value("PhVphA") == pytest.approx(240.0)
    assert m.value("W") == pytest.approx(3880, abs=3)  # steady state at once
    assert dev.read(123, "Conn") == 1
    assert fresh.control.state()["faults"] == {"*": "none"}
