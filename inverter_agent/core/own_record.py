"""The device's own volt-var / volt-watt as the gateway first saw them, kept on disk.

:mod:`.steering` puts a device's own function back (its curve and on / off state as
first seen) when the settings turn it off after the gateway had written it, and when
the gateway stands aside or stops cleanly. "As first seen" must outlive the process:
a gateway killed after it switched the device's volt-var off (a constant PF mode), or
restarted after it programmed a volt-watt, would otherwise read what it left behind
as the device's own. So the first discovery of a device records its own settings in
``<state_dir>/device_own.json``, per device identity, with a flag per function that
says the gateway has written that function since; later discoveries and restarts use
the record, never a fresh read.

The identity is the device's manufacturer, model and serial number; a device that
states no serial number is known by its unit and manufacturer and model (a swapped
device of the same model on the same unit is then taken for the old one: deleting the
file re-reads the device's own at the next start). A record that cannot be read is
logged with its path and set aside (``device_own.json.corrupt``); the device's own
settings are then read afresh, as on a first start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hal.curves import Curve, VoltVarCurve, VoltWattCurve
from inverter_agent.core.files import write_atomic

log = logging.getLogger(__name__)

FILENAME = "device_own.json"
VERSION = 1
#: The functions kept, and the curve each is read back as.
CURVES: dict[str, type[Curve]] = {"volt_var": VoltVarCurve, "volt_watt": VoltWattCurve}


def identity_key(identity: dict[str, Any]) -> str:
    """The key of a device's record: manufacturer / model / serial, or, with no serial
    stated, the unit in its place."""
    mn, md, sn = (identity.get(k) or "?" for k in ("manufacturer", "model", "serial"))
    if identity.get("serial"):
        return f"{mn}/{md}/{sn}"
    return f"{mn}/{md}/unit {identity.get('unit', '?')} (no serial stated)"


@dataclass(slots=True)
class OwnRecord:
    """One device's own functions as first seen, and which the gateway has written since."""

    identity: dict[str, Any]
    own: dict[str, Curve] = field(default_factory=dict)
    written: dict[str, bool] = field(default_factory=dict)
    #: What the gateway last programmed per function (a temporary curve with the curve
    #: it reverts to): a device holding none of these on was changed by its owner.
    programmed: dict[str, list[Curve]] = field(default_factory=dict)
    #: When it was recorded (epoch seconds).
    first_seen: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "first_seen": self.first_seen,
                "functions": {f: {**_curve_dict(c), "written": bool(self.written.get(f)),
                                  "programmed": [_curve_dict(p)
                                                 for p in self.programmed.get(f, ())]}
                              for f, c in sorted(self.own.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OwnRecord:
        """Raises ValueError, KeyError or TypeError on a record not in this form."""
        own: dict[str, Curve] = {}
        written: dict[str, bool] = {}
        programmed: dict[str, list[Curve]] = {}
        for f, c in d["functions"].items():
            if f not in CURVES:
                raise ValueError(f"unknown function {f!r}")
            own[f] = _curve(f, c)
            written[f] = c.get("written") is True
            programmed[f] = [_curve(f, p) for p in c.get("programmed") or ()]
        if not isinstance(d["identity"], dict):
            raise TypeError("identity not a table")
        return cls(identity=d["identity"], own=own, written=written, programmed=programmed,
                   first_seen=float(d["first_seen"]))


def _curve_dict(c: Curve) -> dict[str, Any]:
    return {"points": [list(p) for p in c.points], "ref": c.ref,
            "response_time_s": c.response_time_s, "enabled": c.enabled}


def _curve(f: str, c: dict[str, Any]) -> Curve:
    """Raises ValueError, KeyError or TypeError on a curve not in the record's form."""
    points = tuple((float(v), float(y)) for v, y in c["points"])
    if not isinstance(c["enabled"], bool) or not isinstance(c["ref"], str):
        raise TypeError(f"{f}: enabled / ref not a bool / string")
    return CURVES[f](points=points, ref=c["ref"], response_time_s=float(c["response_time_s"]),
                     enabled=c["enabled"])


class OwnRecords:
    """``<state_dir>/device_own.json``: one :class:`OwnRecord` per device identity."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, FILENAME)
        #: Why the last save wrote nothing (None: it was written).
        self.error: str | None = None

    def _devices(self, for_save: bool = False) -> dict[str, Any]:
        """The file's devices table; {} where there is none. One that cannot be read is
        logged with its path and, where its content is at fault, moved aside; ``for_save``:
        a file that cannot be opened or read raises OSError (never overwritten with
        this device's record alone)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
                raise ValueError("no devices table")
            devices: dict[str, Any] = data["devices"]
            return devices
        except FileNotFoundError:
            return {}
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
            self._set_aside(exc)
            return {}
        except OSError as exc:  # not the content: left where it is
            if for_save:
                raise
            log.warning("the record of the devices' own settings %s cannot be read (%s): "
                        "ignored; the device's own settings are read afresh", self.path, exc)
            return {}

    def _set_aside(self, exc: Exception) -> None:
        aside = f"{self.path}.corrupt"
        log.warning("the record of the devices' own settings %s cannot be read (%s): "
                    "ignored, moved to %s; the device's own settings are read afresh",
                    self.path, exc, aside)
        try:
            os.replace(self.path, aside)
        except OSError as err:
            log.warning("moving %s aside failed: %s", self.path, err)

    def load(self, key: str) -> OwnRecord | None:
        """The record of the device ``key``; None: none (or one that cannot be read,
        logged with the path)."""
        entry = self._devices().get(key)
        if entry is None:
            return None
        try:
            return OwnRecord.from_dict(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("the record of the device %s in %s cannot be read (%s): ignored; "
                        "its own settings are read afresh", key, self.path, exc)
            return None

    def save(self, key: str, record: OwnRecord) -> bool:
        """Write ``record`` for ``key`` (the other devices' records kept). False: not
        written (logged; :attr:`error` says why): also when the file there cannot be
        read, so that the other devices' records are never lost."""
        try:
            devices = self._devices(for_save=True)
        except OSError as exc:
            self.error = f"{self.path} cannot be read ({exc}); left as it is"
            log.warning("the devices' own settings not saved: %s", self.error)
            return False
        try:
            devices[key] = record.as_dict()
            data = json.dumps({"version": VERSION, "devices": devices}, indent=1,
                              sort_keys=True)
            write_atomic(self.path, data.encode())
        except OSError as exc:
            self.error = f"writing {self.path} failed: {exc}"
            log.warning("the devices' own settings not saved: %s", self.error)
            return False
        self.error = None
        return True
