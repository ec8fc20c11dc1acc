"""Settings ranges, declared beside each settings field, and the checks that apply them.

A settings dataclass gives a field its allowed range in the field's metadata::

    response_time_s: float = field(default=5.0, metadata=rng(1.0, 90.0, "1547 Table 8"))

:func:`check_fields` checks every such field of one settings object; the
validator (:func:`settings.validate`) runs it for every section, then the
checks that relate several settings (curves, trip tables, the enter-service
window, the power factor by direction). ``basis`` says where a range comes
from: "1547 Table N" where IEEE 1547-2018 gives a settings range (recalled
from the standard, to be confirmed against it), "sanity" for bounds chosen
for this gateway so that a typo cannot produce a setting no profile would use.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Field metadata key holding a :class:`Range`.
RANGE = "range"


class SettingsError(ValueError):
    """An invalid setting; the message names its path, value and allowed range."""


class SettingsConflict(SettingsError):
    """Valid alone, but not together with what is enabled (two reactive modes at once)."""


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric setting: [lo, hi], either end open if asked."""

    lo: float
    hi: float
    basis: str
    lo_open: bool = False
    hi_open: bool = False
    #: When set, ``lo`` and ``hi`` are offsets from this reference value (a rating
    #: such as ``"f_nom_hz"``, passed to :func:`check_fields` by the validator).
    relative_to: str = ""


def rng(lo: float, hi: float, basis: str, *, lo_open: bool = False, hi_open: bool = False,
        relative_to: str = "") -> dict[str, Range]:
    """Field metadata declaring a range (``field(default=..., metadata=rng(...))``)."""
    return {RANGE: Range(lo, hi, basis, lo_open, hi_open, relative_to)}


def fail(path: str, value: object, allowed: str) -> typing.NoReturn:
    raise SettingsError(f"{path} = {value!r}: {allowed}")


def check_range(path: str, value: float, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """Raise :class:`SettingsError` unless ``value`` is a number within the range."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        fail(path, value, "must be a number")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        lb, hb = ("(" if lo_open else "["), (")" if hi_open else "]")
        fail(path, value, f"allowed range {lb}{lo:g}, {hi:g}{hb}")


@functools.cache
def ranges(cls: type) -> dict[str, Range]:
    """The declared ranges of a settings dataclass, field name -> range, in field order."""
    return {f.name: f.metadata[RANGE] for f in dataclasses.fields(cls) if RANGE in f.metadata}


@functools.cache
def _optional(cls: type) -> frozenset[str]:
    """Fields of ``cls`` whose type admits None (an optional setting)."""
    return frozenset(name for name, tp in typing.get_type_hints(cls).items()
                     if type(None) in typing.get_args(tp))


def check_fields(path: str, obj: Any, refs: Mapping[str, float] | None = None) -> None:
    """Check every field of ``obj`` that declares a range; None in an optional
    field (a setting left unset) is not checked. ``refs`` gives the reference
    values relative ranges name."""
    cls: type = type(obj)
    for name, r in ranges(cls).items():
        value = getattr(obj, name)
        if value is None and name in _optional(cls):
            continue
        lo, hi = r.lo, r.hi
        if r.relative_to:
            ref = (refs or {})[r.relative_to]
            lo, hi = ref + lo, ref + hi
        check_range(f"{path}.{name}", value, lo, hi, lo_open=r.lo_open, hi_open=r.hi_open)
