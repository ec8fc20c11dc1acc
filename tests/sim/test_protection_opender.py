"""The simulator's own protection (simulator/protection.py, run from its 707-710
registers) against EPRI OpenDER 2.2.0 on the same steps: with the Category II factory
curves the simulator ships, both trip at the same time, within two time steps.

So a test of the gateway's trip programming checks it against a device model that
agrees with an independent reading of IEEE 1547-2018 (OpenDER), not with itself.
"""

from __future__ import annotations

import logging

import pytest

from simulator.protection import Protection
from simulator.registers import FACTORY_TRIP

opender = pytest.importorskip("opender")


class _Image:
    """Registers 707-710 holding the factory curves in set 1 (what protection reads)."""

    def __init__(self) -> None:
        self.v: dict[tuple[int, str], object] = {}
        for mid, pts in FACTORY_TRIP.items():
            x = "V" if mid in (707, 708) else "Hz"
            self.v[(mid, "Ena")] = 1
            self.v[(mid, "Crv[1].MustTrip.ActPt")] = len(pts)
            self.v[(mid, "Crv[1].MomCess.ActPt")] = 0
            for i, (xv, tv) in enumerate(pts, start=1):
                self.v[(mid, f"Crv[1].MustTrip.Pt[{i}].{x}")] = xv
                self.v[(mid, f"Crv[1].MustTrip.Pt[{i}].Tms")] = tv

    def find(self, mid):
        return self if (mid, "Ena") in self.v else None

    def get(self, mid, path, default=None):
        return self.v.get((mid, path), default)


@pytest.mark.parametrize(("v", "f", "dt"), [
    (1.12, 60.0, 0.01), (1.25, 60.0, 0.01), (0.65, 60.0, 0.01), (0.40, 60.0, 0.01),
    (1.0, 62.1, 0.01), (1.0, 56.4, 0.01), (1.0, 61.3, 0.5), (1.0, 58.4, 0.5),
])
def test_the_simulators_protection_trips_when_opender_does(v, f, dt):
    saved = opender.DER.t_s
    logging.disable(logging.WARNING)
    try:
        opender.DER.t_s = dt
        fmt = opender.DERCommonFileFormat(NP_VA_MAX=1000, NP_P_MAX=1000, NP_Q_MAX_INJ=440,
                                          NP_Q_MAX_ABS=440, NP_AC_V_NOM=240,
                                          NP_PHASE="SINGLE")
        fmt.NP_ABNORMAL_OP_CAT = "CAT_II"
        der = opender.DER_PV(fmt)
        der.update_der_input(p_dc_pu=0.5, v_pu=1.0, f=60.0, theta=0.0)
        der.run()
        der.update_der_input(v_pu=v, f=f)
        prot, img = Protection(), _Image()
        t, ours, theirs = 0.0, None, None
        while t < 400.0 and (ours is None or theirs is None):
            t = round(t + dt, 9)
            der.run()
            prot.step(img, t - dt, (v * 100.0,), f, reconnect_s=1e9)  # onset at t = 0
            if ours is None and prot.tripped is not None:
                ours = t
            if theirs is None and der.der_status == "Trip":
                theirs = t
    finally:
        opender.DER.t_s = saved
        logging.disable(logging.NOTSET)
    assert ours is not None and theirs is not None
    assert abs(ours - theirs) <= 2 * dt + 1e-9, (ours, theirs)
