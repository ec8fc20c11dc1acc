"""An OV1 clearing time beyond IEEE 1547-2018's range is refused over MMS.

The ``ieee1547-2018-cat-b`` profile declares abnormal Category II, so its trip
tables are held to Table 12 (functions/trip_ranges.py): OV1 clearing time 1-13 s.
A write past it gets the MMS write error and changes nothing, on the wire or on
disk; one at the edge lands.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inverter_agent.adapters.mms import client as mms_client

from .conftest import FunctionsServer

LD = "GWINV1"
CURVE = f"{LD}/DHVT1.RtCrv.crvPts"
OV1_CLEARING = f"{CURVE}(0).xVal"  # element 0 of DHVT1 is OV1


@pytest.fixture
def cat_b_server(tmp_path) -> Iterator[FunctionsServer]:
    server = FunctionsServer(str(tmp_path), "--profile", "ieee1547-2018-cat-b")
    try:
        yield server
    finally:
        rc = server.close()
        assert rc == 0, f"functions server exit code {rc}"


def _ov1(server: FunctionsServer) -> dict:
    return server.persisted()["voltage_ride_through"]["over"][0]


def test_ov1_clearing_time_beyond_the_category_range_is_refused(cat_b_server):
    with mms_client.connect("127.0.0.1", cat_b_server.port, timeout=5) as con:
        assert _ov1(cat_b_server)["name"] == "OV1"
        assert _ov1(cat_b_server)["clearing_time_s"] == 2.0
        con.write_float(OV1_CLEARING, "SP", 12.0)  # lands: a file now exists
        before_file = cat_b_server.file_bytes()
        before_wire = con.read(CURVE, "SP")
        with pytest.raises(mms_client.MmsClientError) as refused:
            con.write_float(OV1_CLEARING, "SP", 13.5)  # Table 12: at most 13 s
        assert "OBJECT_VALUE_INVALID" in str(refused.value)  # the MMS refusal of a value
        assert _ov1(cat_b_server)["clearing_time_s"] == 12.0
        assert cat_b_server.file_bytes() == before_file
        assert con.read(CURVE, "SP") == before_wire
        con.write_float(OV1_CLEARING, "SP", 13.0)  # the edge itself is allowed
        assert _ov1(cat_b_server)["clearing_time_s"] == 13.0
