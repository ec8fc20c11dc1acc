"""Every adapter decides about every registered grid function: offered, or not with a reason.

Each adapter declares ``OFFERED`` (function name -> what carries it in the
protocol) and ``NOT_OFFERED`` (function name -> why not) beside its function
map. A function added to ``functions.registry.FUNCTIONS`` fails here until
every adapter has decided about it.
"""

import importlib

import pytest

from inverter_agent.adapters import REGISTRY
from inverter_agent.functions import FUNCTIONS, Family, FunctionSpec
from inverter_agent.functions.registry import coverage_problems
from inverter_agent.functions.volt_var import VoltVarSettings

#: Every registered adapter's maps module (the registry line names it).
ADAPTER_FUNCTION_MAPS = {s.name: s.maps for s in REGISTRY}


def declaration(adapter):
    module = importlib.import_module(ADAPTER_FUNCTION_MAPS[adapter])
    return module.OFFERED, module.NOT_OFFERED


@pytest.mark.parametrize("adapter", sorted(ADAPTER_FUNCTION_MAPS))
def test_every_registered_function_is_offered_or_declared_not_offered(adapter):
    offered, not_offered = declaration(adapter)
    assert coverage_problems(offered, not_offered) == []
    assert set(offered) | set(not_offered) == {f.name for f in FUNCTIONS}


@pytest.mark.parametrize("adapter", sorted(ADAPTER_FUNCTION_MAPS))
@pytest.mark.parametrize("forgotten", [f.name for f in FUNCTIONS])
def test_an_adapter_that_forgets_a_function_fails_the_check(adapter, forgotten):
    offered, not_offered = declaration(adapter)
    fake_offered = {k: v for k, v in offered.items() if k != forgotten}
    fake_not_offered = {k: v for k, v in not_offered.items() if k != forgotten}
    assert coverage_problems(fake_offered, fake_not_offered) == [
        f"{forgotten}: neither offered nor declared not offered"]


@pytest.mark.parametrize("adapter", sorted(ADAPTER_FUNCTION_MAPS))
def test_a_function_added_to_the_registry_fails_every_adapter_until_decided(adapter):
    offered, not_offered = declaration(adapter)
    new = FunctionSpec("watt_var", VoltVarSettings, "watt-var", Family.REACTIVE, "reactive")
    assert coverage_problems(offered, not_offered, (*FUNCTIONS, new)) == [
        "watt_var: neither offered nor declared not offered"]
    assert coverage_problems(offered, {**not_offered, "watt_var": "not in this protocol"},
                             (*FUNCTIONS, new)) == []


def test_the_mms_carriers_are_logical_nodes_the_model_serves():
    from inverter_agent.adapters.mms import functions_model as fm
    (ld,) = fm.functions_model_spec().logical_devices
    served = {f"{ln.ln_class}{ln.inst}" for ln in ld.logical_nodes}
    for name, carriers in fm.OFFERED.items():
        assert set(carriers.split(", ")) <= served, name
        settings_lns = {t.split(".")[0] for t, path, _ in fm.writable_settings()
                        if path.split(".")[0] == name}
        assert settings_lns, f"{name}: offered but no setting of it is writable"
    # the status map shows every function the controller reports
    assert set(fm.FUNCTION_STATUS) == {f.name for f in FUNCTIONS}


def test_the_2030_5_carriers_are_the_opmods_it_applies():
    from inverter_agent.adapters.ieee2030_5 import translate
    for name, carriers in translate.OFFERED.items():
        for op in carriers.split(", "):
            assert op in translate.SUPPORTED and translate.OPMOD_FUNCTION[op] == name
    assert not set(translate.NOT_OFFERED) & set(translate.OPMOD_FUNCTION.values())

