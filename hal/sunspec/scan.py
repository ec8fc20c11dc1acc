"""SunSpec discovery: find the 'SunS' marker and walk the model chain.

SunSpec devices put the marker at 40000, 0 or 50000. Real devices answer a
wrong base with exception 2 or simply time out, so a failed base moves on to
the next one and never aborts the scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hal.sunspec.models import ModelDefinitionError, model_definition
from hal.transport import DeviceException, Transport, TransportError

log = logging.getLogger(__name__)

SUNS = (0x5375, 0x6E53)  # 'SunS'
END_ID = 0xFFFF
DEFAULT_BASES = (40000, 0, 50000)
#: A model chain longer than this is a device bug or a misread, not a device.
MAX_MODELS = 64


class NotSunSpec(Exception):
    """No SunSpec marker at any base for this unit."""


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """One model as found on the device."""

    model_id: int
    address: int  # absolute address of its ID register
    length: int  # the L register (registers after ID and L)
    known: bool  # a shipped definition exists for it

    @property
    def end(self) -> int:
        return self.address + 2 + self.length

    @property
    def name(self) -> str:
        if not self.known:
            return f"model_{self.model_id}"
        return model_definition(self.model_id).name


@dataclass(frozen=True, slots=True)
class DeviceMap:
    unit: int
    base: int
    models: tuple[ModelLocation, ...]

    def find(self, model_id: int) -> ModelLocation | None:
        return next((m for m in self.models if m.model_id == model_id), None)

    @property
    def model_ids(self) -> list[int]:
        return [m.model_id for m in self.models]


def _known(model_id: int) -> bool:
    try:
        model_definition(model_id)
    except ModelDefinitionError:
        return False
    return True


def discover(transport: Transport, unit: int,
             bases: tuple[int, ...] = DEFAULT_BASES) -> DeviceMap:
    """Find the SunSpec models of one unit.

    Raises :class:`NotSunSpec` when no base holds the marker, and
    :class:`TransportError` only when the link fails at every base *and* the
    failure was a link failure rather than a refusal.
    """
    link_errors: list[str] = []
    for base in bases:
        try:
            marker = transport.read_holding(base, 2, unit)
        except DeviceException as exc:
            log.debug("unit %d base %d: %s; trying next base", unit, base, exc)
            continue
        except TransportError as exc:
            log.debug("unit %d base %d: %s; trying next base", unit, base, exc)
            link_errors.append(f"{base}: {exc}")
            continue
        if tuple(marker) != SUNS:
            log.debug("unit %d base %d: no SunS marker (%s)", unit, base, marker)
            continue
        return DeviceMap(unit, base, tuple(_walk(transport, unit, base + 2)))
    if len(link_errors) == len(bases):
        raise TransportError(f"unit {unit}: no answer at any base ({'; '.join(link_errors)})")
    raise NotSunSpec(f"unit {unit}: no SunSpec marker at bases {', '.join(map(str, bases))}")


def _header(transport: Transport, unit: int, address: int) -> list[int]:
    """A model's ID and L; an exception 2 is asked once more before it counts as the end
    (a device that ends its chain so refuses every time; a garbled answer does not)."""
    try:
        return transport.read_holding(address, 2, unit)
    except DeviceException as exc:
        if exc.code != 2:
            raise
    return transport.read_holding(address, 2, unit)


def _walk(transport: Transport, unit: int, address: int) -> list[ModelLocation]:
    found: list[ModelLocation] = []
    for _ in range(MAX_MODELS):
        try:
            model_id, length = _header(transport, unit, address)
        except DeviceException as exc:
            if exc.code != 2:
                # Busy, failure, or a code no device should send here: not the end
                # of the chain. Discovery fails and is tried again, never truncated.
                raise TransportError(f"unit {unit}: walking the model chain at {address}: "
                                     f"{exc}") from None
            # Some devices end the chain by refusing the address after the last
            # model instead of writing 0xFFFF (SMA, Kostal); accept what was found.
            log.info("unit %d: model chain ends with a refused read at %d", unit, address)
            break
        if model_id == END_ID or model_id == 0:
            break
        if address + 2 + length > 0x10000:
            # No end marker and whatever follows the last model is not one: a
            # "model" that runs off the address space ends the chain.
            log.info("unit %d: no end marker; chain ends at %d", unit, address)
            break
        found.append(ModelLocation(model_id, address, length, _known(model_id)))
        address += 2 + length
    else:
        log.warning("unit %d: model chain longer than %d models; stopped", unit, MAX_MODELS)
    return found
