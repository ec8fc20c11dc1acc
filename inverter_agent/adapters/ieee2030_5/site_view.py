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

from inverter_agent.core.view import CycleView, InverterView, TripCause

#: DERControlType bits (IEEE 2030.5-2018) of the modes this gateway applies.
#: 2 opModConnect, 3 opModEnergize, 4 opModFixedPFAbsorbW, 5 opModFixedPFInjectW,
#: 6 opModFixedVar, 8 opModFreqDroop, 20 opModMaxLimW, 23 opModVoltVar, 24 opModVoltWatt
#: (translate.SUPPORTED; 9 opModFreqWatt is not among them).
CTRL_MODES = ((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 20)
              | (1 << 23) | (1 << 24))
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

    def _rating_sum(self, name: str) -> float | None:
        vals = [k[name] for k in self._ratings() if name in k]
        return float(sum(vals)) if vals else None

    def ratings_known(self) -> tuple[int, int]:
        """(inverters whose ratings have been read, inverters): a rating is read with the
        first full read of the inverter, and a site's registration waits for it."""
        ratings = self._ratings()
        return sum("WRtg" in k for k in ratings), len(ratings)

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
        q4 = self._rating_sum("VArRtgQ4")
        return {"WMaxRtg": self._rating_sum("WRtg"), "VAMaxRtg": self._rating_sum("VARtg"),
                "VarMaxInjRtg": self._rating_sum("VArRtgQ1"),
                "VarMaxAbsRtg": abs(q4) if q4 is not None else None,
                "VNomRtg": self._first_rating("VNom"), "CtrlModes": CTRL_MODES}

    def configuration(self) -> dict[str, Any]:
        return {"WMax": self._rating_sum("WMax") or self._rating_sum("WRtg"),
                "VAMax": self._rating_sum("VARtg"), "VarMaxInj": self._rating_sum("VArMaxQ1"),
                "VNom": self._first_rating("VNom"), "CtrlModes": CTRL_MODES}

    def availability(self) -> dict[str, Any]:
        w = self._sum("WAval")
        return {"readingTime": int(time.time()),
                "statWAvail": None if w is None else {"value": int(round(w)), "multiplier": 0}}

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
                "operationalModeStatus": {"dateTime": now, "value": 2 if connect else 1}}

    def _first_rating(self, name: str) -> Any:
        return next((k[name] for k in self._ratings() if name in k), None)

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
