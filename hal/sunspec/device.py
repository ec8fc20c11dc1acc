"""A SunSpec device on a transport: coalesced model reads and scaled writes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.sunspec.models import DecodedModel, decode, scale_exponent, to_raw
from hal.sunspec.scan import DeviceMap, ModelLocation
from hal.transport import MAX_READ, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadSpan:
    address: int
    count: int


def plan_reads(models: Iterable[ModelLocation], max_regs: int = MAX_READ,
               max_gap: int = 0) -> list[ReadSpan]:
    """Coalesce model blocks into as few reads as Modbus allows.

    Blocks closer than ``max_gap`` registers are merged (the gap is read and
    thrown away); every span is at most ``max_regs`` registers.
    """
    blocks = sorted((m.address, m.end) for m in models)
    merged: list[list[int]] = []
    for start, end in blocks:
        if merged and start <= merged[-1][1] + max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    spans = []
    for start, end in merged:
        for a in range(start, end, max_regs):
            spans.append(ReadSpan(a, min(max_regs, end - a)))
    return spans


class SunSpecDevice:
    """One unit's SunSpec models, read and written by point name."""

    def __init__(self, transport: Transport, device_map: DeviceMap) -> None:
        self.transport = transport
        self.map = device_map
        self.unit = device_map.unit

    def has(self, model_id: int) -> bool:
        return self.map.find(model_id) is not None

    def read_models(self, model_ids: Iterable[int]) -> dict[int, DecodedModel]:
        """Read and decode the given models (absent ones are skipped).

        One transaction per coalesced span of at most 125 registers. Raises
        the transport's errors; nothing is decoded from a partial read.
        """
        locs = [loc for mid in dict.fromkeys(model_ids)
                if (loc := self.map.find(mid)) is not None and loc.known]
        if not locs:
            return {}
        image: dict[int, int] = {}
        for span in plan_reads(locs):
            regs = self.transport.read_holding(span.address, span.count, self.unit)
            for i, r in enumerate(regs):
                image[span.address + i] = r
        out = {}
        for loc in locs:
            regs = [image[a] for a in range(loc.address, loc.end)]
            if regs[0] != loc.model_id:
                # The device's map moved under us (firmware update, re-scan needed).
                raise ModelMovedError(f"unit {self.unit}: model {loc.model_id} expected at "
                                      f"{loc.address}, found id {regs[0]}")
            out[loc.model_id] = decode(loc.model_id, loc.address, regs)
        return out

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
