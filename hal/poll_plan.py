"""What one poll cycle reads: a fast set every cycle, the rest on a slow schedule.

A full poll of a SunSpec inverter (measurements, status, controls, nameplate)
is a few hundred bytes: about 0.3 s of a 9600 baud line. The grid functions
and the served measurements need only a few registers of the measurement
model every cycle: the phase voltages, frequency, W, var (VA, PF, currents)
and the operating state, with their scale factors. This module

* works out those registers for a model as laid out on the device
  (:func:`fast_paths`, :func:`point_spans`), coalesced into as few reads as
  pay off on the wire: a gap between two wanted blocks is read and thrown away
  when that is cheaper than another transaction;
* overlays what the fast read returned on the last full read of the model
  (:func:`overlay`), so the upper layers keep seeing whole decoded models;
* keeps the slow schedule (:class:`SlowSchedule`): when each other model (and a
  full read of the measurement model) is next due, at most one per cycle so a
  slow read never costs more than one model's transaction, and "due now" after
  a write to it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from hal.sunspec.device import ReadSpan
from hal.sunspec.models import DecodedModel, apply_sf
from hal.transport import MAX_READ

#: Reading names every cycle needs (the functions and the served measurements).
FAST_NAMES = frozenset({"W", "VAr", "VA", "PF", "Hz", "A", "AphA", "AphB", "AphC",
                        "PhVphA", "PhVphB", "PhVphC", "St"})

#: Seconds between slow reads, by kind of model.
SLOW_PERIODS: dict[str, float] = {
    "measurement": 10.0,  # the whole measurement model (energy, temperatures, DC, events)
    "status": 5.0,        # 122/123/703/704: controls read back, settings the device changes
    "nameplate": 60.0,    # 120/121/702: ratings and basic settings
    "common": 600.0,      # model 1: manufacturer, serial number (static)
    "storage": 2.0,       # 124/713/802/714: state of charge, battery power, 124 read back
}

#: Registers of gap worth reading through rather than paying another transaction.
#: RTU: a transaction costs ~20 characters more (request 8, response header and
#: CRC 5, two 3.5-character silences), a gap register 2. TCP: a round trip.
RTU_MAX_GAP = 10
TCP_MAX_GAP = 60


def fast_paths(model: DecodedModel, names: Iterable[str],
               read_points: Mapping[str, list[tuple[tuple[int, ...], str, object]]]
               ) -> tuple[str, ...]:
    """Point paths (and their scale factors) of ``model`` behind ``names``."""
    slots = model.layout.slots
    out: dict[str, None] = {}
    for name in names:
        for model_ids, path, _transform in read_points.get(name, ()):
            if model.model_id in model_ids and path in slots:
                out[path] = None
                sf = slots[path].sf_path
                if sf is not None:
                    out[sf] = None
    return tuple(out)


def point_spans(model: DecodedModel, paths: Iterable[str], max_gap: int,
                max_regs: int = MAX_READ,
                holes: Collection[int] = ()) -> tuple[ReadSpan, ...]:
    """Absolute register spans covering ``paths``, gaps up to ``max_gap`` read through,
    except a gap with a register the device refuses (``holes``) in it."""
    slots = model.layout.slots
    blocks = sorted((model.address + slots[p].offset,
                     model.address + slots[p].offset + slots[p].point.size) for p in paths)
    spans: list[list[int]] = []
    for start, end in blocks:
        if (spans and start - spans[-1][1] <= max_gap and end - spans[-1][0] <= max_regs
                and not any(a in holes for a in range(spans[-1][1], start))):
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return tuple(ReadSpan(a, b - a) for a, b in spans)


def overlay(model: DecodedModel, paths: Iterable[str], image: Mapping[int, int]
            ) -> DecodedModel:
    """``model`` with the points ``paths`` decoded afresh from ``image`` (address -> register).

    Values are scaled with the scale factors in the same read (the fast set
    carries them), so a scale factor that changed at run time never pairs with
    an old value.
    """
    slots = model.layout.slots
    raw = dict(model.raw)
    paths = tuple(paths)
    for path in paths:
        s = slots[path]
        a = model.address + s.offset
        raw[path] = s.point.type.decode([image[a + i] for i in range(s.point.size)])
    values = dict(model.values)
    for path in paths:
        values[path] = apply_sf(raw[path], slots[path], raw)
    return DecodedModel(model.model_id, model.name, model.address, model.layout, raw, values)


@dataclass(slots=True)
class SlowSchedule:
    """When each slow model is due (monotonic seconds); at most one per cycle."""

    periods: dict[int, float]
    due: dict[int, float]

    @classmethod
    def for_models(cls, kinds: Mapping[int, str], now: float,
                   periods: Mapping[str, float] | None = None) -> SlowSchedule:
        table = {**SLOW_PERIODS, **(periods or {})}
        per = {mid: table[kind] for mid, kind in kinds.items()}
        # Just read in full by the first poll: next due one period on, staggered so
        # that models with the same period do not fall due in the same cycle.
        due = {mid: now + p * (1 + i / max(1, len(per))) for i, (mid, p) in
               enumerate(sorted(per.items()))}
        return cls(per, due)

    def next_due(self, now: float) -> int | None:
        """The most overdue model, or None if none is due."""
        late = [(t, mid) for mid, t in self.due.items() if t <= now]
        return min(late)[1] if late else None

    def done(self, model_id: int, now: float) -> None:
        self.due[model_id] = now + self.periods[model_id]

    def now_due(self, model_ids: Iterable[int], now: float) -> None:
        """Read these models in the next cycle (after a write to them)."""
        for mid in model_ids:
            if mid in self.due:
                self.due[mid] = min(self.due[mid], now - 1e6)
