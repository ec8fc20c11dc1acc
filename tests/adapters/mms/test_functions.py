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

from inverter_agent.adapters.mms import client as mms_client
from inverter_agent.adapters.mms.functions_model import CURVES, SETTING_CONTROLS, SETTINGS
from inverter_agent.functions import get_profile, settings_to_dict

from .conftest import FunctionsServer, wait_until

LD = "GWINV1"
DEFAULTS = settings_to_dict(get_profile("rule21"))
ADD_CAUSE_INCONSISTENT = 26
CEASE, RETURN = 1, 2  # DCTE CeaEgzReqCtl: CeasetoEnergizeStateTransitionKind


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


def _shown(control) -> tuple[str, str]:
    """Where a controllable setting shows its value: (attribute, FC)."""
    return (f"{control.target}.mxVal.f", "MX") if control.kind == "float" else (
        f"{control.target}.stVal", "ST")


def test_every_setting_and_curve_reads_back(functions_server, con):
    for setting in SETTINGS:
        got = con.read_value(f"{LD}/{setting.target}", "SP")
        assert same(got, setting.to_mms(DEFAULTS)), (setting.target, got)
    for control in SETTING_CONTROLS:
        attr, fc = _shown(control)
        assert same(con.read_value(f"{LD}/{attr}", fc), control.to_mms(DEFAULTS)), attr
    for curve in CURVES:
        leaves = con.read(f"{LD}/{curve.target}", "SP")
        assert leaves["numPts"] == len(DEFAULTS[curve.path.split(".")[0]][
            curve.path.split(".")[1]]), curve.target
        for i, element in enumerate(curve.elements(DEFAULTS)):
            for name, want in zip(curve.fields, element, strict=True):
                assert same(leaves[f"crvPts.{i}.{name}"], want), (curve.target, i, name)


@pytest.mark.parametrize(("target", "value", "path", "expected"), [
    ("DCTE1.VLoLim.setMag.f", 91.0, "enter_service.v_low_pu", 0.91),  # % of nominal -> pu
    ("DHFW1.HzStr.setMag.f", 60.05, "freq_watt.db_of_hz", 0.05),  # start Hz -> deadband
    ("DHFW1.WGra.setMag.f", 50.0, "freq_watt.k_of", 0.03333333),  # %/Hz -> droop fraction
    ("DWMX1.RpuMax.setMag.f", 20.0, "ramp.up_pct_per_s", 20.0),
])
def test_valid_write_lands_and_is_persisted(functions_server, con, target, value, path,
                                            expected):
    con.write_float(f"{LD}/{target}", "SP", value)
    assert same(con.read_value(f"{LD}/{target}", "SP"), value)
    section, key = path.split(".")
    with open(functions_server.settings_file, encoding="utf-8") as fh:
        assert json.load(fh)["settings"][section][key] == expected
    assert functions_server.persisted()[section][key] == expected


def test_millisecond_setting_is_an_integer_in_ms(functions_server, con):
    con.write_int(f"{LD}/DCTE1.RtnDlTmms.setVal", "SP", 60500)  # 7-420 ...Tmms: ms
    assert functions_server.persisted()["enter_service"]["delay_s"] == 60.5
    assert con.read_value(f"{LD}/DCTE1.RtnDlTmms.setVal", "SP") == 60500


def test_boolean_setting_write_lands(functions_server, con):
    want = not DEFAULTS["volt_var"]["vref_auto"]
    con.write_bool(f"{LD}/DVVR1.VRefAdjEna.setVal", "SP", want)
    assert con.read_value(f"{LD}/DVVR1.VRefAdjEna.setVal", "SP") is want
    assert functions_server.persisted()["volt_var"]["vref_auto"] is want


def _refused(functions_server: FunctionsServer, con: Any, write: Any, target: str,
             fc: str = "SP", error: type[Exception] = mms_client.MmsClientError) -> Any:
    before_file = functions_server.file_bytes()
    before_value = con.read(f"{LD}/{target}", fc)
    before_settings = functions_server.persisted()
    with pytest.raises(error) as refused:
        write()
    assert con.read(f"{LD}/{target}", fc) == before_value
    assert functions_server.file_bytes() == before_file
    assert functions_server.persisted() == before_settings
    return refused.value


def test_apc_set_point_is_a_persisted_setting(functions_server, con):
    con.operate(f"{LD}/DFPF1.PFGnTgtSpt", 0.95)
    assert functions_server.persisted()["fixed_pf"]["pf"] == 0.95
    with open(functions_server.settings_file, encoding="utf-8") as fh:
        assert json.load(fh)["settings"]["fixed_pf"]["pf"] == 0.95
    assert wait_until(lambda: same(con.read_value(f"{LD}/DFPF1.PFGnTgtSpt.mxVal.f", "MX"),
                                   0.95))
    assert functions_server.temporary() == {}  # a setting, not a temporary command


def test_pf_out_of_range_is_refused_with_the_add_cause(functions_server, con):
    con.operate(f"{LD}/DFPF1.PFGnTgtSpt", 0.95)  # a file exists: it must not change either
    # the model shows an accepted value once the refresh thread has run: wait for it, so
    # "unchanged" below compares against the settled value, not one mid-refresh
    assert wait_until(lambda: same(con.read_value(f"{LD}/DFPF1.PFGnTgtSpt.mxVal.f", "MX"),
                                   0.95))
    refused = _refused(functions_server, con,
                       lambda: con.operate(f"{LD}/DFPF1.PFGnTgtSpt", 0.5),
                       "DFPF1.PFGnTgtSpt", "MX", mms_client.MmsControlError)
    assert refused.add_cause == ADD_CAUSE_INCONSISTENT


def test_mod_enables_a_function_persistently(functions_server, con):
    con.operate(f"{LD}/DVVR1.Mod", 5)  # volt-var off first: reactive modes exclude each other
    assert functions_server.persisted()["volt_var"]["enabled"] is False
    con.operate(f"{LD}/DFPF1.Mod", 1)  # on
    assert functions_server.persisted()["fixed_pf"]["enabled"] is True
    assert wait_until(lambda: con.read_value(f"{LD}/DFPF1.Beh.stVal", "ST") == 1)
    assert con.read_value(f"{LD}/DFPF1.Mod.stVal", "ST") == 1
    con.operate(f"{LD}/DFPF1.Mod", 5)  # off
    assert functions_server.persisted()["fixed_pf"]["enabled"] is False
    assert wait_until(lambda: con.read_value(f"{LD}/DFPF1.Beh.stVal", "ST") == 5)
    refused = _refused(functions_server, con, lambda: con.operate(f"{LD}/DFPF1.Mod", 3),
                       "DFPF1.Mod", "ST", mms_client.MmsControlError)  # 3 test: not offered
    assert refused.add_cause == ADD_CAUSE_INCONSISTENT


def test_enter_service_low_voltage_above_high_is_refused(functions_server, con):
    con.write_float(f"{LD}/DCTE1.VHiLim.setMag.f", "SP", 100.0)  # v_high 1.0 pu: accepted
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/DCTE1.VLoLim.setMag.f", "SP", 100.0),
             "DCTE1.VLoLim.setMag.f")


def test_partial_curve_write_is_validated_as_the_whole_curve(functions_server, con):
    first = f"{LD}/DVVR1.VVArCrv.crvPts(1).xVal"
    # (0.92, 0.98, 1.02, 1.08): 90 % at point 1 would make the voltages decrease.
    _refused(functions_server, con, lambda: con.write_float(first, "SP", 90.0),
             "DVVR1.VVArCrv.crvPts")
    con.write_float(first, "SP", 97.0)
    curve = functions_server.persisted()["volt_var"]["curve"]
    assert [p["v_pu"] for p in curve] == [0.92, 0.97, 1.02, 1.08]
    con.write_float(f"{LD}/DVVR1.VVArCrv.crvPts(3).yVal", "SP", -30.0)
    assert functions_server.persisted()["volt_var"]["curve"][3]["q_pct"] == -30.0
    assert con.read(f"{LD}/DVVR1.VVArCrv", "SP")["crvPts.3.yVal"] == -30.0


def test_extending_a_curve_by_one_point_and_gaps_are_refused(functions_server, con):
    con.write_float(f"{LD}/DVVR1.VVArCrv.crvPts(4).yVal", "SP", -44.0)  # unused point: y only
    con.write_float(f"{LD}/DVVR1.VVArCrv.crvPts(4).xVal", "SP", 110.0)  # now 5 points
    assert len(functions_server.persisted()["volt_var"]["curve"]) == 5
    assert wait_until(lambda: con.read_value(f"{LD}/DVVR1.VVArCrv.numPts", "SP") == 5)
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/DVVR1.VVArCrv.crvPts(7).xVal", "SP", 120.0),
             "DVVR1.VVArCrv.crvPts")


def test_curve_declares_its_axes_as_7_3_requires(functions_server, con):
    assert con.read_value(f"{LD}/DVVR1.VVArCrv.maxPts", "CF") == 8
    assert con.read_value(f"{LD}/DVVR1.VVArCrv.xD", "DC") == "V, % of nominal"


def test_ride_through_region_write(functions_server, con):
    ref = f"{LD}/DHVT1.RtCrv.crvPts(0).xVal"  # HV1 clearing time 13 s -> 12.5 s
    con.write_float(ref, "SP", 12.5)
    assert functions_server.persisted()["voltage_ride_through"]["over"][0][
        "clearing_time_s"] == 12.5
    # ride-through time 12 s must stay below clearing time - margin: 11 s is refused
    _refused(functions_server, con, lambda: con.write_float(ref, "SP", 11.0),
             "DHVT1.RtCrv.crvPts")


def test_settings_without_a_handler_and_wrong_types_are_refused(functions_server, con):
    _refused(functions_server, con,
             lambda: con.write_float(f"{LD}/DINV1.WRtg.setMag.f", "SP", 1.0),
             "DINV1.WRtg.setMag.f")
    _refused(functions_server, con,
             lambda: con.write_bool(f"{LD}/DCTE1.VLoLim.setMag.f", "SP", True),
             "DCTE1.VLoLim.setMag.f")


def test_temporary_limit_applies_until_released(functions_server, con):
    before_file = functions_server.file_bytes()
    con.operate(f"{LD}/DWMX1.WMaxLimPct", 40.0)
    assert functions_server.effective()["active_power_limit"] == {"enabled": True,
                                                                  "p_limit_pct": 40.0}
    assert wait_until(lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 40.0)
    assert con.read_value(f"{LD}/DWMX1.Mod.stVal", "ST") == 1  # effective: on
    assert con.read_value(f"{LD}/DGEN1.RlsCmd.stVal", "ST") is True
    assert functions_server.file_bytes() == before_file  # commands are not persisted

    con.operate(f"{LD}/DGEN1.RlsCmd", True)
    assert functions_server.temporary() == {}
    assert wait_until(lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0)


def test_refused_control_gives_the_add_cause_and_changes_nothing(functions_server, con):
    with pytest.raises(mms_client.MmsControlError) as refused:
        con.operate(f"{LD}/DWMX1.WMaxLimPct", 150.0)  # p_limit_pct allowed 0..100
    assert refused.value.add_cause == ADD_CAUSE_INCONSISTENT
    assert functions_server.temporary() == {}
    assert con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0


def test_cease_to_energize_and_return_to_service_is_select_before_operate(functions_server,
                                                                            con):
    ref = f"{LD}/DCTE1.CeaEgzReqCtl"
    assert con.read_value(f"{ref}.ctlModel", "CF") == 2  # sbo-with-normal-security
    assert con.read_value(f"{ref}.stVal", "ST") == RETURN
    con.operate(ref, CEASE)
    assert functions_server.effective()["enter_service"]["enabled"] is False
    assert wait_until(lambda: con.read_value(f"{ref}.stVal", "ST") == CEASE)
    assert con.read_value(f"{LD}/DCTE1.CeaEgzReqSt.stVal", "ST") == 4
    con.operate(ref, RETURN)
    assert functions_server.effective()["enter_service"]["enabled"] is True
    with pytest.raises(mms_client.MmsControlError):
        con.operate(ref, 3)


def test_status_view_is_published(functions_server, con):
    view = {"state": "momentary_cessation", "tripped": True, "voltage_region": "HV1",
            "frequency_region": "NN", "anti_islanding": "ok", "out_of_service_cause": None,
            "enter_service_remaining_s": 12.5, "not_followed": {"reactive": "q"},
            "setpoints": {"p_limit_pct": 80.0, "pf": None, "q_pct": -10.0},
            "functions": {"volt_var": {"enabled": True, "active": True, "followed": False},
                          "fixed_pf": {"enabled": False, "active": False, "followed": None}}}
    assert functions_server.command({"cmd": "status", "view": view}) == {"ok": True}
    points = con.read_logical_node(LD, "DGEN1")
    assert points[f"{LD}/DGEN1.CtlSt"][0] == 4
    assert points[f"{LD}/DGEN1.Trip"][0] is True and points[f"{LD}/DGEN1.Trip"][1].good
    assert points[f"{LD}/DGEN1.VRgn"][0] == "HV1"
    assert points[f"{LD}/DGEN1.NotFlw"][0] == "reactive"
    assert con.read_value(f"{LD}/DWMX1.ReqWMaxPct.mag.f", "MX") == 80.0
    assert not con.read_logical_node(LD, "DFPF1")[f"{LD}/DFPF1.ReqPF"][1].good  # no pf: invalid
    dvvr = con.read_logical_node(LD, "DVVR1")
    assert dvvr[f"{LD}/DVVR1.Health"][0] == 2 and dvvr[f"{LD}/DVVR1.Health"][1].good  # not followed
    assert not con.read_logical_node(LD, "DFPF1")[f"{LD}/DFPF1.Health"][1].good
    assert con.read_value(f"{LD}/DCTE1.RtnRmgTms.mag.f", "MX") == 12.5
    dhvt = con.read_logical_node(LD, "DHVT1")  # HV1 is a momentary-cessation region (Rule 21)
    assert dhvt[f"{LD}/DHVT1.CeaZnSt"][0] is True and dhvt[f"{LD}/DHVT1.TrZnSt"][0] is False
    assert con.read_logical_node(LD, "DLVT1")[f"{LD}/DLVT1.CeaZnSt"][0] is False
    assert con.read_value(f"{LD}/DECP1.EcpIsldSt.stVal", "ST") == 3


def test_requests_keep_temporary_commands_alive(tmp_path):
    server = FunctionsServer(str(tmp_path), "--revert-after", "1.0")
    try:
        with mms_client.connect("127.0.0.1", server.port) as con:
            con.operate(f"{LD}/DWMX1.WMaxLimPct", 50.0)
            for _ in range(4):  # reads keep it alive past the revert time
                time.sleep(0.4)
                con.read_value(f"{LD}/DGEN1.Trip.stVal", "ST")
            assert server.command({"cmd": "tick"}) == {"reverted": False}
            time.sleep(1.2)  # silence
            assert server.command({"cmd": "tick"}) == {"reverted": True}
            assert server.temporary() == {}
            assert wait_until(
                lambda: con.read_value(f"{LD}/DWMX1.WMaxLimPct.mxVal.f", "MX") == 100.0)
    finally:
        assert server.close() == 0
