"""A SunSpec device on a transport: coalesced model reads and scaled writes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.sunspec.models import (
    DecodedModel,
    ModelDefinitionError,
    decode,
    lay_out,
    scale_exponent,
    to_raw,
)
from hal.sunspec.scan import DeviceMap, ModelLocation
from hal.transport import MAX_READ, DeviceException, Transport, TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadSpan:
    address: int
    count: int


#: Exception codes that mean "not this read" rather than "not this device":
#: illegal data address (2) and illegal data value (3, a count the device will not serve).
SPLIT_CODES = (2, 3)
#: Most extra transactions one read may spend finding the registers a device refuses.
SPLIT_BUDGET = 256


def point_starts(loc: ModelLocation) -> set[int]:
    """Absolute addresses where a point of this model begins (and its end), where the
    layout is known without reading (no repeating group counted by a register)."""
    try:
        layout = lay_out(loc.model_id, length=loc.length)
    except ModelDefinitionError:
        return set()
    return {loc.address + s.offset for s in layout.slots.values()} | {loc.end}


def _cut(a: int, end: int, max_regs: int, bounds: set[int]) -> int:
    """Where a span from ``a`` ends: at most ``max_regs`` on, on a point boundary if one is known
    (servers may refuse a read that starts or ends inside a point, pysunspec2 #16)."""
    hi = min(end, a + max_regs)
    if hi == end or not bounds:
        return hi
    best = max((b for b in bounds if a < b <= hi), default=None)
    return best if best is not None else hi


def plan_reads(models: Iterable[ModelLocation], max_regs: int = MAX_READ,
               max_gap: int = 0, holes: frozenset[int] | set[int] = frozenset(),
               bounds: set[int] | None = None) -> list[ReadSpan]:
    """Coalesce model blocks into as few reads as Modbus allows.

    Blocks closer than ``max_gap`` registers are merged (the gap is read and
    thrown away); every span is at most ``max_regs`` registers, skips
    ``holes`` (registers the device refuses to read) and, where ``bounds``
    (point start addresses) are given, is cut on a point boundary.
    """
    models = list(models)
    blocks = []
    for m in models:
        start = m.address
        for a in range(m.address, m.end):
            if a in holes:
                if a > start:
                    blocks.append((start, a))
                start = a + 1
        if m.end > start:
            blocks.append((start, m.end))
    blocks.sort()
    merged: list[list[int]] = []
    for start, end in blocks:
        if merged and start <= merged[-1][1] + max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    spans = []
    for start, end in merged:
        a = start
        while a < end:
            b = _cut(a, end, max_regs, bounds or set())
            spans.append(ReadSpan(a, b - a))
            a = b
    return spans


class SunSpecDevice:
    """One unit's SunSpec models, read and written by point name."""

    def __init__(self, transport: Transport, device_map: DeviceMap) -> None:
        self.transport = transport
        self.map = device_map
        self.unit = device_map.unit
        #: Most registers per read this device serves (learned; Modbus allows 125).
        self.max_read = MAX_READ
        #: Registers this device refuses to read (learned): their points are unimplemented.
        self.holes: set[int] = set()
        #: Models that did not decode, with why.
        self.decode_errors: dict[int, str] = {}
        self._bounds: dict[int, set[int]] = {}

    def has(self, model_id: int) -> bool:
        return self.map.find(model_id) is not None

    def read_models(self, model_ids: Iterable[int]) -> dict[int, DecodedModel]:
        """Read and decode the given models (absent ones are skipped).

        One transaction per coalesced span of at most :attr:`max_read`
        registers. A span the device refuses with exception 2 or 3 is split in
        halves until every register it will serve is read: registers it refuses
        alone are remembered as holes (their points read as unimplemented) and a
        count it refuses lowers :attr:`max_read`, so the next poll plans around
        both. A model that does not decode is left out and its error kept in
        :attr:`decode_errors`. Raises the transport's link errors; nothing is
        decoded from a partial read.
        """
        locs = [loc for mid in dict.fromkeys(model_ids)
                if (loc := self.map.find(mid)) is not None and loc.known]
        if not locs:
            return {}
        image: dict[int, int] = {}
        budget = [SPLIT_BUDGET]
        bounds: set[int] = set()
        for loc in locs:
            bounds |= self._point_bounds(loc)
        for span in plan_reads(locs, self.max_read, holes=self.holes, bounds=bounds):
            self._read_span(span.address, span.count, image, budget, bounds)
        out = {}
        for loc in locs:
            regs = [image.get(a, 0) for a in range(loc.address, loc.end)]
            if loc.address in self.holes or loc.address + 1 in self.holes:
                self.decode_errors[loc.model_id] = "the device refuses to read its ID and L"
                continue
            if regs[0] != loc.model_id:
                # The device's map moved under us (firmware update, re-scan needed).
                raise ModelMovedError(f"unit {self.unit}: model {loc.model_id} expected at "
                                      f"{loc.address}, found id {regs[0]}")
            try:
                model = decode(loc.model_id, loc.address, regs)
            except ModelDefinitionError as exc:
                self.decode_errors[loc.model_id] = str(exc)
                continue
            self.decode_errors.pop(loc.model_id, None)
            refused = {a - loc.address for a in range(loc.address, loc.end) if a in self.holes}
            if refused:
                model = _without(model, refused)
            out[loc.model_id] = model
        return out

    def _point_bounds(self, loc: Any) -> set[int]:
        if loc.model_id not in self._bounds:
            self._bounds[loc.model_id] = point_starts(loc)
        return self._bounds[loc.model_id]

    def read_spans(self, model_id: int, spans: Iterable[ReadSpan]) -> dict[int, int]:
        """Read these spans of one model (address -> register) the way
        :meth:`read_models` reads: a refused span is split on point boundaries,
        its holes and the device's read size learned. Raises link errors."""
        loc = self.map.find(model_id)
        bounds = self._point_bounds(loc) if loc is not None and loc.known else set()
        image: dict[int, int] = {}
        budget = [SPLIT_BUDGET]
        for span in spans:
            self._read_span(span.address, span.count, image, budget, bounds)
        return image

    def _read_span(self, address: int, count: int, image: dict[int, int],
                   budget: list[int], bounds: set[int] | None = None) -> None:
        bounds = bounds or set()
        try:
            regs = self.transport.read_holding(address, count, self.unit)
        except DeviceException as exc:
            if exc.code not in SPLIT_CODES:
                raise
            if count == 1:
                self.holes.add(address)
                log.info("unit %d: register %d refused (exception %d): read as unimplemented",
                         self.unit, address, exc.code)
                return
            budget[0] -= 2
            if budget[0] < 0:
                raise TransportError(f"unit {self.unit}: the device refuses too many reads "
                                     f"around {address}") from None
            # split near the middle, on a point boundary where one is known
            mid = address + (count + 1) // 2
            inner = [b for b in bounds if address < b < address + count]
            if inner:
                mid = min(inner, key=lambda b: abs(b - mid))
            half = mid - address
            holes_before = len(self.holes)
            self._read_span(address, half, image, budget, bounds)
            self._read_span(mid, count - half, image, budget, bounds)
            big = max(half, count - half)
            if len(self.holes) == holes_before and big < self.max_read:
                # Both halves read whole: the count was refused, not an address.
                self.max_read = big
                log.info("unit %d: reads of %d registers refused; reading at most %d",
                         self.unit, count, big)
            return
        for i, r in enumerate(regs):
            image[address + i] = r

    def write_points(self, model_id: int, values: Mapping[str, Any]) -> None:
        """Write engineering values to points of one model.

        The model is read first so each value is scaled with the scale factor
        the device uses *now* (devices may change SFs at run time); contiguous
        points go out in one write-multiple transaction.
        """
        loc = self.map.find(model_id)
        if loc is None:
            raise KeyError(f"unit {self.unit} has no model {model_id}")
        current = self.read_models([model_id])[model_id]
        layout = current.layout
        words: dict[int, int] = {}
        for path, value in values.items():
            slot = layout.slot(path)
            if not slot.point.writable:
                raise PermissionError(f"model {model_id} point {path} is read-only")
            raw = to_raw(value, slot, scale_exponent(slot, current.raw))
            regs = slot.point.type.encode(raw, slot.point.size)
            for i, r in enumerate(regs):
                words[loc.address + slot.offset + i] = r
        for start, run in _runs(words):
            self.transport.write_registers(start, run, self.unit)
            log.debug("unit %d model %d: wrote %d registers at %d", self.unit, model_id,
                      len(run), start)


class ModelMovedError(Exception):
    """A model is no longer where discovery found it."""


def _runs(words: Mapping[int, int]) -> list[tuple[int, list[int]]]:
    runs: list[tuple[int, list[int]]] = []
    for addr in sorted(words):
        if runs and runs[-1][0] + len(runs[-1][1]) == addr:
            runs[-1][1].append(words[addr])
        else:
            runs.append((addr, [words[addr]]))
    return runs


def _without(model: DecodedModel, offsets: set[int]) -> DecodedModel:
    """The model with every point that overlaps a refused register unimplemented."""
    gone = {path for path, sl in model.layout.slots.items()
            if any(o in offsets for o in range(sl.offset, sl.offset + sl.point.size))}
    slots = model.layout.slots
    raw = {k: (None if k in gone else v) for k, v in model.raw.items()}
    values = {k: (None if k in gone or slots[k].sf_path in gone else v)
              for k, v in model.values.items()}
    return DecodedModel(model.model_id, model.name, model.address, model.layout, raw, values)
