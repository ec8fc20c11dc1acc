"""``--emulate-baud``: a pty has no baud rate, so the simulator holds each answer for
the time the request and the answer would take on a real RS-485 line."""

from __future__ import annotations

import time

from hal.transport import RetryPolicy, RtuTransport, SerialSettings
from inverter_agent.core.pollrate import rtu_wire_s
from simulator import SimProcess


def _read_time(sim: SimProcess, count: int, baud: int = 9600) -> float:
    t = RtuTransport(SerialSettings(sim.pty_path, baud=baud), RetryPolicy(timeout=4.0, retries=0))
    try:
        t.read_holding(40000, 2, 1)  # open the port
        t0 = time.perf_counter()
        t.read_holding(40070, count, 1)
        return time.perf_counter() - t0
    finally:
        t.close()


def test_answers_take_at_least_their_time_on_a_9600_baud_line():
    with SimProcess("--baud", "9600", "--emulate-baud", pty=True) as sim:
        took = _read_time(sim, 100)
    # request 8 bytes, answer 5 + 200: about 0.22 s at 9600 baud
    assert took >= rtu_wire_s(8 + 205, 1, 9600), took


def test_without_emulation_a_pty_answers_at_once():
    # At 1200 baud the line would hold this exchange 1.8 s: a bound that tells "at
    # once" from "held" with room for a loaded machine.
    with SimProcess("--baud", "1200", pty=True) as sim:
        took = _read_time(sim, 100, baud=1200)
    assert took < rtu_wire_s(8 + 205, 1, 1200), took
