"""The served DER model read over real MMS by two independent clients.

The server runs in another process (``demo_server --commands``); reads come
from libiec61850's client (``inverter_agent.adapters.mms.client``) and from open61850,
a pure-Python implementation that shares no code with libiec61850.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from open61850.data import BitStringData, TimestampData
from open61850.mms import DataAccessError, MmsClient
from open61850.quality import Quality as O61850Quality

from hal.reading import GOOD, LINK_FAILURE, STALE, Detail, Quality, Validity
from inverter_agent.adapters.mms import client as mms_client
from inverter_agent.adapters.mms.der_model import POINT_TABLE, der_model_spec
from inverter_agent.adapters.mms.model import Cdc

T0 = 1_700_000_000.123  # a time with whole milliseconds: MMS UtcTime keeps ms here

VALUES: dict[str, Any] = {
    "W": 1234.5, "VAr": -321.25, "VA": 1250.0, "PF": 0.875, "Hz": 60.0625,
    "PhVphA": 240.5, "PhVphB": 241.25, "PhVphC": 239.75,
    "AphA": 10.5, "AphB": 11.25, "AphC": 12.75,
    "WRtg": 7600.0, "VARtg": 7700.0, "VArRtgQ1": 4000.0, "WMax": 7000.0,
    "VNom": 240.0, "OutPFSet": 0.95, "WH": 123456.0, "VArMaxQ1": 4400.0, "WAval": 5000.0,
    "health": 3,  # LLN0.Health: the agent's own verdict (Alarm)
    "St": 7, "link": False, "Mn": "ACME", "Md": "X-7600", "SN": "SN42", "Vr": "1.2.3",
}
# Non-good qualities on a few points, to see every validity on the wire.
QUALITIES: dict[str, Quality] = {
    "VAr": Quality(Validity.QUESTIONABLE, Detail.OUT_OF_RANGE),
    "VA": STALE,
    "PhVphB": Quality(Validity.INVALID, Detail.BAD_REFERENCE),
}

SPEC = der_model_spec()
FC_VALUE = {Cdc.MV: ("MX", "mag.f"), Cdc.WYE: ("MX", "cVal.mag.f"), Cdc.ASG: ("SP", "setMag.f"),
            Cdc.ENS: ("ST", "stVal"), Cdc.SPS: ("ST", "stVal"), Cdc.DPL: ("DC", ""),
            Cdc.ENG: ("SP", "setVal"), Cdc.BCR: ("ST", "actVal")}


def _wire(quality: Quality) -> dict[str, int]:
    return {"validity": int(quality.validity), "detail": int(quality.detail)}


def _stamp(i: int) -> float:
    return T0 + 0.007 * i


def _snapshot() -> dict[str, dict[str, Any]]:
    return {name: {"value": v, "t": _stamp(i), **_wire(QUALITIES.get(name, GOOD))}
            for i, (name, v) in enumerate(VALUES.items())}


def _expected() -> dict[str, tuple[Any, Quality | None, float | None]]:
    """Object reference -> (value, q, t) the clients must see."""
    out = {}
    index = {name: i for i, name in enumerate(VALUES)}
    for point, target, convert in POINT_TABLE:
        value = convert(VALUES[point]) if convert else VALUES[point]
        cdc = SPEC.data_object(f"INV1/{target}").cdc
        if cdc in (Cdc.ASG, Cdc.DPL, Cdc.ENG):
            out[f"GWINV1/{target}"] = (value, None, None)  # 7-3 gives these no q/t
        else:
            out[f"GWINV1/{target}"] = (value, QUALITIES.get(point, GOOD), _stamp(index[point]))
    return out


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=0, abs_tol=1e-6)
    return bool(got == want)


def test_every_mapped_point_reads_back_with_libiec61850(server_process):
    server_process.publish(**_snapshot())
    got = mms_client.read_all("127.0.0.1", server_process.port, timeout=5)
    for ref, (value, quality, t) in _expected().items():
        assert ref in got, f"{ref} not served"
        got_value, got_q, got_t = got[ref]
        assert _same_value(got_value, value), (ref, got_value, value)
        assert got_q == quality, (ref, got_q, quality)
        if t is None:
            assert got_t is None
        else:
            assert got_t > 1e9, f"{ref}: 1970 timestamp"
            assert abs(got_t - t) <= 0.001, (ref, got_t, t)


def _open61850_read(client: MmsClient, target: str) -> tuple[Any, Any, Any]:
    cdc = SPEC.data_object(f"INV1/{target}").cdc
    fc, attr = FC_VALUE[cdc]
    ref = f"GWINV1/{target}" + (f".{attr}" if attr else "")
    if cdc in (Cdc.ASG, Cdc.DPL, Cdc.ENG):
        return client.read(f"{ref} [{fc}]").value, None, None
    value, q, t = client.read_many([f"{ref} [{fc}]", f"GWINV1/{target}.q [{fc}]",
                                    f"GWINV1/{target}.t [{fc}]"])
    return value.value, q, t


def _o61850_quality(quality: Quality) -> O61850Quality:
    names = tuple(d.name.lower().replace("_", "-") for d in Detail if d and d in quality.detail)
    return O61850Quality(quality.validity.name.lower(), names)


def test_every_mapped_point_reads_back_with_open61850(server_process):
    server_process.publish(**_snapshot())
    expected = _expected()
    with MmsClient.connect("127.0.0.1", server_process.port, timeout=5) as client:
        for _, target, _ in POINT_TABLE:
            value, quality, t = expected[f"GWINV1/{target}"]
            got_value, got_q, got_t = _open61850_read(client, target)
            assert _same_value(got_value, value), (target, got_value, value)
            if quality is None:
                continue
            assert isinstance(got_q, BitStringData) and isinstance(got_t, TimestampData)
            assert O61850Quality.from_bitstring(got_q) == _o61850_quality(quality), target
            assert abs(got_t.value.timestamp() - t) <= 0.001, (target, got_t.value, t)


def test_value_none_keeps_last_value_but_takes_the_quality(server_process):
    server_process.publish(W={"value": 500.0, "t": T0, **_wire(GOOD)})
    server_process.publish(W={"value": None, "t": T0 + 1, **_wire(LINK_FAILURE)})
    value, quality, t = mms_client.read_all("127.0.0.1", server_process.port)["GWINV1/MMXU1.TotW"]
    assert value == 500.0
    assert quality == LINK_FAILURE and not quality.good
    assert abs(t - (T0 + 1)) <= 0.001
    with MmsClient.connect("127.0.0.1", server_process.port, timeout=5) as client:
        q = O61850Quality.from_bitstring(client.read("GWINV1/MMXU1.TotW.q [MX]"))
        assert q.validity == "invalid" and q.details == ("failure",)
        assert client.read("GWINV1/MMXU1.TotW.mag.f [MX]").value == 500.0


def test_a_changed_value_is_read_by_both_clients(server_process):
    with mms_client.connect("127.0.0.1", server_process.port) as lib_client, \
            MmsClient.connect("127.0.0.1", server_process.port, timeout=5) as o_client:
        for w in (100.0, 2500.5, -3.25):
            server_process.publish(W={"value": w, "t": T0, **_wire(GOOD)})
            assert lib_client.read_value("GWINV1/MMXU1.TotW.mag.f", "MX") == w
            assert o_client.read("GWINV1/MMXU1.TotW.mag.f [MX]").value == w


def test_unpublished_points_are_invalid_with_a_real_time(server_process):
    got = mms_client.read_all("127.0.0.1", server_process.port)
    value, quality, t = got["GWINV1/MMXU1.Hz"]
    assert quality is not None and quality.validity == Validity.INVALID
    assert t is not None and t > 1e9
    _, beh_q, _ = got["GWINV1/MMXU1.Beh"]
    assert got["GWINV1/LLN0.Mod"][0] == 1 and beh_q == GOOD
    assert got["GWINV1/LPHD1.Proxy"][0] is True


def test_browse_lists_the_der_logical_nodes(server_process):
    with mms_client.connect("127.0.0.1", server_process.port) as con:
        assert con.logical_devices() == ["GWINV1"]
        assert set(con.logical_nodes("GWINV1")) == {"LLN0", "LPHD1", "MMXU1", "MMTR1", "DECP1",
                                                    "DINV1", "DGEN1", "DSTO1", "DBAT1"}
        objects = {(ln, do) for _, ln, do in con.browse()}
    for _, target, _ in POINT_TABLE:
        ln, do = target.split(".")[:2]
        assert (ln, do) in objects


def test_format_model_shows_values_quality_and_time(server_process):
    server_process.publish(**_snapshot())
    text = mms_client.format_model(mms_client.read_all("127.0.0.1", server_process.port))
    assert "GWINV1" in text and "  MMXU1" in text
    assert "TotW = 1234.5  [good]  2023-11-14T22:13:20.123+00:00" in text
    assert "TotVA = 1250  [invalid|failure|old_data]" in text


def test_settings_and_name_plates_are_not_writable_by_default(server_process):
    server_process.publish(**_snapshot())
    with MmsClient.connect("127.0.0.1", server_process.port, timeout=5) as client:
        from open61850.data import FloatData, VisibleStringData
        with pytest.raises(DataAccessError):
            client.write("GWINV1/DINV1.WRtg.setMag.f [SP]", FloatData(1.0))
        with pytest.raises(DataAccessError):
            client.write("GWINV1/LLN0.NamPlt.vendor [DC]", VisibleStringData("evil"))
        assert client.read("GWINV1/DINV1.WRtg.setMag.f [SP]").value == 7600.0
        assert client.read("GWINV1/LLN0.NamPlt.vendor [DC]").value == "inverter-agent"
