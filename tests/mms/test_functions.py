"""Function settings, controls and status over MMS with libiec61850's client.

The server (``functions_server``) runs in another process with a real
SettingsService persisting to a temp state directory; the SWIG client runs
here. ``test_functions_interop`` repeats the essentials with open61850.
"""

from __future__ import annotations

import json
import math
import struct
import time
from typing import Any

import pytest

from inverter_agent.functions import get_profile, settings_to_dict
from inverter_agent.mms import client as mms_client
from inverter_agent.mms.functions_model import CURVES, SETTINGS

from .conftest import FunctionsServer, wait_until

LD = "GWINV1"
DEFAULTS = settings_to_dict(get_profile("rule21"))
ADD_CAUSE_INCONSISTENT = 26
DBPOS_ON, DBPOS_OFF = [True, False], [False, True]  # Dbpos as the bit string read back


def f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        # float32 on the wire; open61850 hands back the shortest decimal, libiec61850 the float
        return math.isclose(got, f32(want), rel_tol=1e-6, abs_tol=1e-6)
    return bool(got == want)


@pytest.fixture
def con(functions_server):
    with mms_client.connect("127.0.0.1", functions_server.port) as connection:
        yield connection


def test_every_setting_and_curve_reads_back(functions_server, con):
    for setting in SETTINGS:
        got = con.read_value(f"{LD}/{setting.target}", "SP")
        assert same(got, setting.to_mms(DEFAULTS)), (setting.target, got)
    for curve in CURVES:
        leaves = con.read(f"{LD}/{curve.target}", "SP")
        assert leaves["numPts"] == len(DEFAULTS[curve.path.split(".")[0]][
            curve.path.split(".")[1]]), curve.target
        for i, element in enumerate(curve.elements(DEFAULTS)):
            for name, want in zip(curve.fields, element, strict=True):
                assert same(leaves[f"crvPts.{i}.{name}"], want), (curve.target, i, name)


@pytest.mark.parametrize(("target", "value", "path", "expected"), [
    ("DFPF1.PFGnTgtSpt.setMag.f", 0.95, "fixed_pf.pf", 0.95),
    ("DESE1.VLo.setMag.f", 91.0, "enter_service.v_low_pu", 0.91),  # % of nominal -> pu
    ("DHFW1.KOfPct.setMag.f", 3.0, "freq_watt.k_of", 0.03),  # % -> fraction
    ("DESE1.DlTms.setMag.f", 60.5, "enter_service.delay_s", 60.5),
    ("DRCT1.RmpUpRte.setMag.f", 20.0, "ramp.up_pct_per_s", 20.0),
])
def test_valid_write_lands_and_is_persisted(functions_server, con, target, value, path,
                                            expected):
    con.write_float(f"{LD}/{target}", "SP", value)
    assert same(con.read_value(f"{LD}/{target}", "SP"), value)
    section, key = path.split(".")
    with open(functions_server.settings_file, encoding="utf-8") as fh:
        assert json.load(fh)["settings"][section][key] == expected
    assert functions_server.persisted()[section][key] == expected


def test_boolean_setting_write_lands(functions_server, con):
    con.write_bool(f"{LD}/DFPF1.PFAbs.setVal", "SP", True)
    assert con.read_value(f"{LD}/DFPF1.PFAbs.setVal", "SP") is True
    assert functions_server.persisted()["fixed_pf"]["absorbing"] is True


def _refused(functions_server: FunctionsServer, con: Any, write: Any, target: str,
             fc: str = "SP") -> None:
    before_file = functions_server.file_bytes()
    before_value = con.read(f"{LD}/{target}", fc)
    before_settings = functions_server.persisted()
    with pytest.raises(mms_client.MmsClientError):
        write()
    assert con.read(f"{LD}/{target}", fc) == before_value
    assert functions_server.file_bytes() == before_file
    assert functions_server.persisted() == before_settings


def test_pf_out_of_range_is_refused(functions_server, con):
    ref = f"{LD}/DFPF1.PFGnTgtSpt.setMag.f"
    con.write_float(ref, "SP", 0.95)  # a file exists: it must not change either
    _refused(functions_server, con, lambda: con.write_float(ref, "SP", 0.5),
             "DFPF1.PFGnTgtSpt.setMag.f")


def test_enter_service_low_voltage_above_high_is_refused(functions_server, con):
    con.write_float(f"{LD}/DESE1.VHi.setMag.f", "SP", 100.0)  # v_high 1.0 pu: accepted
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/DESE1.VLo.setMag.f", "SP", 100.0),
             "DESE1.VLo.setMag.f")


def test_partial_curve_write_is_validated_as_the_whole_curve(functions_server, con):
    first = f"{LD}/DVVR1.Crv.crvPts(1).xVal"
    # (0.92, 0.98, 1.02, 1.08): 90 % at point 1 would make the voltages decrease.
    _refused(functions_server, con, lambda: con.write_float(first, "SP", 90.0),
             "DVVR1.Crv.crvPts")
    con.write_float(first, "SP", 97.0)
    curve = functions_server.persisted()["volt_var"]["curve"]
    assert [p["v_pu"] for p in curve] == [0.92, 0.97, 1.02, 1.08]
    con.write_float(f"{LD}/DVVR1.Crv.crvPts(3).yVal", "SP", -30.0)
    assert functions_server.persisted()["volt_var"]["curve"][3]["q_pct"] == -30.0
    assert con.read(f"{LD}/DVVR1.Crv", "SP")["crvPts.3.yVal"] == -30.0


def test_extending_a_curve_by_one_point_and_gaps_are_refused(functions_server, con):
    con.write_float(f"{LD}/DVVR1.Crv.crvPts(4).yVal", "SP", -44.0)  # unused point: y only
    con.write_float(f"{LD}/DVVR1.Crv.crvPts(4).xVal", "SP", 110.0)  # now 5 points
    assert len(functions_server.persisted()["volt_var"]["curve"]) == 5
    assert wait_until(lambda: con.read_value(f"{LD}/DVVR1.Crv.numPts", "SP") == 5)
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/DVVR1.Crv.crvPts(7).xVal", "SP", 120.0),
             "DVVR1.Crv.crvPts")


def test_ride_through_region_write(functions_server, con):
    ref = f"{LD}/DHVT1.Crv.crvPts(0).xVal"  # HV1 clearing time 13 s -> 12.5 s
    con.write_float(ref, "SP", 12.5)
    assert functions_server.persisted()["voltage_ride_through"]["over"][0][
        "clearing_time_s"] == 12.5
    # ride-through time 12 s must stay below clearing time - margin: 11 s is refused
    _refused(functions_server, con, lambda: con.write_float(ref, "SP", 11.0),
             "DHVT1.Crv.crvPts")


def test_settings_without_a_handler_and_wrong_types_are_refused(functions_server, con):
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/ZINV1.WRtg.setMag.f", "SP", 1.0),
             "ZINV1.WRtg.setMag.f")
    _refused(functions_server, con,
             lambda: con.write_bool(f"{LD}/DFPF1.PFGnTgtSpt.setMag.f", "SP", True),
             "DFPF1.PFGnTgtSpt.setMag.f")


def test_controls_apply_temporarily_and_show_the_effective_state(functions_server, con):
    before_file = functions_server.file_bytes()
    con.operate(f"{LD}/DFPF1.ModEna", True)
    assert functions_server.temporary() == {"fixed_pf.enabled": True}
    effective = functions_server.effective()
    assert effective["fixed_pf"]["enabled"] and not effective["volt_var"]["enabled"]
    assert wait_until(lambda: con.read_value(f"{LD}/DVVR1.ModEna.stVal", "ST") is False)
    assert con.read_value(f"{LD}/DFPF1.ModEna.stVal", "ST") is True
    assert con.read_value(f"{LD}/DFPF1.FctEna.setVal", "SP") is True  # effective

    con.operate(f"{LD}/DWMX1.WMaxLimPct", 40.0)
    assert functions_server.effective()["active_power_limit"] == {"enabled": True,
                                                                  "p_limit_pct": 40.0}
    assert wait_until(lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 40.0)
    assert con.read_value(f"{LD}/DRCC1.RlsCmd.stVal", "ST") is True
    assert functions_server.file_bytes() == before_file  # commands are not persisted

    con.operate(f"{LD}/DRCC1.RlsCmd", True)
    assert functions_server.temporary() == {}
    assert wait_until(lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0)


def test_refused_control_gives_the_add_cause_and_changes_nothing(functions_server, con):
    with pytest.raises(mms_client.MmsControlError) as refused:
        con.operate(f"{LD}/DWMX1.WMaxLimPct", 150.0)  # p_limit_pct allowed 0..100
    assert refused.value.add_cause == ADD_CAUSE_INCONSISTENT
    assert functions_server.temporary() == {}
    assert con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0


def test_connect_disconnect_is_select_before_operate(functions_server, con):
    assert con.read_value(f"{LD}/DRCC1.Conn.ctlModel", "CF") == 2  # sbo-with-normal-security
    assert con.read_value(f"{LD}/DRCC1.Conn.stVal", "ST") == DBPOS_ON
    con.operate(f"{LD}/DRCC1.Conn", False)
    assert functions_server.effective()["enter_service"]["enabled"] is False
    assert wait_until(lambda: con.read_value(f"{LD}/DRCC1.Conn.stVal", "ST") == DBPOS_OFF)
    con.operate(f"{LD}/DRCC1.Conn", True)
    assert functions_server.effective()["enter_service"]["enabled"] is True


def test_status_view_is_published(functions_server, con):
    view = {"state": "momentary_cessation", "tripped": True, "voltage_region": "HV1",
            "frequency_region": "NN", "anti_islanding": "ok", "out_of_service_cause": None,
            "enter_service_remaining_s": 12.5, "not_followed": {"reactive": "q"},
            "setpoints": {"p_limit_pct": 80.0, "pf": None, "q_pct": -10.0},
            "functions": {"volt_var": {"enabled": True, "active": True, "followed": False},
                          "fixed_pf": {"enabled": False, "active": False, "followed": None}}}
    assert functions_server.command({"cmd": "status", "view": view}) == {"ok": True}
    points = con.read_logical_node(LD, "DRCS1")
    assert points[f"{LD}/DRCS1.CtlSt"][0] == 4
    assert points[f"{LD}/DRCS1.Trip"][0] is True and points[f"{LD}/DRCS1.Trip"][1].good
    assert points[f"{LD}/DRCS1.VRgn"][0] == "HV1"
    assert points[f"{LD}/DRCS1.NotFlw"][0] == "reactive"
    assert points[f"{LD}/DRCS1.WLimPct"][0] == 80.0
    assert not points[f"{LD}/DRCS1.PFSpt"][1].good  # no pf commanded: invalid
    dvvr = con.read_logical_node(LD, "DVVR1")
    assert dvvr[f"{LD}/DVVR1.FctAct"][0] is True
    assert dvvr[f"{LD}/DVVR1.FctFlw"][0] is False and dvvr[f"{LD}/DVVR1.FctFlw"][1].good
    assert not con.read_logical_node(LD, "DFPF1")[f"{LD}/DFPF1.FctFlw"][1].good
    assert con.read_value(f"{LD}/DESE1.RmgTms.mag.f", "MX") == 12.5


def test_requests_keep_temporary_commands_alive(tmp_path):
    server = FunctionsServer(str(tmp_path), "--revert-after", "1.0")
    try:
        with mms_client.connect("127.0.0.1", server.port) as con:
            con.operate(f"{LD}/DWMX1.WMaxLimPct", 50.0)
            for _ in range(4):  # reads keep it alive past the revert time
                time.sleep(0.4)
                con.read_value(f"{LD}/DRCS1.Trip.stVal", "ST")
            assert server.command({"cmd": "tick"}) == {"reverted": False}
            time.sleep(1.2)  # silence
            assert server.command({"cmd": "tick"}) == {"reverted": True}
            assert server.temporary() == {}
            assert wait_until(
                lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0)
    finally:
        assert server.close() == 0
