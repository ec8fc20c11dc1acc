"""Pure grid-support functions: Rule 21 Phase 1 autonomous functions and IEEE 1547-2018.

No I/O, no clock, no globals: time is an argument, settings are frozen values,
dynamics take explicit state and return new state. Entry points:
:func:`engine.step`, :class:`engine.EngineState`, :func:`profiles.get_profile`,
:func:`settings.validate`, :func:`settings.settings_from_dict` /
:func:`settings.settings_to_dict`; every function is declared once in
:data:`registry.FUNCTIONS`.
"""

from .engine import EngineState, Event, EventKind, OperatingState, OutOfService, step
from .measurements import AntiIslandingReport, Measurements, ReactiveMode, Setpoints
from .profiles import DEFAULT_PROFILE, PROFILES, get_profile
from .registry import FUNCTIONS, Family, FunctionSpec
from .settings import Settings, SettingsError, settings_from_dict, settings_to_dict, validate

__all__ = [
    "DEFAULT_PROFILE",
    "FUNCTIONS",
    "PROFILES",
    "AntiIslandingReport",
    "EngineState",
    "Event",
    "EventKind",
    "Family",
    "FunctionSpec",
    "Measurements",
    "OperatingState",
    "OutOfService",
    "ReactiveMode",
    "Setpoints",
    "Settings",
    "SettingsError",
    "get_profile",
    "settings_from_dict",
    "settings_to_dict",
    "step",
    "validate",
]
