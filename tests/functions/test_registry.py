"""The function registry: one declaration per function, and what derives from it."""

import dataclasses
import itertools
import typing

import pytest

from inverter_agent.functions import FUNCTIONS, Family, SettingsError, registry, validate
from inverter_agent.functions.engine import EngineState, EngineStatus, reactive_mode, step
from inverter_agent.functions.measurements import AntiIslandingReport, Measurements, ReactiveMode
from inverter_agent.functions.profiles import PROFILES, get_profile
from inverter_agent.functions.ranges import RANGE, Range, check_fields, ranges
from inverter_agent.functions.settings import Settings

RULE21 = get_profile("rule21")
NORMAL = Measurements(True, (1.0, 1.0, 1.0), 60.0, 0.8, 0.0, 1.0, True,
                      AntiIslandingReport.ENABLED)
#: Fields of Settings that are shared context, not grid functions.
NOT_FUNCTIONS = {"nameplate", "safety"}
#: Numeric settings whose range depends on another setting, checked by validate's
#: cross checks rather than declared on the field.
CROSS_CHECKED = {("fixed_pf", "pf")}


def only(s, reactive_name):
    """``s`` with exactly one reactive mode (or none) enabled."""
    return dataclasses.replace(s, **{
        n: dataclasses.replace(getattr(s, n), enabled=n == reactive_name)
        for n in registry.REACTIVE})


def test_every_settings_section_but_the_shared_ones_is_a_registered_function():
    hints = typing.get_type_hints(Settings)
    assert set(hints) - NOT_FUNCTIONS == {f.name for f in FUNCTIONS}
    for f in FUNCTIONS:
        assert hints[f.name] is f.settings, f.name


def test_names_are_unique_and_every_spec_is_complete():
    assert len({f.name for f in FUNCTIONS}) == len(FUNCTIONS)
    for f in FUNCTIONS:
        assert f.title and isinstance(f.family, Family)
        fields = {x.name: x for x in dataclasses.fields(f.settings)}
        assert fields["enabled"].type in ("bool", bool), f.name
        if f.output is not None:
            assert f.output in {x.name for x in dataclasses.fields(EngineStatus)}
    assert registry.get("volt_var").family is Family.REACTIVE
    with pytest.raises(KeyError, match="known: voltage_ride_through"):
        registry.get("watt_var")


def test_every_number_setting_declares_its_range_or_is_cross_checked():
    classes = {f.name: f.settings for f in FUNCTIONS}
    for section in NOT_FUNCTIONS:
        classes[section] = typing.get_type_hints(Settings)[section]
    for section, cls in classes.items():
        for name, tp in typing.get_type_hints(cls).items():
            if float in (tp, *typing.get_args(tp)) and (section, name) not in CROSS_CHECKED:
                assert name in ranges(cls), f"{section}.{name} declares no range"


def test_every_profile_default_lies_in_the_declared_ranges():
    for name in PROFILES:
        s = get_profile(name)
        for f in dataclasses.fields(Settings):
            check_fields(f.name, getattr(s, f.name), {"f_nom_hz": s.nameplate.f_nom_hz})


def test_a_declared_range_is_what_the_validator_enforces():
    r = dataclasses.fields(registry.get("volt_var").settings)
    rt = next(x for x in r if x.name == "response_time_s").metadata[RANGE]
    assert rt == Range(1.0, 90.0, "1547 Table 8")
    for value, ok in ((rt.lo, True), (rt.hi, True), (rt.lo - 0.01, False), (rt.hi + 0.01, False)):
        s = dataclasses.replace(RULE21, volt_var=dataclasses.replace(RULE21.volt_var,
                                                                      response_time_s=value))
        if ok:
            validate(s)
        else:
            with pytest.raises(SettingsError, match=r"volt_var\.response_time_s.*\[1, 90\]"):
                validate(s)


def test_the_frequency_window_range_follows_the_nominal_frequency():
    # 50 Hz nominal with the 60 Hz profile's enter-service window (no trip table to trip first)
    s50 = dataclasses.replace(
        RULE21, nameplate=dataclasses.replace(RULE21.nameplate, f_nom_hz=50.0),
        frequency_ride_through=dataclasses.replace(RULE21.frequency_ride_through, over=(),
                                                   under=()))
    with pytest.raises(SettingsError, match=r"enter_service\.f_low_hz = 59\.5.*\[45, 50\]"):
        validate(s50)


def test_every_pair_of_reactive_functions_is_refused_together():
    reactive = registry.family(Family.REACTIVE)
    assert [f.name for f in reactive] == ["volt_var", "fixed_pf", "constant_var"]
    for a, b in itertools.combinations(registry.REACTIVE, 2):
        s = dataclasses.replace(only(RULE21, a), **{
            b: dataclasses.replace(getattr(RULE21, b), enabled=True)})
        with pytest.raises(SettingsError, match=f"^{b}.enabled = True: reactive modes are "
                                                f"mutually exclusive.*; {a} is enabled"):
            validate(s)


@pytest.mark.parametrize("name", registry.REACTIVE)
def test_the_engine_commands_every_reactive_function(name):
    s = only(RULE21, name)
    validate(s)
    assert reactive_mode(s) == name
    sp, _, _ = step(s, NORMAL, EngineState.initial(0.0, in_service=True), 0.1)
    assert sp.reactive_mode is not ReactiveMode.NONE
    sp, _, _ = step(only(RULE21, None), NORMAL, EngineState.initial(0.0, in_service=True), 0.1)
    assert sp.reactive_mode is ReactiveMode.NONE


def test_unvalidated_settings_take_the_first_reactive_function_in_registry_order():
    every = dataclasses.replace(RULE21, **{n: dataclasses.replace(getattr(RULE21, n),
                                                                  enabled=True)
                                           for n in registry.REACTIVE})
    assert reactive_mode(every) == registry.REACTIVE[0]


def test_coverage_problems_name_what_is_missing_doubled_empty_or_unknown():
    names = [f.name for f in FUNCTIONS]
    offered = {n: "X1" for n in names[1:]}
    assert registry.coverage_problems(offered, {}) == [
        f"{names[0]}: neither offered nor declared not offered"]
    assert registry.coverage_problems({**offered, names[0]: "X1"}, {names[0]: "why"}) == [
        f"{names[0]}: both offered and declared not offered"]
    assert registry.coverage_problems(offered, {names[0]: " "}) == [
        f"{names[0]}: not offered with an empty reason"]
    assert registry.coverage_problems({**offered, names[0]: ""}, {}) == [
        f"{names[0]}: offered with an empty carrier"]
    assert registry.coverage_problems({**offered, names[0]: "X1", "watt_var": "X2"}, {}) == [
        "watt_var: offered, but no such grid function"]
    assert registry.coverage_problems({**offered, names[0]: "X1"}, {}) == []
