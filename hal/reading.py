"""Values as the HAL hands them up: value, quality and timestamp together.

Quality is one bit field: a validity (good / invalid / questionable) plus
detail bits (failure, old data, ...), laid out as the common utility quality
word so an upper layer can copy it into its own quality attribute unchanged.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any


class Validity(enum.IntEnum):
    """Validity of a reading (two bits: good, invalid, reserved, questionable)."""

    GOOD = 0
    INVALID = 1
    RESERVED = 2
    QUESTIONABLE = 3


class Detail(enum.IntFlag):
    """Why a reading is not good; bit positions as in the common quality word."""

    NONE = 0
    OVERFLOW = 1 << 2
    OUT_OF_RANGE = 1 << 3
    BAD_REFERENCE = 1 << 4
    OSCILLATORY = 1 << 5
    FAILURE = 1 << 6
    OLD_DATA = 1 << 7
    INCONSISTENT = 1 << 8
    INACCURATE = 1 << 9


@dataclass(frozen=True, slots=True)
class Quality:
    validity: Validity = Validity.GOOD
    detail: Detail = Detail.NONE

    @property
    def good(self) -> bool:
        return self.validity == Validity.GOOD

    def as_bits(self) -> int:
        """The 13-bit quality word: validity in bits 0-1, detail bits above."""
        return int(self.validity) | int(self.detail)

    def __str__(self) -> str:
        if self.good and not self.detail:
            return "good"
        parts = [self.validity.name.lower()]
        parts += [d.name.lower() for d in Detail if d and d in self.detail]
        return "|".join(parts)


GOOD = Quality()
#: The device answered but does not implement the point (SunSpec sentinel).
NOT_IMPLEMENTED = Quality(Validity.INVALID, Detail.BAD_REFERENCE)
#: The link is down: no value could be read.
LINK_FAILURE = Quality(Validity.INVALID, Detail.FAILURE)
#: The link is down and the value shown is the last one that was read.
STALE = Quality(Validity.INVALID, Detail.FAILURE | Detail.OLD_DATA)


@dataclass(frozen=True, slots=True)
class Reading:
    """One point's value with its quality and the wall-clock time it was read.

    ``value`` is the engineering value (scale factor applied), or None where the
    device reports the point unimplemented or the link failed.
    """

    value: Any
    quality: Quality
    timestamp: float

    @classmethod
    def good(cls, value: Any, timestamp: float | None = None) -> Reading:
        return cls(value, GOOD, time.time() if timestamp is None else timestamp)

    @classmethod
    def invalid(cls, quality: Quality = LINK_FAILURE, value: Any = None,
                timestamp: float | None = None) -> Reading:
        return cls(value, quality, time.time() if timestamp is None else timestamp)
