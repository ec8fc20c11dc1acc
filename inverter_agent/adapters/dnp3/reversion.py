"""Reversion timeouts (AN2018-001 "Reversion Timeout Period") through the core.

A master that sets a function's reversion timeout (active power limit AO85,
fixed power factor AO209, volt-var AO215, volt-watt AO171, constant var AO202;
seconds, read back at AI145, AI287, AI293, AI245, AI280) makes its commands of
that function temporary: enabling the function (BO17, BO28, BO29, BO25, BO27) puts
it in force for that many seconds, with the setpoints written for it (AO88; AO210,
BO10; the curve volt-var or volt-watt is pointed at; AO203), and when the time is
up what was in force before applies again: the persisted settings, which these
commands never touch. Disabling it ends it early. A setpoint written while the
timeout is set and the function is not in force is held for the next enable
(checked now, by the core's validator); one written while it is in force applies
at once, without restarting the time.

The timed commands are the DNP3 source's events in the core's utility schedule
(``Core.schedule("dnp3")``, arbitrated by docs/arbitration.md with every other
source, kept in the state directory): each runs from its command to its end
whatever happens to the master's link, and the core, not this adapter, ends it.
Several timed functions at once become consecutive events: from now to the
first end all of them, then the rest, so each reverts at its own time with
nothing here needing to wake up. A gateway restarted meanwhile runs them to
their ends (held setpoints are forgotten).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from inverter_agent.core.arbitration import ScheduledControl, UtilityControl
from inverter_agent.core.commands import CommandRefused, RefusalCause

SOURCE = "dnp3"

#: Function -> (its reversion timeout output, the input that reads it back).
TIMEOUTS: dict[str, tuple[int, int]] = {
    "active_power_limit": (85, 145),
    "fixed_pf": (209, 287),
    "volt_var": (215, 293),
    "volt_watt": (171, 245),
    "constant_var": (202, 280),
}


class Reversion:
    """The reversion timeouts, the setpoints held for timed commands, and what is timed."""

    def __init__(self, core: Any, persisted: Callable[[], Mapping[str, Any]],
                 clock: Callable[[], float] = time.time) -> None:
        self.core = core
        self.schedule = core.schedule(SOURCE)
        self._persisted = persisted
        self._clock = clock
        self._lock = threading.Lock()
        self.timeout_s: dict[str, float] = dict.fromkeys(TIMEOUTS, 0.0)
        self.held: dict[str, dict[str, Any]] = {f: {} for f in TIMEOUTS}
        #: function -> when its timed command ends (epoch seconds)
        self.timed: dict[str, float] = {}
        self._idents: list[str] = []
        self._generation = 0
        self._created = 0.0

    def _live(self) -> dict[str, float]:
        now = self._clock()
        return {f: end for f, end in self.timed.items() if end > now}

    def governs(self, function: str) -> bool:
        """Whether commands of ``function`` are temporary now."""
        with self._lock:
            return self.timeout_s.get(function, 0.0) > 0 or function in self._live()

    def status(self) -> dict[str, Any]:
        """Per function with a timeout or a timed command: the timeout and the seconds left."""
        with self._lock:
            now = self._clock()
            live = self._live()
            return {f: {"timeout_s": t, "left_s": round(live[f] - now, 1) if f in live else None}
                    for f, t in self.timeout_s.items() if t > 0 or f in live}

    def command(self, function: str, changes: Mapping[str, Any], who: str,
                execute: bool) -> bool:
        """A command of a governed function: held, put in force for its timeout, updated
        or ended. Raises :class:`CommandRefused` (nothing changed) as the core would.
        False: not a temporary command after all (a disable of a function not in force,
        an enable with no timeout): the caller writes it as a setting."""
        with self._lock:
            timed = self._live()
            enabled = changes.get(f"{function}.enabled")
            held = {**self.held[function],
                    **{p: v for p, v in changes.items() if p != f"{function}.enabled"}}
            if enabled is False or (enabled is True and self.timeout_s[function] <= 0):
                if function not in timed:
                    return False
                if execute:  # ended early: what was in force before applies again
                    del timed[function]
                    self._publish(timed)
                    self.core.record("dnp3_timed_control",
                                     f"{function}: ended by the master", who)
                return enabled is False
            will_be_timed = dict(timed)
            if enabled is True:
                will_be_timed[function] = self._clock() + self.timeout_s[function]
            held_all = {**self.held, function: held}
            # the control as it would stand: alone (held for later) or with what is timed
            names = list(will_be_timed) if function in will_be_timed else [function]
            control = self._merged(names, held_all)
            why = self.core.check_utility(control)
            if why is not None:
                raise CommandRefused(RefusalCause.INVALID_VALUE, why)
            if not execute:
                return True
            self.held[function] = held
            if function in will_be_timed:
                self._publish(will_be_timed)
                if enabled is True:
                    self.core.record("dnp3_timed_control", (
                        f"{function}: {control.describe()} for "
                        f"{self.timeout_s[function]:g} s"), who)
            return True

    def _control_of(self, function: str, held: Mapping[str, Any]) -> dict[str, Any]:
        persisted = self._persisted()

        def value(path: str) -> Any:
            if path in held:
                return held[path]
            section, leaf = path.split(".")
            return persisted[section][leaf]
        if function == "active_power_limit":
            return {"p_limit_pct": float(value("active_power_limit.p_limit_pct"))}
        if function == "fixed_pf":
            return {"fixed_pf": (float(value("fixed_pf.pf")), bool(value("fixed_pf.absorbing")))}
        if function == "constant_var":
            return {"fixed_var_pct": float(value("constant_var.q_pct"))}
        if function == "volt_watt":
            return {"volt_watt_curve": tuple((float(p["v_pu"]), float(p["p_pct"]))
                                             for p in value("volt_watt.curve"))}
        curve = value("volt_var.curve")
        return {"volt_var_curve": tuple((float(p["v_pu"]), float(p["q_pct"])) for p in curve),
                "volt_var_q_base": str(value("volt_var.q_base"))}

    def _merged(self, functions: list[str], held: Mapping[str, Mapping[str, Any]]
                ) -> UtilityControl:
        fields: dict[str, Any] = {}
        for function in functions:
            fields.update(self._control_of(function, held[function]))
        try:
            return UtilityControl(**fields)
        except ValueError as exc:  # two reactive modes at once
            raise CommandRefused(RefusalCause.CONFLICT, str(exc)) from None

    def _publish(self, timed: dict[str, float]) -> None:
        """The timed commands as consecutive events of the DNP3 schedule: the new ones
        first (created later, so they win where they overlap the old), then the old go."""
        now = self._clock()
        self._generation += 1
        self._created = created = max(now, self._created + 1e-3)
        events, start = [], now
        for k, end in enumerate(sorted(set(timed.values()))):
            active = [f for f, e in timed.items() if e >= end]
            events.append(ScheduledControl(
                f"dnp3-timed-{self._generation}-{k}", start, end,
                self._merged(active, self.held), created=created, source=SOURCE))
            start = end
        for event in events:
            self.schedule.put_event(event)
        for ident in self._idents:
            self.schedule.remove_event(ident)
        self._idents = [e.ident for e in events]
        self.timed = timed
