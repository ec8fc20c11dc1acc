"""The register image of one simulated SunSpec device.

The image is built from the pysunspec2 model definitions through
``hal.sunspec.models`` ('SunS', the models, the 0xFFFF end marker); nothing
here knows an address. Reads and writes check what a careful field device
checks: addresses outside the image -> exception 2, writes to read-only points,
partial writes of multi-register points and out-of-range values -> exception 3,
and a refused write changes nothing.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hal.sunspec import models as sm

from .plant import Ratings

log = logging.getLogger(__name__)

SUNS = (0x5375, 0x6E53)
END_ID = 0xFFFF

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3

DEFAULT_MODELS = (1, 103, 120, 121, 122, 123)
#: Model sets the simulator gives behaviour to; any other shipped model may be
#: listed too and is laid out with every point unimplemented.
INVERTER_MODELS = (101, 102, 103, 111, 112, 113, 701)
PHASES = {101: 1, 111: 1, 102: 2, 112: 2, 103: 3, 113: 3}


class ModbusError(Exception):
    """A request the device refuses with a Modbus exception code."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"Modbus exception {code}")
        self.code = code


def parse_models(text: str) -> list[int]:
    """``"1,103,120"`` -> ``[1, 103, 120]``, checked against the shipped definitions."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"model id {part!r} is not a number")
        mid = int(part)
        sm.model_definition(mid)  # raises ModelDefinitionError when nothing ships
        ids.append(mid)
    if not ids:
        raise ValueError("no models given")
    if ids[0] != 1 or ids.count(1) != 1:
        raise ValueError("the model list must start with common model 1, once")
    if len({PHASES[m] for m in ids if m in PHASES}) > 1:
        raise ValueError("the inverter models listed disagree on the number of phases")
    return ids


def shuffled(ids: Sequence[int], seed: int) -> list[int]:
    """The model order a quirky device might use; model 1 stays first (scanners need it)."""
    rest = list(ids[1:])
    random.Random(seed).shuffle(rest)
    return [ids[0], *rest]


# Scale factors a typical integer-model device reports (exponents of ten).
DEFAULT_SF: dict[int, dict[str, int]] = {
    101: {}, 102: {}, 103: {},  # filled below: the 10x models share point names
    120: {"WRtg_SF": 0, "VARtg_SF": 0, "VArRtg_SF": 0, "ARtg_SF": -1, "PFRtg_SF": -2},
    121: {"WMax_SF": 0, "VRef_SF": -1, "VRefOfs_SF": -1, "VMinMax_SF": -1, "VAMax_SF": 0,
          "VArMax_SF": 0, "WGra_SF": -2, "PFMin_SF": -2, "MaxRmpRte_SF": 0, "ECPNomHz_SF": -2},
    122: {"VArAval_SF": 0, "WAval_SF": 0},
    123: {"WMaxLimPct_SF": -1, "OutPFSet_SF": -3, "VArPct_SF": -1},
    701: {"A_SF": -2, "V_SF": -1, "Hz_SF": -3, "W_SF": 0, "PF_SF": -3, "VA_SF": 0,
          "Var_SF": 0, "TotWh_SF": 0, "TotVarh_SF": 0, "Tmp_SF": -1},
    702: {"W_SF": 0, "PF_SF": -3, "VA_SF": 0, "Var_SF": 0, "V_SF": -1, "A_SF": -2},
    703: {"V_SF": -1, "Hz_SF": -2},
    704: {"PF_SF": -3, "WMaxLimPct_SF": -1, "WSet_SF": 0, "WSetPct_SF": -1, "VarSet_SF": 0,
          "VarSetPct_SF": -1},
    705: {"V_SF": -1, "DeptRef_SF": -1, "RspTms_SF": 0},
    706: {"V_SF": -1, "DeptRef_SF": -1, "RspTms_SF": 0},
    707: {"V_SF": -2, "Tms_SF": -2}, 708: {"V_SF": -2, "Tms_SF": -2},
    709: {"Hz_SF": -2, "Tms_SF": -2}, 710: {"Hz_SF": -2, "Tms_SF": -2},
    711: {"Db_SF": -3, "K_SF": -3, "RspTms_SF": -1},
    712: {"W_SF": 0, "DeptRef_SF": 0},
}
#: Curve sets and points of the trip models 707-710 (set 1 read-only, as on 705).
TRIP_COUNTS = {"NCrvSet": 2, "NPt": 5}
#: Factory trip settings: IEEE 1547-2018 Category II (Tables 12 and 19; DOMAIN.md),
#: as (x, seconds): V in % of nominal (707 / 708), Hz (709 / 710). No momentary
#: cessation (Category II). MayTrip equals MustTrip.
FACTORY_TRIP = {707: ((45.0, 0.16), (70.0, 10.0)), 708: ((120.0, 0.16), (110.0, 2.0)),
                709: ((56.5, 0.16), (58.5, 300.0)), 710: ((62.0, 0.16), (61.2, 300.0))}
for _m in (101, 102, 103):
    DEFAULT_SF[_m] = {"A_SF": -2, "V_SF": -1, "W_SF": 0, "Hz_SF": -2, "VA_SF": 0, "VAr_SF": 0,
                      "PF_SF": -2, "WH_SF": 0, "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0,
                      "Tmp_SF": -1}

Validator = Callable[[float], bool]


def _rng(lo: float, hi: float) -> Validator:
    return lambda v: lo <= v <= hi


def write_validators(model_id: int, r: Ratings) -> dict[str, Validator]:
    """Engineering-value ranges a write must respect, by point path.

    Enum points are checked against their symbols elsewhere; points not listed
    only have to fit their register type (and not be the unimplemented sentinel).
    """
    pct = _rng(0.0, 100.0)
    spct = _rng(-100.0, 100.0)
    if model_id == 123:
        return {"WMaxLimPct": pct, "VArWMaxPct": spct, "VArMaxPct": spct, "VArAvalPct": spct,
                "OutPFSet": lambda v: r.pf_min <= abs(v) <= 1.0}
    if model_id == 121:
        return {"WMax": _rng(0, r.w_max), "VAMax": _rng(0, r.va_max),
                "VArMaxQ1": _rng(0, r.var_max_inj), "VArMaxQ2": _rng(0, r.var_max_inj),
                "VArMaxQ3": _rng(-r.var_max_abs, 0), "VArMaxQ4": _rng(-r.var_max_abs, 0),
                "VRef": _rng(0.5 * r.v_nom, 1.5 * r.v_nom), "ECPNomHz": _rng(45.0, 65.0),
                "PFMinQ1": _rng(-1, 1), "PFMinQ2": _rng(-1, 1), "PFMinQ3": _rng(-1, 1),
                "PFMinQ4": _rng(-1, 1)}
    if model_id == 704:
        pf = _rng(r.pf_min, 1.0)
        return {"WMaxLimPct": pct, "WMaxLimPctRvrt": pct, "WSetPct": spct, "WSetPctRvrt": spct,
                "VarSetPct": spct, "VarSetPctRvrt": spct, "WSet": _rng(-r.w_max, r.w_max),
                "WSetRvrt": _rng(-r.w_max, r.w_max),
                "VarSet": _rng(-r.var_max_abs, r.var_max_inj),
                "VarSetRvrt": _rng(-r.var_max_abs, r.var_max_inj),
                "PFWInj.PF": pf, "PFWInjRvrt.PF": pf, "PFWAbs.PF": pf, "PFWAbsRvrt.PF": pf}
    if model_id == 702:
        return {"WMax": _rng(0, r.w_max), "VAMax": _rng(0, r.va_max),
                "VarMaxInj": _rng(0, r.var_max_inj), "VarMaxAbs": _rng(0, r.var_max_abs),
                "PFOvrExt": _rng(r.pf_min, 1.0), "PFUndExt": _rng(r.pf_min, 1.0),
                "VNom": _rng(0.5 * r.v_nom, 1.5 * r.v_nom)}
    return {}


def default_values(model_id: int, r: Ratings, unit_id: int,
                   counts: Mapping[str, int]) -> dict[str, Any]:
    """Start-up values (engineering units) of the static and control points."""
    if model_id == 1:
        return {"Mn": "SunSim", "Md": f"SIM-{int(r.w_max)}", "Opt": "simulator",
                "Vr": "0.1.0", "SN": f"SIM{unit_id:05d}", "DA": unit_id}
    if model_id == 120:
        return {"DERTyp": 4, "WRtg": r.w_max, "VARtg": r.va_max,
                "VArRtgQ1": r.var_max_inj, "VArRtgQ2": r.var_max_inj,
                "VArRtgQ3": -r.var_max_abs, "VArRtgQ4": -r.var_max_abs,
                "ARtg": r.a_max, "PFRtgQ1": r.pf_min, "PFRtgQ2": r.pf_min,
                "PFRtgQ3": -r.pf_min, "PFRtgQ4": -r.pf_min}
    if model_id == 121:
        return {"WMax": r.w_max, "VRef": r.v_nom, "VRefOfs": 0, "VMax": 1.1 * r.v_nom,
                "VMin": 0.88 * r.v_nom, "VAMax": r.va_max, "VArMaxQ1": r.var_max_inj,
                "VArMaxQ2": r.var_max_inj, "VArMaxQ3": -r.var_max_abs,
                "VArMaxQ4": -r.var_max_abs, "PFMinQ1": r.pf_min, "PFMinQ2": r.pf_min,
                "PFMinQ3": -r.pf_min, "PFMinQ4": -r.pf_min, "VArAct": 1, "ClcTotVA": 1,
                "ECPNomHz": r.f_nom, "ConnPh": 1}
    if model_id == 122:
        return {"PVConn": 0, "ECPConn": 0, "ActWh": 0, "StSetLimMsk": 0, "StActCtl": 0,
                "TmSrc": "RTC", "Tms": 0}
    if model_id == 123:
        return {"Conn_WinTms": 0, "Conn_RvrtTms": 0, "Conn": 1, "WMaxLimPct": 100.0,
                "WMaxLimPct_WinTms": 0, "WMaxLimPct_RvrtTms": 0, "WMaxLimPct_RmpTms": 0,
                "WMaxLim_Ena": 0, "OutPFSet": 1.0, "OutPFSet_WinTms": 0,
                "OutPFSet_RvrtTms": 0, "OutPFSet_RmpTms": 0, "OutPFSet_Ena": 0,
                "VArWMaxPct": 0, "VArMaxPct": 0, "VArAvalPct": 0, "VArPct_WinTms": 0,
                "VArPct_RvrtTms": 0, "VArPct_RmpTms": 0, "VArPct_Mod": 2, "VArPct_Ena": 0}
    if model_id == 701:
        return {"ACType": {1: 0, 2: 1, 3: 2}[r.phases], "DERMode": 0, "Alrm": 0,
                "ThrotSrc": 0}
    if model_id == 702:
        return {"WMaxRtg": r.w_max, "VAMaxRtg": r.va_max, "VarMaxInjRtg": r.var_max_inj,
                "VarMaxAbsRtg": r.var_max_abs, "VNomRtg": r.v_nom, "VMaxRtg": 1.2 * r.v_nom,
                "VMinRtg": 0.5 * r.v_nom, "AMaxRtg": r.a_max, "PFOvrExtRtg": r.pf_min,
                "PFUndExtRtg": r.pf_min, "NorOpCatRtg": 1, "AbnOpCatRtg": 2, "CtrlModes": 0,
                "WMax": r.w_max, "VAMax": r.va_max, "VarMaxInj": r.var_max_inj,
                "VarMaxAbs": r.var_max_abs, "VNom": r.v_nom, "VMax": 1.2 * r.v_nom,
                "VMin": 0.5 * r.v_nom, "AMax": r.a_max, "PFOvrExt": r.pf_min,
                "PFUndExt": r.pf_min}
    if model_id == 703:
        # ESVHi / ESVLo in percent of nominal (703 units "Pct")
        return {"ES": 1, "ESVHi": 105.0, "ESVLo": 91.7,
                "ESHzHi": r.f_nom + 0.1, "ESHzLo": r.f_nom - 0.5, "ESDlyTms": 300,
                "ESRndTms": 0, "ESRmpTms": 300, "ESDlyRemTms": 0}
    if model_id == 704:
        v: dict[str, Any] = {}
        for g in ("PFWInj", "PFWAbs", "WMaxLimPct", "WSet", "VarSet"):
            v.update({f"{g}Ena": 0, f"{g}EnaRvrt": 0, f"{g}RvrtTms": 0, f"{g}RvrtRem": 0})
        v.update({"WMaxLimPct": 100.0, "WMaxLimPctRvrt": 100.0, "WSetMod": 0, "WSet": 0,
                  "WSetRvrt": 0, "WSetPct": 0, "WSetPctRvrt": 0, "VarSetMod": 0,
                  "VarSetPri": 1, "VarSet": 0, "VarSetRvrt": 0, "VarSetPct": 0,
                  "VarSetPctRvrt": 0, "WRmp": 0, "WRmpRef": 0, "VarRmp": 0, "AntiIslEna": 1})
        for g in ("PFWInj", "PFWInjRvrt", "PFWAbs", "PFWAbsRvrt"):
            v.update({f"{g}.PF": 1.0, f"{g}.Ext": 0})
        return v
    if model_id == 705:
        n_crv, n_pt = counts.get("NCrv", 1), counts.get("NPt", 4)
        v = {"Ena": 0, "AdptCrvReq": 0, "AdptCrvRslt": 0, "NPt": n_pt, "NCrv": n_crv,
             "RvrtTms": 0, "RvrtRem": 0, "RvrtCrv": 0}
        # IEEE 1547-2018 Table 8 category B default curve, every curve alike:
        # V in percent of nominal (VNomPct), var in percent of VA max (DeptRef 3).
        curve = [(0.92, 44.0), (0.98, 0.0), (1.02, 0.0), (1.08, -44.0)]
        for c in range(1, n_crv + 1):
            p = f"Crv[{c}]."
            v.update({p + "ActPt": min(n_pt, len(curve)), p + "DeptRef": 3, p + "Pri": 1,
                      p + "VRef": 100.0, p + "VRefAuto": 100.0, p + "VRefAutoEna": 0,
                      p + "VRefAutoTms": 0, p + "RspTms": 5, p + "ReadOnly": 1 if c == 1 else 0})
            for i in range(1, n_pt + 1):
                vp, q = curve[min(i, len(curve)) - 1]
                v.update({f"{p}Pt[{i}].V": vp * 100.0, f"{p}Pt[{i}].Var": q})
        return v
    if model_id == 706:
        n_crv, n_pt = counts.get("NCrv", 1), counts.get("NPt", 4)
        v = {"Ena": 0, "AdptCrvReq": 0, "AdptCrvRslt": 0, "NPt": n_pt, "NCrv": n_crv,
             "RvrtTms": 0, "RvrtRem": 0, "RvrtCrv": 0}
        # IEEE 1547-2018 Table 10 default (DOMAIN.md): 1.06 pu -> 100 %, 1.10 pu -> 0 %
        # of WMax (DeptRef 0), every curve alike; curve 1 read-only.
        curve = [(106.0, 100.0), (110.0, 0.0)]
        for c in range(1, n_crv + 1):
            p = f"Crv[{c}]."
            v.update({p + "ActPt": min(n_pt, len(curve)), p + "DeptRef": 0, p + "RspTms": 10,
                      p + "ReadOnly": 1 if c == 1 else 0})
            for i in range(1, n_pt + 1):
                vp, w = curve[min(i, len(curve)) - 1]
                v.update({f"{p}Pt[{i}].V": vp, f"{p}Pt[{i}].W": w})
        return v
    if model_id in FACTORY_TRIP:
        return trip_defaults(model_id, counts)
    if model_id == 711:
        # IEEE 1547-2018 Table 24 defaults (DOMAIN.md): dbOF = dbUF = 0.036 Hz,
        # kOF = kUF = 0.05, open-loop response time 5 s; on, set 1 read-only.
        v = {"Ena": 1, "AdptCtlReq": 0, "AdptCtlRslt": 0, "NCtl": 2, "RvrtTms": 0,
             "RvrtRem": 0, "RvrtCtl": 0}
        for c in (1, 2):
            p = f"Ctl[{c}]."
            v.update({p + "DbOf": 0.036, p + "DbUf": 0.036, p + "KOf": 0.05, p + "KUf": 0.05,
                      p + "RspTms": 5.0, p + "PMin": 0, p + "ReadOnly": 1 if c == 1 else 0})
        return v
    if model_id == 712:
        # Watt-var present but off, with no curve set (the gateway has no watt-var).
        v = {"Ena": 0, "AdptCrvReq": 0, "AdptCrvRslt": 0, "NPt": 4, "NCrv": 2, "RvrtTms": 0,
             "RvrtRem": 0, "RvrtCrv": 0}
        for c in (1, 2):
            v.update({f"Crv[{c}].ActPt": 0, f"Crv[{c}].DeptRef": 1, f"Crv[{c}].Pri": 1,
                      f"Crv[{c}].ReadOnly": 1 if c == 1 else 0})
        return v
    return {}


def trip_defaults(model_id: int, counts: Mapping[str, int]) -> dict[str, Any]:
    """Start-up values of a trip model (707-710): every curve set the factory curve."""
    n_set = counts.get("TripNCrvSet", TRIP_COUNTS["NCrvSet"])
    n_pt = counts.get("TripNPt", TRIP_COUNTS["NPt"])
    x = "V" if model_id in (707, 708) else "Hz"
    pts = FACTORY_TRIP[model_id]
    v: dict[str, Any] = {"Ena": 1, "AdptCrvReq": 0, "AdptCrvRslt": 0, "NPt": n_pt,
                         "NCrvSet": n_set}
    for c in range(1, n_set + 1):
        p = f"Crv[{c}]."
        v[p + "ReadOnly"] = 1 if c == 1 else 0
        for curve in ("MustTrip", "MayTrip", "MomCess"):
            use = () if curve == "MomCess" else pts[:n_pt]
            v[f"{p}{curve}.ActPt"] = len(use)
            for i in range(1, n_pt + 1):
                xv, tv = use[i - 1] if i <= len(use) else (0.0, 0.0)
                v.update({f"{p}{curve}.Pt[{i}].{x}": xv, f"{p}{curve}.Pt[{i}].Tms": tv})
    return v


def layout_counts(model_id: int, counts: Mapping[str, int]) -> dict[str, int] | None:
    """The repeating-group counts a model is laid out with in the image."""
    if model_id in (705, 706):
        return dict(counts)
    if model_id in FACTORY_TRIP:
        return {"NCrvSet": counts.get("TripNCrvSet", TRIP_COUNTS["NCrvSet"]),
                "NPt": counts.get("TripNPt", TRIP_COUNTS["NPt"])}
    if model_id == 711:
        return {"NCtl": 2}
    if model_id == 712:
        return {"NCrv": 2, "NPt": 4}
    return None


@dataclass(frozen=True, slots=True)
class PlacedModel:
    """One model in the image: its id, the absolute address of its ID register, layout."""

    model_id: int
    address: int
    layout: sm.Layout
    validators: Mapping[str, Validator]


class RegisterImage:
    """Holding registers of one device, from the 'SunS' marker to the end model.

    Not thread-safe on its own: the simulation holds one lock around every
    request and every plant step.
    """

    def __init__(self, base: int, model_ids: Sequence[int], ratings: Ratings, unit_id: int,
                 counts: Mapping[str, int] | None = None,
                 raw_models: Mapping[int, int] | None = None, end_marker: bool = True) -> None:
        """``raw_models`` (id -> length) are blocks with no shipped definition (vendor
        models): ID, L and zeros, read-only. ``end_marker`` False leaves out the
        0xFFFF end model: a read past the last model is refused (exception 2)."""
        if not 0 <= base <= 0xFFFF:
            raise ValueError(f"base address {base} is outside 0..65535")
        self.base = base
        self.unit_id = unit_id
        counts = dict(counts or {})
        raw_models = dict(raw_models or {})
        #: Device quirks on reads: addresses refused alone or inside any read, and the
        #: most registers one read may ask for (more: exception ``max_read_code``).
        self.refused: set[int] = set()
        self.max_read = 125
        self.max_read_code = ILLEGAL_VALUE
        #: Refuse (exception 2) a read that starts or ends inside a multi-register point.
        self.point_boundary_reads = False
        #: Addresses of points the device does not implement: they read the unimplemented
        #: value and a write of them is ignored (the rest of that write lands).
        self.not_implemented: set[int] = set()
        self.models: list[PlacedModel] = []
        self.raw_blocks: list[tuple[int, int, int]] = []  # (id, address, length)
        regs: list[int] = list(SUNS)
        for mid in model_ids:
            if mid in raw_models:
                self.raw_blocks.append((mid, base + len(regs), raw_models[mid]))
                regs += [mid, raw_models[mid]] + [0] * raw_models[mid]
                continue
            layout = sm.lay_out(mid, counts=layout_counts(mid, counts))
            placed = PlacedModel(mid, base + len(regs), layout, write_validators(mid, ratings))
            values = default_values(mid, ratings, unit_id, counts)
            sfs = DEFAULT_SF.get(mid, {})
            raw: dict[str, Any] = {p: e for p, e in sfs.items() if p in layout.slots}
            for path, value in values.items():
                slot = layout.slot(path)
                raw[path] = value if slot.point.type.kind in ("string", "float") else \
                    sm.to_raw(value, slot, sm.scale_exponent(slot, raw))
            regs += sm.encode(layout, raw)
            self.models.append(placed)
        if end_marker:
            regs += [END_ID, 0]
        if base + len(regs) > 0x10000:
            raise ValueError(f"{len(regs)} registers do not fit above base {base}")
        self.regs = regs
        # register offset -> (model, slot) for write checks
        self._owner: dict[int, tuple[PlacedModel, sm.Slot]] = {}
        for pm in self.models:
            for s in pm.layout.slots.values():
                for k in range(s.point.size):
                    self._owner[pm.address - base + s.offset + k] = (pm, s)

    @property
    def end(self) -> int:
        """First address after the image."""
        return self.base + len(self.regs)

    def model_ids(self) -> list[int]:
        return [pm.model_id for pm in self.models]

    def find(self, model_id: int) -> PlacedModel | None:
        return next((pm for pm in self.models if pm.model_id == model_id), None)

    # --- Modbus side ---------------------------------------------------------

    def read(self, address: int, count: int) -> list[int]:
        if not 1 <= count <= 125:
            raise ModbusError(ILLEGAL_VALUE, f"count {count} outside 1..125")
        if count > self.max_read:
            raise ModbusError(self.max_read_code, f"count {count} above this device's "
                                                  f"{self.max_read}")
        if address < self.base or address + count > self.end:
            raise ModbusError(ILLEGAL_ADDRESS, f"{address}+{count} outside the image "
                                               f"{self.base}..{self.end - 1}")
        if self.point_boundary_reads and not self._on_boundaries(address, count):
            raise ModbusError(ILLEGAL_ADDRESS, f"{address}+{count} does not start and end on "
                                               "point boundaries")
        if self.refused and any(a in self.refused for a in range(address, address + count)):
            raise ModbusError(ILLEGAL_ADDRESS, f"{address}+{count} spans registers this "
                                               "device does not implement")
        i = address - self.base
        return self.regs[i:i + count]

    def _on_boundaries(self, address: int, count: int) -> bool:
        for a, edge in ((address, "start"), (address + count - 1, "end")):
            owner = self._owner.get(a - self.base)
            if owner is None:
                continue
            pm, slot = owner
            first = pm.address + slot.offset
            if edge == "start" and a != first:
                return False
            if edge == "end" and a != first + slot.point.size - 1:
                return False
        return True

    def write(self, address: int, values: Sequence[int]) -> list[tuple[int, str]]:
        """Write registers the way a Modbus master does; returns the ``(model, path)`` changed.

        All-or-nothing: every point touched must be writable, written whole,
        and hold a legal value, else nothing changes.
        """
        if not 1 <= len(values) <= 123:
            raise ModbusError(ILLEGAL_VALUE, f"count {len(values)} outside 1..123")
        if address < self.base or address + len(values) > self.end:
            raise ModbusError(ILLEGAL_ADDRESS, f"{address}+{len(values)} outside the image")
        lo = address - self.base
        hi = lo + len(values)
        touched: dict[int, tuple[PlacedModel, sm.Slot]] = {}
        for off in range(lo, hi):
            owner = self._owner.get(off)
            if owner is None or not owner[1].point.writable:
                name = f"{owner[0].model_id}/{owner[1].path}" if owner else "marker"
                raise ModbusError(ILLEGAL_VALUE, f"register {self.base + off} ({name}) "
                                                 "is read-only")
            pm, slot = owner
            start = pm.address - self.base + slot.offset
            if start < lo or start + slot.point.size > hi:
                raise ModbusError(ILLEGAL_VALUE, f"partial write of {slot.path}")
            touched[start] = owner
        new = list(self.regs)
        new[lo:hi] = [int(v) & 0xFFFF for v in values]
        changed = []
        for start, (pm, slot) in touched.items():
            if self.base + start in self.not_implemented:
                new[start:start + slot.point.size] = self.regs[start:start + slot.point.size]
                continue
            regs = new[start:start + slot.point.size]
            self._check(pm, slot, regs, new)
            changed.append((pm.model_id, slot.path))
        self.regs = new
        return changed

    def _check(self, pm: PlacedModel, slot: sm.Slot, regs: list[int], image: list[int]) -> None:
        raw = slot.point.type.decode(regs)
        if raw is None:
            raise ModbusError(ILLEGAL_VALUE, f"{slot.path}: unimplemented sentinel written")
        symbols = slot.point.symbols
        if symbols and slot.point.type.name.startswith("enum") and raw not in symbols.values():
            raise ModbusError(ILLEGAL_VALUE, f"{slot.path}: {raw} is not one of "
                                             f"{sorted(symbols.values())}")
        check = pm.validators.get(slot.path)
        if check is not None:
            exp = self._exponent(pm, slot, image)
            value = raw if exp is None else raw * 10.0 ** exp
            if not check(value):
                raise ModbusError(ILLEGAL_VALUE, f"{slot.path}: {value} out of range")

    def _exponent(self, pm: PlacedModel, slot: sm.Slot,
                  image: list[int] | None = None) -> int | None:
        image = self.regs if image is None else image
        sf = slot.point.sf
        if sf is None:
            return 0
        if isinstance(sf, int):
            return sf
        if slot.sf_path is None:
            return None
        sf_slot = pm.layout.slots[slot.sf_path]
        i = pm.address - self.base + sf_slot.offset
        v = sf_slot.point.type.decode(image[i:i + 1])
        return None if v is None else int(v)

    # --- device side (engineering values) -----------------------------------

    def _locate(self, model_id: int, path: str) -> tuple[PlacedModel, sm.Slot, int]:
        pm = self.find(model_id)
        if pm is None:
            raise KeyError(f"model {model_id} is not in this image")
        slot = pm.layout.slot(path)
        return pm, slot, pm.address - self.base + slot.offset

    def has(self, model_id: int, path: str) -> bool:
        pm = self.find(model_id)
        return pm is not None and path in pm.layout.slots

    def get_raw(self, model_id: int, path: str) -> Any:
        _, slot, i = self._locate(model_id, path)
        return slot.point.type.decode(self.regs[i:i + slot.point.size])

    def get(self, model_id: int, path: str, default: Any = None) -> Any:
        """Engineering value of a point (scale factor applied); ``default`` if unimplemented."""
        pm, slot, i = self._locate(model_id, path)
        raw = slot.point.type.decode(self.regs[i:i + slot.point.size])
        if raw is None:
            return default
        if slot.point.type.kind in ("string", "float"):
            return raw
        exp = self._exponent(pm, slot)
        if exp is None:
            return default
        return raw * 10.0 ** exp if exp else raw

    def set(self, model_id: int, path: str, value: Any, clamp: bool = True) -> None:
        """Store an engineering value (None: the unimplemented sentinel).

        Measurements are clamped to what the register can show, as a device
        saturates a reading rather than wrapping it.
        """
        pm, slot, i = self._locate(model_id, path)
        t = slot.point.type
        if value is not None and self.base + i in self.not_implemented:
            return  # not implemented: it keeps the unimplemented value
        if value is None or t.kind in ("string", "float"):
            self.regs[i:i + slot.point.size] = t.encode(value, slot.point.size)
            return
        exp = self._exponent(pm, slot)
        if exp is None:
            return  # SF unimplemented: the value cannot be shown
        raw = value / 10.0 ** exp if slot.point.sf is not None else value
        if isinstance(raw, float) and not math.isfinite(raw):
            return
        raw = round(raw)
        lo_r, hi_r = t.range(slot.point.size)
        if clamp:
            raw = max(lo_r, min(hi_r, raw))
        self.regs[i:i + slot.point.size] = t.encode(raw, slot.point.size)

    def set_sf(self, sf_name: str, exponent: int, model_id: int | None = None) -> list[int]:
        """Change a scale factor at run time; values it scales keep their meaning.

        A device that changes a scale factor re-renders its settings under the
        new one (the engineering value is what it stores); returns the models changed.
        """
        if not -10 <= exponent <= 10:
            raise ValueError(f"scale factor {exponent} outside -10..10")
        changed = []
        for pm in self.models:
            if model_id is not None and pm.model_id != model_id:
                continue
            sf_slot = pm.layout.slots.get(sf_name)
            if sf_slot is None or sf_slot.point.type.name != "sunssf":
                continue
            dependents = [p for p, s in pm.layout.slots.items() if s.sf_path == sf_name]
            keep = {p: self.get(pm.model_id, p) for p in dependents}
            i = pm.address - self.base + sf_slot.offset
            self.regs[i] = sf_slot.point.type.encode(exponent, 1)[0]
            for p, v in keep.items():
                if v is not None:
                    self.set(pm.model_id, p, v)
            changed.append(pm.model_id)
        if not changed:
            raise KeyError(f"no model in this image has scale factor {sf_name!r}")
        log.info("unit %d: %s set to %d in models %s", self.unit_id, sf_name, exponent, changed)
        return changed

    def points(self, model_id: int, paths: Iterable[str]) -> dict[str, Any]:
        return {p: self.get(model_id, p) for p in paths if self.has(model_id, p)}
