"""The site loop with several inverters on one RS-485 bus (a pseudo-terminal to the
simulator): an inverter that never answers costs one probe per retry period, no
discovery storm, and the others are polled every cycle."""

from __future__ import annotations

import time

from inverter_agent import config
from inverter_agent.cli import make_agents
from inverter_agent.core.site import PlantService, Site
from simulator import SimProcess


def test_an_inverter_that_never_answers_costs_one_probe_per_retry_and_no_retries(tmp_path):
    with SimProcess("--units", "1,2", pty=True) as sim:
        cfg = config.load(None, {"inverter.modbus_rtu": sim.pty_path, "inverter.baud": 115200,
                                 "inverter.units": [1, 2, 3], "agent.poll_period": 0.1,
                                 "agent.dead_retry": 0.5, "functions.enabled": False,
                                 "agent.state_dir": str(tmp_path)})
        agents = make_agents(cfg, cfg.inverter_links())
        assert len({id(a.inverter.transport) for a in agents}) == 1  # one bus, one transport
        site = Site(cfg, agents, PlantService(str(tmp_path), "PLANT", None))
        try:
            t_end = time.monotonic() + 2.0
            cycles = 0
            while time.monotonic() < t_end and cycles < 100:
                site.cycle()
                cycles += 1
                time.sleep(0.05)
            stats = agents[0].inverter.transport.stats
        finally:
            site.close()
    one, two, three = agents
    assert one.stats.link_up and two.stats.link_up and not three.stats.link_up
    assert one.stats.cycles == two.stats.cycles == cycles  # polled every cycle
    # Unit 3: two probes to go down, then one per 0.5 s; a single transaction each,
    # never a retry and never the three-base discovery.
    assert 2 <= three.stats.failed_polls <= 2 + 2.0 / 0.5 + 1, three.stats.failed_polls
    assert stats.retries == 0
    assert stats.failures == three.stats.failed_polls
    totals = site.plant.totals
    assert totals is not None and totals.reporting == 2 and totals.configured == 3
    assert totals.w > 0 and not totals.quality.good


def test_inverters_on_their_own_tcp_links_each_get_a_transport_and_are_totalled(tmp_path):
    with SimProcess() as a, SimProcess("--dc", "2000") as b:
        toml = tmp_path / "agent.toml"
        toml.write_text(
            f'[agent]\npoll_period = 0.2\nstate_dir = "{tmp_path}"\n'
            f'[functions]\nenabled = false\n'
            f'[[inverters]]\nld_inst = "EAST"\nmodbus_tcp = "127.0.0.1:{a.tcp_port}"\n'
            f'[[inverters]]\nld_inst = "WEST"\nmodbus_tcp = "127.0.0.1:{b.tcp_port}"\n')
        cfg = config.load(str(toml))
        agents = make_agents(cfg, cfg.inverter_links())
        assert [x.name for x in agents] == ["EAST", "WEST"]
        assert agents[0].inverter.transport is not agents[1].inverter.transport
        site = Site(cfg, agents, PlantService(str(tmp_path), "PLANT", None))
        try:
            for _ in range(40):
                site.cycle()
                w = [a.last_snapshot.get("W") for a in agents]
                if all(r is not None and r.quality.good and r.value > 0 for r in w):
                    break
                time.sleep(0.1)
            site.cycle()
        finally:
            site.close()
    east, west = (a.last_snapshot["W"].value for a in agents)
    totals = site.plant.totals
    assert totals.quality.good and totals.reporting == 2
    assert totals.w == east + west
    assert west < east  # the second simulator has less DC power
