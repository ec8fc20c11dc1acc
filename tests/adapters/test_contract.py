"""The contract every adapter in the registry keeps, run against each of them.

Built through the composition root (:class:`inverter_agent.app.App`) from a config
that enables only that adapter, with the inverter unreachable (nothing listens on
its Modbus address): the adapter loads, starts, takes the cycle's view with no
inverter reachable, serialises its status to JSON, refuses a bad command whole
through the core with nothing reaching the inverter, and stops within the bound.
Beside it, each adapter maps every refusal cause of the core to its protocol's
own error (a fake map that forgets one is caught).
"""

from __future__ import annotations

import json
import time

import pytest

from inverter_agent import app as app_mod
from inverter_agent import config
from inverter_agent.adapters import REGISTRY
from inverter_agent.adapters.base import STOP_BOUND_S, Adapter
from inverter_agent.core.commands import CommandRefused, RefusalCause
from inverter_agent.security import certs
from tests.e2e.conftest import free_port


def refusal_problems(refusals: dict) -> list[str]:
    """What is wrong with an adapter's refusal map; empty when every cause is mapped."""
    return [f"{c.name} not mapped" for c in RefusalCause if c not in refusals]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = str(d / "ca")
    certs.create_ca(ca)
    key, cert = certs.issue(ca, "gateway", str(d / "dev"), server=False)
    return {"ca": f"{ca}/ca.pem", "cert": cert, "key": key}


def _config(spec, tmp_path, pki) -> config.Config:
    """Only ``spec``'s adapter on, on a free loopback port (its keys module says how)."""
    overrides = {"inverter.modbus_tcp": f"127.0.0.1:{free_port()}",  # nobody listens
                 "inverter.timeout": 0.2, "agent.poll_period": 1.0,
                 "agent.state_dir": str(tmp_path), "mms.enabled": False}
    overrides |= spec.module("keys").loopback_config(free_port(), pki)
    return config.load(None, overrides)


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_refusal_cause_is_mapped_to_the_protocols_error(spec):
    refusals = spec.module("maps").REFUSALS
    assert refusal_problems(refusals) == []
    assert all(isinstance(code, int) for code in refusals.values())


def test_a_map_that_forgets_a_cause_is_caught():
    fake = dict(REGISTRY[0].module("maps").REFUSALS)
    del fake[RefusalCause.EXPIRED]
    assert refusal_problems(fake) == ["EXPIRED not mapped"]


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_the_adapter_keeps_the_contract_with_no_inverter_reachable(spec, tmp_path, pki):
    app = app_mod.App(_config(spec, tmp_path, pki), only=(spec.name,))
    try:
        assert [a.name for a in app.adapters] == [spec.name]
        adapter = app.adapters[0]
        assert isinstance(adapter, Adapter)
        adapter.start()
        app.runner.cycle()  # the poll fails: the inverter is unreachable
        app.publish()       # the adapter takes a view with nothing good in it
        view = app.core.view()
        assert view is not None and not view.inverters[0].link_up
        assert not any(r.quality.good for k, r in view.inverters[0].readings.items()
                       if k not in ("link", "health"))
        json.dumps(adapter.status())  # plain data for `status`
        json.dumps(app.adapter_status())
        # a bad command is refused whole by the core: nothing changes, nothing is written
        commands = app.core.commands(app.core.inverters[0])
        before = commands.persisted_dict()
        written = app.agents[0].inverter.transport.stats.transactions
        with pytest.raises(CommandRefused) as refused:
            commands.write({"fixed_pf.pf_min_injecting": 0.95,
                            "volt_var.curve": [[0.9, 44.0]]}, who="contract test")
        assert refused.value.cause is RefusalCause.INVALID_VALUE
        assert commands.persisted_dict() == before
        with pytest.raises(CommandRefused) as refused:
            commands.operate("no_such_control", 1, who="contract test")
        assert refused.value.cause is RefusalCause.NOT_SUPPORTED
        assert app.agents[0].inverter.transport.stats.transactions == written
    finally:
        t0 = time.monotonic()
        app.stop(STOP_BOUND_S)
        took = time.monotonic() - t0
    assert took < STOP_BOUND_S + 2.0, f"{spec.name} took {took:.1f} s to stop"
