"""Energy counters and alarms, end to end: the simulated inverter -> the gateway ->
dnp3py's master.

Shown: CTR0 carries the inverter's lifetime energy (Wh delivered, as the core read
it) with ONLINE, its
frozen counter is there from the first integrity poll and an immediate freeze from
the master takes the counter's present value; the alarm inputs say what the core
knows: no alarm in normal operation, and a protection trip (an over-voltage the
ride-through settings trip on) raises "priority 1 alarms" as an event.
"""

from __future__ import annotations

from simulator import wait_until

from .conftest import ONLINE


def test_the_energy_counter_and_its_frozen_counter(gateway, master):
    # the energy register is polled on the HAL's slow cadence, and a SunSpec energy
    # register reads 0 for "not implemented": wait for a first good reading
    wait_until(lambda: gateway.view().good("WH"), timeout=40)
    points = master.integrity_poll()
    value, flags = points.ctr[0]
    assert flags == ONLINE
    # what the core read, which trails the inverter by at most the slow poll period
    assert value == round(gateway.view().good("WH"))
    assert value <= gateway.sim.control.state()["units"]["1"]["plant"]["wh"] + 1  # rounded
    assert 0 in points.frozen  # frozen when the outstation started
    first = points.frozen[0][0]
    assert first <= value
    wait_until(lambda: master.integrity_poll().ctr[0][0] > value, timeout=40)
    response = master.freeze_counters()
    # a response (0x81) without IIN2.0 "function code not supported"
    assert response[1] == 0x81 and not response[3] & 0x01, response.hex()
    after = master.integrity_poll()
    assert after.frozen[0][0] > first and after.frozen[0][0] <= after.ctr[0][0]


def test_alarms_are_clear_in_normal_operation_and_a_trip_raises_priority_1(gateway, master):
    points = master.integrity_poll()
    assert points.bi[1] == (False, ONLINE)  # no trip
    assert points.bi[2] == (False, ONLINE)  # health not "alarm"
    master.class_poll()  # what is buffered so far, read and confirmed
    control = gateway.sim.control
    control.set_grid(v_pu=1.25)  # above every over-voltage trip threshold
    try:
        wait_until(lambda: (fs := gateway.view().functions) is not None
                   and fs.out_of_service_kind is not None
                   and fs.out_of_service_kind.is_trip, timeout=15)
        events = master.class_poll()
        assert events.bi[1] == (True, ONLINE)
        assert master.integrity_poll().bi[1] == (True, ONLINE)
    finally:
        control.set_grid(v_pu=1.0)
