"""Frequency droop / frequency-watt (IEEE 1547-2018 6.5.2.7; Rule 21 Phase 3).

Over-frequency: the active power limit drops from the pre-disturbance output
p_pre (captured when the frequency leaves the deadband) by
(f - (f_nom + dbOF)) / (f_nom x kOF) per unit, not below Pmin
(1547-2018 Table 23 equation; OpenDER Eq. 3.7.1-13). The reference goes
through a first-order lag with open-loop response time Tr (default 5 s).

Under-frequency: the standard asks for *more* power, bounded by what is
available. A limit can only allow it, not create it: the gateway's limit is
then 100 % (no curtailment); a PV inverter at its maximum power point has no
headroom, which is the inverter's matter, not the gateway's.

Defaults (1547-2018 Table 24 via OpenDER, DOMAIN.md): dbOF = dbUF = 0.036 Hz,
kOF = kUF = 5 %, Tr = 5 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .blocks import low_pass
from .ranges import rng


@dataclass(frozen=True)
class FreqWattSettings:
    """Frequency-droop settings (1547-2018 Table 24 defaults)."""

    enabled: bool = False
    db_of_hz: float = field(default=0.036, metadata=rng(0.017, 1.0, "1547 Table 24"))
    db_uf_hz: float = field(default=0.036, metadata=rng(0.017, 1.0, "1547 Table 24"))
    k_of: float = field(default=0.05, metadata=rng(0.02, 0.05, "1547 Table 24 (2-5 %)"))
    k_uf: float = field(default=0.05, metadata=rng(0.02, 0.05, "1547 Table 24"))
    response_time_s: float = field(default=5.0, metadata=rng(0.2, 10.0, "1547 Table 24"))
    p_min_pct: float = field(default=0.0, metadata=rng(0.0, 100.0, "sanity"))


@dataclass(frozen=True)
class FreqWattState:
    """Pre-disturbance power (% of rated W, None inside the deadband) and lagged limit."""

    p_pre_pct: float | None
    p_pct: float


def reference_pct(settings: FreqWattSettings, f_hz: float, f_nom_hz: float, p_pre: float) -> float:
    """Static droop reference for over-frequency (% of rated W), 100 % otherwise."""
    f_start = f_nom_hz + settings.db_of_hz
    if f_hz <= f_start:
        return 100.0
    drop_pct = 100.0 * (f_hz - f_start) / (f_nom_hz * settings.k_of)
    return max(settings.p_min_pct, min(100.0, p_pre - drop_pct))


def step(
    settings: FreqWattSettings,
    f_hz: float,
    f_nom_hz: float,
    p_now_pct: float,
    dt: float,
    state: FreqWattState | None,
) -> tuple[float, FreqWattState]:
    """Advance frequency droop by ``dt``: returns (limit % of rated W, new state).

    ``p_now_pct`` is the measured output, captured as p_pre on the cycle the
    frequency leaves the over-frequency deadband (6.5.2.7).
    """
    over = f_hz > f_nom_hz + settings.db_of_hz
    p_pre: float | None = None
    if over:
        p_pre = state.p_pre_pct if state is not None and state.p_pre_pct is not None else p_now_pct
    target = reference_pct(settings, f_hz, f_nom_hz, p_pre if p_pre is not None else 100.0)
    if state is None:
        return target, FreqWattState(p_pre, target)
    p = low_pass(state.p_pct, target, dt, settings.response_time_s)
    return p, FreqWattState(p_pre, p)
