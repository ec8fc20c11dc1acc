"""Every served object read by py61850, a third MMS client that shares no code with
libiec61850 or open61850 (pure Python, standard library only).

The server runs in another process (``functions_server``). The object list comes
from the ICD (LN, FC, DO for every attribute the ICD declares): each must be in
the server's directory and read without an access error.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from inverter_agent.adapters.mms.der_model import EXT_NS, LD_NS
from inverter_agent.adapters.mms.functions_model import SETTINGS, functions_model_spec
from inverter_agent.adapters.mms.icd import write_icd
from inverter_agent.functions import get_profile, settings_to_dict

from .nsd import load_icd

py61850 = pytest.importorskip("py61850")

LD = "GWINV1"
DEFAULTS = settings_to_dict(get_profile("rule21"))
SKIP_FCS = {"RP", "BR"}  # report control blocks: their own test (test_functions_interop)


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


@pytest.fixture
def objects(tmp_path) -> dict[str, set[str]]:
    """MMS variable name (``DVVR1$SP$VVArCrv``) -> DA names, from the ICD."""
    path = tmp_path / "gw.icd"
    write_icd(functions_model_spec(), str(path), ied_name="GW")
    out: dict[str, set[str]] = {}
    for (_, ln), (_, dos) in load_icd(path).lns.items():
        for do, (_, das, sdos, *_rest) in dos.items():
            for da, fc in das.items():
                out.setdefault(f"{ln}${fc}${do}", set()).add(da)
            for sdo in sdos:  # WYE phases are measurements
                out.setdefault(f"{ln}$MX${do}", set()).add(sdo)
    return out


def test_py61850_reads_every_served_object(functions_server, objects):
    with py61850.MmsClient("127.0.0.1", functions_server.port, timeout=10) as client:
        assert client.get_server_directory() == [LD]
        names = client.get_logical_device_directory(LD)
        live = {n for n in names if n.count("$") == 2 and n.split("$")[1] not in SKIP_FCS}
        assert live == set(objects)
        failed = {}
        for name in sorted(objects):
            value = client.read_value(LD, name)
            if value is None or (isinstance(value, dict) and "error" in value):
                failed[name] = value
        assert failed == {}
        assert len(objects) > 300  # the whole model, not a handful


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        return math.isclose(got, _f32(want), rel_tol=1e-6, abs_tol=1e-6)
    return bool(got == want)


def test_py61850_sees_the_settings_and_the_namespaces(functions_server):
    with py61850.MmsClient("127.0.0.1", functions_server.port, timeout=10) as client:
        for setting in SETTINGS:
            ln, do, *attr = setting.target.split(".")
            value = client.read_value(LD, "$".join([ln, "SP", do, *attr]))
            if isinstance(value, list):  # setMag is a structure {f}
                value = value[0]
            assert _same(value, setting.to_mms(DEFAULTS)), (setting.target, value)
        assert client.read_value(LD, "LLN0$EX$NamPlt$ldNs") == LD_NS
        assert client.read_value(LD, "DGEN1$EX$CtlSt$dataNs") == EXT_NS
