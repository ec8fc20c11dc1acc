"""Unsolicited responses: allowed by ``[dnp3] unsolicited``, sent only once the master
enables a class; a grid voltage change then reaches the master unasked."""

from __future__ import annotations

import asyncio
import time

import pytest

from simulator import wait_until

from .conftest import ONLINE, ForeignMaster, running_gateway


@pytest.fixture(scope="module")
def uns_gateway(tmp_path_factory):
    with running_gateway(tmp_path_factory.mktemp("dnp3uns"), unsolicited=True) as gw:
        yield gw


def test_events_arrive_unasked_only_after_the_master_enabled_them(uns_gateway):
    control = uns_gateway.sim.control

    async def work(runner, master, points, raw):
        await runner.integrity_poll()
        v0 = points.ai[547][0]
        points.ai.clear()
        # not enabled yet: a voltage change is buffered, not sent
        control.set_grid(v_pu=1.03)
        await asyncio.to_thread(wait_until, lambda: abs(
            uns_gateway.view().good("PhVphA") - 247.2) < 0.5, 10)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            await runner.listen_unsolicited(timeout=0.3)
        assert 547 not in points.ai, points.ai
        # enabled: the buffered change and the next one come unasked
        await runner.enable_unsolicited()
        control.set_grid(v_pu=0.98)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                547 in points.ai and abs(points.ai[547][0] * 0.1 - 235.2) < 0.5):
            await runner.listen_unsolicited(timeout=0.5)
        return v0, points.ai.get(547)

    v0, got = asyncio.run(asyncio.wait_for(ForeignMaster(uns_gateway.port)._run(work), 40))
    assert v0 == pytest.approx(2400, abs=5)
    assert got is not None and got[1] == ONLINE
    assert got[0] * 0.1 == pytest.approx(235.2, abs=0.5)
    control.set_grid(v_pu=1.0)
