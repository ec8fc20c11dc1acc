"""The ICD export describes exactly what the live server serves.

The server runs in another process; its directory is browsed with
libiec61850's client and with open61850 (whose SCL reader turns the ICD's
DataTypeTemplates into the list of MMS leaves a server would list).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from open61850.mms import MmsClient, discover
from open61850.mms.model import compare
from open61850.scl import load_ieds, load_model

from inverter_agent.adapters.mms import client as mms_client
from inverter_agent.adapters.mms.functions_model import RCB_INSTANCES, functions_model_spec
from inverter_agent.adapters.mms.icd import SCL_NS, write_icd

NS = {"scl": SCL_NS}


def _icd(tmp_path) -> str:
    path = str(tmp_path / "gw.icd")
    write_icd(functions_model_spec(), path, ied_name="GW")
    return path


def _icd_objects(path: str) -> set[tuple[str, str, str]]:
    root = ET.parse(path).getroot()
    lnode_dos = {t.get("id"): [d.get("name") for d in t.findall("scl:DO", NS)]
                 for t in root.iter(f"{{{SCL_NS}}}LNodeType")}
    ied = root.find("scl:IED", NS)
    out = set()
    for ld in ied.iter(f"{{{SCL_NS}}}LDevice"):
        domain = ied.get("name") + ld.get("inst")
        for ln in list(ld.findall("scl:LN0", NS)) + list(ld.findall("scl:LN", NS)):
            name = ln.get("prefix", "") + ln.get("lnClass") + ln.get("inst", "")
            out.update((domain, name, do) for do in lnode_dos[ln.get("lnType")])
    return out


def test_icd_is_well_formed_scl(tmp_path):
    root = ET.parse(_icd(tmp_path)).getroot()
    assert root.tag == f"{{{SCL_NS}}}SCL"
    for section in ("Header", "Communication", "IED", "DataTypeTemplates"):
        assert root.find(f"scl:{section}", NS) is not None, section
    templates = root.find("scl:DataTypeTemplates", NS)
    type_ids = {t.get("id") for t in templates}
    for element in templates.iter():  # every referenced type is defined
        if element.get("type") and element.tag != f"{{{SCL_NS}}}LNodeType":
            assert element.get("type") in type_ids, element.attrib


def test_icd_objects_equal_the_live_directory(functions_server, tmp_path):
    path = _icd(tmp_path)
    with mms_client.connect("127.0.0.1", functions_server.port) as con:
        live = set(con.browse())
    assert live == _icd_objects(path)


def test_icd_leaves_data_sets_and_reports_equal_the_live_server(functions_server, tmp_path):
    path = _icd(tmp_path)
    expected = load_model(path, "GW")
    with MmsClient.connect("127.0.0.1", functions_server.port, timeout=5) as client:
        actual = discover(client)
    assert compare(expected, actual) == []
    (ied,) = load_ieds(path)
    assert {rc.name for rc in ied.report_controls} == {
        f"{kind}{i:02d}" for kind in ("urcbMeas", "brcbEvents")
        for i in range(1, RCB_INSTANCES + 1)}
