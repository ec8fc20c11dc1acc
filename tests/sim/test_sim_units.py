"""In-process tests of the simulator's pure parts: framing, register image, plant, scripts."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.sunspec import models as sm
from simulator import plant
from simulator.modbus import (
    Fault,
    crc16,
    crc_ok,
    handle_pdu,
    rtu_request_length,
    spoil,
    t35,
    with_crc,
)
from simulator.plant import Commands, Grid, GridScript, OpState, PlantParams, PlantState, Ratings
from simulator.registers import ModbusError, RegisterImage, parse_models, shuffled

R = Ratings()


def image(base: int = 40000,
          models: tuple[int, ...] = (1, 103, 120, 121, 122, 123)) -> RegisterImage:
    return RegisterImage(base, list(models), R, unit_id=1, counts={"NCrv": 2, "NPt": 4})


def addr(img: RegisterImage, model: int, path: str) -> int:
    pm = img.find(model)
    assert pm is not None
    return pm.address + pm.layout.slot(path).offset


# --- framing ------------------------------------------------------------------------

def test_crc16_matches_the_modbus_reference_frame():
    # read 10 registers from 0 at unit 1: the textbook frame ends C5 CD
    frame = bytes.fromhex("01030000000a")
    assert crc16(frame) == 0xCDC5
    assert with_crc(frame) == bytes.fromhex("01030000000ac5cd")
    assert crc_ok(with_crc(frame))
    assert not crc_ok(bytes.fromhex("01030000000ac5ce"))


@pytest.mark.parametrize("head, length", [
    (b"\x01", 0), (b"\x01\x03", 8), (b"\x01\x06\x00", 8), (b"\x01\x10\x00\x00\x00", 0),
    (b"\x01\x10\x00\x00\x00\x02\x04", 13), (b"\x01\x2b", None),
])
def test_rtu_request_length(head, length):
    assert rtu_request_length(head) == length


def test_t35_gap():
    assert t35(9600) == pytest.approx(3.5 * 11 / 9600)
    assert t35(115200) == 0.00175


@pytest.mark.parametrize("text, kind", [
    ("none", "none"), ("silent", "silent"), ("exception:4", "exception"),
    ("garbage", "garbage"), ("truncated", "truncated"), ("bad_crc", "bad_crc"),
    ("delay:0.5", "delay"),
])
def test_fault_parse_round_trips(text, kind):
    f = Fault.parse(text)
    assert f.kind == kind and str(f) == text


@pytest.mark.parametrize("text", ["exception", "exception:x", "delay:-1", "loud", "silent:3"])
def test_fault_parse_refuses_nonsense(text):
    with pytest.raises(ValueError):
        Fault.parse(text)


def test_spoil_modes():
    import random

    good = with_crc(bytes.fromhex("010304aabbccdd"))
    rng = random.Random(0)
    assert spoil(good, Fault.parse("truncated"), rng, True) == good[:-3]
    bad = spoil(good, Fault.parse("bad_crc"), rng, True)
    assert bad[:-2] == good[:-2] and not crc_ok(bad)
    garbage = spoil(good, Fault.parse("garbage"), rng, True)
    assert len(garbage) == len(good) and garbage != good


# --- register image -----------------------------------------------------------------

@pytest.mark.parametrize("base", [0, 40000, 50000])
def test_image_starts_with_suns_and_ends_with_the_end_model(base):
    img = image(base)
    assert img.read(base, 2) == [0x5375, 0x6E53]
    assert img.read(img.end - 2, 2) == [0xFFFF, 0]
    with pytest.raises(ModbusError) as exc:
        img.read(base - 1 if base else img.end, 2)
    assert exc.value.code == 2


def test_image_models_decode_with_the_hal_codec():
    img = image(models=(1, 701, 702, 703, 704, 705))
    for pm in img.models:
        i = pm.address - img.base
        d = sm.decode(pm.model_id, pm.address, img.regs[i:i + pm.layout.size])
        assert d.model_id == pm.model_id
    assert img.get(705, "NCrv") == 2 and img.get(702, "WMaxRtg") == 5000


def _write(img: RegisterImage, model: int, path: str, value: float) -> list[int]:
    pm = img.find(model)
    assert pm is not None
    slot = pm.layout.slot(path)
    raw = round(value / 10.0 ** (img._exponent(pm, slot) or 0))
    regs = slot.point.type.encode(raw, slot.point.size)
    return regs


def test_write_checks_are_all_or_nothing():
    img = image()
    a = addr(img, 123, "WMaxLimPct")
    before = list(img.regs)
    # read-only (W), out of range (150 %), not a symbol of an enum, partial 32-bit write
    for address, values, code in [
        (addr(img, 103, "W"), [10], 3),
        (a, _write(img, 123, "WMaxLimPct", 150.0), 3),
        (addr(img, 123, "Conn"), [7], 3),
        (addr(img, 103, "WH"), [1], 3),
        (img.base, [1], 3),  # the SunS marker
        (img.end, [1], 2),
        (a, [500, 1, 2, 3, 4, 1, 9999], 3),  # WMaxLim_Ena then OutPFSet 9.999: refused whole
    ]:
        with pytest.raises(ModbusError) as exc:
            img.write(address, values)
        assert exc.value.code == code, (address, values)
        assert img.regs == before
    changed = img.write(a, _write(img, 123, "WMaxLimPct", 55.5))
    assert changed == [(123, "WMaxLimPct")] and img.get(123, "WMaxLimPct") == pytest.approx(55.5)


def test_set_sf_keeps_settings_meaning():
    img = image()
    img.write(addr(img, 123, "WMaxLimPct"), [555])
    img.set_sf("WMaxLimPct_SF", -2)
    assert img.get_raw(123, "WMaxLimPct") == 5550
    assert img.get(123, "WMaxLimPct") == pytest.approx(55.5)
    with pytest.raises(KeyError):
        img.set_sf("Nope_SF", 0)


def test_handle_pdu_reads_writes_and_refuses():
    img = image()
    w = img.write
    assert handle_pdu(bytes.fromhex("03") + struct.pack(">HH", 40000, 2), img.read, w) \
        == bytes.fromhex("0304") + b"SunS"
    assert handle_pdu(bytes.fromhex("03") + struct.pack(">HH", 0, 2), img.read, w) \
        == bytes.fromhex("8302")
    assert handle_pdu(bytes.fromhex("03") + struct.pack(">HH", 40000, 126), img.read, w) \
        == bytes.fromhex("8303")
    assert handle_pdu(bytes.fromhex("2b0e0100"), img.read, w) == bytes.fromhex("ab01")
    a = addr(img, 123, "Conn")
    assert handle_pdu(b"\x06" + struct.pack(">HH", a, 0), img.read, w) \
        == b"\x06" + struct.pack(">HH", a, 0)
    assert img.get(123, "Conn") == 0
    req = b"\x10" + struct.pack(">HHB", a, 1, 2) + struct.pack(">H", 1)
    assert handle_pdu(req, img.read, w) == req[:5]
    assert img.get(123, "Conn") == 1


def test_model_lists():
    assert parse_models("1,113,120,121,122,123") == [1, 113, 120, 121, 122, 123]
    for bad in ("103,1", "1,1,103", "1,999", "1,101,103", "1,x"):
        with pytest.raises((ValueError, LookupError)):
            parse_models(bad)
    ids = [1, 103, 120, 121, 122, 123]
    mixed = shuffled(ids, 3)
    assert mixed[0] == 1 and sorted(mixed) == sorted(ids) and mixed != ids


# --- plant ------------------------------------------------------------------------------

P = PlantParams(tau_s=0.5)
GRID = Grid.nominal(R)


def run(cmd: Commands, seconds: float, dc_w: float = 4000.0, state: PlantState | None = None,
        grid: Grid = GRID, params: PlantParams = P) -> PlantState:
    s = state or PlantState()
    for _ in range(int(seconds / 0.05)):
        s = plant.step(params, s, grid, dc_w, cmd, 0.05)
    return s


def test_first_order_response_reaches_63_percent_in_one_tau():
    s = run(Commands(), P.tau_s)
    assert s.w == pytest.approx(3880 * (1 - math.exp(-1)), rel=0.01)
    assert run(Commands(), 5 * P.tau_s).w == pytest.approx(3880, rel=0.01)


def test_disconnect_goes_to_zero_and_off():
    s = run(Commands(connect=False), 3.0, state=run(Commands(), 3.0))
    assert s.w == 0 and s.var == 0 and s.st == OpState.OFF


def test_native_trip_is_off_by_default_and_trips_when_on():
    high = Grid.nominal(R, v_pu=1.2)
    assert run(Commands(), 2.0, grid=high).w > 3000
    tripping = PlantParams(tau_s=0.5, native_trip=True, reconnect_delay_s=1.0)
    s = run(Commands(), 0.5, grid=high, params=tripping, state=run(Commands(), 2.0))
    assert s.w == 0 and s.st == OpState.STANDBY and s.tripped
    s = run(Commands(), 0.5, state=s, params=tripping)
    assert s.tripped  # still inside the reconnect delay
    s = run(Commands(), 4.0, state=s, params=tripping)
    assert not s.tripped and s.w > 3000


@settings(max_examples=60, deadline=None)
@given(limit=st.floats(0, 6000), dc=st.floats(0, 8000),
       pf=st.one_of(st.none(), st.floats(-1, -0.8), st.floats(0.8, 1)))
def test_output_respects_limit_rating_and_pf_sign(limit, dc, pf):
    s = run(Commands(w_limit=limit, pf=pf), 3.0, dc_w=dc)
    assert s.w <= min(limit, dc * R.efficiency, R.w_max) + 1e-6
    assert math.hypot(s.w, s.var) <= R.va_max + 1e-6
    assert -R.var_max_abs - 1e-6 <= s.var <= R.var_max_inj + 1e-6
    if pf is not None and s.w > 1 and abs(pf) < 0.999:
        # over-excited (positive PF) injects vars, under-excited absorbs
        assert math.copysign(1, s.var) == math.copysign(1, pf)
        assert abs(plant.signed_pf(s.w, s.var)) == pytest.approx(abs(pf), abs=0.01)


def test_var_modes():
    s = run(Commands(var=-1000), 3.0)
    assert s.var == pytest.approx(-1000, rel=0.01)
    s = run(Commands(var_aval_pct=50), 3.0)
    assert s.var == pytest.approx(0.5 * min(2200, math.sqrt(5000**2 - s.w**2)), rel=0.02)


def test_grid_script_is_stepwise():
    g = GridScript.from_rows([[0, 1.0, 60], [1.5, 1.1, 60.5], [3, 0.9, 59]])
    assert g.at(-1) == (1.0, 60) and g.at(1.49) == (1.0, 60)
    assert g.at(1.5) == (1.1, 60.5) and g.at(100) == (0.9, 59)
    assert GridScript.from_rows([[0, 1, 60], [2, 1.1, 60]], loop=True).at(2.5) == (1, 60)
    for bad in ([], [[0, 1]], [[1, 1, 60], [0, 1, 60]], [[0, 5, 60]]):
        with pytest.raises(ValueError):
            GridScript.from_rows(bad)


def test_grid_script_files(tmp_path):
    csv_file = tmp_path / "g.csv"
    csv_file.write_text("t,v_pu,f_hz\n0,1.0,60\n2,1.05,60.1\n")
    assert plant.load_grid_script(csv_file).at(2) == (1.05, 60.1)
    js = tmp_path / "g.json"
    js.write_text('{"rows": [[0, 0.95, 59.9]], "loop": false}')
    assert plant.load_grid_script(js).at(0) == (0.95, 59.9)
