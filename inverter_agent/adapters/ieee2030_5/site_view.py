"""What the 2030.5 adapter reports, read from the core: one EndDevice for the site.

Why one EndDevice for the whole gateway rather than one per inverter: IEEE
2030.5 names a client by the LFDI of its certificate, and the gateway has one
certificate (py20305 maps one certificate identity to one EndDevice). Rule 21
interconnects a generating facility at one point of common coupling, which is
what the utility's program controls. A limit in % of setMaxW applies to every
inverter as the same % of its own rating, which gives the site the same
total; readings and ratings are the site's sums. So the utility sees one DER
of the summed rating, and the gateway spreads its commands by rating, as it
spreads the plant limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from inverter_agent.core.storage import commanded
from inverter_agent.core.view import CycleView, InverterView, StorageView, TripCause

#: DERControlType bits (IEEE 2030.5-2018) of the modes this gateway applies.
#: 2 opModConnect, 3 opModEnergize, 4 opModFixedPFAbsorbW, 5 opModFixedPFInjectW,
#: 6 opModFixedVar, 8 opModFreqDroop, 20 opModMaxLimW, 23 opModVoltVar, 24 opModVoltWatt
#: (translate.SUPPORTED; 9 opModFreqWatt is not among them).
CTRL_MODES = ((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 20)
              | (1 << 23) | (1 << 24))
#: opModFixedW (bit 7): advertised where a battery takes the core's set active power
#: (translate.STORAGE_OPMODS); never on a PV-only site.
CTRL_FIXED_W = 1 << 7
#: StorageModeStatusType (IEEE 2030.5-2018): 0 charging, 1 discharging, 2 holding.
STORAGE_CHARGING, STORAGE_DISCHARGING, STORAGE_HOLDING = 0, 1, 2
#: SunSpec ChaSt -> StorageModeStatusType (3 discharging, 4 charging; off, empty,
#: full, holding and testing hold).
CHA_ST_MODE = {3: STORAGE_DISCHARGING, 4: STORAGE_CHARGING}
#: Battery power below this (W) is holding, whatever its sign (a reading's noise).
HOLDING_W = 1.0
#: alarmStatus bits (IEEE 2030.5 DERStatus; CSIP LogEvent codes 2 x bit).
ALARM_OVER_VOLTAGE, ALARM_UNDER_VOLTAGE = 1 << 1, 1 << 2
ALARM_OVER_FREQUENCY, ALARM_UNDER_FREQUENCY = 1 << 3, 1 << 4
ALARM_LOCAL_EMERGENCY = 1 << 7
#: ConnectStatusType bits: connected, available, operating, test, fault.
CONNECTED, AVAILABLE, OPERATING, FAULT = 1, 2, 4, 16
#: SunSpec St -> InverterStatusType (the same codes 1..8 in both).
ENERGIZING = {3, 4, 5}
#: Ratings and settings kept as last read while an inverter's link is down: a lost link
#: does not change what the inverter is, and the server is not told it shrank.
RATINGS = ("WRtg", "VARtg", "VArRtgQ1", "VArRtgQ4", "VNom", "WMax", "VArMaxQ1")


def _good(snap: Mapping[str, Any], name: str) -> Any:
    r = snap.get(name)
    return r.value if r is not None and r.value is not None and r.quality.good else None


class SiteView:
    """The site's readings, ratings, settings and status, from the core's last
    :class:`~inverter_agent.core.view.CycleView` (never the core's live objects: this is
    read from the client's own thread)."""

    def __init__(self, view: Callable[[], CycleView | None]) -> None:
        self.view = view
        #: Each inverter's ratings as last read good (:data:`RATINGS`), by its name.
        self._known: dict[str, dict[str, float]] = {}

    def _inverters(self) -> tuple[InverterView, ...]:
        v = self.view()
        return v.inverters if v is not None else ()

    def _snapshots(self) -> list[Mapping[str, Any]]:
        return [inv.readings for inv in self._inverters()]

    def _sum(self, name: str, snaps: list[Mapping[str, Any]] | None = None) -> float | None:
        vals = [v for s in (snaps or self._snapshots()) if (v := _good(s, name)) is not None]
        return float(sum(vals)) if vals else None

    def _ratings(self) -> list[dict[str, float]]:
        """Each inverter's ratings (:data:`RATINGS`), as last read good."""
        out = []
        for inv in self._inverters():
            known = self._known.setdefault(inv.name, {})
            for name in RATINGS:
                if (v := _good(inv.readings, name)) is not None:
                    known[name] = float(v)
            out.append(known)
        return out

    def _rating_sum(self, name: str, ratings: list[dict[str, float]] | None = None
                    ) -> float | None:
        vals = [k[name] for k in (self._ratings() if ratings is None else ratings) if name in k]
        return float(sum(vals)) if vals else None

    def ratings_known(self) -> tuple[int, int]:
        """(inverters whose ratings have been read, inverters): a rating is read with the
        first full read of the inverter, and a site's registration waits for it."""
        ratings = self._ratings()
        return sum("WRtg" in k for k in ratings), len(ratings)

    def batteries(self) -> list[StorageView]:
        """The storage of every inverter that has a storage model (the core's view)."""
        return [inv.storage for inv in self._inverters() if inv.storage is not None]

    def storage_understood(self, bats: list[StorageView] | None = None
                           ) -> tuple[bool, str | None]:
        """(the site has a battery the core commands, why not): what opModFixedW needs."""
        return commanded(self.batteries() if bats is None else bats)

    def storage_ratings(self, bats: list[StorageView] | None = None
                        ) -> dict[str, float | None]:
        """The site's battery ratings (sums over the inverters with storage; None where
        one does not state it): capacity Wh and the most charge / discharge W."""
        bats = self.batteries() if bats is None else bats

        def total(attr: str) -> float | None:
            vals = [getattr(b, attr) for b in bats]
            if not vals or not all(r.quality.good and r.value is not None for r in vals):
                return None
            return float(sum(r.value for r in vals))

        return {"wh": total("wh_rtg"), "cha_w": total("w_cha_max"),
                "dis_w": total("w_dis_max")}

    def _storage_nameplate(self, prefix: str, bats: list[StorageView]) -> dict[str, Any]:
        r = self.storage_ratings(bats)
        out = {f"Wh{prefix}": r["wh"], f"WChaRte{prefix}": r["cha_w"],
               f"WDisChaRte{prefix}": r["dis_w"]}
        return {k: v for k, v in out.items() if v is not None}

    def _ctrl_modes(self, bats: list[StorageView]) -> int:
        return CTRL_MODES | (CTRL_FIXED_W if self.storage_understood(bats)[0] else 0)

    def monitoring(self) -> dict[str, Any]:
        snaps = self._snapshots()
        w, var, va, a = (self._sum(n, snaps) for n in ("W", "VAr", "VA", "A"))
        hz = [v for s in snaps if (v := _good(s, "Hz")) is not None]
        volts = [v for s in snaps if (v := _good(s, "PhVphA")) is not None]
        pf = None
        if w is not None and va:
            pf = max(-1.0, min(1.0, w / va))
        return {"W": w, "Var": var, "VA": va, "A": a, "PF": pf,
                "Hz": sum(hz) / len(hz) if hz else None,
                "V": sum(volts) / len(volts) if volts else None}

    def nameplate(self) -> dict[str, Any]:
        # the ratings and batteries once: every field from the same cycle's view
        ratings, bats = self._ratings(), self.batteries()
        q4 = self._rating_sum("VArRtgQ4", ratings)
        return {"WMaxRtg": self._rating_sum("WRtg", ratings),
                "VAMaxRtg": self._rating_sum("VARtg", ratings),
                "VarMaxInjRtg": self._rating_sum("VArRtgQ1", ratings),
                "VarMaxAbsRtg": abs(q4) if q4 is not None else None,
                "VNomRtg": self._first_rating("VNom", ratings), "CtrlModes": self._ctrl_modes(bats),
                # rtgMaxWh, rtgMaxChargeRateW, rtgMaxDischargeRateW (py20305's keys)
                **self._storage_nameplate("MaxRtg", bats)}

    def configuration(self) -> dict[str, Any]:
        # setMaxWh, setMaxChargeRateW, setMaxDischargeRateW: the device's own limits
        # (713 / 802 / 120 WHRtg, 124 WChaMax / WDisChaMax); no lower setting is made here
        ratings, bats = self._ratings(), self.batteries()
        plate = self._storage_nameplate("Max", bats)
        return {"WMax": self._rating_sum("WMax", ratings) or self._rating_sum("WRtg", ratings),
                "VAMax": self._rating_sum("VARtg", ratings),
                "VarMaxInj": self._rating_sum("VArMaxQ1", ratings),
                "VNom": self._first_rating("VNom", ratings), "CtrlModes": self._ctrl_modes(bats),
                **plate}

    def availability(self) -> dict[str, Any]:
        """statWAvail: the PV's available W plus what the batteries can discharge now;
        with batteries, availabilityDuration (seconds at their available discharge until
        the reserve), maxChargeDuration (seconds at their available charge until full)
        and reservePercent (the devices' reserve, hundredths of %)."""
        w = self._sum("WAval")
        out: dict[str, Any] = {"readingTime": int(time.time())}
        bats = self.batteries()
        dis = [b.avail_dis_w for b in bats]
        if bats and all(d is not None for d in dis):
            dis_w = float(sum(d for d in dis if d is not None))
            w = (w or 0.0) + dis_w
            wh_avail = [b.wh_avail.value for b in bats if b.wh_avail.quality.good]
            if dis_w > 0 and len(wh_avail) == len(bats):
                out["availabilityDuration"] = int(sum(wh_avail) / dis_w * 3600.0)
            elif dis_w == 0:
                out["availabilityDuration"] = 0
            cha = [b.avail_cha_w for b in bats]
            room = [_room_wh(b) for b in bats]
            if all(c is not None for c in cha) and all(r is not None for r in room):
                cha_w = float(sum(c for c in cha if c is not None))
                out["maxChargeDuration"] = (int(sum(r for r in room if r is not None)
                                                / cha_w * 3600.0) if cha_w > 0 else 0)
            rsv = [b.reserve_pct.value for b in bats if b.reserve_pct.quality.good]
            if len(rsv) == len(bats):
                out["reservePercent"] = int(round(max(rsv) * 100))
        out["statWAvail"] = None if w is None else _active_power(w)
        return out

    def storage_status(self, now: int) -> dict[str, Any]:
        """DERStatus stateOfChargeStatus (the batteries' SoC weighted by capacity, a PerCent:
        hundredths of %) and
        storageModeStatus (charging / discharging / holding by the batteries' power, else
        SunSpec ChaSt); empty without storage or where a value is not stated."""
        bats = self.batteries()
        out: dict[str, Any] = {}
        if not bats:
            return out
        pairs = [(b.soc_pct.value, b.wh_rtg.value) for b in bats
                 if b.soc_pct.quality.good and b.wh_rtg.quality.good]
        if len(pairs) == len(bats) and sum(wh for _, wh in pairs) > 0:
            soc = sum(s * wh for s, wh in pairs) / sum(wh for _, wh in pairs)
            out["stateOfChargeStatus"] = {"dateTime": now, "value": int(round(soc * 100))}
        ws = [b.w.value for b in bats if b.w.quality.good and b.w.value is not None]
        mode: int | None = None
        if len(ws) == len(bats):
            total = sum(ws)
            mode = (STORAGE_HOLDING if abs(total) < HOLDING_W
                    else STORAGE_DISCHARGING if total > 0 else STORAGE_CHARGING)
        elif len(bats) == 1 and bats[0].cha_st is not None:
            mode = CHA_ST_MODE.get(bats[0].cha_st, STORAGE_HOLDING)
        if mode is not None:
            out["storageModeStatus"] = {"dateTime": now, "value": mode}
        return out

    def status(self) -> dict[str, Any]:
        now = int(time.time())
        alarms, connect, st_codes = 0, 0, []
        for inv in self._inverters():
            snap = inv.readings
            alarms |= alarm_bits(inv.functions.as_dict() if inv.functions else {})
            st = _good(snap, "St")
            if st is not None:
                st_codes.append(int(st))
            if _good(snap, "link"):
                connect |= AVAILABLE
                if st in ENERGIZING:
                    connect |= CONNECTED | OPERATING
                if st == 7:
                    connect |= FAULT
        inverter = max(st_codes) if len(set(st_codes)) == 1 else (4 if 4 in st_codes else
                                                                  (st_codes[0] if st_codes
                                                                   else 0))
        return {"alarmStatus": alarms, "readingTime": now,
                "connectStatus": {"dateTime": now, "value": connect},
                "genConnectStatus": {"dateTime": now, "value": connect},
                "inverterStatus": {"dateTime": now, "value": inverter},
                "operationalModeStatus": {"dateTime": now, "value": 2 if connect else 1},
                **self.storage_status(now)}

    def _first_rating(self, name: str, ratings: list[dict[str, float]] | None = None) -> Any:
        return next((k[name] for k in (self._ratings() if ratings is None else ratings)
                     if name in k), None)

    def site_meter(self) -> dict[str, Any]:
        """The site meter's readings for its MirrorUsagePoint (py20305's monitoring keys),
        W and var positive when the site imports (IEEE 2030.5 flow "forward", as py20305's
        SITE_METER role takes them); only good values, so a lost meter posts nothing."""
        v = self.view()
        site = v.site if v is not None else None
        if site is None:
            return {}
        volts = [x for n in ("PhVphA", "PhVphB", "PhVphC") if (x := site.good(n)) is not None]
        out = {"W": site.good("W"), "Var": site.good("VAr"), "VA": site.good("VA"),
               "A": site.good("A"), "PF": site.good("PF"), "Hz": site.good("Hz"),
               "V": sum(volts) / len(volts) if volts else site.good("PPV")}
        return {k: x for k, x in out.items() if x is not None}


def meter_lfdi(gateway_lfdi: str) -> str:
    """An LFDI for the site meter's readings (py20305 derives their mRIDs from its leading
    digits, so it must differ there from the gateway's own): a hash of the gateway's,
    stable across restarts. The MUP is still posted under the gateway's EndDevice."""
    import hashlib

    return hashlib.sha256(f"{gateway_lfdi.lower()}/site-meter".encode()).hexdigest()[:40]


def _room_wh(b: StorageView) -> float | None:
    """Energy a battery can still take (Wh) up to its highest SoC."""
    if not (b.soc_pct.quality.good and b.wh_rtg.quality.good and b.soc_max_pct.quality.good):
        return None
    return max(0.0, (float(b.soc_max_pct.value) - float(b.soc_pct.value)) / 100.0
               * float(b.wh_rtg.value))


def _active_power(w: float) -> dict[str, int]:
    """An ActivePower (Int16 value x 10^multiplier) for ``w`` W, to the W where it fits."""
    mult = 0
    while abs(round(w / 10 ** mult)) > 32767:
        mult += 1
    return {"value": int(round(w / 10 ** mult)), "multiplier": mult}


def alarm_bits(view: dict[str, Any]) -> int:
    """DERStatus alarmStatus bits for a controller status view (trips, cessation)."""
    bits = 0
    vr, fr = view.get("voltage_region") or "NN", view.get("frequency_region") or "NN"
    abnormal = view.get("tripped") or view.get("state") == "momentary_cessation"
    if abnormal or vr != "NN":
        if vr.startswith("HV") or vr.startswith("OV"):
            bits |= ALARM_OVER_VOLTAGE
        elif vr.startswith("LV") or vr.startswith("UV"):
            bits |= ALARM_UNDER_VOLTAGE
    if abnormal or fr != "NN":
        if fr.startswith(("HF", "OF")):
            bits |= ALARM_OVER_FREQUENCY
        elif fr.startswith(("LF", "UF")):
            bits |= ALARM_UNDER_FREQUENCY
    kind = view.get("out_of_service_kind")
    if kind is not None and TripCause(kind).is_island:
        bits |= ALARM_LOCAL_EMERGENCY
    return bits
