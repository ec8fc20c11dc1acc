"""Check an SCL/ICD file against the IEC's own namespace definitions (NSD files).

Reads ``IEC_61850-7-420_2019A4.nsd`` (7-420 Ed.2), ``-7-4``, ``-7-3`` and
``-7-2`` from a folder and answers, for the logical devices of an ICD, every
deviation (:func:`check_icd`): an LN class no NSD defines, a data object
that is neither in its class (through the base classes: DomainLN,
StatisticsLN, ... and the 7-420 classes that extend a 7-4 one such as MMXU)
nor declared private with ``dataNs``, a CDC or an FC that differs, a
mandatory data object or attribute that is missing, an enumeration that is
not the NSD's, a name longer than 12 characters, a missing ``ldNs``.

Presence conditions applied (IEC 61850-7-2 names): ``M``; ``MOrootLD`` (every
LD here is a root LD); ``AllOnlyOneGroup(n)``, ``AllAtLeastOneGroup(n)``,
``AtLeastOne(n)``, groups taken within the class that declares them (and
``AllOnlyOneGroup`` also with group n merged across the class hierarchy); for
attributes ``M``, ``MAllOrNonePerGroup`` (all of the value/q/t group), ``MOsbo``
(with an SBO control model), ``MOdataNs`` (on a private data object),
``MFln0`` / ``MOln0`` (ldNs, configRev on LLN0). Conditions whose condition is
prose (``MOcond``, ``MFcond``, ``MONamPlt`` with the LN in the LD's
namespace, ``MFsubst`` without substitution, ``O``, ``F``, ``Omulti``, ...) are
optional here; :data:`NOT_ENFORCED` lists them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

NSD_NS = "{http://www.iec.ch/61850/2016/NSD}"
SCL = "{http://www.iec.ch/61850/2003/SCL}"
NSD_FILES = ("IEC_61850-7-420_2019A4.nsd", "IEC_61850-7-4_2007B5.nsd",
             "IEC_61850-7-3_2007B5.nsd", "IEC_61850-7-2_2007B5.nsd")
NOT_ENFORCED = ("MOcond", "MFcond", "OFcond", "MONamPlt", "MFsubst", "MOrms", "MFscaledAV",
                "MFscaledMagV", "MFscaledAngV", "MOenhanced", "MOoperTm", "MO", "OF", "O",
                "F", "Omulti", "OmultiRange", "MmultiRange", "na")
#: Attributes of the 8-1 control services (FC CO), not listed among a CDC's attributes.
CONTROL_SERVICES = {"Oper", "SBO", "SBOw", "Cancel"}
DO_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,11}$")


@dataclass
class DataObjectDef:
    name: str
    cdc: str
    pres: str
    args: str
    declared_in: str
    enum: str


@dataclass
class Nsd:
    ln_classes: dict[str, list[DataObjectDef]]
    #: CDC -> attribute name -> (fc, presCond, presCondArgs)
    cdcs: dict[str, dict[str, tuple[str, str, str]]]
    cdc_sub_objects: dict[str, set[str]]
    enums: dict[str, set[int]]
    ld_ns: str


def load_nsd(folder: Path) -> Nsd:
    raw: dict[str, list[ET.Element]] = defaultdict(list)
    cdcs: dict[str, dict[str, tuple[str, str, str]]] = {}
    subs: dict[str, set[str]] = {}
    enums: dict[str, set[int]] = {}
    ld_ns = ""
    for name in NSD_FILES:
        root = ET.parse(folder / name).getroot()
        if name.startswith("IEC_61850-7-420"):
            ld_ns = f"{root.get('id')}:{root.get('version')}{root.get('revision')}"
        for tag in ("AbstractLNClass", "LNClass"):
            for e in root.iter(NSD_NS + tag):
                raw[e.get("name", "")].append(e)
        for e in root.iter(NSD_NS + "CDC"):
            # settings come in SP / SG / SE variants: the gateway serves SP
            if e.get("variant") not in (None, "SP"):
                continue
            cdcs[e.get("name", "")] = {
                a.get("name", ""): (a.get("fc", ""), a.get("presCond", "O"),
                                    a.get("presCondArgs", ""))
                for a in e.findall(NSD_NS + "DataAttribute")}
            subs[e.get("name", "")] = {s.get("name", "")
                                       for s in e.findall(NSD_NS + "SubDataObject")}
        for e in root.iter(NSD_NS + "Enumeration"):
            enums.setdefault(e.get("name", ""), set()).update(
                int(lit.get("literalVal", "0")) for lit in e.findall(NSD_NS + "Literal"))

    def resolve(cls: str, seen: tuple[str, ...] = ()) -> list[DataObjectDef]:
        out: list[DataObjectDef] = []
        for e in raw[cls]:
            if e.get("base") and e.get("base") not in seen:
                out += resolve(e.get("base", ""), (*seen, cls))
        for e in raw[cls]:
            for d in e.findall(NSD_NS + "DataObject"):
                out.append(DataObjectDef(d.get("name", ""), d.get("type", ""),
                                         d.get("presCond", "O"), d.get("presCondArgs", ""),
                                         cls, d.get("underlyingType", "")))
        return out

    classes = {name: resolve(name) for name, els in raw.items()
               if any(e.tag == NSD_NS + "LNClass" for e in els)}
    return Nsd(classes, cdcs, subs, enums, ld_ns)


@dataclass
class Served:
    """What one ICD serves: per LD and LN, DO name -> (CDC, {DA: FC}, SDOs, enum, dataNs)."""

    lns: dict[tuple[str, str], tuple[str, dict[str, tuple[str, dict[str, str], set[str],
                                                          str, str, str]]]]
    ld_ns: dict[str, str] = field(default_factory=dict)


def load_icd(path: Path | str) -> Served:
    root = ET.parse(path).getroot()
    tpl = root.find(SCL + "DataTypeTemplates")
    assert tpl is not None
    do_types = {t.get("id"): t for t in tpl.findall(SCL + "DOType")}
    lnode_types = {t.get("id"): t for t in tpl.findall(SCL + "LNodeType")}
    served: Served = Served({})
    for ld in root.iter(SCL + "LDevice"):
        inst = ld.get("inst", "")
        for ln in [*ld.findall(SCL + "LN0"), *ld.findall(SCL + "LN")]:
            name = ln.get("prefix", "") + ln.get("lnClass", "") + ln.get("inst", "")
            doi_ns: dict[str, str] = {}
            for doi in ln.findall(SCL + "DOI"):
                for dai in doi.findall(SCL + "DAI"):
                    val = dai.find(SCL + "Val")
                    if dai.get("name") == "dataNs" and val is not None:
                        doi_ns[doi.get("name", "")] = val.text or ""
                    if dai.get("name") == "ldNs" and val is not None:
                        served.ld_ns[inst] = val.text or ""
            dos = {}
            for do in lnode_types[ln.get("lnType")].findall(SCL + "DO"):
                t = do_types[do.get("type")]
                das = {da.get("name", ""): da.get("fc", "") for da in t.findall(SCL + "DA")}
                sdos = {s.get("name", "") for s in t.findall(SCL + "SDO")}
                value = next((da for da in t.findall(SCL + "DA")
                              if da.get("name") in ("stVal", "setVal")), None)
                enum = value.get("type", "") if value is not None and value.get(
                    "bType") == "Enum" else ""
                ctl = ""
                for doi in ln.findall(SCL + "DOI"):
                    if doi.get("name") == do.get("name"):
                        for dai in doi.findall(SCL + "DAI"):
                            if dai.get("name") == "ctlModel":
                                ctl = dai.findtext(SCL + "Val") or ""
                dos[do.get("name", "")] = (t.get("cdc", ""), das, sdos, enum,
                                           doi_ns.get(do.get("name", ""), ""), ctl)
            served.lns[(inst, name)] = (ln.get("lnClass", ""), dos)
    return served


def enum_values(path: Path | str) -> dict[str, set[int]]:
    root = ET.parse(path).getroot()
    return {e.get("id", ""): {int(v.get("ord", "0")) for v in e.findall(SCL + "EnumVal")}
            for e in root.iter(SCL + "EnumType")}


@dataclass
class Report:
    problems: list[str]
    ln_classes: set[str]
    standard_dos: int
    private_dos: int


def _groups(defs: list[DataObjectDef], kind: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in defs:
        if d.pres == kind:
            out[(d.declared_in, d.args)].add(d.name)
    return out


def check_icd(nsd: Nsd, path: Path | str) -> Report:
    served = load_icd(path)
    ords = enum_values(path)
    problems: list[str] = []
    classes: set[str] = set()
    standard = private = 0
    for inst in {i for i, _ in served.lns}:
        if served.ld_ns.get(inst) != nsd.ld_ns:
            problems.append(f"{inst}: LLN0.NamPlt.ldNs is {served.ld_ns.get(inst)!r}, "
                            f"not {nsd.ld_ns!r}")
    for (inst, ln_name), (ln_class, dos) in sorted(served.lns.items()):
        where = f"{inst}/{ln_name}"
        classes.add(ln_class)
        if ln_class not in nsd.ln_classes:
            problems.append(f"{where}: LN class {ln_class} is in no NSD")
            continue
        defs = {d.name: d for d in nsd.ln_classes[ln_class]}
        for do_name, (cdc, das, sdos, enum, data_ns, ctl) in dos.items():
            ref = f"{where}.{do_name}"
            if not DO_NAME.match(do_name):
                problems.append(f"{ref}: not a valid DO name (letters/digits, at most 12)")
            std = defs.get(do_name)
            numbered = re.match(r"^(.*?)(\d+)$", do_name)
            if std is None and numbered and defs.get(numbered.group(1)) is not None and defs[
                    numbered.group(1)].pres.endswith(("multi", "multiRange")):
                std = defs[numbered.group(1)]  # IntIn1, IntIn2 ... of a multi-instance DO
            if data_ns:
                private += 1
                if std is not None:
                    problems.append(f"{ref}: declared private but {ln_class} defines it")
                if das.get("dataNs") != "EX":
                    problems.append(f"{ref}: private without a dataNs attribute (FC EX)")
            elif std is None:
                problems.append(f"{ref}: not in {ln_class} and not declared private (dataNs)")
                continue
            else:
                standard += 1
                if cdc != std.cdc:
                    problems.append(f"{ref}: CDC {cdc}, the NSD says {std.cdc}")
                if std.enum and enum != std.enum:
                    problems.append(f"{ref}: enumeration {enum or 'none'}, the NSD says "
                                    f"{std.enum}")
                if std.enum in nsd.enums and nsd.enums[std.enum] and not ords.get(
                        enum, set()) <= nsd.enums[std.enum]:
                    problems.append(f"{ref}: values {sorted(ords.get(enum, set()))} not all "
                                    f"in {std.enum}")
            problems += _check_attributes(nsd, ref, ln_class, do_name, cdc, das, sdos,
                                          bool(data_ns), ctl)
        present = set(dos)
        for d in defs.values():
            if d.pres == "M" or (d.pres == "MOrootLD" and ln_class == "LLN0"):
                if d.name not in present:
                    problems.append(f"{where}: mandatory {d.name} ({d.cdc}) missing")
        for (cls, arg), _members in _groups(nsd.ln_classes[ln_class],
                                            "AllOnlyOneGroup").items():
            siblings = {k: v for k, v in _groups(nsd.ln_classes[ln_class],
                                                  "AllOnlyOneGroup").items() if k[0] == cls}
            complete = [k for k, v in siblings.items() if v <= present]
            touched = [k for k, v in siblings.items() if v & present]
            if arg == min(a for _, a in siblings) and (len(complete) != 1 or len(touched) != 1):
                problems.append(f"{where}: AllOnlyOneGroup of {cls}: exactly one of "
                                f"{[sorted(v) for v in siblings.values()]} wanted")
        # The same groups read across the whole class (group n of a base class and group
        # n of the class itself together): the served model must satisfy this reading too.
        merged: dict[str, set[str]] = defaultdict(set)
        for (_cls, arg), members in _groups(nsd.ln_classes[ln_class],
                                            "AllOnlyOneGroup").items():
            merged[arg] |= members
        if merged:
            complete = [a for a, v in merged.items() if v <= present]
            touched = [a for a, v in merged.items() if v & present]
            if len(complete) != 1 or len(touched) != 1:
                problems.append(f"{where}: AllOnlyOneGroup across {ln_class}: exactly one of "
                                f"{[sorted(v) for v in merged.values()]} wanted")
        for kind in ("AllAtLeastOneGroup", "AtLeastOne"):
            by_cls: dict[str, list[set[str]]] = defaultdict(list)
            for (cls, _), members in _groups(nsd.ln_classes[ln_class], kind).items():
                by_cls[cls].append(members)
            for cls, sets in by_cls.items():
                ok = (any(s <= present for s in sets) if kind == "AllAtLeastOneGroup"
                      else any(s & present for s in sets))
                if not ok:
                    problems.append(f"{where}: {kind} of {cls} not met")
    return Report(problems, classes, standard, private)


def _check_attributes(nsd: Nsd, ref: str, ln_class: str, do_name: str, cdc: str,
                      das: dict[str, str], sdos: set[str], private: bool, ctl: str) -> list[str]:
    out: list[str] = []
    spec = nsd.cdcs.get(cdc)
    if spec is None:
        return [f"{ref}: CDC {cdc} is not in 7-3"]
    for name, fc in das.items():
        if name in CONTROL_SERVICES:
            if fc != "CO":
                out.append(f"{ref}.{name}: FC {fc}, a control service is CO")
            continue
        if name not in spec:
            out.append(f"{ref}.{name}: not an attribute of {cdc}")
        elif spec[name][0] != fc:
            out.append(f"{ref}.{name}: FC {fc}, 7-3 says {spec[name][0]}")
    extra = sdos - nsd.cdc_sub_objects.get(cdc, set())
    if extra:
        out.append(f"{ref}: sub data objects {sorted(extra)} not in {cdc}")
    sbo = "sbo" in ctl
    for name, (_fc, pres, _args) in spec.items():
        wanted = (pres in ("M", "MAllOrNonePerGroup")
                  or (pres == "MOsbo" and sbo)
                  or (pres == "MOdataNs" and private)
                  or (pres in ("MFln0", "MOln0") and ln_class == "LLN0" and do_name == "NamPlt"))
        if wanted and name not in das:
            out.append(f"{ref}: mandatory attribute {name} ({pres}) missing")
    return out


def main() -> None:
    """``python -m tests.adapters.mms.nsd``: the counts for each configuration the tests check."""
    import tempfile

    from lxml import etree

    from inverter_agent.adapters.mms.der_model import der_model_spec
    from inverter_agent.adapters.mms.functions_model import functions_model_spec
    from inverter_agent.adapters.mms.icd import write_icd
    from inverter_agent.adapters.mms.plant_model import site_model_spec

    reference = Path(__file__).resolve().parents[4] / "shared" / "reference"
    nsd = load_nsd(reference / "nsd")
    schema = etree.XMLSchema(etree.parse(str(reference / "scl-xsd" / "2007B4" / "SCL.xsd")))
    configurations = {"one inverter": functions_model_spec(),
                      "three inverters + plant": site_model_spec(["INV1", "INV2", "INV3"]),
                      "functions off": der_model_spec()}
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in configurations.items():
            for tls in (False, True):
                path = Path(folder) / "gw.icd"
                write_icd(spec, str(path), tls=tls)
                schema.validate(etree.parse(str(path)))
                report = check_icd(nsd, path)
                served = report.standard_dos + report.private_dos
                print(f"{name}{' (TLS)' if tls else ''}: {len(report.ln_classes)} LN classes "
                      f"({', '.join(sorted(report.ln_classes))}); {served} DOs served, "
                      f"{report.standard_dos} standard, {report.private_dos} private "
                      f"({100 * report.private_dos / served:.1f} %); NSD deviations "
                      f"{len(report.problems)}; schema errors {len(schema.error_log)}")


if __name__ == "__main__":
    main()
