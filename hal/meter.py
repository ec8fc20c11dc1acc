"""A SunSpec meter at the site's connection point: named readings with quality.

The meter models (201 single phase, 202 split phase, 203 wye, 204 delta; 211-214
their float forms) are decoded from pysunspec2's definitions like the
inverter's (:mod:`hal.sunspec.models`), read over the same kind of transport (a
unit id on an inverter's bus, or a link of its own), with the same fast / slow
split (:mod:`hal.poll_plan`): W, var, VA, PF, Hz, voltages and currents every
cycle, the whole model (energy counters, events) every 10 s.

Sign convention of this interface (whatever the device's own):

* ``W`` and ``VAr`` are positive when power flows **from the grid into the
  site** (import), negative when the site exports. This is the metering
  convention the SunSpec meter models are written in: their reactive energy
  counters are named ``TotVArhImpQ1`` / ``ImpQ2`` / ``ExpQ3`` / ``ExpQ4``, the
  four quadrants of IEC 62053-23 (Q1 and Q4: active power imported, Q1 and Q2:
  reactive power imported), and the real energy is split into ``TotWhImp`` and
  ``TotWhExp`` (pysunspec2 ``models/json/model_203.json``). The model
  definitions give no sign for ``W`` in words, and meters in the field differ:
  SolarEdge's meters read through its inverters report export positive
  (github.com/WillCodeForCats/solaredge-modbus-multi issue 69, "On an E+I meter
  negative means importing"), while a meter at the grid connection normally
  counts import positive (github.com/evcc-io/evcc issue 6138). So the device's
  convention is configured (``w_positive``: "import", the default, or
  "export") and everything above this module sees import positive.
* ``PF`` is a fraction -1..1 (20x report percent, 21x a fraction).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.inverter import _ident
from hal.inverter import _pct_to_fraction as _pct
from hal.inverter import _slot_addresses as _addresses
from hal.poll_plan import RTU_MAX_GAP, TCP_MAX_GAP, fast_paths, overlay, point_spans
from hal.reading import GOOD, LINK_FAILURE, NOT_IMPLEMENTED, STALE, Reading
from hal.sunspec.device import ReadSpan, SunSpecDevice
from hal.sunspec.models import DecodedModel
from hal.sunspec.scan import DeviceMap, discover
from hal.topology import PHASES, AcType
from hal.transport import Transport, TransportError

log = logging.getLogger(__name__)

#: Meter models and their wiring (203 wye and 204 delta are both three phase).
METER_MODELS: dict[int, AcType] = {
    201: AcType.SINGLE, 202: AcType.SPLIT, 203: AcType.THREE, 204: AcType.THREE,
    211: AcType.SINGLE, 212: AcType.SPLIT, 213: AcType.THREE, 214: AcType.THREE}
#: Delta-connected meters (no neutral: no line-to-neutral voltages).
DELTA = (204, 214)


_INT, _FLOAT = (201, 202, 203, 204), (211, 212, 213, 214)
_ALL = _INT + _FLOAT
#: Reading name -> (model ids, path, transform); first that the model lays out wins.
#: 201 / 202 / 211 / 212 / 214 call the line-to-line voltages PPVph*, 203 / 204 / 213
#: PhVph* (as pysunspec2's definitions spell them).
READ_POINTS: dict[str, list[tuple[tuple[int, ...], str, Callable[[Any], Any]]]] = {
    "W": [(_ALL, "W", _ident)],
    "VAr": [(_ALL, "VAR", _ident)],
    "VA": [(_ALL, "VA", _ident)],
    "PF": [(_INT, "PF", _pct), (_FLOAT, "PF", _ident)],
    "Hz": [(_ALL, "Hz", _ident)],
    "A": [(_ALL, "A", _ident)],
    **{f"Aph{p}": [(_ALL, f"Aph{p}", _ident)] for p in "ABC"},
    "PhV": [(_ALL, "PhV", _ident)],
    **{f"PhVph{p}": [(_ALL, f"PhVph{p}", _ident)] for p in "ABC"},
    "PPV": [(_ALL, "PPV", _ident)],
    **{f"PPVph{p}": [(_ALL, f"PPVph{p}", _ident), (_ALL, f"PhVph{p}", _ident)]
       for p in ("AB", "BC", "CA")},
    **{f"Wph{p}": [(_ALL, f"Wph{p}", _ident)] for p in "ABC"},
    "TotWhImp": [(_ALL, "TotWhImp", _ident)],
    "TotWhExp": [(_ALL, "TotWhExp", _ident)],
    "TotVArhImpQ1": [(_ALL, "TotVArhImpQ1", _ident)],
    "TotVArhExpQ4": [(_ALL, "TotVArhExpQ4", _ident)],
    "Evt": [(_ALL, "Evt", _ident)],
}
#: Readings whose sign follows the power flow (flipped for an export-positive meter).
SIGNED = ("W", "VAr", "WphA", "WphB", "WphC")
#: Read every cycle (with their scale factors).
FAST_NAMES = frozenset({"W", "VAr", "VA", "PF", "Hz", "A", "AphA", "AphB", "AphC", "PhV",
                        "PhVphA", "PhVphB", "PhVphC", "WphA", "WphB", "WphC"})
#: Seconds between full reads of the meter model (energy counters, events).
FULL_EVERY_S = 10.0
#: Per-phase readings reported unimplemented for a phase the wiring lacks.
_PHASE_POINTS = {p: (f"Aph{p}", f"PhVph{p}", f"Wph{p}") for p in "ABC"}
DERIVED = ("ACType", "MeterModel")


@dataclass(frozen=True, slots=True)
class MeterInfo:
    model_id: int
    ac_type: AcType
    delta: bool


class Meter:
    """One SunSpec meter: discovered once, then polled by name.

    ``poll()`` never raises for a dead link: every reading turns invalid
    (the last value kept, flagged old data) and the error is in ``last_error``.
    ``model`` (a meter model id) is the one expected: discovery fails if the
    device does not list it; None takes the first meter model in the chain.
    """

    def __init__(self, transport: Transport, unit: int, bases: tuple[int, ...] | None = None,
                 model: int | None = None, w_positive: str = "import",
                 full_every_s: float = FULL_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if model is not None and model not in METER_MODELS:
            raise ValueError(f"model {model} is not a SunSpec meter model "
                             f"({', '.join(map(str, METER_MODELS))})")
        if w_positive not in ("import", "export"):
            raise ValueError(f"w_positive {w_positive!r}: 'import' or 'export'")
        self.transport = transport
        self.unit = unit
        self.bases = bases
        self.expected = model
        self.sign = 1.0 if w_positive == "import" else -1.0
        self.full_every_s = full_every_s
        self._clock = clock
        self.device: SunSpecDevice | None = None
        self.info: MeterInfo | None = None
        self.last_error: str | None = None
        self._model: DecodedModel | None = None
        self._fast: tuple[tuple[str, ...], tuple[ReadSpan, ...]] | None = None
        self._full_due = 0.0
        self._last: dict[str, Reading] = {}
        self.last_poll_kind = ""
        self.max_gap = RTU_MAX_GAP if getattr(transport, "serial", None) is not None \
            else TCP_MAX_GAP

    def connect(self) -> DeviceMap:
        """Discover the device's models and pick its meter model (raises TransportError)."""
        kwargs = {"bases": self.bases} if self.bases else {}
        dmap = discover(self.transport, self.unit, **kwargs)
        meters = [m for m in dmap.model_ids if m in METER_MODELS]
        if self.expected is not None and self.expected not in meters:
            raise TransportError(f"unit {self.unit}: meter model {self.expected} expected, "
                                 f"the device lists {dmap.model_ids}")
        if not meters:
            raise TransportError(f"unit {self.unit}: no meter model (201-204, 211-214) in "
                                 f"the chain {dmap.model_ids}")
        mid = self.expected or meters[0]
        self.device = SunSpecDevice(self.transport, dmap)
        self.info = MeterInfo(mid, METER_MODELS[mid], mid in DELTA)
        self._model, self._fast = None, None
        log.info("meter unit %d: SunSpec at base %d, model %d (%s%s)", self.unit, dmap.base,
                 mid, self.info.ac_type.value, ", delta" if self.info.delta else "")
        return dmap

    def poll(self, now: float | None = None) -> dict[str, Reading]:
        """This cycle's readings: the fast set, the whole model when due."""
        now = time.time() if now is None else now
        mono = self._clock()
        try:
            if self.device is None:
                self.connect()
            dev, info = self.device, self.info
            assert dev is not None and info is not None
            if self._model is None or mono >= self._full_due or self._fast is None:
                got = dev.read_models([info.model_id]).get(info.model_id)
                if got is None:
                    raise TransportError(f"meter model {info.model_id} did not decode: "
                                         f"{dev.decode_errors.get(info.model_id)}")
                self._model = got
                self._plan(dev, got)
                self._full_due = mono + self.full_every_s
                self.last_poll_kind = "full"
            else:
                paths, spans = self._fast
                image = dev.read_spans(info.model_id, spans)
                self._model = overlay(self._model, [p for p in paths if all(
                    a in image for a in _addresses(self._model, p))], image)
                self.last_poll_kind = "fast"
        except Exception as exc:  # one error family upward: the link failed
            if not isinstance(exc, (TransportError, OSError)):
                log.warning("meter unit %d: poll failed: %s", self.unit, exc)
            self.last_error = str(exc)
            return self._invalidate(now)
        self.last_error = None
        self._last = self._readings(self._model, now)
        return self._last

    def _plan(self, dev: SunSpecDevice, model: DecodedModel) -> None:
        paths = fast_paths(model, FAST_NAMES, READ_POINTS)
        paths = tuple(p for p in paths
                      if not any(a in dev.holes for a in _addresses(model, p)))
        self._fast = (paths, point_spans(model, paths, self.max_gap, dev.max_read,
                                         dev.holes)) if paths else None

    def _readings(self, model: DecodedModel, now: float) -> dict[str, Reading]:
        assert self.info is not None
        out: dict[str, Reading] = {}
        for name, candidates in READ_POINTS.items():
            for model_ids, path, transform in candidates:
                if model.model_id not in model_ids or path not in model.values:
                    continue
                v = model.values[path]
                if v is not None and name in SIGNED:
                    v = self.sign * v
                out[name] = (Reading(transform(v), GOOD, now) if v is not None
                             else Reading(None, NOT_IMPLEMENTED, now))
                break
        # A phase the wiring lacks is unimplemented whatever its registers hold; a delta
        # meter has no neutral, so no line-to-neutral voltage.
        for ph, names in _PHASE_POINTS.items():
            if ph not in PHASES[self.info.ac_type]:
                for n in names:
                    out[n] = Reading(None, NOT_IMPLEMENTED, now)
        if self.info.delta:
            for n in ("PhV", "PhVphA", "PhVphB", "PhVphC"):
                out[n] = Reading(None, NOT_IMPLEMENTED, now)
        out["ACType"] = Reading(self.info.ac_type.value, GOOD, now)
        out["MeterModel"] = Reading(self.info.model_id, GOOD, now)
        return out

    def unreachable(self, now: float) -> dict[str, Reading]:
        """The readings of a meter not asked this cycle: last values, marked stale."""
        return self._invalidate(now)

    def _invalidate(self, now: float) -> dict[str, Reading]:
        if not self._last:
            return {n: Reading(None, LINK_FAILURE, now) for n in (*READ_POINTS, *DERIVED)}
        return {n: Reading(r.value, STALE if r.value is not None else LINK_FAILURE, now)
                for n, r in self._last.items()}

    def close(self) -> None:
        self.transport.close()


def as_values(readings: Mapping[str, Reading]) -> dict[str, Any]:
    """Good values only (None where not good): for logs and quick checks."""
    return {n: (r.value if r.quality.good else None) for n, r in readings.items()}
