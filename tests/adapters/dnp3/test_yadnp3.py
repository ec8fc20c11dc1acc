"""The DNP3 outstation against a second master the project did not write:
yadnp3's opendnp3 master (C++, Apache-2.0; imports as ``opendnp3``).

Shown, as with dnp3py's master: an integrity poll reports what the simulated
inverter measures (within 2 %) with ONLINE; an active power limit by direct
operate (AO88, then BO17) is accepted, persisted and reaches the inverter; an
out-of-range value is refused OUT_OF_RANGE with nothing changed.

yadnp3 ships wheels for x86_64 (and Windows) only: elsewhere the test is skipped.
Its callbacks run on its C++ threads; the handler objects are kept referenced.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from simulator import wait_until

from .conftest import (
    MASTER,
    ONLINE,
    OUT_OF_RANGE,
    OUTSTATION,
    SUCCESS,
    assert_meter_matches_the_inverter,
)

o = pytest.importorskip(
    "opendnp3", reason="yadnp3 (the opendnp3 master) is not installed: it has wheels "
                       "for x86_64 and Windows only (pip install yadnp3)")


#: A binary input's state, carried in its flags octet (IEEE 1815 object group 1 var 2).
STATE = 0x80


class Soe(o.ISOEHandler):  # type: ignore[misc, name-defined]
    """One scan's measurements, by index: (value, flags); ``done`` at its last fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.ai: dict[int, tuple[float, int]] = {}
        self.bi: dict[int, tuple[bool, int]] = {}
        self.done = threading.Event()

    def BeginFragment(self, info: Any) -> None:  # noqa: N802 (opendnp3's names)
        pass

    def EndFragment(self, info: Any) -> None:  # noqa: N802
        if info.fin and not info.unsolicited:
            self.done.set()

    def Process(self, info: Any, values: Any) -> None:  # noqa: N802
        for v in values:
            kind = type(v.value).__name__
            if kind == "Analog":
                self.ai[v.index] = (v.value.value, v.value.flags.value)
            elif kind == "Binary":  # opendnp3 keeps the state bit (0x80) in the flags
                self.bi[v.index] = (v.value.value, v.value.flags.value & ~STATE)


class _App(o.IMasterApplication):  # type: ignore[misc, name-defined]
    def OnReceiveIIN(self, iin: Any) -> None:  # noqa: N802
        pass

    def OnTaskStart(self, task: Any, info: Any) -> None:  # noqa: N802
        pass

    def OnTaskComplete(self, info: Any) -> None:  # noqa: N802
        pass

    def OnOpen(self) -> None:  # noqa: N802
        pass

    def OnClose(self) -> None:  # noqa: N802
        pass

    def AssignClassDuringStartup(self) -> bool:  # noqa: N802
        return False


class _Listener(o.IChannelListener):  # type: ignore[misc, name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def OnStateChange(self, state: Any) -> None:  # noqa: N802
        if state == o.ChannelState.OPEN:
            self.open.set()


class YadMaster:
    """An opendnp3 master on one TCP channel to the outstation."""

    TIMEOUT_S = 15.0

    def __init__(self, port: int) -> None:
        self.manager = o.DNP3Manager(1)
        self.listener = _Listener()
        self.startup = Soe()
        self.app = _App()
        self.channel = self.manager.AddTCPClient(
            "yad", o.levels.NOTHING, o.ChannelRetry.Default(),
            [o.IPEndpoint("127.0.0.1", port)], "0.0.0.0", self.listener)
        cfg = o.MasterStackConfig()
        cfg.link.LocalAddr, cfg.link.RemoteAddr = MASTER, OUTSTATION
        cfg.master.disableUnsolOnStartup = True
        self.master = self.channel.AddMaster("master", self.startup, self.app, cfg)
        self.master.Enable()
        if not self.listener.open.wait(self.TIMEOUT_S):
            self.manager.Shutdown()
            raise AssertionError("opendnp3's channel never opened")

    def integrity_poll(self) -> Soe:
        soe = Soe()
        self.master.ScanClasses(o.ClassField.AllClasses(), soe, o.TaskConfig.Default())
        assert soe.done.wait(self.TIMEOUT_S), "no final fragment of the integrity poll"
        return soe

    def direct_operate(self, command: Any, index: int) -> int:
        """One control by direct operate: the status the outstation echoed for it."""
        results: list[Any] = []
        done = threading.Event()

        def finished(result: Any) -> None:
            results.extend(result.to_list())
            done.set()

        self.master.DirectOperate(command, index, finished, o.TaskConfig.Default())
        assert done.wait(self.TIMEOUT_S), "no answer to the direct operate"
        (point,) = results
        assert point.index == index
        return int(point.status.value)

    def analog(self, index: int, value: int) -> int:
        return self.direct_operate(o.AnalogOutputInt32(value), index)

    def latch(self, index: int, on: bool) -> int:
        op = o.OperationType.LATCH_ON if on else o.OperationType.LATCH_OFF
        return self.direct_operate(o.ControlRelayOutputBlock(op), index)

    def close(self) -> None:
        self.manager.Shutdown()


@contextlib.contextmanager
def yad_master(port: int) -> Iterator[YadMaster]:
    master = YadMaster(port)
    try:
        yield master
    finally:
        master.close()


def test_yadnp3_integrity_poll_reports_the_inverters_values_within_2_percent(gateway):
    with yad_master(gateway.port) as master:
        points = master.integrity_poll()
    assert_meter_matches_the_inverter(points.ai, gateway.sim.control.state())
    assert points.bi[0] == (False, ONLINE)
    assert points.bi[19] == (True, ONLINE)


def test_yadnp3_direct_operate_active_power_limit_is_persisted_and_reaches_the_inverter(
        gateway):
    commands = gateway.commands
    with yad_master(gateway.port) as master:
        assert master.analog(88, 600) == SUCCESS  # 60.0 % (x0.1)
        assert commands.persisted_dict()["active_power_limit"]["p_limit_pct"] == 60.0
        assert master.latch(17, True) == SUCCESS
        assert commands.persisted_dict()["active_power_limit"]["enabled"] is True

        def limited() -> bool:
            unit = gateway.sim.control.state()["units"]["1"]
            return (unit["effective"]["w_limit"] is not None
                    and unit["plant"]["w"] <= 3000 * 1.02)
        wait_until(limited, timeout=15)
        points = master.integrity_poll()
        assert points.ai[149] == (600.0, ONLINE)
        assert points.bi[69] == (True, ONLINE)
        assert master.latch(17, False) == SUCCESS
        assert commands.persisted_dict()["active_power_limit"]["enabled"] is False


def test_yadnp3_out_of_range_limit_is_refused_and_nothing_changes(gateway):
    commands = gateway.commands
    before, effective = commands.persisted_dict(), commands.effective_dict()
    with yad_master(gateway.port) as master:
        assert master.analog(88, 1500) == OUT_OF_RANGE  # 150 %: outside 0-1000 (x0.1 %)
        assert master.integrity_poll().ai[149][0] * 0.1 == pytest.approx(
            before["active_power_limit"]["p_limit_pct"])
    assert commands.persisted_dict() == before
    assert commands.effective_dict() == effective
