"""Each function LN's Health says when the inverter's own function behind it is in
alarm (issue 18): its program refused or changed at the panel, named in status."""

from __future__ import annotations

from inverter_agent.adapters.mms.functions_model import STEERED_BY, status_values


def test_an_alarm_naming_a_function_makes_its_ln_health_alarm_and_no_other():
    view = {"functions": {"voltage_ride_through": {"active": True, "followed": True},
                          "volt_var": {"active": True, "followed": True}},
            "alarms": ["hv_trip: native program not taken (refused); gateway-steered"]}
    out = status_values(view)
    assert out["DHVT1.Health"] == 3
    assert out["DLVT1.Health"] == 1 and out["DVVR1.Health"] == 1


def test_every_steered_function_has_an_ln():
    from inverter_agent.core.steering import NATIVE_MODELS, TRIP_FUNCTIONS

    named = {f for names in STEERED_BY.values() for f in names}
    assert set(NATIVE_MODELS) | set(TRIP_FUNCTIONS) | {"enter_service", "freq_watt"} <= named
