"""DNP3, IEEE 2030.5 and MMS at once, end to end: docs/arbitration.md rows D2 and D1.

Four processes on loopback: the simulated inverter, the gateway (``inverter-agent
run`` serving MMS and DNP3, a CSIP client of the 2030.5 server), GridAPPS-D's 2030.5
server (a utility head end posts an event through its admin API) and, in the test,
dnp3py's master and the project's MMS client. While the 2030.5 event holds the
limit at 40 %, a DNP3 timed limit (reversion timeout AO85) of 30 % binds until its
timeout and the 2030.5 limit applies again (D2); a timed 60 % never lifts the 40 %,
neither while it runs nor when it ends (D1). MMS reads the same limit in force.
"""

from __future__ import annotations

import time

import pytest

from tests.adapters.ieee2030_5.conftest import config_toml, free_port
from tests.adapters.ieee2030_5.conftest import gridappsd as gridappsd  # the fixture
from tests.adapters.ieee2030_5.test_gridappsd_e2e import POLL, Gateway, mms_status, wait_for
from tests.adapters.ieee2030_5.test_gridappsd_e2e import sim as sim  # the fixture
from tests.e2e.conftest import LD

from .conftest import SUCCESS, ForeignMaster

pytestmark = pytest.mark.timeout(240)
TIMEOUT_S = 4


@pytest.fixture(scope="module")
def gateway(gridappsd, sim, tmp_path_factory):
    port = free_port()
    gw = Gateway(tmp_path_factory.mktemp("gw3"), sim,
                 config_toml(gridappsd) + f"[dnp3]\nenabled = true\nport = {port}\n")
    gw.dnp3_port = port
    try:  # the CSIP client has found its program and the default control
        for key, within in (("programs", 30), ("default_control", POLL + 5)):
            wait_for(lambda key=key: gw.utility().get(key), within, f"2030.5 {key}")
        yield gw
    finally:
        gw.stop()


def test_D2_D1_dnp3_timed_limits_under_a_2030_5_event_limit(gridappsd, gateway):
    start = time.time() + POLL + 3  # seen at least one poll ahead of its start
    gridappsd.post_event(start, 40, "<opModMaxLimW>4000</opModMaxLimW>")  # 40 %
    wait_for(lambda: gateway.limit_at_inverter() == 40.0, POLL + 20, "the 2030.5 limit")
    master = ForeignMaster(gateway.dnp3_port)
    assert master.operate_in_turn([("AO", 85, TIMEOUT_S), ("AO", 88, 300)]) == [SUCCESS] * 2
    assert gateway.limit_at_inverter() == 40.0  # held, not in force
    t0 = time.monotonic()
    assert master.direct_operate_binary(17, True) == SUCCESS
    # D2: the lower DNP3 limit binds until its timeout, then the 2030.5 event's again
    wait_for(lambda: gateway.limit_at_inverter() == 30.0, 3, "the DNP3 timed 30 %")
    wait_for(lambda: gateway.limit_at_inverter() == 40.0, TIMEOUT_S + 4, "40 % after the timeout")
    assert time.monotonic() - t0 >= TIMEOUT_S - 0.5
    # D1: a higher timed limit never lifts the lower one, nor does its end
    assert master.operate_in_turn([("AO", 88, 600), ("BO", 17, True)]) == [SUCCESS] * 2
    seen = set()
    deadline = time.monotonic() + TIMEOUT_S + 2
    while time.monotonic() < deadline:
        seen.add(gateway.limit_at_inverter())
        time.sleep(0.1)
    assert seen == {40.0}, seen
    shown = gateway.mms.read_value(f"{LD}/{mms_status('p_limit_pct')}.mag.f", "MX")
    assert shown == pytest.approx(40.0)  # MMS reads the limit the inverter runs with
    assert master.direct_operate_analog(85, 0) == SUCCESS
