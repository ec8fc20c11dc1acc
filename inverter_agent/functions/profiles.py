"""Named, adjustable setting profiles.

- ``rule21`` (default): California Rule 21 Phase 1. The voltage table is the
  Rule 21 default L/HVRT (UL 1741 SA Table SA9.1) and the frequency table a
  vendor Rule 21 grid profile. The 2014 Rule 21 default volt-var curve and
  ramp-rate figures (Hh.2.i, Hh.2.k, Hh.2.l) are not confirmed anywhere
  citable (DOMAIN.md), so where they are unknown this profile uses the IEEE
  1547-2018 Category B values, which Rule 21 now certifies to via UL 1741 SB.
- ``ieee1547-2018-cat-a``: normal performance Category A, abnormal Category I.
- ``ieee1547-2018-cat-b``: normal performance Category B, abnormal Category II
  (Category B is the usual pairing for inverter-based DER with Category II;
  Category III is available from ``ride_through.ieee1547_voltage_table``).

Every profile is a starting point: change any value with
``dataclasses.replace`` or ``settings_from_dict(d, base=get_profile(name))``.
"""

from __future__ import annotations

from collections.abc import Callable

from .anti_islanding import AntiIslandingSettings
from .constant_var import ConstantVarSettings
from .enter_service import EnterServiceSettings
from .fixed_pf import FixedPfSettings
from .freq_watt import FreqWattSettings
from .ramp import RampSettings
from .ride_through import (
    ieee1547_frequency_table,
    ieee1547_voltage_table,
    rule21_frequency_table,
    rule21_voltage_table,
)
from .settings import (
    NameplateSettings,
    PowerLimitSettings,
    SafetySettings,
    Settings,
    validate,
)
from .volt_var import VoltVarPoint, VoltVarSettings
from .volt_watt import VoltWattPoint, VoltWattSettings

DEFAULT_PROFILE = "rule21"

# One control period of a 10 Hz loop: the backup trip leaves this much before
# the clearing time (set it to the real period plus the command latency).
TRIP_MARGIN_S = 0.1

# 1547-2018 Cat B volt-var (OpenDER "AS-with std-values.csv", DOMAIN.md):
# (0.92, +44 %) (0.98, 0) (1.02, 0) (1.08, -44 %) of rated VA, Tr 5 s.
CAT_B_VOLT_VAR = (
    VoltVarPoint(0.92, 44.0),
    VoltVarPoint(0.98, 0.0),
    VoltVarPoint(1.02, 0.0),
    VoltVarPoint(1.08, -44.0),
)
# 1547-2018 Cat A volt-var (DOMAIN.md): (0.90, +25 %) (1.0, 0) (1.0, 0) (1.10, -25 %), Tr 10 s.
CAT_A_VOLT_VAR = (
    VoltVarPoint(0.90, 25.0),
    VoltVarPoint(1.0, 0.0),
    VoltVarPoint(1.0, 0.0),
    VoltVarPoint(1.10, -25.0),
)
# 1547-2018 volt-watt (DOMAIN.md): 1.06 pu -> 100 %, 1.10 pu -> 0 % (PV: Pmin = 0), Tr 10 s.
VOLT_WATT = VoltWattSettings(
    enabled=False,
    curve=(VoltWattPoint(1.06, 100.0), VoltWattPoint(1.10, 0.0)),
    response_time_s=10.0,
)
# 1547-2018 frequency droop (DOMAIN.md): dbOF = dbUF = 0.036 Hz, kOF = kUF = 5 %, Tr 5 s.
FREQ_WATT = FreqWattSettings(
    enabled=True, db_of_hz=0.036, db_uf_hz=0.036, k_of=0.05, k_uf=0.05, response_time_s=5.0
)
# 1547-2018 enter service (DOMAIN.md, OpenDER defaults): 0.917-1.05 pu, 59.5-60.1 Hz,
# delay 300 s, ramp 300 s, no randomized delay.
ENTER_SERVICE = EnterServiceSettings(
    enabled=True, v_low_pu=0.917, v_high_pu=1.05, f_low_hz=59.5, f_high_hz=60.1,
    delay_s=300.0, random_delay_s=0.0, ramp_time_s=300.0,
)
# Hold the last setpoints for 5 s on invalid measurements: the shortest default
# open-loop response time (Cat B volt-var, frequency droop: 5 s), so stale
# setpoints are never older than one response interval before the gateway
# ceases to energize. The inverter keeps its own certified protection meanwhile.
SAFETY = SafetySettings(hold_s=5.0)
# No normal ramp rate default is citable (DOMAIN.md: Rule 21 Hh.2.k figures
# unconfirmed; 1547-2018 gives none): off until the operator sets one.
RAMP = RampSettings(enabled=False, up_pct_per_s=None, down_pct_per_s=None)


def _rule21() -> Settings:
    return Settings(
        nameplate=NameplateSettings(f_nom_hz=60.0, var_max_pct=44.0),
        safety=SAFETY,
        active_power_limit=PowerLimitSettings(enabled=False, p_limit_pct=100.0),
        ramp=RAMP,
        # UL 1741 SA Table SA9.1 (Delta M42U manual Appendix A-1; svp rt_profile.py).
        voltage_ride_through=rule21_voltage_table(TRIP_MARGIN_S),
        # Vendor "US_Rule21_240V" grid profile (OpenDTU PR 1590).
        frequency_ride_through=rule21_frequency_table(TRIP_MARGIN_S),
        anti_islanding=AntiIslandingSettings(enabled=True, cease_on_disabled=True),
        # Reconnect delay 300 s: vendor Rule 21 profile; window and 300 s ramp: 1547-2018
        # defaults, as the Rule 21 Hh.2.l figures are unconfirmed.
        enter_service=ENTER_SERVICE,
        # Dynamic volt/var is a Rule 21 Phase 1 function, so it is on; the curve is
        # 1547-2018 Cat B because the 2014 Rule 21 default curve is unconfirmed.
        volt_var=VoltVarSettings(enabled=True, curve=CAT_B_VOLT_VAR, response_time_s=5.0),
        fixed_pf=FixedPfSettings(enabled=False, pf=1.0, absorbing=False,
                                 pf_min_injecting=0.90, pf_min_absorbing=0.90),
        constant_var=ConstantVarSettings(enabled=False, q_pct=0.0),
        # DOMAIN.md: frequency-watt and volt-watt "made mandatory to activate in 2018".
        volt_watt=VoltWattSettings(enabled=True, curve=VOLT_WATT.curve,
                                   response_time_s=VOLT_WATT.response_time_s),
        freq_watt=FREQ_WATT,
    )


def _ieee1547(category: str) -> Settings:
    cat_a = category == "A"
    return Settings(
        # Its trip tables are held to the category's 1547-2018 ranges (trip_ranges).
        nameplate=NameplateSettings(f_nom_hz=60.0, var_max_pct=44.0,
                                    abnormal_category="I" if cat_a else "II"),
        safety=SAFETY,
        active_power_limit=PowerLimitSettings(enabled=False, p_limit_pct=100.0),
        ramp=RAMP,
        # Cat A pairs with abnormal Category I (Table 11), Cat B with Category II (Table 12).
        voltage_ride_through=ieee1547_voltage_table("I" if cat_a else "II", TRIP_MARGIN_S),
        frequency_ride_through=ieee1547_frequency_table(TRIP_MARGIN_S),  # Table 19
        anti_islanding=AntiIslandingSettings(enabled=True, cease_on_disabled=True),
        enter_service=ENTER_SERVICE,
        volt_var=VoltVarSettings(
            enabled=False,
            curve=CAT_A_VOLT_VAR if cat_a else CAT_B_VOLT_VAR,
            response_time_s=10.0 if cat_a else 5.0,  # DOMAIN.md: Cat A 10 s, Cat B 5 s
        ),
        # 1547-2018 default reactive mode: constant PF at unity (DOMAIN.md "Constant PF 1.0").
        # Limits from 1547.1-2020 5.14.3 (DOMAIN.md): 0.90 injecting; absorbing 0.97 A / 0.90 B.
        fixed_pf=FixedPfSettings(enabled=True, pf=1.0, absorbing=False, pf_min_injecting=0.90,
                                 pf_min_absorbing=0.97 if cat_a else 0.90),
        constant_var=ConstantVarSettings(enabled=False, q_pct=0.0),
        volt_watt=VOLT_WATT,
        # Frequency droop is always required by 1547-2018 6.5.2.7 (OpenDER PF_MODE_ENABLE True).
        freq_watt=FREQ_WATT,
    )


PROFILES: dict[str, Callable[[], Settings]] = {
    "rule21": _rule21,
    "ieee1547-2018-cat-a": lambda: _ieee1547("A"),
    "ieee1547-2018-cat-b": lambda: _ieee1547("B"),
}


def get_profile(name: str = DEFAULT_PROFILE) -> Settings:
    """Return the named profile's settings (validated); ValueError lists valid names."""
    try:
        factory = PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown settings profile {name!r}; valid profiles: {', '.join(PROFILES)}"
        ) from None
    s = factory()
    validate(s)
    return s
