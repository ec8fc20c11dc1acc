"""Does the gateway understand this snapshot well enough to act on it?

First, do no harm (docs/functions.md): the gateway reduces output, ceases to
energize or trips only on measurements it understands and finds plausible.
:func:`assess` turns one HAL snapshot into engine :class:`Measurements` and
says, in plain words, everything that stops it from doing so:

- not understood: the wiring (phases) or a rating the functions convert with
  is unknown, or the HAL could not make sense of a model;
- missing: a phase the device has, the frequency or the active power is not
  reported;
- implausible: a value outside physical bounds, or one that contradicts the
  rest of the snapshot (a phase at 0 V while the inverter exports power is a
  bad reading, not a collapsed grid).

Pure: no I/O, no clock. The controller decides what to do with the verdict
(stand aside by default, see :mod:`inverter_agent.core.controller`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hal.reading import Reading
from hal.topology import PHASES, AcType
from inverter_agent.functions import AntiIslandingReport, Measurements

#: SunSpec St codes (models 101-103 numbering) of an inverter that is energizing.
ENERGIZING_ST = {3, 4, 5}
#: ... and of one that is not operating (off, sleeping, standby).
IDLE_ST = {1, 2, 8}
#: Physical bounds. Phase voltage, pu of nominal: above 2 pu is no distribution grid.
V_MAX_PU = 2.0
#: Frequency, Hz: outside this no 50 / 60 Hz grid and no inverter is running.
F_RANGE_HZ = (40.0, 70.0)
#: Active power beyond this many times the W rating is a misread (or a wrong rating).
P_MAX_PU = 1.5
#: Exporting: more than this share of the W rating.
EXPORTING_PU = 0.02
#: A phase below this (pu) while exporting contradicts the export.
DEAD_PHASE_PU = 0.1
#: Ratings outside these are no inverter this gateway fronts.
V_NOM_RANGE = (50.0, 1000.0)
W_RANGE = (1.0, 1e8)
#: How a device may state its nominal voltage: per phase line to neutral (1),
#: line to line of a split-phase (2) or three-phase (sqrt 3) system.
V_RATIOS = {AcType.SINGLE: (1.0,), AcType.SPLIT: (1.0, 2.0), AcType.THREE: (1.0, math.sqrt(3))}
#: The measured phase voltages must lie this close to one reading of VNom to fix it.
V_FIT = 0.12


@dataclass(frozen=True)
class Assessment:
    """One snapshot judged.

    Attributes:
        meas: engine measurements; ``valid`` False whenever ``problems`` is not empty.
        problems: why the gateway must not act on this snapshot (empty: it may).
        notes: caveats that do not stop it (e.g. reactive power not steerable).
        v_ratio: the reading of the device's VNom in use (1 L-N, 2 or sqrt 3 L-L).
        w_base, va_base: W and VA the per-unit values are of.
        var_inj_pct, var_abs_pct: the device's var maxima, % of ``va_base``
            (None: unknown, reactive power is not steered).
        link_down: the problem is the link itself.
    """

    meas: Measurements
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    v_ratio: float | None = None
    w_base: float | None = None
    va_base: float | None = None
    var_inj_pct: float | None = None
    var_abs_pct: float | None = None
    link_down: bool = False

    @property
    def understood(self) -> bool:
        return not self.problems

    @property
    def reactive_ok(self) -> bool:
        return self.var_inj_pct is not None and self.var_abs_pct is not None


def _good(s: Mapping[str, Reading], name: str) -> bool:
    r = s.get(name)
    return r is not None and r.value is not None and r.quality.good


def _num(s: Mapping[str, Reading], name: str) -> float | None:
    if not _good(s, name):
        return None
    v = s[name].value
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _bad_number(s: Mapping[str, Reading], name: str) -> bool:
    """Good quality but not a finite number: a value the gateway cannot use."""
    if not _good(s, name):
        return False
    v = s[name].value
    return isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)


def assess(s: Mapping[str, Reading], nominal_voltage: float | None = None,
           v_ratio: float | None = None, link: str = "link") -> Assessment:
    """Judge one snapshot; see the module docstring.

    ``nominal_voltage`` (configured, line to neutral) overrides the device's.
    ``v_ratio`` is the reading of the device's VNom fixed earlier (the
    controller keeps the first that fits); None works it out from this
    snapshot's phase voltages, which then must be near nominal.
    """
    invalid = Measurements(valid=False)
    if not _good(s, link) or not s[link].value:
        return Assessment(invalid, ("inverter link down",), link_down=True)
    problems: list[str] = []
    notes: list[str] = []
    hal_notes = s.get("HalNotes")
    if hal_notes is not None and hal_notes.quality.good and hal_notes.value:
        problems.extend(str(n) for n in hal_notes.value)
    ac = s.get("ACType")
    ac_type: AcType | None = None
    if ac is not None and ac.quality.good and ac.value in {a.value for a in AcType}:
        ac_type = AcType(ac.value)
    elif not any(p.startswith("phases unknown") for p in problems):
        problems.append("phases unknown: the device states no wiring (10x/11x model or "
                        "701 ACType)")

    # -- ratings (hal.ratings gives one precedence; a missing one is not assumed)
    w = _num(s, "WMax")
    if w is None:
        problems.append("active power rating unknown (no 702 WMax / WMaxRtg, 121 WMax or "
                        "120 WRtg)")
    elif not W_RANGE[0] <= w <= W_RANGE[1]:
        problems.append(f"active power rating {w:g} W is implausible "
                        f"({W_RANGE[0]:g}..{W_RANGE[1]:g} W)")
        w = None
    va = _num(s, "VAMax")
    if w is not None:
        if va is None:
            va = w
            notes.append("VA rating not stated: the W rating is used as the VA base")
        elif va < 0.9 * w:
            problems.append(f"VA rating {va:g} VA is below the W rating {w:g} W")
            va = None
    dev_vnom = _num(s, "VNom")
    vnom = nominal_voltage or dev_vnom
    if vnom is None:
        problems.append("nominal voltage unknown (no 702 VNom, 121 VRef or 702 VNomRtg; "
                        "functions.nominal_voltage can state it)")
    elif not V_NOM_RANGE[0] <= vnom <= V_NOM_RANGE[1]:
        problems.append(f"nominal voltage {vnom:g} V is implausible "
                        f"({V_NOM_RANGE[0]:g}..{V_NOM_RANGE[1]:g} V)")
        vnom = None
    var_inj = var_abs = None
    if va is not None:
        for key, label in (("VArMaxInj", "injecting"), ("VArMaxAbs", "absorbing")):
            q = _num(s, key)
            if q is None:
                notes.append(f"var maximum {label} unknown: reactive power is not steered")
            elif q > 1.01 * va:
                notes.append(f"var maximum {label} {q:g} var exceeds the VA rating {va:g}: "
                             "reactive power is not steered")
            else:
                if key == "VArMaxInj":
                    var_inj = 100.0 * q / va
                else:
                    var_abs = 100.0 * q / va

    # -- measurements: the phases the device has, frequency, power
    phases = PHASES[ac_type] if ac_type is not None else ()
    volts: list[tuple[str, float]] = []
    for ph in phases:
        name = f"PhVph{ph}"
        v = _num(s, name)
        if v is None:
            what = "not a number" if _bad_number(s, name) else "not reported"
            problems.append(f"{name} (a phase the device has) {what}")
        else:
            volts.append((name, v))
    f = _num(s, "Hz")
    if f is None:
        problems.append("frequency (Hz) " + ("not a number" if _bad_number(s, "Hz")
                                              else "not reported"))
    elif not F_RANGE_HZ[0] <= f <= F_RANGE_HZ[1]:
        problems.append(f"frequency {f:g} Hz is implausible "
                        f"({F_RANGE_HZ[0]:g}..{F_RANGE_HZ[1]:g} Hz)")
    p = _num(s, "W")
    if p is None:
        problems.append("active power (W) " + ("not a number" if _bad_number(s, "W")
                                                else "not reported"))
    elif w is not None and abs(p) > P_MAX_PU * w:
        problems.append(f"active power {p:g} W is implausible for a {w:g} W rating")
    ratio = 1.0 if nominal_voltage else v_ratio
    st = _num(s, "St")
    asleep = vnom is not None and bool(volts) and st is not None and int(st) in IDLE_ST and \
        all(v < DEAD_PHASE_PU * vnom / 2 for _, v in volts)
    if asleep:
        # Fronius-style: asleep at night, every reading 0 (evcc-io/evcc#16924).
        problems.append(f"every phase reads 0 V while the inverter is not operating "
                        f"(St {int(st)}): it is not measuring, not a dead grid")
    elif vnom is not None and volts and ac_type is not None and ratio is None:
        avg = sum(v for _, v in volts) / len(volts)
        fits = sorted((abs(avg * k / vnom - 1.0), k) for k in V_RATIOS[ac_type])
        if fits[0][0] <= V_FIT:
            ratio = fits[0][1]
        else:
            problems.append(f"phase voltages (average {avg:.1f} V) fit no reading of the "
                            f"nominal voltage {vnom:g} V (line to neutral or line to line): "
                            "waiting for a normal grid to fix the voltage base")
    v_base = vnom / ratio if vnom is not None and ratio else None
    if v_base is not None:
        for name, v in volts:
            if not 0.0 <= v <= V_MAX_PU * v_base:
                problems.append(f"{name} {v:g} V is implausible (0..{V_MAX_PU:g} pu of "
                                f"{v_base:.1f} V)")
        if p is not None and w is not None and p > EXPORTING_PU * w:
            for name, v in volts:
                if v < DEAD_PHASE_PU * v_base:
                    problems.append(f"{name} reads {v:g} V while the inverter exports "
                                    f"{p:g} W: a bad reading, not a collapsed grid")

    q = _num(s, "VAr")
    if _bad_number(s, "VAr") or (q is not None and va is not None and abs(q) > P_MAX_PU * va):
        problems.append("reactive power (VAr) is implausible")
    if problems:
        return Assessment(invalid, tuple(problems), tuple(notes), ratio, w, va, var_inj,
                          var_abs)
    assert w is not None and va is not None and v_base is not None and f is not None \
        and p is not None
    connected = int(st) in ENERGIZING_ST if st is not None else abs(p) > 0.01 * w
    ai = None
    if _good(s, "AntiIslEna"):
        ai = AntiIslandingReport.ENABLED if s["AntiIslEna"].value else \
            AntiIslandingReport.DISABLED
    w_aval = _num(s, "WAval")
    meas = Measurements(
        valid=True, v_pu=tuple(v / v_base for _, v in volts), f_hz=f, p_pu=p / w,
        q_pu=(q or 0.0) / va, p_avail_pu=None if w_aval is None else w_aval / w,
        connected=connected, anti_islanding=ai)
    return Assessment(meas, (), tuple(notes), ratio, w, va, var_inj, var_abs)
