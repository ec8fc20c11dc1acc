"""hal.meter against the simulated PCC meter: every SunSpec meter model, the sign
convention, a unit on the inverter's RS-485 bus (a pty) and a link of its own."""

from __future__ import annotations

import pytest

from hal.inverter import Inverter
from hal.meter import Meter
from hal.reading import Detail, Validity
from hal.transport import RetryPolicy, RtuTransport, SerialSettings, TcpTransport
from simulator import SimProcess, wait_until

FAST = RetryPolicy(timeout=0.3, retries=1, backoff=0.02, backoff_max=0.05)
PHASE_MODELS = {201: "1,101,120,121,122,123", 202: "1,102,120,121,122,123",
                211: "1,101,120,121,122,123", 212: "1,102,120,121,122,123"}
WIRING = {201: "single", 211: "single", 202: "split", 212: "split", 203: "three",
          213: "three", 204: "three", 214: "three"}


@pytest.mark.parametrize("model", sorted(WIRING))
def test_each_meter_model_reads_import_positive(model):
    phases = {201: 1, 211: 1, 202: 2, 212: 2}.get(model, 3)
    args = ["--meter", f"2:{model}", "--dc", "3000", "--meter-load", "1200"]
    if model in PHASE_MODELS:
        args += ["--models", PHASE_MODELS[model], "--phases", str(phases)]
    with SimProcess(*args) as sim:
        t = TcpTransport(sim.tcp_host, sim.tcp_port, FAST)
        inv_w = Inverter(t, unit=1).poll()["W"].value
        meter = Meter(t, 2, model=model)
        first, fast = meter.poll(), meter.poll()
        assert meter.last_poll_kind == "fast" and meter.info.model_id == model
        truth = sim.control.state()["units"]["2"]["meter"]
        for r in (first, fast):
            # The site exports (the inverter makes more than the load): W negative.
            assert r["W"].value == pytest.approx(1200.0 - inv_w, abs=25.0)
            assert r["W"].value == pytest.approx(truth["w"], abs=25.0)
            assert r["W"].value < 0
            assert r["Hz"].value == pytest.approx(60.0)
            assert r["ACType"].value == WIRING[model]
            assert r["TotWhImp"].value == pytest.approx(truth["wh_imp"], rel=1e-3)
        # Phases the wiring lacks are unimplemented; a delta meter has no L-N voltage.
        assert first["AphB"].quality.validity == (Validity.INVALID if phases < 2
                                                  else Validity.GOOD)
        assert first["PhVphC"].quality.good == (phases == 3 and model not in (204, 214))
        if model in (204, 214):
            assert first["PPVphAB"].value == pytest.approx(415.7, abs=0.2)
            assert first["PhVphA"].quality.detail == Detail.BAD_REFERENCE
        # The site imports once the load exceeds the output.
        sim.control.set_load(6000.0)  # rendered at the simulator's next plant step
        w = wait_until(lambda: (v := meter.poll()["W"].value) > 0 and v, timeout=2.0)
        assert w == pytest.approx(6000.0 - inv_w, abs=25.0)


def test_an_export_positive_meter_is_read_import_positive_and_over_its_own_link():
    with SimProcess("--meter-profile", "solaredge-203", "--meter-tcp", "127.0.0.1:0",
                    "--dc", "3000") as sim:
        assert sim.meter_tcp is not None
        own = TcpTransport(*sim.meter_tcp, FAST)
        truth = sim.control.state()["units"]["2"]["meter"]["w"]
        assert truth < 0  # exporting
        # The device says export positive; read as such it comes up import positive.
        raw = Meter(own, 2, model=203).poll()["W"].value
        assert raw == pytest.approx(-truth, abs=25.0)
        assert Meter(own, 2, model=203, w_positive="export").poll()["W"].value == \
            pytest.approx(truth, abs=25.0)
        # Its own port answers for the meter only (the inverter's unit: "target device
        # failed to respond", as a Modbus TCP gateway says it).
        assert not Inverter(TcpTransport(*sim.meter_tcp, FAST), unit=1).answers()


def test_a_meter_model_not_the_one_expected_is_refused():
    with SimProcess("--meter", "2:213") as sim:
        meter = Meter(TcpTransport(sim.tcp_host, sim.tcp_port, FAST), 2, model=203)
        r = meter.poll()
        assert "203 expected" in meter.last_error
        assert r["W"].quality.validity == Validity.INVALID


def test_a_meter_on_the_inverters_rs485_bus_and_its_link_lost():
    with SimProcess("--meter", "3:213", "--dc", "3000", pty=True) as sim:
        bus = RtuTransport(SerialSettings(sim.pty_path, baud=115200), FAST)
        try:
            inv, meter = Inverter(bus, unit=1), Meter(bus, 3)
            assert inv.poll()["W"].quality.good
            w = meter.poll()["W"]
            assert w.quality.good and meter.info.model_id == 213
            sim.control.fault("silent", unit=3)
            lost = meter.poll()
            assert meter.last_error is not None
            assert lost["W"].value == w.value  # the last value, marked stale
            assert lost["W"].quality.validity == Validity.INVALID
            assert Detail.OLD_DATA in lost["W"].quality.detail
            assert inv.poll()["W"].quality.good  # the inverter on the same bus answers on
        finally:
            bus.close()
