"""Utility, FDEMS and aggregator at once: three clients, a connection limit of three."""

from __future__ import annotations

import threading

import pytest
from open61850.data import FloatData
from open61850.mms import MmsClient, MmsConnectionError, operate

from .conftest import FunctionsServer
from .test_functions import LD

ROUNDS = 20


@pytest.fixture
def limited(tmp_path):
    server = FunctionsServer(str(tmp_path), "--max-connections", "3")
    yield server
    assert server.close() == 0


def _open61850_client(client: MmsClient, target: str, values: list[float],
                      errors: list[str], control: str) -> None:
    try:
        for value in values:
            client.write(f"{LD}/{target} [SP]", FloatData(value))
            assert client.read(f"{LD}/{target} [SP]").value == value
            client.read(f"{LD}/MMXU1.TotW.mag.f [MX]")
        operate(client, f"{LD}/{control}", True)
    except Exception as exc:  # reported to the main thread
        errors.append(f"{target}: {exc!r}")


def test_three_clients_read_and_write_at_once_and_a_fourth_is_refused(limited):
    errors: list[str] = []
    delays = [float(v) for v in range(10, 10 + ROUNDS)]  # enter_service.delay_s
    pfs = [round(0.95 + 0.002 * i, 3) for i in range(ROUNDS)]  # fixed_pf.pf
    rsp = [5.0 + i for i in range(ROUNDS)]  # volt_var.response_time_s
    # All three clients are open61850 threads: a libiec61850 (SWIG) client in
    # this process would hold the GIL while it waits and starve the others.
    utility = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    fdems = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    aggregator = MmsClient.connect("127.0.0.1", limited.port, timeout=10)
    threads = [
        threading.Thread(target=_open61850_client,
                         args=(fdems, "DESE1.DlTms.setMag.f", delays, errors, "DVWC1.ModEna")),
        threading.Thread(target=_open61850_client,
                         args=(aggregator, "DFPF1.PFGnTgtSpt.setMag.f", pfs, errors,
                               "DHFW1.ModEna")),
        threading.Thread(target=_open61850_client,
                         args=(utility, "DVVR1.RspTms.setMag.f", rsp, errors, "DWMX1.ModEna")),
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
    assert persisted["enter_service"]["delay_s"] == delays[-1]
    assert persisted["fixed_pf"]["pf"] == pfs[-1]
    assert persisted["volt_var"]["response_time_s"] == 5.0 + ROUNDS - 1
    assert limited.temporary() == {"volt_watt.enabled": True, "freq_watt.enabled": True,
                                   "active_power_limit.enabled": True}
