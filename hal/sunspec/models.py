"""SunSpec model definitions as data, and the register codec built on them.

Register maps are never typed by hand here: every model is read from the JSON
definitions that pysunspec2 ships (``sunspec2/models/json/model_<id>.json``).
This module lays a model out (point -> offset), decodes a block of registers
into raw and scaled values, and encodes values back into registers.

Offsets are relative to the model's ``ID`` register (ID at 0, L at 1).
Point paths name a point inside its groups: ``W``, ``curve[2].V3``,
``Crv[1].Pt[4].V`` (repeating-group indexes count from 1, as SunSpec does).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ModelDefinitionError(LookupError):
    """A model id has no shipped definition, or a definition cannot be laid out."""


@dataclass(frozen=True, slots=True)
class PointType:
    """How one SunSpec point type maps to registers."""

    name: str
    size: int  # registers; strings take theirs from the definition
    kind: str  # 'int', 'uint', 'float', 'string', 'pad'
    unimplemented: int | None  # raw integer sentinel; None for float (NaN) and strings

    def decode(self, regs: list[int]) -> Any:
        raw_bytes = b"".join(r.to_bytes(2, "big") for r in regs)
        if self.kind == "string":
            text = raw_bytes.split(b"\x00", 1)[0].decode("utf-8", errors="replace").rstrip()
            return text or None
        if self.kind == "float":
            (v,) = struct.unpack(">f" if len(regs) == 2 else ">d", raw_bytes)
            return None if math.isnan(v) else v
        if self.kind == "pad":
            return None
        v = int.from_bytes(raw_bytes, "big", signed=False)
        if self.unimplemented is not None and v == self.unimplemented:
            return None
        if self.kind == "int" and v >= 1 << (16 * len(regs) - 1):
            v -= 1 << (16 * len(regs))
        return v

    def encode(self, value: Any, size: int) -> list[int]:
        """Registers for a raw value; None encodes the unimplemented sentinel."""
        nbytes = size * 2
        if self.kind == "pad":
            return [0] * size
        if self.kind == "string":
            data = (value or "").encode("utf-8")[:nbytes].ljust(nbytes, b"\x00")
        elif self.kind == "float":
            v = math.nan if value is None else float(value)
            data = struct.pack(">f" if size == 2 else ">d", v)
        else:
            if value is None:
                v = self.unimplemented if self.unimplemented is not None else 0
            else:
                v = int(value)
                lo, hi = self.range(size)
                if not lo <= v <= hi:
                    raise ValueError(f"{v} does not fit {self.name} ({lo}..{hi})")
                v &= (1 << (8 * nbytes)) - 1
            data = v.to_bytes(nbytes, "big")
        return [int.from_bytes(data[i:i + 2], "big") for i in range(0, nbytes, 2)]

    def range(self, size: int | None = None) -> tuple[int, int]:
        """Representable raw range, excluding the unimplemented sentinel."""
        bits = 16 * (size or self.size)
        if self.kind == "int":
            return -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 2 if self.unimplemented == (1 << bits) - 1 else (1 << bits) - 1


def _t(name: str, size: int, kind: str, unimpl: int | None) -> PointType:
    return PointType(name, size, kind, unimpl)


#: SunSpec point types with their unimplemented sentinels (SunSpec Information
#: Model Specification: int 0x8000..., uint/enum/bitfield 0xFFFF..., acc 0).
POINT_TYPES: dict[str, PointType] = {t.name: t for t in (
    _t("int16", 1, "int", 0x8000), _t("uint16", 1, "uint", 0xFFFF),
    _t("count", 1, "uint", 0xFFFF), _t("acc16", 1, "uint", 0),
    _t("enum16", 1, "uint", 0xFFFF), _t("bitfield16", 1, "uint", 0xFFFF),
    _t("sunssf", 1, "int", 0x8000), _t("pad", 1, "pad", None),
    _t("int32", 2, "int", 0x80000000), _t("uint32", 2, "uint", 0xFFFFFFFF),
    _t("acc32", 2, "uint", 0), _t("enum32", 2, "uint", 0xFFFFFFFF),
    _t("bitfield32", 2, "uint", 0xFFFFFFFF), _t("ipaddr", 2, "uint", 0),
    _t("int64", 4, "int", 0x8000000000000000), _t("uint64", 4, "uint", 0xFFFFFFFFFFFFFFFF),
    _t("acc64", 4, "uint", 0), _t("eui48", 4, "uint", 0xFFFFFFFFFFFFFFFF),
    _t("ipv6addr", 8, "uint", 0), _t("float32", 2, "float", None),
    _t("float64", 4, "float", None), _t("string", 1, "string", None),
)}


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str
    type: PointType
    size: int
    sf: str | int | None  # a scale-factor point name, a fixed exponent, or none
    writable: bool
    units: str | None
    symbols: Mapping[str, int]
    mandatory: bool
    static: bool


@dataclass(frozen=True, slots=True)
class GroupDef:
    name: str
    points: tuple[PointDef, ...]
    groups: tuple[GroupDef, ...]
    count: int | str | None  # None: once; int: fixed (0 = fill the model length); str: a point

    @property
    def points_size(self) -> int:
        return sum(p.size for p in self.points)


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    label: str
    group: GroupDef


def _point_def(d: Mapping[str, Any]) -> PointDef:
    ptype = POINT_TYPES.get(d["type"])
    if ptype is None:
        raise ModelDefinitionError(f"point {d['name']}: unknown type {d['type']!r}")
    sf: str | int | None = d.get("sf")
    if isinstance(sf, str):
        try:
            sf = int(sf)
        except ValueError:
            pass
    return PointDef(
        name=d["name"], type=ptype, size=int(d.get("size", ptype.size)), sf=sf,
        writable="W" in str(d.get("access", "R")), units=d.get("units"),
        symbols={s["name"]: int(s["value"]) for s in d.get("symbols", ())},
        mandatory=d.get("mandatory") == "M", static=d.get("static") == "S",
    )


def _group_def(d: Mapping[str, Any]) -> GroupDef:
    count = d.get("count")
    if isinstance(count, str):
        try:
            count = int(count)
        except ValueError:
            pass
    return GroupDef(
        name=d["name"],
        points=tuple(_point_def(p) for p in d.get("points", ())),
        groups=tuple(_group_def(g) for g in d.get("groups", ())),
        count=count,
    )


@functools.cache
def _definitions_dir() -> str:
    """pysunspec2's folder of JSON model definitions (a plain directory in its wheel;
    found without importing sunspec2 or importlib.resources, which cost memory)."""
    spec = importlib.util.find_spec("sunspec2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelDefinitionError("pysunspec2 is not installed: no SunSpec model definitions")
    return os.path.join(list(spec.submodule_search_locations)[0], "models", "json")


@functools.cache
def model_definition(model_id: int) -> ModelDef:
    """The shipped definition of a SunSpec model, cached."""
    ref = os.path.join(_definitions_dir(), f"model_{int(model_id)}.json")
    try:
        with open(ref, encoding="utf-8") as fh:
            text = fh.read()
    except (FileNotFoundError, OSError) as exc:
        raise ModelDefinitionError(f"no SunSpec definition ships for model {model_id}") from exc
    d = json.loads(text)
    g = d["group"]
    return ModelDef(id=int(d["id"]), name=g["name"], label=g.get("label", g["name"]),
                    group=_group_def(g))


def known_model_ids() -> list[int]:
    ids = []
    for name in os.listdir(_definitions_dir()):
        stem = name.removeprefix("model_").removesuffix(".json")
        if name.startswith("model_") and stem.isdigit():
            ids.append(int(stem))
    return sorted(ids)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one point of one laid-out model lives."""

    path: str
    point: PointDef
    offset: int  # registers from the model's ID register
    sf_path: str | None  # path of the scale-factor point, if the scale is a register


@dataclass(slots=True)
class Layout:
    """A model laid out for a given length (and repeating-group counts)."""

    model: ModelDef
    length: int  # the L register: registers after ID and L
    slots: dict[str, Slot] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # count point -> repeats laid out

    @property
    def size(self) -> int:
        return self.length + 2

    def slot(self, path: str) -> Slot:
        try:
            return self.slots[path]
        except KeyError:
            raise KeyError(
                f"model {self.model.id} ({self.model.name}) has no point {path!r}") from None


def lay_out(model_id: int, length: int | None = None,
            counts: Mapping[str, int] | None = None,
            regs: list[int] | None = None) -> Layout:
    """Lay a model out.

    Repeating-group counts come from, in order: a fixed count in the definition;
    ``counts`` (by the count point's name, e.g. ``{"NCrv": 3, "NPt": 4}``); the
    count point's value in ``regs``; and for count 0 (legacy models), whatever
    fills ``length``. With no ``length``, the layout's length is what it needs.
    """
    mdef = model_definition(model_id)
    counts = dict(counts or {})
    top = mdef.group
    layout = Layout(model=mdef, length=length or 0)

    def count_of(g: GroupDef, offset: int) -> int:
        n = _count_of(g, offset)
        if isinstance(g.count, str):
            layout.counts[g.count] = n
        return n

    def _count_of(g: GroupDef, offset: int) -> int:
        if isinstance(g.count, int) and g.count > 0:
            return g.count
        if isinstance(g.count, str):
            if g.count in counts:
                return int(counts[g.count])
            slot = layout.slots.get(g.count)
            if slot is not None and regs is not None and slot.offset + slot.point.size <= len(regs):
                v = slot.point.type.decode(regs[slot.offset:slot.offset + slot.point.size])
                return int(v or 0)
            raise ModelDefinitionError(
                f"model {model_id}: count point {g.count} of group {g.name} has no value")
        # count 0: the group repeats to fill the model (legacy 1xx curve models)
        if length is None:
            return int(counts.get(g.name, 1))
        gsize = _group_size(g, counts, layout, regs)
        remaining = length + 2 - offset
        if gsize <= 0 or remaining < 0 or remaining % gsize:
            raise ModelDefinitionError(
                f"model {model_id}: length {length} does not hold whole {g.name} groups")
        return remaining // gsize

    def place(g: GroupDef, prefix: str, offset: int,
              scope: list[tuple[str, GroupDef]]) -> int:
        scope = scope + [(prefix, g)]
        for p in g.points:
            path = prefix + p.name
            sf_path = _find_sf(p.sf, scope) if isinstance(p.sf, str) else None
            layout.slots[path] = Slot(path, p, offset, sf_path)
            offset += p.size
        for sub in g.groups:
            n = 1 if sub.count is None else count_of(sub, offset)
            for i in range(n):
                sub_prefix = f"{prefix}{sub.name}." if sub.count is None else \
                    f"{prefix}{sub.name}[{i + 1}]."
                offset = place(sub, sub_prefix, offset, scope)
        return offset

    end = place(top, "", 0, [])
    if length is None:
        layout.length = end - 2
    elif end != length + 2:
        raise ModelDefinitionError(
            f"model {model_id}: definition lays out {end - 2} registers, device says L={length}")
    return layout


def _find_sf(sf: str, scope: list[tuple[str, GroupDef]]) -> str | None:
    # SunSpec: a scale factor is found in the point's own group, else in the
    # enclosing groups out to the model (innermost first).
    for prefix, g in reversed(scope):
        if any(p.name == sf for p in g.points):
            return prefix + sf
    return None


def _group_size(g: GroupDef, counts: Mapping[str, int], layout: Layout,
                regs: list[int] | None) -> int:
    size = g.points_size
    for sub in g.groups:
        n = sub.count if isinstance(sub.count, int) and sub.count > 0 else \
            int(counts.get(str(sub.count), 1))
        size += n * _group_size(sub, counts, layout, regs)
    return size


@dataclass(frozen=True, slots=True)
class DecodedModel:
    """One model's values as read: raw integers and engineering values."""

    model_id: int
    name: str
    address: int  # absolute address of the ID register
    layout: Layout
    raw: Mapping[str, Any]  # None where the device reports the point unimplemented
    values: Mapping[str, Any]  # scale factors applied; None where raw or its SF is missing

    def value(self, path: str) -> Any:
        return self.values.get(path)


def decode(model_id: int, address: int, regs: list[int]) -> DecodedModel:
    """Decode a model's registers (starting at its ID register)."""
    if len(regs) < 2:
        raise ModelDefinitionError(f"model {model_id}: block too short")
    layout = lay_out(model_id, length=regs[1], regs=regs)
    raw: dict[str, Any] = {}
    for path, s in layout.slots.items():
        raw[path] = s.point.type.decode(regs[s.offset:s.offset + s.point.size])
    values: dict[str, Any] = {}
    for path, s in layout.slots.items():
        values[path] = apply_sf(raw[path], s, raw)
    return DecodedModel(model_id, layout.model.name, address, layout, raw, values)


def scale_exponent(slot: Slot, raw: Mapping[str, Any]) -> int | None:
    """The power of ten that scales a point; None if its SF is unimplemented."""
    sf = slot.point.sf
    if sf is None:
        return 0
    if isinstance(sf, int):
        return sf
    if slot.sf_path is None:
        return None
    v = raw.get(slot.sf_path)
    return None if v is None else int(v)


def apply_sf(raw_value: Any, slot: Slot, raw: Mapping[str, Any]) -> Any:
    if raw_value is None:
        return None
    if slot.point.type.kind in ("string", "float") or slot.point.sf is None:
        return raw_value
    exp = scale_exponent(slot, raw)
    if exp is None:
        return None
    if exp == 0:
        return raw_value
    return round(raw_value * 10.0 ** exp, max(0, -exp) + 6)


def to_raw(value: Any, slot: Slot, exponent: int | None) -> Any:
    """Engineering value -> raw register value, with the point's scale factor."""
    if value is None or slot.point.type.kind in ("string", "float"):
        return value
    if slot.point.sf is not None:
        if exponent is None:
            raise ValueError(f"{slot.path}: scale factor {slot.sf_path} is not implemented")
        value = value / 10.0 ** exponent
    raw = round(value)
    lo, hi = slot.point.type.range(slot.point.size)
    if not lo <= raw <= hi:
        raise ValueError(f"{slot.path}: {value!r} is outside the register range {lo}..{hi}")
    return raw


def encode(layout: Layout, raw: Mapping[str, Any]) -> list[int]:
    """Registers of a whole model (from its ID register) for the given raw values.

    Points not in ``raw`` get their unimplemented sentinel; ID and L are filled in.
    """
    regs = [0] * layout.size
    for path, s in layout.slots.items():
        v = raw.get(path)
        if v is None and path in layout.counts:
            v = layout.counts[path]
        if path == "ID":
            v = layout.model.id
        elif path == "L":
            v = layout.length
        regs[s.offset:s.offset + s.point.size] = s.point.type.encode(v, s.point.size)
    return regs


def iter_paths(layout: Layout, writable_only: bool = False) -> Iterable[str]:
    for path, s in layout.slots.items():
        if not writable_only or s.point.writable:
            yield path
