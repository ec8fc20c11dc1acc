"""SCL (IEC 61850-6) ICD export of a served model, so standard tools can import it.

libiec61850 has no SCL writer (LIBIEC61850.md), so the file is generated here
from the same :class:`~inverter_agent.adapters.mms.model.ModelSpec` the server serves:
the spec is built into a libiec61850 dynamic model and that model is walked
(ctypes, before any server exists), so every data object and attribute in the
file is exactly what the server lists. Data sets and report control blocks
come from the spec.

Output: Header, Communication (one SubNetwork, the access point's IP),
IED with Services, AccessPoint/Server/LDevice/LN0/LN (DataSets,
ReportControls, DOI with the description and the control model), and
DataTypeTemplates (LNodeType per logical node, DOType / DAType deduplicated by
structure, EnumType for every enumerated attribute).
"""

from __future__ import annotations

import hashlib
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import metadata

from . import _native as nat
from .functions_model import AI_STATES, OPERATING_STATES
from .model import (
    BuiltModel,
    DataObjectSpec,
    LogicalDeviceSpec,
    LogicalNodeSpec,
    ModelSpec,
    ReportSpec,
    build_model,
    ex_values,
)

log = logging.getLogger(__name__)

SCL_NS = "http://www.iec.ch/61850/2003/SCL"

_BTYPE = {
    nat.DA_BOOLEAN: "BOOLEAN", nat.DA_INT8: "INT8", nat.DA_INT16: "INT16",
    nat.DA_INT32: "INT32", nat.DA_INT64: "INT64", nat.DA_INT8U: "INT8U",
    nat.DA_INT16U: "INT16U", nat.DA_INT24U: "INT24U", nat.DA_INT32U: "INT32U",
    nat.DA_FLOAT32: "FLOAT32", nat.DA_FLOAT64: "FLOAT64", nat.DA_ENUMERATED: "Enum",
    nat.DA_OCTET_STRING_64: "Octet64", 14: "Octet6", 15: "Octet8",
    nat.DA_VISIBLE_STRING_32: "VisString32", nat.DA_VISIBLE_STRING_64: "VisString64",
    nat.DA_VISIBLE_STRING_65: "VisString65", nat.DA_VISIBLE_STRING_129: "VisString129",
    nat.DA_VISIBLE_STRING_255: "VisString255", nat.DA_UNICODE_STRING_255: "Unicode255",
    nat.DA_TIMESTAMP: "Timestamp", nat.DA_QUALITY: "Quality", nat.DA_CHECK: "Check",
    nat.DA_CODEDENUM: "Dbpos", nat.DA_CONSTRUCTED: "Struct", 28: "EntryTime",
}

#: Enumerations by attribute name (or "DO.attr"): ord -> name.
ENUMS: dict[str, dict[int, str]] = {
    "BehaviourModeKind": {1: "on", 2: "blocked", 3: "test", 4: "test/blocked", 5: "off"},
    "HealthKind": {1: "Ok", 2: "Warning", 3: "Alarm"},
    "CtlModelKind": {0: "status-only", 1: "direct-with-normal-security",
                     2: "sbo-with-normal-security", 3: "direct-with-enhanced-security",
                     4: "sbo-with-enhanced-security"},
    "OriginatorCategoryKind": {0: "not-supported", 1: "bay-control", 2: "station-control",
                               3: "remote-control", 4: "automatic-bay",
                               5: "automatic-station", 6: "automatic-remote",
                               7: "maintenance", 8: "process"},
    "SboClassKind": {0: "operate-once", 1: "operate-many"},
    "MultiplierKind": {0: ""},
    # IEC 61850-7-420:2019A4 enumerations (literal values as its NSD gives them).
    "ACSystemKind": {1: "Single phase", 2: "Two phases", 3: "Three phases"},
    "BatteryTypeKind": {0: "Not applicable or Unknown", 1: "Lead-acid",
                        2: "Nickel-metal hydrate (NiMH)", 3: "Nickel-cadmium (NiCd)",
                        4: "Lithium ion", 5: "Carbon zinc", 6: "Zinc chloride", 7: "Alkaline",
                        8: "Rechargeable alkaline", 9: "Sodium sulphur (NaS)", 10: "Flow",
                        98: "Not applicable or not known", 99: "Unknown"},
    "CeasetoEnergizeStateKind": {
        1: "CTE not authorized", 2: "CTE authorized but not requested",
        3: "CTE auth and requested but DER not in CTE mode",
        4: "DER in CTE mode but RTS not authorized", 5: "DER in CTE, RTS auth and not requested",
        6: "RTS authorized and requested"},
    "CeasetoEnergizeStateTransitionKind": {1: "Cease to energize", 2: "Return to service"},
    "DERStateKind": {
        1: "on but disconnected and not ready", 2: "starting up",
        3: "disconnected and available", 4: "disconnected and authorized", 5: "synchronizing",
        6: "running", 7: "stopping and disconnecting under emergency conditions",
        8: "stopping", 9: "disconnected and blocked", 10: "disconnected and in maintenance",
        11: "failed", 98: "Not applicable or not known"},
    # Referenced by the 7-420 NSD (DGEN.GnOpSt) without literals: only "not known" is served.
    "DERGeneratorStateKind": {98: "Not applicable or not known"},
    "DERUnitKind": {0: "Not applicable or Unknown", 1: "Diesel / gas engine",
                    2: "Gas Turbine engine", 3: "PV", 4: "PV plus Storage",
                    5: "Lithium Ion Battery Storage", 6: "Fuel cell", 7: "Hydro generator",
                    8: "Wind turbine", 9: "Flow battery storage", 10: "Air compression storage",
                    11: "Flywheel storage", 12: "Capacitor storage",
                    13: "Vehicle-to-Grid (V2G)", 50: "Mixed, hybrid DER",
                    98: "Not applicable or not known", 99: "Other"},
    "PhaseKind": {1: "Single phase to neutral", 2: "Split phase", 3: "2-phase",
                  4: "3-phase delta", 5: "3-phase wye / 4-wires", 6: "3-phase wye / 5-wires",
                  9: "DC", 98: "Not applicable or not known"},
    "ECPIslandStateKind": {3: "Normal grid-connected configuration",
                           4: "Islanded condition 1 (local island behind the PCC)",
                           98: "Not applicable or not known"},
    "FaultDirectionKind": {0: "unknown", 1: "forward", 2: "backward", 3: "both"},
    # The gateway's private enumerations (DGEN1.CtlSt, DECP1.AISt); 0 = unknown.
    "GwCtlStKind": {0: "unknown", **dict(enumerate(OPERATING_STATES, 1))},
    "GwAIStKind": {0: "unknown", **dict(enumerate(AI_STATES, 1))},
    "SIUnitKind": {1: "", 4: "s", 5: "A", 29: "V", 33: "Hz", 61: "VA", 62: "W", 63: "VAr"},
}


#: The enumeration of each data object's value (stVal / setVal / ctlVal), set by
#: :func:`icd_tree` from the spec (``DataObjectSpec.enum``) before the walk.
_DO_ENUMS: dict[str, str] = {}


def _enum_for(do_name: str, attr: str) -> str:
    if attr in ("stVal", "setVal", "ctlVal", "subVal"):
        return _DO_ENUMS.get(do_name) or f"{do_name}Kind"
    return {"ctlModel": "CtlModelKind", "orCat": "OriginatorCategoryKind",
            "sboClass": "SboClassKind", "SIUnit": "SIUnitKind",
            "multiplier": "MultiplierKind", "dirGeneral": "FaultDirectionKind"}.get(
                attr, f"{attr}Kind")


@dataclass
class _Templates:
    lnode_types: dict[str, ET.Element] = field(default_factory=dict)
    do_types: dict[str, ET.Element] = field(default_factory=dict)
    da_types: dict[str, ET.Element] = field(default_factory=dict)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)


def _children(node: int) -> list[int]:
    lib = nat.lib()
    return [int(lib.ModelNode_getChildWithIdx(node, i))
            for i in range(lib.ModelNode_getChildCount(node))]


def _name(node: int) -> str:
    raw = nat.lib().ModelNode_getName(node)
    return raw.decode() if raw else ""


def _type_id(kind: str, element: ET.Element) -> str:
    digest = hashlib.sha1(ET.tostring(element)).hexdigest()[:8]
    return f"{kind}_{digest}"


def _da_element(tag: str, node: int, do_name: str, tpl: _Templates, fc: bool) -> ET.Element:
    """A DA (in a DOType) or BDA (in a DAType) for attribute ``node``, registering its types."""
    lib = nat.lib()
    name = _name(node)
    da_type = lib.DataAttribute_getType(node)
    element = ET.Element(tag, {"name": name})
    kids = _children(node)
    count = 0
    if kids and not _name(kids[0]):  # an array: unnamed elements
        count = len(kids)
        da_type = lib.DataAttribute_getType(kids[0])
        kids = _children(kids[0])
    btype = _BTYPE.get(da_type, "Struct")
    if name in ("setSrcRef", "setTstRef", "setTstCB"):
        btype = "ObjRef"  # a VisString129 on the wire (8-1), ObjRef in SCL
    element.set("bType", btype)
    if btype == "Struct":
        struct = ET.Element("DAType")
        for kid in kids:
            struct.append(_da_element("BDA", kid, do_name, tpl, fc=False))
        type_id = _type_id("DA", struct)
        struct.set("id", type_id)
        tpl.da_types.setdefault(type_id, struct)
        element.set("type", type_id)
    elif btype == "Enum":
        enum_id = _enum_for(do_name, name)
        tpl.enums.setdefault(enum_id, ENUMS.get(enum_id, {0: "0", 1: "1", 2: "2", 3: "3",
                                                          4: "4", 5: "5", 6: "6", 7: "7",
                                                          8: "8"}))
        element.set("type", enum_id)
    if count:
        element.set("count", str(count))
    if fc:
        element.set("fc", nat.FC_NAMES.get(lib.DataAttribute_getFC(node), "ST"))
        trg = lib.DataAttribute_getTrgOps(node)
        for bit, attr in ((nat.TRG_OPT_DATA_CHANGED, "dchg"), (nat.TRG_OPT_QUALITY_CHANGED, "qchg"),
                          (nat.TRG_OPT_DATA_UPDATE, "dupd")):
            if trg & bit:
                element.set(attr, "true")
    return element


def _do_type(node: int, cdc: str, tpl: _Templates) -> str:
    lib = nat.lib()
    element = ET.Element("DOType", {"cdc": cdc})
    do_name = _name(node)
    for kid in _children(node):
        if lib.ModelNode_getType(kid) == nat.DATA_OBJECT_MODEL_TYPE:  # WYE phases
            element.append(ET.Element("SDO", {"name": _name(kid),
                                              "type": _do_type(kid, "CMV", tpl)}))
        else:
            element.append(_da_element("DA", kid, do_name, tpl, fc=True))
    type_id = _type_id(cdc, element)
    element.set("id", type_id)
    tpl.do_types.setdefault(type_id, element)
    return type_id


def _lnode_type(ld: LogicalDeviceSpec, ln: LogicalNodeSpec, built: BuiltModel,
                tpl: _Templates) -> str:
    type_id = f"{ld.inst}_{ln.name}"
    element = ET.Element("LNodeType", {"id": type_id, "lnClass": ln.ln_class})
    for do in ln.data_objects:
        node = built.objects[f"{ld.inst}/{ln.name}.{do.name}"]
        element.append(ET.Element("DO", {"name": do.name,
                                         "type": _do_type(node, do.cdc.value, tpl)}))
    tpl.lnode_types[type_id] = element
    return type_id


def _doi(do: DataObjectSpec) -> ET.Element | None:
    ex = ex_values(do)
    if not do.desc and not do.ctl_model and not ex:
        return None
    doi = ET.Element("DOI", {"name": do.name})
    if do.desc:
        doi.set("desc", do.desc)
    if do.ctl_model:
        dai = ET.SubElement(doi, "DAI", {"name": "ctlModel"})
        ET.SubElement(dai, "Val").text = ENUMS["CtlModelKind"][do.ctl_model]
    for name, value in ex.items():  # dataNs of a private object, ldNs of LLN0.NamPlt
        dai = ET.SubElement(doi, "DAI", {"name": name})
        ET.SubElement(dai, "Val").text = value
    return doi


def _report(rc: ReportSpec) -> ET.Element:
    element = ET.Element("ReportControl", {
        "name": rc.name, "rptID": rc.rpt_id, "datSet": rc.data_set, "confRev": str(rc.conf_rev),
        "buffered": str(rc.buffered).lower(), "bufTime": str(rc.buf_tm_ms),
        "intgPd": str(rc.intg_pd_ms), "indexed": "false"})
    ET.SubElement(element, "TrgOps", {
        "dchg": str(bool(rc.trg_ops & nat.TRG_OPT_DATA_CHANGED)).lower(),
        "qchg": str(bool(rc.trg_ops & nat.TRG_OPT_QUALITY_CHANGED)).lower(),
        "dupd": str(bool(rc.trg_ops & nat.TRG_OPT_DATA_UPDATE)).lower(),
        "period": str(bool(rc.trg_ops & nat.TRG_OPT_INTEGRITY)).lower(),
        "gi": str(bool(rc.trg_ops & nat.TRG_OPT_GI)).lower()})
    opt = rc.opt_fields
    ET.SubElement(element, "OptFields", {
        "seqNum": str(bool(opt & nat.RPT_OPT_SEQ_NUM)).lower(),
        "timeStamp": str(bool(opt & nat.RPT_OPT_TIME_STAMP)).lower(),
        "reasonCode": str(bool(opt & nat.RPT_OPT_REASON_FOR_INCLUSION)).lower(),
        "dataSet": str(bool(opt & nat.RPT_OPT_DATA_SET)).lower(),
        "dataRef": str(bool(opt & nat.RPT_OPT_DATA_REFERENCE)).lower(),
        "bufOvfl": str(bool(opt & nat.RPT_OPT_BUFFER_OVERFLOW)).lower(),
        "entryID": str(bool(opt & nat.RPT_OPT_ENTRY_ID)).lower(),
        "configRef": str(bool(opt & nat.RPT_OPT_CONF_REV)).lower()})
    ET.SubElement(element, "RptEnabled", {"max": "1"})
    return element


def _ln_element(ld: LogicalDeviceSpec, ln: LogicalNodeSpec, ln_type: str) -> ET.Element:
    is_ln0 = ln.ln_class == "LLN0"
    element = ET.Element("LN0" if is_ln0 else "LN", {"lnClass": ln.ln_class, "inst": ln.inst,
                                                     "lnType": ln_type})
    if ln.prefix:
        element.set("prefix", ln.prefix)
    if is_ln0:
        for ds in ld.data_sets:
            ds_el = ET.SubElement(element, "DataSet", {"name": ds.name})
            for member in ds.members:
                ref, _, fc = member.partition(" [")
                ln_name, *do_path = ref.split(".")
                ln_spec = next(x for x in ld.logical_nodes if x.name == ln_name)
                fcda = {"ldInst": ld.inst, "prefix": ln_spec.prefix,
                        "lnClass": ln_spec.ln_class, "lnInst": ln_spec.inst,
                        "doName": ".".join(do_path), "fc": fc.rstrip("]")}
                # LLN0 has no instance and most LNs no prefix: the schema wants those
                # attributes left out rather than empty.
                ET.SubElement(ds_el, "FCDA", {k: v for k, v in fcda.items() if v})
        for rc in ld.reports:
            element.append(_report(rc))
    for do in ln.data_objects:
        doi = _doi(do)
        if doi is not None:
            element.append(doi)
    return element


def icd_tree(spec: ModelSpec, ied_name: str = "GW", host: str = "127.0.0.1",
             tls: bool = False) -> ET.ElementTree:
    """The SCL document for ``spec`` served as IED ``ied_name`` (``tls``: clients
    authenticate with certificates)."""
    ET.register_namespace("", SCL_NS)
    _DO_ENUMS.clear()
    for ld in spec.logical_devices:
        for ln in ld.logical_nodes:
            _DO_ENUMS.update({do.name: do.enum for do in ln.data_objects if do.enum})
    built = build_model(spec, ied_name)
    try:
        tpl = _Templates()
        scl = ET.Element("SCL", {"version": "2007", "revision": "B", "release": "4"})
        ET.SubElement(scl, "Header", {"id": f"{ied_name}-icd", "version": _version(),
                                      "toolID": "inverter-agent", "nameStructure": "IEDName"})
        comm = ET.SubElement(scl, "Communication")
        subnet = ET.SubElement(comm, "SubNetwork", {"name": "WAN", "type": "8-MMS"})
        cap = ET.SubElement(subnet, "ConnectedAP", {"iedName": ied_name, "apName": "AP1"})
        address = ET.SubElement(cap, "Address")
        ET.SubElement(address, "P", {"type": "IP"}).text = host
        ied = ET.SubElement(scl, "IED", {"name": ied_name, "manufacturer": "inverter-agent",
                                         "type": "SunSpec-gateway", "configVersion": _version()})
        services = ET.SubElement(ied, "Services")
        for tag in ("DynAssociation", "GetDirectory", "GetDataObjectDefinition",
                    "DataObjectDirectory", "GetDataSetValue", "DataSetDirectory",
                    "ReadWrite", "GetCBValues"):
            ET.SubElement(services, tag)
        n_reports = sum(len(ld.reports) for ld in spec.logical_devices)
        ET.SubElement(services, "ConfDataSet", {"max": "8", "maxAttributes": "64"})
        ET.SubElement(services, "ConfReportControl", {"max": str(max(1, n_reports))})
        ET.SubElement(services, "ReportSettings", {"cbName": "Fix", "datSet": "Fix",
                                                   "rptID": "Fix", "optFields": "Dyn",
                                                   "bufTime": "Dyn", "trgOps": "Dyn",
                                                   "intgPd": "Dyn"})
        ET.SubElement(services, "ConfLNs", {"fixPrefix": "true", "fixLnInst": "true"})
        ap = ET.SubElement(ied, "AccessPoint", {"name": "AP1"})
        server = ET.SubElement(ap, "Server")
        ET.SubElement(server, "Authentication",
                      {"certificate": "true"} if tls else {"none": "true"})
        for ld in spec.logical_devices:
            ldevice = ET.SubElement(server, "LDevice", {"inst": ld.inst})
            lns = sorted(ld.logical_nodes, key=lambda x: x.ln_class != "LLN0")  # LN0 first
            for ln in lns:
                ldevice.append(_ln_element(ld, ln, _lnode_type(ld, ln, built, tpl)))
        templates = ET.SubElement(scl, "DataTypeTemplates")
        for group in (tpl.lnode_types, tpl.do_types, tpl.da_types):
            for element in group.values():
                templates.append(element)
        for enum_id, values in sorted(tpl.enums.items()):
            enum = ET.SubElement(templates, "EnumType", {"id": enum_id})
            for ord_, text in sorted(values.items()):
                ET.SubElement(enum, "EnumVal", {"ord": str(ord_)}).text = text
        _qualify(scl)
        tree = ET.ElementTree(scl)
        ET.indent(tree)
        return tree
    finally:
        built.destroy()


def _qualify(root: ET.Element) -> None:
    for element in root.iter():
        if not element.tag.startswith("{"):
            element.tag = f"{{{SCL_NS}}}{element.tag}"


def _version() -> str:
    try:
        return metadata.version("inverter-agent")
    except metadata.PackageNotFoundError:
        return "0"


def write_icd(spec: ModelSpec, path: str, ied_name: str = "GW", host: str = "127.0.0.1",
              tls: bool = False) -> None:
    """Write the ICD (SCL XML, UTF-8) for ``spec`` served as ``ied_name`` to ``path``."""
    icd_tree(spec, ied_name, host, tls).write(path, encoding="utf-8", xml_declaration=True)
    log.info("ICD for IED %s written to %s", ied_name, path)
