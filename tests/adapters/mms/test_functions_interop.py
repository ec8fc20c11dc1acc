"""The same settings, controls and reports with open61850, an independent client.

open61850 is pure Python and shares no code with libiec61850, so a server
quirk that libiec61850's own client tolerates shows up here. The server still
runs in another process (``functions_server``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from open61850.data import ArrayData, FloatData, IntData, StructureData
from open61850.mms import (
    ControlError,
    DataAccessError,
    InformationReport,
    MmsClient,
    ObjectName,
    Report,
    decode_report,
    is_report,
    operate,
)
from open61850.mms import rcb as rcbs

from inverter_agent.adapters.mms.functions_model import CURVES, SETTING_CONTROLS, SETTINGS
from inverter_agent.functions import get_profile, settings_to_dict

from .conftest import wait_until
from .test_functions import ADD_CAUSE_INCONSISTENT, LD, same

DEFAULTS = settings_to_dict(get_profile("rule21"))
OBJECT_VALUE_INVALID = 11


@pytest.fixture
def client(functions_server):
    with MmsClient.connect("127.0.0.1", functions_server.port, timeout=5) as c:
        yield c


def _value(data: Any) -> Any:
    if isinstance(data, ArrayData):
        return [_value(e) for e in data.elements]
    if isinstance(data, StructureData):
        return [_value(m) for m in data.members]
    return data.value


def test_every_setting_and_curve_reads_back(client):
    for setting in SETTINGS:
        got = client.read(f"{LD}/{setting.target} [SP]").value
        assert same(got, setting.to_mms(DEFAULTS)), setting.target
    for control in SETTING_CONTROLS:
        attr, fc = (("mxVal.f", "MX") if control.kind == "float" else ("stVal", "ST"))
        got = client.read(f"{LD}/{control.target}.{attr} [{fc}]").value
        assert same(got, control.to_mms(DEFAULTS)), control.target
    for curve in CURVES:
        got = _value(client.read(f"{LD}/{curve.target}.crvPts [SP]"))
        for got_element, want in zip(got, curve.elements(DEFAULTS), strict=True):
            assert all(same(g, w) for g, w in zip(got_element, want, strict=True)), curve.target


def test_valid_write_lands_and_is_persisted(functions_server, client):
    client.write(f"{LD}/DVVR1.RspTmms.setVal [SP]", IntData(10000))  # ms
    assert client.read(f"{LD}/DVVR1.RspTmms.setVal [SP]").value == 10000
    assert functions_server.persisted()["volt_var"]["response_time_s"] == 10.0
    operate(client, f"{LD}/DVWC1.Mod", IntData(5))  # off: a persisted setting
    assert functions_server.persisted()["volt_watt"]["enabled"] is False
    assert functions_server.temporary() == {}


def _curve(points: list[tuple[float, float]], size: int = 8) -> ArrayData:
    padded = points + [(0.0, 0.0)] * (size - len(points))
    return ArrayData([StructureData([FloatData(x), FloatData(y)]) for x, y in padded])


def test_whole_curve_write_sets_the_points(functions_server, client):
    client.write(f"{LD}/DVVR1.VVArCrv.crvPts [SP]",
                 _curve([(90.0, 30.0), (97.5, 0.0), (103.0, 0.0), (110.0, -30.0), (115, -44)]))
    curve = functions_server.persisted()["volt_var"]["curve"]
    assert curve == [{"v_pu": 0.9, "q_pct": 30.0}, {"v_pu": 0.975, "q_pct": 0.0},
                     {"v_pu": 1.03, "q_pct": 0.0}, {"v_pu": 1.1, "q_pct": -30.0},
                     {"v_pu": 1.15, "q_pct": -44.0}]
    assert wait_until(lambda: client.read(f"{LD}/DVVR1.VVArCrv.numPts [SP]").value == 5)


@pytest.mark.parametrize(("ref", "data"), [
    (f"{LD}/DVVR1.VVArCrv.crvPts [SP]", _curve([(98.0, 44.0), (92.0, 0.0)])),  # not monotonic
    (f"{LD}/DVVR1.VVArCrv.crvPts [SP]", _curve([(98.0, 44.0)])),  # one point
    (f"{LD}/DCTE1.VLoLim.setMag.f [SP]", FloatData(106.0)),  # above v_high 105 %
    (f"{LD}/DVVR1.RspTmms.setVal [SP]", IntData(-5000)),  # negative response time
])
def test_invalid_write_is_refused_and_nothing_changes(functions_server, client, ref, data):
    before = client.read(ref)
    before_file = functions_server.file_bytes()
    with pytest.raises(DataAccessError) as refused:
        client.write(ref, data)
    assert refused.value.code == OBJECT_VALUE_INVALID
    assert client.read(ref) == before
    assert functions_server.file_bytes() == before_file


def test_operate_and_refuse_controls(functions_server, client):
    operate(client, f"{LD}/DVAR1.VArTgtSptPct", StructureData([FloatData(-10.0)]))
    assert functions_server.persisted()["constant_var"]["q_pct"] == -10.0  # APC: a setting
    before_file = functions_server.file_bytes()
    with pytest.raises(ControlError) as refused:
        operate(client, f"{LD}/DFPF1.PFGnTgtSpt", StructureData([FloatData(1.5)]))
    assert refused.value.last_appl_error.add_cause == ADD_CAUSE_INCONSISTENT
    assert functions_server.file_bytes() == before_file
    operate(client, f"{LD}/DWMX1.WMaxLimPct", StructureData([FloatData(25.0)]))
    assert functions_server.effective()["active_power_limit"]["p_limit_pct"] == 25.0
    with pytest.raises(ControlError) as refused:
        operate(client, f"{LD}/DWMX1.WMaxLimPct", StructureData([FloatData(-5.0)]))
    assert refused.value.last_appl_error is not None
    assert refused.value.last_appl_error.add_cause == ADD_CAUSE_INCONSISTENT
    assert functions_server.effective()["active_power_limit"]["p_limit_pct"] == 25.0
    # sbo-with-normal-security: SBO read, Oper; 1 = cease to energize
    operate(client, f"{LD}/DCTE1.CeaEgzReqCtl", IntData(1))
    assert functions_server.effective()["enter_service"]["enabled"] is False
    operate(client, f"{LD}/DGEN1.RlsCmd", True)
    assert functions_server.temporary() == {}


class Reports:
    """Collects decoded reports from a client's receive thread."""

    def __init__(self) -> None:
        self.items: list[Report] = []
        self.cond = threading.Condition()

    def __call__(self, message: InformationReport) -> None:
        if is_report(message):
            with self.cond:
                self.items.append(decode_report(message))
                self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> Report | None:
        with self.cond:
            found: list[Report] = []

            def match() -> bool:
                found[:] = [r for r in self.items if predicate(r)]
                return bool(found)
            self.cond.wait_for(match, timeout=timeout)
            return found[0] if found else None


def _member(report: Report, index: int) -> Any:
    for entry in report.entries:
        if entry.index == index:
            return _value(entry.value)
    return None


def test_measurement_urcb_reports_a_value_change(functions_server, client):
    reports = Reports()
    client.add_report_listener(reports)
    rcbs.enable(client, ObjectName("LLN0$RP$urcbMeas01", LD),
                rcbs.RcbSettings(intg_pd_ms=None, general_interrogation=False))
    functions_server.publish(W={"value": 4321.5, "t": 1_700_000_000.0})
    report = reports.wait_for(lambda r: _member(r, 0) is not None
                              and _member(r, 0)[0] == [4321.5])
    assert report is not None, reports.items
    assert report.rpt_id == "Meas" and report.data_set == f"{LD}/LLN0$Meas"


def test_event_brcb_reports_a_trip(functions_server, client):
    reports = Reports()
    client.add_report_listener(reports)
    rcbs.enable(client, ObjectName("LLN0$BR$brcbEvents01", LD),
                rcbs.RcbSettings(intg_pd_ms=None, general_interrogation=False))
    functions_server.command({"cmd": "status", "view": {"tripped": True, "state":
                                                       "out_of_service"}})
    report = reports.wait_for(lambda r: _member(r, 0) is not None and _member(r, 0)[0] is True)
    assert report is not None, reports.items
    assert report.rpt_id == "Events" and report.entry_id is not None
