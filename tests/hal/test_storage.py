"""Storage through the HAL (hal/storage.py): 124 / 713 / 802 / 714 read by name, the
battery held through model 124's window, negative W (charging) kept as it is."""

from __future__ import annotations

import pytest

from hal import storage
from hal.inverter import Inverter, UnsupportedControl
from hal.sunspec import models as sm
from hal.transport import TcpTransport
from simulator import SimProcess
from simulator.profile import PROFILE_DIR
from simulator.testing import wait_for


def model(mid: int, counts: dict | None = None, **values) -> sm.DecodedModel:
    layout = sm.lay_out(mid, counts=counts)
    raw: dict = {k: v for k, v in values.items() if k.endswith("_SF")}
    for path, v in values.items():
        if path in raw:
            continue
        slot = layout.slot(path)
        raw[path] = v if slot.point.type.kind in ("float", "string") or slot.point.sf is None \
            else sm.to_raw(v, slot, sm.scale_exponent(slot, raw))
    return sm.decode(mid, 40002, sm.encode(layout, raw))


M124 = dict(WChaMax=5000, WChaMax_SF=0, InOutWRte_SF=-1, MinRsvPct=15, MinRsvPct_SF=0,
            ChaState=42.5, ChaState_SF=-1, ChaSt=4, StorCtl_Mod=0, InWRte=100, OutWRte=100,
            InOutWRte_RvrtTms=0, WChaDisChaGra_SF=0)


def test_soc_capacity_reserve_and_rates_come_from_the_first_model_that_states_them():
    models = {124: model(124, **M124),
              713: model(713, WHRtg=9800, WHAvail=3000, SoC=44.0, Sta=0, WH_SF=0, Pct_SF=-1),
              802: model(802, WHRtg=10000, WHRtg_SF=0, WChaRteMax=4500, WDisChaRteMax=4000,
                         WChaDisChaMax_SF=0, SoC=43.0, SoC_SF=-1, SoCRsvMin=20, SoCMin=5,
                         SocRsvMax=95, W=-2500, W_SF=0, State=3, Evt1=(1 << 1) | (1 << 24))}
    r = storage.derive(models, 0.0)
    assert r["StorSoC"].value == 44.0  # 713 before 802 before 124
    assert r["StorWhRtg"].value == 9800
    assert r["StorWhAvail"].value == 3000
    assert r["StorWChaMax"].value == 5000  # 124's setting first
    assert r["StorWDisChaMax"].value == 4000  # 802's rating
    assert r["StorRsvPct"].value == 20.0  # the highest reserve any model states
    assert r["StorSoCMax"].value == 95
    assert r["StorW"].value == -2500  # charging stays negative
    assert r["StorAlarms"].value == ("battery: over temperature", "battery: ground fault")
    assert r["StorSources"].value["StorSoC"] == "713 SoC"


def test_124_alone_takes_capacity_and_rates_from_the_nameplate():
    models = {124: model(124, **M124),
              120: model(120, WHRtg=10240, WHRtg_SF=0, MaxChaRte=6000, MaxDisChaRte=4500,
                         MaxChaRte_SF=0, MaxDisChaRte_SF=0)}
    r = storage.derive(models, 0.0)
    assert r["StorSoC"].value == 42.5
    assert r["StorWhRtg"].value == 10240
    assert r["StorWDisChaMax"].value == 4500
    assert r["StorWhAvail"].value == pytest.approx((42.5 - 15) / 100 * 10240)
    assert r["StorW"].quality.good is False  # no battery power stated: not assumed


def test_no_discharge_rate_above_what_124_can_command():
    models = {124: model(124, **{**M124, "WChaMax": 3000}),
              802: model(802, WDisChaRteMax=4000, WChaDisChaMax_SF=0)}
    r = storage.derive(models, 0.0)
    assert r["StorWDisChaMax"].value == 3000
    assert "124 WChaMax" in r["StorSources"].value["StorWDisChaMax"]


def test_no_storage_model_no_storage_readings():
    assert storage.derive({120: model(120, WHRtg=10240, WHRtg_SF=0)}, 0.0) == {}


def test_714_ess_ports_give_battery_power_and_alarms():
    m714 = model(714, counts={"NPrt": 2}, NPrt=2, DCW_SF=0,
                 **{"Prt[1].PrtTyp": 0, "Prt[1].DCW": 3000, "Prt[2].PrtTyp": 1,
                    "Prt[2].DCW": -1800, "Prt[2].DCAlrm": 1 << 7, "Prt[1].DCAlrm": 1})
    r = storage.derive({714: m714}, 0.0)
    assert r["StorW"].value == -1800  # the ESS port only, not the PV port
    assert r["StorAlarms"].value == ("ESS port: over temperature",)


@pytest.mark.parametrize(("w", "points"), [
    (-3000.0, {"InWRte": 60.0, "OutWRte": -60.0, "StorCtl_Mod": 3}),
    (2500.0, {"InWRte": -50.0, "OutWRte": 50.0, "StorCtl_Mod": 3}),
    (0.0, {"InWRte": -0.0, "OutWRte": 0.0, "StorCtl_Mod": 3}),
    (None, {"StorCtl_Mod": 0}),
])
def test_a_battery_power_is_the_124_window(w, points):
    got = storage.storage_points(w, {124: model(124, **M124)})
    assert got == points
    if w is not None:
        held = storage.held_w({124: model(124, **{**M124, **got})})
        assert held == pytest.approx(w)


def test_the_devices_own_window_is_kept_and_written_back_whole():
    models = {124: model(124, **{**M124, "StorCtl_Mod": 1, "InWRte": 50})}
    own = storage.own_window(models)
    assert own == {"StorCtl_Mod": 1, "InWRte": 50.0, "OutWRte": 100.0, "InOutWRte_RvrtTms": 0}
    # the release puts back the owner's charge limit and its timer, not StorCtl_Mod 0
    assert storage.storage_points(None, models, revert_s=30, restore=own) == own
    assert storage.own_window({}) is None


def test_a_power_beyond_wchamax_is_refused_not_clipped():
    with pytest.raises(ValueError, match="beyond"):
        storage.storage_points(5001.0, {124: model(124, **M124)})
    with pytest.raises(LookupError):
        storage.storage_points(100.0, {})


@pytest.mark.parametrize("profile", ["hybrid-124-only", "hybrid-1547-713-802"])
def test_charge_and_discharge_reach_the_simulated_battery(profile):
    with SimProcess("--profile", str(PROFILE_DIR / f"{profile}.json"), "--dc", "0",
                    "--tau", "0.2") as sim:
        inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port))
        first = inv.poll()
        assert inv.capabilities().storage
        bat = sim.control.unit_state()["battery"]
        assert first["StorSoC"].value == pytest.approx(bat["soc"], abs=0.1)
        assert first["StorWhRtg"].value == bat["wh_rtg"]
        for w in (-3000.0, 2000.0):
            inv.write_storage(w, revert_s=30)
            wait_for(lambda w=w: abs(sim.control.unit_state()["battery"]["w"] - w) < 30,
                     timeout=10)
            got = wait_for(lambda w=w: (r := inv.poll())["W"].value is not None
                           and abs(r["W"].value - w) < 60 and r, timeout=10)
            # 124 states the window in % of WChaMax (here 0.1 % steps): its resolution
            assert got["StorCtlW"].value == pytest.approx(w, abs=0.001 * got["StorWChaMax"].value)
            assert sim.control.get_point(124, "InOutWRte_RvrtTms") == 30
        inv.write_storage(None)
        wait_for(lambda: abs(sim.control.unit_state()["battery"]["w"]) < 1, timeout=10)


def test_a_device_without_124_refuses_a_storage_command():
    with SimProcess("--models", "1,103,120,121,122,123") as sim:
        inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port))
        inv.poll()
        assert not inv.capabilities().storage
        with pytest.raises(UnsupportedControl):
            inv.write_storage(1000.0)
