"""Simulated SunSpec inverter (Modbus TCP / RTU) for tests and benches.

Run it with ``python -m simulator --help``; drive it from Python with
:class:`SimProcess` (starts it as a child process) and :class:`SimControl`
(its JSON control channel).
"""

from .client import SimControl, SimControlError, SimProcess, SimStartError, wait_until

__all__ = ["SimControl", "SimControlError", "SimProcess", "SimStartError", "wait_until"]
