"""Declarative description of a served IEC 61850 model and its libiec61850 build.

A :class:`ModelSpec` is plain frozen data: logical devices -> logical nodes
(class + instance) -> data objects with their common data class (IEC 61850-7-3
CDC), plus :class:`Binding` rows that say which internal point feeds which data
object. :func:`build_model` turns it into a libiec61850 dynamic model (through
ctypes, see ``_native``) and returns the handles of every *data point*: each
data object, or WYE phase, that has a value attribute, keyed by a stable key
``"<LD inst>/<LN>.<DO>[.<sub>]"`` (e.g. ``"INV1/MMXU1.PhV.phsA"``) that does
not depend on the IED name.

The spec also declares controllable objects (SPC/DPC/APC with their control
model), curves (:attr:`Cdc.CSG`: ``numPts`` plus an array of points under FC
SP), data sets and report control blocks (hosted by LLN0). ``icd`` writes the
same spec as an SCL file.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _native as nat

log = logging.getLogger(__name__)


class Cdc(enum.Enum):
    """Common data classes the builder knows (IEC 61850-7-3)."""

    SPS = "SPS"  # single point status: stVal BOOLEAN, q, t (FC ST)
    INS = "INS"  # integer status: stVal INT32, q, t (FC ST)
    ENS = "ENS"  # enumerated status: stVal ENUMERATED, q, t (FC ST)
    ENC = "ENC"  # enumerated controllable, status-only here (ctlModel 0): stVal, q, t
    MV = "MV"  # measured value: mag.f, q, t (FC MX)
    CMV = "CMV"  # complex measured value: cVal.mag.f, q, t (FC MX)
    WYE = "WYE"  # phase to ground: one CMV per phase (phsA, phsB, phsC ...)
    ASG = "ASG"  # analogue setting: setMag.f (FC SP), units (FC CF); no q/t in 7-3
    ING = "ING"  # integer setting: setVal (FC SP)
    LPL = "LPL"  # logical node name plate: vendor, swRev, d, configRev (FC DC)
    DPL = "DPL"  # device name plate: vendor, hwRev, swRev, serNum, model (FC DC)
    SPG = "SPG"  # single point setting: setVal BOOLEAN (FC SP)
    VSS = "VSS"  # visible string status: stVal VisString255, q, t (FC ST)
    SPC = "SPC"  # controllable single point: stVal, q, t (ST), Oper (CO), ctlModel (CF)
    DPC = "DPC"  # controllable double point: stVal Dbpos (ST), Oper/SBO (CO), ctlModel (CF)
    APC = "APC"  # controllable analogue set point: mxVal.f, q, t (MX), Oper (CO), ctlModel (CF)
    CSG = "CSG"  # curve shape setting: numPts INT16U + crvPts[N] {xVal, yVal, ...} (FC SP)
    ENG = "ENG"  # enumerated setting: setVal ENUMERATED (FC SP)
    VSG = "VSG"  # visible string setting: setVal VisString255 (FC SP)
    ORG = "ORG"  # object reference setting: setSrcRef ObjRef (FC SP)
    ACT = "ACT"  # protection activation: general BOOLEAN, q, t (FC ST)
    BCR = "BCR"  # binary counter reading: actVal INT64, q, t (FC ST)
    ACD = "ACD"  # directional protection activation: general, dirGeneral, q, t (FC ST)


#: Attribute that carries a data point's value, tried in this order below the DO.
VALUE_ATTRIBUTES = ("mag.f", "mag.i", "cVal.mag.f", "setMag.f", "setMag.i", "mxVal.f", "stVal",
                    "setVal", "general", "setSrcRef", "actVal")

#: Name of the point array of a CSG and the default fields of one point.
CURVE_ARRAY = "crvPts"
CURVE_FIELDS: tuple[tuple[str, int], ...] = (("xVal", nat.DA_FLOAT32), ("yVal", nat.DA_FLOAT32))

# 7-3 SIUnit codes used by the DER model (IEC 61850-7-3 Annex A).
SI_UNIT = {"A": 5, "V": 29, "Hz": 33, "VA": 61, "W": 62, "VAr": 63, "dimensionless": 1, "s": 4,
           "Wh": 72}

FC_EX = 11  # extended definition: dataNs, ldNs, lnNs (IEC 61850-7-3)
#: ObjRef (ORG.setSrcRef) is a VisString129 on the wire (IEC 61850-8-1).
DA_OBJECT_REFERENCE = nat.DA_VISIBLE_STRING_129
#: In ``init`` values, ``{ld}`` stands for the logical device name clients see.
LD_PLACEHOLDER = "{ld}"


@dataclass(frozen=True, slots=True)
class DataObjectSpec:
    """One data object.

    ``options`` are libiec61850 ``CDC_OPTION_*`` bits; ``integer`` selects
    ``mag.i``/``setMag.i`` for MV/ASG; ``phases`` names the CMVs of a WYE;
    ``init`` sets attributes (path below the DO -> value) once at start, e.g.
    ``{"stVal": 1}`` for a Beh that is always "on" or ``{"units.SIUnit": 62}``.
    ``ctl_model`` is the control model of SPC/DPC/APC (1 direct-with-normal-
    security, 2 sbo-with-normal-security). ``points`` and ``fields`` shape a CSG:
    ``points`` array elements, each with ``fields`` (name, DataAttributeType).
    ``desc`` is a short description written to the ICD. ``ns``, when set,
    declares the data object a private extension (IEC 61850-7-1): it is served
    with a ``dataNs`` attribute (FC EX) holding that namespace. ``ex`` adds other
    FC EX strings (``ldNs`` of LLN0's name plate). ``enum`` names the
    enumeration of an ENS/ENC/ENG value (the ICD's EnumType).
    """

    name: str
    cdc: Cdc
    options: int = 0
    integer: bool = False
    phases: tuple[str, ...] = ("phsA", "phsB", "phsC")
    init: Mapping[str, Any] = field(default_factory=dict)
    ctl_model: int = 0
    points: int = 0
    fields: tuple[tuple[str, int], ...] = CURVE_FIELDS
    desc: str = ""
    ns: str = ""
    ex: Mapping[str, str] = field(default_factory=dict)
    enum: str = ""


@dataclass(frozen=True, slots=True)
class LogicalNodeSpec:
    """A logical node: class (``MMXU``), instance (``"1"``) and optional prefix."""

    ln_class: str
    inst: str
    data_objects: tuple[DataObjectSpec, ...]
    prefix: str = ""

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.ln_class}{self.inst}"


@dataclass(frozen=True, slots=True)
class DataSetSpec:
    """A data set hosted by LLN0; ``members`` are FCDs such as ``"MMXU1.TotW [MX]"``."""

    name: str
    members: tuple[str, ...]

    def mms_members(self) -> list[str]:
        """Members as libiec61850 wants them: MMS names ``MMXU1$MX$TotW``."""
        out = []
        for member in self.members:
            ref, _, fc = member.partition(" [")
            ln, *rest = ref.split(".")
            out.append("$".join([ln, fc.rstrip("]"), *rest]))
        return out


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A report control block in LLN0 on data set ``data_set``.

    ``trg_ops`` / ``opt_fields`` are libiec61850 TRG_OPT_* / RPT_OPT_* bits;
    times are milliseconds.
    """

    name: str
    data_set: str
    buffered: bool
    rpt_id: str
    trg_ops: int
    opt_fields: int
    buf_tm_ms: int = 0
    intg_pd_ms: int = 0
    conf_rev: int = 1


@dataclass(frozen=True, slots=True)
class LogicalDeviceSpec:
    """A logical device; clients see its name as IED name + ``inst``."""

    inst: str
    logical_nodes: tuple[LogicalNodeSpec, ...]
    data_sets: tuple[DataSetSpec, ...] = ()
    reports: tuple[ReportSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Binding:
    """Internal point ``point`` feeds the data point ``target`` (a stable key).

    ``convert`` maps the reading's value to the attribute's value (e.g. a link
    bool to a Health enum); None copies it.
    """

    point: str
    target: str
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The whole served model plus the point -> data object bindings."""

    logical_devices: tuple[LogicalDeviceSpec, ...]
    bindings: tuple[Binding, ...] = ()

    def data_object(self, key: str) -> DataObjectSpec:
        """The spec of the data object named by a stable key (``INV1/MMXU1.TotW``)."""
        ld_inst, _, rest = key.partition("/")
        ln_name, do_name = rest.split(".")[:2]
        for ld in self.logical_devices:
            for ln in ld.logical_nodes:
                if ld.inst == ld_inst and ln.name == ln_name:
                    for do in ln.data_objects:
                        if do.name == do_name:
                            return do
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class PointHandles:
    """Raw DataAttribute pointers of one data point (q/t None where the CDC has none)."""

    value: int
    value_type: int
    q: int | None
    t: int | None


@dataclass
class BuiltModel:
    """A libiec61850 dynamic model and the handles into it.

    ``points`` maps stable keys to handles; ``reference(key)`` gives the object
    reference a client uses. The model is owned by whoever calls ``destroy``.
    """

    ptr: int
    ied_name: str
    points: dict[str, PointHandles]
    spec: ModelSpec
    #: Data object pointers by stable key (controls are installed per data object).
    objects: dict[str, int] = field(default_factory=dict)
    #: CSG point fields: stable key -> one {field: attribute pointer} per array element.
    curves: dict[str, list[dict[str, int]]] = field(default_factory=dict)

    def attribute(self, key_and_path: str) -> int:
        """Raw pointer of any attribute, e.g. ``"INV1/DINV1.WRtg.setMag.f"``.

        Curve points are addressed ``"<key>.crvPts.<i>.<field>"`` (libiec61850
        does not resolve array indices in object references).
        """
        head, sep, tail = key_and_path.partition(f".{CURVE_ARRAY}.")
        if sep and head in self.curves:
            index, _, name = tail.partition(".")
            try:
                return self.curves[head][int(index)][name]
            except (IndexError, KeyError, ValueError):
                raise KeyError(f"no data attribute {key_and_path}") from None
        ref = self.reference(key_and_path).encode()
        node = nat.lib().IedModel_getModelNodeByObjectReference(self.ptr, ref)
        if not node or nat.lib().ModelNode_getType(node) != nat.DATA_ATTRIBUTE_MODEL_TYPE:
            raise KeyError(f"no data attribute {key_and_path}")
        return int(node)

    def reference(self, key: str) -> str:
        """Object reference seen by clients (``GWINV1/MMXU1.TotW``) for a stable key."""
        return f"{self.ied_name}{key}"

    def destroy(self) -> None:
        if self.ptr:
            nat.lib().IedModel_destroy(self.ptr)
            self.ptr = 0
            self.points.clear()
            self.objects.clear()
            self.curves.clear()


def _create_do(parent: int, do: DataObjectSpec) -> int:
    lib = nat.lib()
    name = do.name.encode()
    match do.cdc:
        case Cdc.SPS:
            return lib.CDC_SPS_create(name, parent, do.options)
        case Cdc.INS:
            return lib.CDC_INS_create(name, parent, do.options)
        case Cdc.ENS:
            return lib.CDC_ENS_create(name, parent, do.options)
        case Cdc.ENC:
            node = lib.CDC_ENC_create(name, parent, do.options, do.ctl_model)
            if do.ctl_model != nat.CTL_MODEL_SBO_NORMAL:
                return int(node)
            names = {lib.ModelNode_getName(lib.ModelNode_getChildWithIdx(node, i))
                     for i in range(lib.ModelNode_getChildCount(node))}
            # 7-3 MOsbo: libiec61850's ENC helper leaves these out
            if b"stSeld" not in names:
                lib.DataAttribute_create(b"stSeld", node, nat.DA_BOOLEAN, nat.FC_ST,
                                         nat.TRG_OPT_DATA_CHANGED, 0, 0)
            if b"sboTimeout" not in names:
                lib.DataAttribute_create(b"sboTimeout", node, nat.DA_INT32U, nat.FC_CF, 0, 0, 0)
            return int(node)
        case Cdc.MV:
            return lib.CDC_MV_create(name, parent, do.options, do.integer)
        case Cdc.CMV:
            return lib.CDC_CMV_create(name, parent, do.options)
        case Cdc.WYE:
            # CDC_WYE_create always adds neut/net/res, which would be served
            # forever without data: build the WYE from the phases we have.
            node = lib.DataObject_create(name, parent, 0)
            for phase in do.phases:
                lib.CDC_CMV_create(phase.encode(), node, do.options)
            return node
        case Cdc.ASG:
            return lib.CDC_ASG_create(name, parent, do.options, do.integer)
        case Cdc.ING:
            return lib.CDC_ING_create(name, parent, do.options)
        case Cdc.LPL:
            return lib.CDC_LPL_create(name, parent, do.options)
        case Cdc.DPL:
            return lib.CDC_DPL_create(name, parent, do.options)
        case Cdc.SPG:
            return lib.CDC_SPG_create(name, parent, do.options)
        case Cdc.VSS:
            return lib.CDC_VSS_create(name, parent, do.options)
        case Cdc.SPC:
            return lib.CDC_SPC_create(name, parent, do.options, do.ctl_model)
        case Cdc.DPC:
            return lib.CDC_DPC_create(name, parent, do.options, do.ctl_model)
        case Cdc.APC:
            return lib.CDC_APC_create(name, parent, do.options, do.ctl_model, False)
        case Cdc.CSG:
            return _create_curve(name, parent, do)
        case Cdc.ENG | Cdc.VSG | Cdc.ORG:
            node = lib.DataObject_create(name, parent, 0)
            attr, da_type = {Cdc.ENG: ("setVal", nat.DA_ENUMERATED),
                             Cdc.VSG: ("setVal", nat.DA_VISIBLE_STRING_255),
                             Cdc.ORG: ("setSrcRef", DA_OBJECT_REFERENCE)}[do.cdc]
            lib.DataAttribute_create(attr.encode(), node, da_type, nat.FC_SP,
                                     nat.TRG_OPT_DATA_CHANGED, 0, 0)
            return int(node)
        case Cdc.BCR:
            node = lib.DataObject_create(name, parent, 0)
            lib.DataAttribute_create(b"actVal", node, nat.DA_INT64, nat.FC_ST,
                                     nat.TRG_OPT_DATA_CHANGED, 0, 0)
            lib.DataAttribute_create(b"pulsQty", node, nat.DA_FLOAT32, nat.FC_CF, 0, 0, 0)
            lib.DataAttribute_create(b"q", node, nat.DA_QUALITY, nat.FC_ST,
                                     nat.TRG_OPT_QUALITY_CHANGED, 0, 0)
            lib.DataAttribute_create(b"t", node, nat.DA_TIMESTAMP, nat.FC_ST, 0, 0, 0)
            return int(node)
        case Cdc.ACT | Cdc.ACD:
            node = lib.DataObject_create(name, parent, 0)
            trg = nat.TRG_OPT_DATA_CHANGED
            lib.DataAttribute_create(b"general", node, nat.DA_BOOLEAN, nat.FC_ST, trg, 0, 0)
            if do.cdc is Cdc.ACD:
                lib.DataAttribute_create(b"dirGeneral", node, nat.DA_ENUMERATED, nat.FC_ST,
                                         trg, 0, 0)
            lib.DataAttribute_create(b"q", node, nat.DA_QUALITY, nat.FC_ST,
                                     nat.TRG_OPT_QUALITY_CHANGED, 0, 0)
            lib.DataAttribute_create(b"t", node, nat.DA_TIMESTAMP, nat.FC_ST, 0, 0, 0)
            return int(node)
    raise ValueError(f"unsupported CDC {do.cdc}")


def _create_ex(node: int, do: DataObjectSpec) -> None:
    """FC EX strings: dataNs of a private data object, ldNs of LLN0.NamPlt."""
    names = ({"dataNs": do.ns} if do.ns else {}) | dict(do.ex)
    for attr in names:
        nat.lib().DataAttribute_create(attr.encode(), node, nat.DA_VISIBLE_STRING_255, FC_EX,
                                       0, 0, 0)


def ex_values(do: DataObjectSpec) -> dict[str, str]:
    """The FC EX attribute values of ``do`` (path below the DO -> value)."""
    return ({"dataNs": do.ns} if do.ns else {}) | dict(do.ex)


def _create_curve(name: bytes, parent: int, do: DataObjectSpec) -> int:
    """numPts plus an array of points, each element with its own fields.

    DataAttribute_create with N array elements creates the elements itself;
    the fields go under each element, never under the array node (which would
    serve malformed reads; LIBIEC61850.md).
    """
    lib = nat.lib()
    trg = nat.TRG_OPT_DATA_CHANGED
    node = lib.DataObject_create(name, parent, 0)
    lib.DataAttribute_create(b"numPts", node, nat.DA_INT16U, nat.FC_SP, trg, 0, 0)
    array = lib.DataAttribute_create(CURVE_ARRAY.encode(), node, nat.DA_CONSTRUCTED, nat.FC_SP,
                                     trg, do.points, 0)
    for i in range(lib.ModelNode_getChildCount(array)):
        element = lib.ModelNode_getChildWithIdx(array, i)
        for field_name, da_type in do.fields:
            lib.DataAttribute_create(field_name.encode(), element, da_type, nat.FC_SP, trg, 0, 0)
    # 7-3 CSG: units of both axes (CF), the array size (CF) and axis descriptions (DC).
    for units in (b"xUnits", b"yUnits"):
        unit = lib.DataAttribute_create(units, node, nat.DA_CONSTRUCTED, nat.FC_CF, trg, 0, 0)
        lib.DataAttribute_create(b"SIUnit", unit, nat.DA_ENUMERATED, nat.FC_CF, trg, 0, 0)
    lib.DataAttribute_create(b"maxPts", node, nat.DA_INT16U, nat.FC_CF, trg, 0, 0)
    for text in (b"xD", b"yD"):
        lib.DataAttribute_create(text, node, nat.DA_VISIBLE_STRING_255, nat.FC_DC, 0, 0, 0)
    return int(node)


def _curve_handles(do_ptr: int) -> list[dict[str, int]]:
    lib = nat.lib()
    array = next(lib.ModelNode_getChildWithIdx(do_ptr, i)
                 for i in range(lib.ModelNode_getChildCount(do_ptr))
                 if lib.ModelNode_getName(lib.ModelNode_getChildWithIdx(do_ptr, i))
                 == CURVE_ARRAY.encode())
    out = []
    for i in range(lib.ModelNode_getChildCount(array)):
        element = lib.ModelNode_getChildWithIdx(array, i)
        fields = {"": int(element)}
        for j in range(lib.ModelNode_getChildCount(element)):
            child = lib.ModelNode_getChildWithIdx(element, j)
            fields[lib.ModelNode_getName(child).decode()] = int(child)
        out.append(fields)
    return out


def _create_data_sets(ln0: int, ld: LogicalDeviceSpec) -> None:
    lib = nat.lib()
    for ds in ld.data_sets:
        ds_ptr = lib.DataSet_create(ds.name.encode(), ln0)
        for member in ds.mms_members():
            if not lib.DataSetEntry_create(ds_ptr, member.encode(), -1, None):
                raise ValueError(f"data set {ds.name}: cannot add {member}")
    for rc in ld.reports:
        if not lib.ReportControlBlock_create(
                rc.name.encode(), ln0, rc.rpt_id.encode(), rc.buffered, rc.data_set.encode(),
                rc.conf_rev, rc.trg_ops, rc.opt_fields, rc.buf_tm_ms, rc.intg_pd_ms):
            raise ValueError(f"cannot create report control block {rc.name}")


def _lookup(model: int, ref: str) -> int | None:
    node = nat.lib().IedModel_getModelNodeByObjectReference(model, ref.encode())
    if node and nat.lib().ModelNode_getType(node) == nat.DATA_ATTRIBUTE_MODEL_TYPE:
        return int(node)
    return None


def _point(model: int, ref: str) -> PointHandles | None:
    for path in VALUE_ATTRIBUTES:
        value = _lookup(model, f"{ref}.{path}")
        if value is not None:
            return PointHandles(value, nat.lib().DataAttribute_getType(value),
                                _lookup(model, f"{ref}.q"), _lookup(model, f"{ref}.t"))
    return None


def build_model(spec: ModelSpec, ied_name: str = "GW") -> BuiltModel:
    """Create the libiec61850 dynamic model for ``spec`` and resolve every data point.

    Handles are looked up by object reference right after building, before any
    IedServer exists (walking the model through SWIG after IedServer_create
    crashed, LIBIEC61850.md).
    """
    lib = nat.lib()
    model = lib.IedModel_create(ied_name.encode())
    if not model:
        raise MemoryError("IedModel_create failed")
    points: dict[str, PointHandles] = {}
    objects: dict[str, int] = {}
    curves: dict[str, list[dict[str, int]]] = {}
    for ld in spec.logical_devices:
        ld_ptr = lib.LogicalDevice_create(ld.inst.encode(), model)
        ln0 = None
        for ln in ld.logical_nodes:
            ln_ptr = lib.LogicalNode_create(ln.name.encode(), ld_ptr)
            if ln.name == "LLN0":
                ln0 = ln_ptr
            for do in ln.data_objects:
                do_ptr = _create_do(ln_ptr, do)
                if not do_ptr:
                    lib.IedModel_destroy(model)
                    raise ValueError(f"could not create {ld.inst}/{ln.name}.{do.name}")
                _create_ex(do_ptr, do)
                key = f"{ld.inst}/{ln.name}.{do.name}"
                objects[key] = int(do_ptr)
                if do.cdc is Cdc.CSG:
                    curves[key] = _curve_handles(do_ptr)
                subs = [f"{key}.{p}" for p in do.phases] if do.cdc is Cdc.WYE else [key]
                for sub in subs:
                    handles = _point(model, ied_name + sub)
                    if handles is not None:
                        points[sub] = handles
        if ld.data_sets or ld.reports:
            if ln0 is None:
                lib.IedModel_destroy(model)
                raise ValueError(f"{ld.inst}: data sets and reports need an LLN0")
            try:
                _create_data_sets(ln0, ld)
            except ValueError:
                lib.IedModel_destroy(model)
                raise
    built = BuiltModel(int(model), ied_name, points, spec, objects, curves)
    for binding in spec.bindings:
        if binding.target not in points:
            try:  # a bare attribute (a name plate string): a point without q and t
                attr = built.attribute(binding.target)
            except KeyError:
                built.destroy()
                raise ValueError(
                    f"binding {binding.point!r} -> unknown {binding.target!r}") from None
            points[binding.target] = PointHandles(attr, lib.DataAttribute_getType(attr),
                                                  None, None)
    log.debug("built model %s: %d data points", ied_name, len(points))
    return built
