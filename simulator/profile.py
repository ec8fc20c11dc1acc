"""Device profiles: a simulated inverter described as data, with its source.

A profile is a JSON file (``simulator/profiles/*.json``)::

    {
      "name": "single-phase-zeros",
      "source": "where the register map or behaviour comes from (URL, file, issue)",
      "description": "what is odd about it",
      "base": 40000, "unit": 1,
      "models": [1, 101, 120, 121, 122, 123],     # chain order, model 1 first
      "vendor_models": {"64200": 20},              # ids without a shipped definition: length
      "ratings": {"w_max": 5000, "va_max": 5000, "var_max_inj": 2200, "var_max_abs": 2200,
                  "v_nom": 240, "f_nom": 60, "phases": 1},
      "points": {"121": {"VRef": 240, "VRef_SF": -1}},   # after start-up; null = unimplemented
      "quirks": {
        "unused_phases_zero": false,   # phases the device lacks read 0, not the sentinel
        "refuse_points": {"701": ["TmpAmb"]},  # exception 2 on any read touching them
        "max_read": 125, "max_read_code": 3,   # fewer registers per read
        "end_marker": true,                    # false: no 0xFFFF model at the end
        "pf_units": "pct",                     # or "cos": 1xx PF as cos phi
        "point_boundary_reads": false,         # refuse reads that split a point
        "exclusive_reactive_modes": false,     # one reactive mode at a time (selector style)
        "refuse_adoption": false,              # 705 AdptCrvRslt always FAILED
        "refuse_adoption_models": [708],       # adoption FAILED by these models only
        "not_implemented": {"703": ["ESRndTms"]}  # read unimplemented, writes ignored
      },
      "expect": {...}                          # what a correct gateway does (tests, corpus)
    }

Every key is checked: an unknown one is an error naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.sunspec import models as sm

from .plant import Ratings

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

_TOP = {"name", "source", "description", "base", "unit", "models", "vendor_models", "ratings",
        "points", "quirks", "expect", "battery"}
_QUIRKS = {"unused_phases_zero", "refuse_points", "max_read", "max_read_code", "end_marker",
           "pf_units", "point_boundary_reads", "exclusive_reactive_modes", "refuse_adoption",
           "refuse_adoption_models", "not_implemented"}
_RATINGS = {"w_max", "va_max", "var_max_inj", "var_max_abs", "v_nom", "f_nom", "phases",
            "pf_min"}


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Quirks:
    unused_phases_zero: bool = False
    refuse_points: dict[int, tuple[str, ...]] = field(default_factory=dict)
    max_read: int = 125
    max_read_code: int = 3
    end_marker: bool = True
    pf_units: str = "pct"
    point_boundary_reads: bool = False
    exclusive_reactive_modes: bool = False
    refuse_adoption: bool = False
    refuse_adoption_models: tuple[int, ...] = ()
    #: Points the device does not implement (SunSpec: the unimplemented value is read;
    #: a write of them is ignored, the rest of that write lands).
    not_implemented: dict[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    description: str
    base: int
    unit: int
    models: tuple[int, ...]
    vendor_models: dict[int, int]
    ratings: Ratings
    points: dict[int, dict[str, Any]]
    quirks: Quirks
    expect: dict[str, Any]
    path: str = ""
    #: The battery of a hybrid (simulator/battery.py BatteryParams keys), or None.
    battery: dict[str, float] | None = None


def _fail(path: str, key: str, why: str) -> ProfileError:
    return ProfileError(f"{path}: {key}: {why}")


def load_profile(path: str | Path) -> Profile:
    """Read and check one profile file."""
    p = str(path)
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{p}: cannot read: {exc}") from None
    if not isinstance(d, dict):
        raise ProfileError(f"{p}: a profile is a JSON object")
    for k in d:
        if k not in _TOP:
            raise _fail(p, k, f"unknown key (known: {', '.join(sorted(_TOP))})")
    for k in ("name", "source", "models"):
        if k not in d:
            raise _fail(p, k, "missing (every profile names its source)")
    if not str(d["source"]).strip():
        raise _fail(p, "source", "must say where the device comes from")
    vendor = {int(k): int(v) for k, v in d.get("vendor_models", {}).items()}
    models = tuple(int(m) for m in d["models"])
    if not models or models[0] != 1:
        raise _fail(p, "models", "the chain starts with common model 1")
    for m in models:
        if m in vendor:
            if not 64000 <= m <= 65534 or not 0 <= vendor[m] <= 2000:
                raise _fail(p, "vendor_models", f"{m}: ids 64000..65534, length 0..2000")
            continue
        try:
            sm.model_definition(m)
        except sm.ModelDefinitionError as exc:
            raise _fail(p, "models", str(exc)) from None
    r = d.get("ratings", {})
    for k in r:
        if k not in _RATINGS:
            raise _fail(p, f"ratings.{k}", f"unknown (known: {', '.join(sorted(_RATINGS))})")
    try:
        ratings = Ratings(**{k: (int(v) if k == "phases" else float(v)) for k, v in r.items()})
    except (TypeError, ValueError) as exc:
        raise _fail(p, "ratings", str(exc)) from None
    q = d.get("quirks", {})
    for k in q:
        if k not in _QUIRKS:
            raise _fail(p, f"quirks.{k}", f"unknown (known: {', '.join(sorted(_QUIRKS))})")
    quirks = Quirks(
        unused_phases_zero=bool(q.get("unused_phases_zero", False)),
        refuse_points={int(m): tuple(v) for m, v in q.get("refuse_points", {}).items()},
        max_read=int(q.get("max_read", 125)), max_read_code=int(q.get("max_read_code", 3)),
        end_marker=bool(q.get("end_marker", True)), pf_units=str(q.get("pf_units", "pct")),
        point_boundary_reads=bool(q.get("point_boundary_reads", False)),
        exclusive_reactive_modes=bool(q.get("exclusive_reactive_modes", False)),
        refuse_adoption=bool(q.get("refuse_adoption", False)),
        refuse_adoption_models=tuple(int(m) for m in q.get("refuse_adoption_models", ())),
        not_implemented={int(m): tuple(v) for m, v in q.get("not_implemented", {}).items()})
    if not 2 <= quirks.max_read <= 125 or quirks.max_read_code not in (2, 3, 4):
        raise _fail(p, "quirks.max_read", "2..125, with max_read_code 2, 3 or 4")
    if quirks.pf_units not in ("pct", "cos"):
        raise _fail(p, "quirks.pf_units", "pct or cos")
    points = {int(m): dict(v) for m, v in d.get("points", {}).items()}
    for m in list(points) + list(quirks.refuse_points) + list(quirks.not_implemented):
        if m not in models:
            raise _fail(p, "points", f"model {m} is not in the chain")
    base = int(d.get("base", 40000))
    unit = int(d.get("unit", 1))
    if base not in (0, 40000, 50000) or not 1 <= unit <= 247:
        raise _fail(p, "base/unit", "base 0, 40000 or 50000; unit 1..247")
    battery = d.get("battery")
    if battery is not None:
        from .battery import BatteryParams

        try:
            BatteryParams.from_dict(dict(battery))
        except (TypeError, ValueError) as exc:
            raise _fail(p, "battery", str(exc)) from None
        if 124 not in models:
            raise _fail(p, "battery", "a battery needs model 124 in the chain")
    return Profile(str(d["name"]), str(d["source"]), str(d.get("description", "")), base, unit,
                   models, vendor, ratings, points, quirks, dict(d.get("expect", {})), p,
                   None if battery is None else dict(battery))


def all_profiles() -> list[Profile]:
    """Every profile shipped in :data:`PROFILE_DIR`, by name."""
    return sorted((load_profile(f) for f in PROFILE_DIR.glob("*.json")), key=lambda p: p.name)


def apply(profile: Profile, image: Any) -> None:
    """Put a profile's point values and read quirks into a built register image."""
    for mid, pts in profile.points.items():
        pm = image.find(mid)
        # scale factors first, so the values after them are rendered in the new scale
        for path in sorted(pts, key=lambda k: not k.endswith("_SF")):
            value = pts[path]
            if path not in pm.layout.slots:
                raise ProfileError(f"{profile.path}: points.{mid}.{path}: no such point")
            if path.endswith("_SF") and value is not None:
                i = pm.address - image.base + pm.layout.slots[path].offset
                image.regs[i] = int(value) & 0xFFFF
            else:
                image.set(mid, path, value, clamp=False)
    for mid, names in profile.quirks.refuse_points.items():
        pm = image.find(mid)
        for name in names:
            slot = pm.layout.slot(name)
            for k in range(slot.point.size):
                image.refused.add(pm.address + slot.offset + k)
    for mid, names in profile.quirks.not_implemented.items():
        pm = image.find(mid)
        for name in names:
            image.set(mid, name, None)
            slot = pm.layout.slot(name)
            image.not_implemented |= {pm.address + slot.offset + k
                                      for k in range(slot.point.size)}
    image.max_read = profile.quirks.max_read
    image.max_read_code = profile.quirks.max_read_code
    image.point_boundary_reads = profile.quirks.point_boundary_reads
