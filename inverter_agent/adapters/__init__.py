"""Protocol adapters beside each other, each behind :class:`~.base.Adapter`.

:data:`REGISTRY` is the one list of them. Adding a protocol is its folder, its
line here and its dependency in ``pyproject.toml``: the config schema takes the
section's keys from ``keys``, the composition root loads it when its section
enables it (modules imported only then), the CLI adds its subcommands, and the
layering and contract tests run against every line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    #: The config section, and the adapter's name everywhere.
    name: str
    #: The package of the adapter (``inverter_agent.adapters.<name>``).
    package: str
    #: ``module:function`` building the adapter from an ``AdapterContext``, or
    #: returning None when the section does not enable it.
    load: str
    #: Module holding ``KEYS`` (the section's schema) and ``enabled(cfg)``; imports no engine.
    keys: str
    #: Top-level packages of the protocol engine: only this adapter may import them.
    engines: tuple[str, ...]
    #: Module with ``OFFERED`` / ``NOT_OFFERED`` (function -> where / why not) and
    #: ``REFUSALS`` (every core refusal cause -> the protocol's own error).
    maps: str = ""
    #: Module with ``add_commands(subparsers)`` for its CLI subcommands, if any.
    cli: str | None = None

    def module(self, which: str) -> ModuleType:
        return importlib.import_module(getattr(self, which).split(":")[0])

    def function(self, which: str) -> Any:
        mod, _, attr = getattr(self, which).partition(":")
        return getattr(importlib.import_module(mod), attr)


REGISTRY: tuple[AdapterSpec, ...] = (
    AdapterSpec("mms", "inverter_agent.adapters.mms",
                "inverter_agent.adapters.mms.adapter:load",
                "inverter_agent.adapters.mms.keys", ("pyiec61850", "iec61850"),
                "inverter_agent.adapters.mms.maps", "inverter_agent.adapters.mms.commands"),
    AdapterSpec("ieee2030_5", "inverter_agent.adapters.ieee2030_5",
                "inverter_agent.adapters.ieee2030_5.adapter:load",
                "inverter_agent.adapters.ieee2030_5.keys", ("py20305",),
                "inverter_agent.adapters.ieee2030_5.maps",
                "inverter_agent.adapters.ieee2030_5.commands"),
    AdapterSpec("dnp3", "inverter_agent.adapters.dnp3",
                "inverter_agent.adapters.dnp3.adapter:load",
                "inverter_agent.adapters.dnp3.keys", ("py1815",),
                "inverter_agent.adapters.dnp3.maps", "inverter_agent.adapters.dnp3.commands"),
)


def spec(name: str) -> AdapterSpec:
    for s in REGISTRY:
        if s.name == name:
            return s
    raise KeyError(name)
