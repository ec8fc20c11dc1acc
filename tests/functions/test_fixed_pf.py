"""Constant power factor (1547-2018 5.3.2) and IEEE 1547.1-2020 5.14.3."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inverter_agent.functions import engine, fixed_pf
from inverter_agent.functions.fixed_pf import FixedPfSettings
from inverter_agent.functions.measurements import Measurements, ReactiveMode
from inverter_agent.functions.profiles import get_profile
from inverter_agent.functions.settings import SettingsError, validate

Q_MRA = 0.05  # pu of rated VA


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 1.0, exclude_min=True), st.booleans(), st.floats(0.8, 1.0),
       st.floats(0.8, 1.0))
def test_commanded_pf_always_within_limits(pf, absorbing, min_inj, min_abs):
    s = FixedPfSettings(True, pf, absorbing, min_inj, min_abs)
    out_pf, out_abs = fixed_pf.setpoint(s)
    assert out_abs == absorbing
    assert (min_abs if absorbing else min_inj) <= out_pf <= 1.0


# (profile, pf, absorbing, P pu) -> expected Q pu of rated VA, from Q = P tan(acos pf).
ROWS = [
    ("ieee1547-2018-cat-b", 1.00, False, 1.0, 0.0),
    ("ieee1547-2018-cat-b", 0.90, False, 0.9, 0.4359),
    ("ieee1547-2018-cat-b", 0.90, True, 0.9, -0.4359),
    ("ieee1547-2018-cat-b", 0.95, True, 0.5, -0.1643),
    ("ieee1547-2018-cat-a", 0.90, False, 0.9, 0.4359),
    ("ieee1547-2018-cat-a", 0.97, True, 1.0, -0.2506),
]


@pytest.mark.parametrize(("profile", "pf", "absorbing", "p_pu", "q_expected"), ROWS)
def test_1547_1_5_14_3_constant_pf(profile, pf, absorbing, p_pu, q_expected):
    base = get_profile(profile)
    s = dataclasses.replace(base, fixed_pf=FixedPfSettings(
        True, pf, absorbing, 0.90, base.fixed_pf.pf_min_absorbing))
    validate(s)
    st_ = engine.EngineState.initial(0.0, in_service=True)
    sp, _, _ = engine.step(s, Measurements(True, (1.0,), 60.0, p_pu, 0.0, connected=True), st_,
                           0.1)
    assert sp.connect and sp.reactive_mode is ReactiveMode.CONSTANT_PF
    assert sp.pf == pf and sp.pf_absorbing is absorbing
    q = fixed_pf.reactive_pu(p_pu, sp.pf, sp.pf_absorbing)
    assert abs(q - q_expected) <= 1.5 * Q_MRA  # final within Qset +- 1.5 MRA_Q
    assert math.isclose(q, q_expected, abs_tol=1e-3)


def test_1547_1_5_14_3_pf_below_category_minimum_rejected():
    """Cat A absorbing minimum is 0.97 (DOMAIN.md): 0.95 absorbing must be refused."""
    base = get_profile("ieee1547-2018-cat-a")
    s = dataclasses.replace(base, fixed_pf=FixedPfSettings(True, 0.95, True, 0.90, 0.97))
    with pytest.raises(SettingsError, match=r"fixed_pf\.pf = 0\.95.*\[0\.97, 1\]"):
        validate(s)
