"""The site meter served over MMS as the point of common coupling, end to end.

The simulator (its own process) has an inverter at unit 1 and a SunSpec meter
(model 213) at unit 2 on the same Modbus TCP server; the agent (its own process)
reads both and serves the meter in its own logical device (GWSITE: DPCC1, MMXU1,
MMTR1); libiec61850's client (a third party to the agent's server code) reads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inverter_agent.adapters.mms import client as mms
from simulator import SimProcess

from .conftest import wait_for

PCC = "GWSITE"


@pytest.fixture(scope="module")
def meter_sim() -> Iterator[SimProcess]:
    with SimProcess("--meter", "2:213", "--dc", "4000", "--tau", "0.2") as proc:
        yield proc


def _mx(agent, do: str) -> tuple[float, object]:
    leaves = agent.mms.read(f"{PCC}/{do}", "MX")
    value = next(v for k, v in leaves.items() if k.endswith("mag.f"))
    return value, mms.quality_from_bits(leaves["q"])


def test_the_meter_is_served_as_the_pcc_and_follows_the_site(meter_sim, agent_factory,
                                                             tmp_path):
    meter_sim.control.reset()
    cfg = tmp_path / "meter.toml"
    cfg.write_text("[meter]\nenabled = true\nunit = 2\nmodel = 213\n")
    agent = agent_factory("--modbus-tcp", f"127.0.0.1:{meter_sim.tcp_port}",
                          "--config", str(cfg), poll_period=0.1)
    lns = agent.mms.logical_nodes(PCC)
    assert {"LLN0", "LPHD1", "MMXU1", "MMTR1", "DPCC1"} <= set(lns)

    def agrees(load: float) -> bool:
        units = meter_sim.control.state()["units"]
        expected = load - units["1"]["plant"]["w"]  # import positive: load - generation
        w, q = _mx(agent, "MMXU1.TotW")
        return q.good and units["2"]["meter"]["load_w"] == load and abs(w - expected) <= 30.0

    # Exporting: the inverter makes more than the 1000 W load, TotW reads negative.
    wait_for(lambda: agrees(1000.0), what="TotW = the meter's W")
    w, _ = _mx(agent, "MMXU1.TotW")
    assert w < -1000.0
    hz, q = _mx(agent, "MMXU1.Hz")
    assert q.good and hz == pytest.approx(60.0)
    v, q = _mx(agent, "MMXU1.PhV.phsB")
    assert q.good and v == pytest.approx(240.0, abs=0.5)
    # Importing once the load exceeds the output: TotW positive.
    meter_sim.control.set_load(9000.0)
    wait_for(lambda: agrees(9000.0), what="TotW follows the load")
    assert _mx(agent, "MMXU1.TotW")[0] > 0
    health = agent.mms.read(f"{PCC}/LLN0.Health", "ST")
    assert health["stVal"] == 1
    # The meter's link lost: its values turn invalid and the PCC's health to alarm.
    meter_sim.control.fault("silent", unit=2)
    try:
        wait_for(lambda: not _mx(agent, "MMXU1.TotW")[1].good, timeout=15.0,
                 what="TotW invalid with the meter silent")
        wait_for(lambda: agent.mms.read(f"{PCC}/LLN0.Health", "ST")["stVal"] == 3,
                 what="Health alarm")
        # The inverter's own LD is unaffected.
        assert agent.read("MMXU1.TotW")[1].good
    finally:
        meter_sim.control.fault("none")
