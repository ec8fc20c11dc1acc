"""What a protocol adapter is: a small fixed surface the composition root drives.

An adapter carries the core to one utility protocol (IEC 61850 MMS, IEEE
2030.5, DNP3 ...). It is loaded because its config section enables it
(:data:`inverter_agent.adapters.REGISTRY`), reads the core only through the
:class:`~inverter_agent.core.view.CycleView` it is handed once a cycle, and
commands the core only through :class:`~inverter_agent.core.api.Core` (the
command API: validated, persisted and audited before it returns). It never
imports another adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from inverter_agent.config import Config
    from inverter_agent.core.api import Core
    from inverter_agent.core.view import CycleView

#: How long ``stop`` may take, seconds (the service manager's stop budget is 10 s
#: for everything: the loop, every adapter, the inverter links).
STOP_BOUND_S = 3.0


@runtime_checkable
class Adapter(Protocol):
    """One protocol, started and stopped by the composition root."""

    #: Its config section (and registry name).
    name: str

    def start(self) -> None:
        """Begin serving (bind, connect); return promptly, work on own threads."""

    def publish(self, view: CycleView) -> None:
        """Once a cycle, from the control loop's thread: take the view; never block."""

    def status(self) -> dict[str, Any]:
        """Plain JSON-serialisable data for ``status``."""

    def stop(self, timeout_s: float) -> None:
        """Stop serving within ``timeout_s`` seconds."""


@dataclass
class AdapterContext:
    """What an adapter's ``load()`` is given to build itself."""

    cfg: Config
    core: Core
    #: The inverters' names in the core, in order (a multi-inverter site has several).
    inverters: tuple[str, ...]
    #: Whether the grid functions run (else only monitoring is served).
    functions: bool
    #: The plant service with several inverters (its limit), else None.
    plant: Any = None
    #: Plain-data status sources the adapter adds (name -> callable), shown by ``status``.
    status_extra: dict[str, Any] = field(default_factory=dict)
    #: The shared security set (``inverter_agent.security``): TLS settings or None,
    #: the access policy or None, and the one audit log every adapter writes to.
    tls: Any = None
    access: Any = None
    audit: Any = None
