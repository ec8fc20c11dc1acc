"""Utility, FDEMS and aggregator at once: three clients, a connection limit of three."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from open61850.data import FloatData, IntData, StructureData
from open61850.mms import MmsClient, MmsConnectionError, operate

from .conftest import FunctionsServer
from .test_functions import LD

ROUNDS = 20


@pytest.fixture
def limited(tmp_path):
    server = FunctionsServer(str(tmp_path), "--max-connections", "3")
    yield server
    assert server.close() == 0


def _open61850_client(client: MmsClient, target: str, values: list[Any],
                      errors: list[str], control: str, ctl_val: Any) -> None:
    try:
        for value in values:
            client.write(f"{LD}/{target} [SP]", value)
            assert client.read(f"{LD}/{target} [SP]").value == value.value
            client.read(f"{LD}/MMXU1.TotW.mag.f [MX]")
        operate(client, f"{LD}/{control}", ctl_val)
    except Exception as exc:  # reported to the main thread
        errors.append(f"{target}: {exc!r}")


def test_three_clients_read_and_write_at_once_and_a_fourth_is_refused(limited):
    errors: list[str] = []
    delays = [IntData(1000 * v) for v in range(10, 10 + ROUNDS)]  # enter_service.delay_s, ms
    ramps = [FloatData(10.0 + i) for i in range(ROUNDS)]  # ramp.down_pct_per_s
    rsp = [IntData(1000 * (5 + i)) for i in range(ROUNDS)]  # volt_var.response_time_s, ms
    # All three clients are open61850 threads: a libiec61850 (SWIG) client in
    # this process would hold the GIL while it waits and starve the others.
    utility = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    fdems = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    aggregator = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    threads = [
        threading.Thread(target=_open61850_client,
                         args=(fdems, "DCTE1.RtnDlTmms.setVal", delays, errors, "DVWC1.Mod",
                               IntData(1))),
        threading.Thread(target=_open61850_client,
                         args=(aggregator, "DWMX1.RpdMax.setMag.f", ramps, errors,
                               "DHFW1.Mod", IntData(1))),
        threading.Thread(target=_open61850_client,
                         args=(utility, "DVVR1.RspTmms.setVal", rsp, errors,
                               "DWMX1.WMaxLimPct", StructureData([FloatData(60.0)]))),
    ]
    with utility, fdems, aggregator:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        with pytest.raises((MmsConnectionError, OSError, TimeoutError)):
            MmsClient.connect("127.0.0.1", limited.port, timeout=2).close()
    persisted = limited.persisted()
    assert persisted["enter_service"]["delay_s"] == 10.0 + ROUNDS - 1
    assert persisted["ramp"]["down_pct_per_s"] == 10.0 + ROUNDS - 1
    assert persisted["volt_var"]["response_time_s"] == 5.0 + ROUNDS - 1
    assert persisted["volt_watt"]["enabled"] and persisted["freq_watt"]["enabled"]
    assert limited.temporary() == {"active_power_limit.p_limit_pct": 60.0,
                                   "active_power_limit.enabled": True}
