"""The gateway with its DNP3 outstation on loopback, in front of the simulated
inverter (another process), and a DNP3 master the project did not write:
dnp3py's pure-Python ``MasterTcpRunner`` (MIT)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from inverter_agent import app as app_mod
from inverter_agent import config
from simulator import SimProcess, wait_until
from tests.e2e.conftest import free_port

OUTSTATION, MASTER = 1024, 1

#: Flag bits of a static analog / binary input (IEEE 1815 object flags).
ONLINE, RESTART, COMM_LOST = 0x01, 0x02, 0x04

#: IEEE 1815 command status codes.
SUCCESS, NOT_SUPPORTED, NOT_AUTHORIZED, OUT_OF_RANGE, BLOCKED = 0, 4, 9, 12, 15


@dataclass
class Points:
    """What the master was told, by index: (value, flags)."""

    ai: dict[int, tuple[float, int]] = field(default_factory=dict)
    bi: dict[int, tuple[bool, int]] = field(default_factory=dict)
    ao: dict[int, tuple[float, int]] = field(default_factory=dict)
    bo: dict[int, tuple[bool, int]] = field(default_factory=dict)
    ctr: dict[int, tuple[int, int]] = field(default_factory=dict)
    frozen: dict[int, tuple[int, int]] = field(default_factory=dict)

    def on_binary_input(self, values: Any, info: Any) -> None:
        self.bi.update({v.index: (v.value, v.quality) for v in values})

    def on_binary_output(self, values: Any, info: Any) -> None:
        self.bo.update({v.index: (v.value, v.quality) for v in values})

    def on_analog_input(self, values: Any, info: Any) -> None:
        self.ai.update({v.index: (v.value, v.quality) for v in values})

    def on_analog_output(self, values: Any, info: Any) -> None:
        self.ao.update({v.index: (v.value, v.quality) for v in values})

    def on_counter(self, values: Any, info: Any) -> None:
        self.ctr.update({v.index: (v.value, v.quality) for v in values})

    def on_frozen_counter(self, values: Any, info: Any) -> None:
        self.frozen.update({v.index: (v.value, v.quality) for v in values})


def close_to(measured: float, truth: float, tol: float = 0.02, floor: float = 0.0) -> bool:
    return abs(measured - truth) <= max(tol * abs(truth), floor)


def assert_meter_matches_the_inverter(ai: dict[int, tuple[float, int]], state: Any) -> None:
    """A master's analog inputs against the simulator's ``state()``: the system meter
    within 2 % and ONLINE, var within 2 % of the rated VA, the nameplate exact."""
    plant, grid = state["units"]["1"]["plant"], state["grid"]
    measured = {  # index: (engineering value, truth from the simulator)
        537: (ai[537][0], plant["w"]),
        546: (ai[546][0], plant["va"]),
        545: (ai[545][0] * 0.01, plant["pf"]),
        536: (ai[536][0] * 0.001, grid["f_hz"]),
        547: (ai[547][0] * 0.1, grid["v"][0]),
        549: (ai[549][0] * 0.1, grid["v"][1]),
        551: (ai[551][0] * 0.1, grid["v"][2]),
    }
    for index, (value, truth) in measured.items():
        assert close_to(value, truth), (index, value, truth)
        assert ai[index][1] & ONLINE, (index, ai[index])
    # reactive power near zero: 2 % of the rated VA
    assert close_to(ai[541][0], plant["var"], floor=0.02 * ai[14][0])
    # nameplate (model 120 of the simulated 5 kW inverter)
    assert ai[4] == (5000.0, ONLINE) and ai[14] == (5000.0, ONLINE)
    assert ai[12][0] == 2200.0 and ai[13][0] == -2200.0


def tls_channel(port: int, context: ssl.SSLContext) -> Any:
    """dnp3py's TCP client channel, connecting over TLS (dnp3py itself has no TLS)."""
    from dnp3.transport_io.channel import ChannelState, TcpConfig
    from dnp3.transport_io.tcp_client import TcpClientChannel

    class TlsClientChannel(TcpClientChannel):
        async def open(self) -> None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=context,
                                        server_hostname="127.0.0.1"), 10)
            self._state = ChannelState.OPEN

    return TlsClientChannel(config=TcpConfig(host="127.0.0.1", port=port))


class ForeignMaster:
    """dnp3py's master: one short TCP association per call (its own event loop)."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls

    async def _run(self, work: Any) -> Any:
        from dnp3.master.config import MasterConfig
        from dnp3.master.master import Master
        from dnp3.master.tcp_runner import MasterTcpRunner

        points = Points()
        master = Master(config=MasterConfig(address=MASTER, outstation_address=OUTSTATION,
                                            response_timeout=5.0), handler=points)
        raw: list[bytes] = []
        process = master.process_response

        def capture(data: bytes) -> Any:  # the echo's status octet is not handed up
            raw.append(bytes(data))
            return process(data)

        master.process_response = capture  # type: ignore[method-assign]
        channel = None if self.tls is None else tls_channel(self.port, self.tls)
        runner = MasterTcpRunner(master=master, host="127.0.0.1", port=self.port,
                                 response_timeout=5.0, channel=channel)
        try:
            await runner.open()
            return await work(runner, master, points, raw)
        finally:
            await runner.close()
            if channel is not None:
                await channel.close()

    def integrity_poll(self) -> Points:
        async def work(runner: Any, master: Any, points: Points, raw: list[bytes]) -> Points:
            await runner.integrity_poll()
            return points
        return asyncio.run(asyncio.wait_for(self._run(work), 20))

    def class_poll(self) -> Points:
        """Events of classes 1-3 (what changed since the last confirmed read)."""
        async def work(runner: Any, master: Any, points: Points, raw: list[bytes]) -> Points:
            await runner.class_poll()
            return points
        return asyncio.run(asyncio.wait_for(self._run(work), 20))

    def freeze_counters(self) -> bytes:
        """An immediate freeze of every counter (function 7, group 20 variation 0, all
        objects; dnp3py has no builder for it): the outstation's response."""
        from dnp3.application.builder import build_read_request
        from dnp3.application.fragment import ObjectBlock
        from dnp3.application.header import RequestHeader
        from dnp3.application.qualifiers import ObjectHeader, PrefixCode, RangeCode
        from dnp3.core.enums import FunctionCode

        async def work(runner: Any, master: Any, points: Points, raw: list[bytes]) -> bytes:
            read = build_read_request(objects=(ObjectBlock(header=ObjectHeader.build(
                group=20, variation=0, prefix=PrefixCode.NONE,
                range_code=RangeCode.ALL_OBJECTS)),), seq=master.build_integrity_poll()
                .header.control.seq)
            freeze = dataclasses.replace(read, header=RequestHeader.build(
                function=FunctionCode.IMMEDIATE_FREEZE, seq=read.header.control.seq))
            await runner.request(freeze)
            return raw[-1]
        return asyncio.run(asyncio.wait_for(self._run(work), 20))

    def select_operate_analog(self, index: int, value: int) -> tuple[int, int]:
        """Select, then operate, one analog output: (select status, operate status)."""
        async def work(runner: Any, master: Any, points: Points,
                       raw: list[bytes]) -> tuple[int, int]:
            builder = master.command_builder().add_analog(index, value)
            await runner.request(master.build_select(builder.build_select()))
            selected = echo_status(raw[-1])
            await runner.request(master.build_operate(builder.build_operate()))
            return selected, echo_status(raw[-1])
        return asyncio.run(asyncio.wait_for(self._run(work), 20))

    def direct_operate_analog(self, index: int, value: int) -> int:
        return self._operate(lambda b: b.add_analog(index, value))

    def direct_operate_binary(self, index: int, on: bool) -> int:
        return self._operate(lambda b: b.latch_on(index) if on else b.latch_off(index))

    def operate_in_turn(self, controls: list[tuple[str, int, float]]) -> list[int]:
        """Direct-operate each (``"AO"`` / ``"BO"``, index, value) in turn over one
        association: the status echoed for each."""
        async def work(runner: Any, master: Any, points: Points, raw: list[bytes]) -> list[int]:
            statuses = []
            for kind, index, value in controls:
                builder = master.command_builder()
                if kind == "AO":
                    builder.add_analog(index, int(value))
                elif value:
                    builder.latch_on(index)
                else:
                    builder.latch_off(index)
                request = _two_octet_count(master.build_direct_operate(
                    builder.build_direct_operate()))
                await runner.request(request)
                statuses.append(echo_status(raw[-1]))
            return statuses
        return asyncio.run(asyncio.wait_for(self._run(work), 60))

    def _operate(self, add: Any) -> int:
        async def work(runner: Any, master: Any, points: Points, raw: list[bytes]) -> int:
            builder = master.command_builder()
            add(builder)
            await runner.request(master.build_direct_operate(builder.build_direct_operate()))
            return echo_status(raw[-1])
        return asyncio.run(asyncio.wait_for(self._run(work), 20))


def _two_octet_count(request: Any) -> Any:
    """dnp3py (0.x) encodes a control at an index above 255 with qualifier 0x28 and a
    one-octet count, which 0x28 defines as two octets (IEEE 1815 A.2): the outstation
    rightly refuses it as short. The same request, its count widened to two octets."""
    blocks = []
    for block in request.objects:
        if block.header.qualifier == 0x28 and block.data[0] == 1:
            block = dataclasses.replace(block, data=b"\x01\x00" + block.data[1:])
        blocks.append(block)
    return dataclasses.replace(request, objects=tuple(blocks))


#: Statuses besides those above (IEEE 1815 command status codes).
FORMAT_ERROR = 3


def curve_writes(number: int, mode_type: int, y_units: int,
                 points: list[tuple[float, float]]) -> list[tuple[str, int, float]]:
    """The edit-buffer writes of one curve (AN2018-001: selector AO244, mode type,
    number of points, X / Y units, then X / Y pairs from AO249), X and Y in percent
    sent as tenths of a percent; X units 129 (percent voltage)."""
    out = [("AO", 244, number), ("AO", 245, mode_type), ("AO", 246, len(points)),
           ("AO", 247, 129), ("AO", 248, y_units)]
    for i, (x, y) in enumerate(points):
        out += [("AO", 249 + 2 * i, round(x * 10)), ("AO", 250 + 2 * i, round(y * 10))]
    return out


def echo_status(response: bytes) -> int:
    """The status octet of the one control echoed in a response (group 12 or 41, one
    object; 1-octet count and index below index 256, 2-octet ones from 256 on: what
    the master sent)."""
    from dnp3.application.parser import parse_response

    fragment = parse_response(response)
    (block,) = [b for b in fragment.objects if b.header.group in (12, 41)]
    width = {0x17: 1, 0x28: 2}[block.header.qualifier]
    data = block.data
    if int.from_bytes(data[:width], "little") != 1:  # the count is part of the block's data
        raise AssertionError(f"expected one echoed control, got {data!r}")
    size = {12: 11, 41: {1: 5, 2: 3}[block.header.variation]}[block.header.group]
    return data[2 * width + size - 1]


@dataclass
class Gateway:
    sim: SimProcess
    app: app_mod.App
    port: int
    thread: threading.Thread

    @property
    def commands(self) -> Any:
        return self.app.core.commands(self.app.core.inverters[0])

    def view(self) -> Any:
        view = self.app.core.view()
        return None if view is None else view.inverters[0]


@contextlib.contextmanager
def running_gateway(tmp: Any, sim_args: tuple[str, ...] = (), **dnp3: Any) -> Iterator[Gateway]:
    """The simulator (``sim_args`` added to its command line), and the gateway polling it
    with [dnp3] enabled (``dnp3`` keys)."""
    with SimProcess("--seed", "3", "--tau", "0.2", *sim_args) as sim:
        port = free_port()
        cfg = config.load(None, {"inverter.modbus_tcp": f"127.0.0.1:{sim.tcp_port}",
                                 "agent.poll_period": 0.25, "agent.state_dir": str(tmp),
                                 "mms.enabled": False, "dnp3.enabled": True,
                                 "dnp3.port": port,
                                 **{f"dnp3.{k}": v for k, v in dnp3.items()}})
        app = app_mod.App(cfg)
        app.start()
        thread = threading.Thread(target=app.runner.run, name="agent-loop", daemon=True)
        thread.start()
        gw = Gateway(sim, app, port, thread)
        try:
            wait_until(lambda: (v := gw.view()) is not None and v.link_up
                       and v.good("W") is not None, timeout=20)
            yield gw
        finally:
            app.runner.stop()
            thread.join(5)
            app.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("dnp3")) as gw:
        yield gw


@pytest.fixture
def master(gateway: Gateway) -> ForeignMaster:
    return ForeignMaster(gateway.port)
