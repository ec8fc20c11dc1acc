"""Declarative description of a served IEC 61850 model and its libiec61850 build.

A :class:`ModelSpec` is plain frozen data: logical devices -> logical nodes
(class + instance) -> data objects with their common data class (IEC 61850-7-3
CDC), plus :class:`Binding` rows that say which internal point feeds which data
object. :func:`build_model` turns it into a libiec61850 dynamic model (through
ctypes, see ``_native``) and returns the handles of every *data point*: each
data object, or WYE phase, that has a value attribute, keyed by a stable key
``"<LD inst>/<LN>.<DO>[.<sub>]"`` (e.g. ``"INV1/MMXU1.PhV.phsA"``) that does
not depend on the IED name.

Later issues add settings (FC SP) with validated writes, controls (SPC/APC),
data sets and report control blocks: the spec is where they will be declared.
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


#: Attribute that carries a data point's value, tried in this order below the DO.
VALUE_ATTRIBUTES = ("mag.f", "mag.i", "cVal.mag.f", "setMag.f", "setMag.i", "stVal", "setVal")

# 7-3 SIUnit codes used by the DER model (IEC 61850-7-3 Annex A).
SI_UNIT = {"A": 5, "V": 29, "Hz": 33, "VA": 61, "W": 62, "VAr": 63, "dimensionless": 1}


@dataclass(frozen=True, slots=True)
class DataObjectSpec:
    """One data object.

    ``options`` are libiec61850 ``CDC_OPTION_*`` bits; ``integer`` selects
    ``mag.i``/``setMag.i`` for MV/ASG; ``phases`` names the CMVs of a WYE;
    ``init`` sets attributes (path below the DO -> value) once at start, e.g.
    ``{"stVal": 1}`` for a Beh that is always "on" or ``{"units.SIUnit": 62}``.
    """

    name: str
    cdc: Cdc
    options: int = 0
    integer: bool = False
    phases: tuple[str, ...] = ("phsA", "phsB", "phsC")
    init: Mapping[str, Any] = field(default_factory=dict)


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
class LogicalDeviceSpec:
    """A logical device; clients see its name as IED name + ``inst``."""

    inst: str
    logical_nodes: tuple[LogicalNodeSpec, ...]


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

    def attribute(self, key_and_path: str) -> int:
        """Raw pointer of any attribute, e.g. ``"INV1/ZINV1.WRtg.setMag.f"``."""
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
            return lib.CDC_ENC_create(name, parent, do.options, 0)  # ctlModel status-only
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
    raise ValueError(f"unsupported CDC {do.cdc}")


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
    for ld in spec.logical_devices:
        ld_ptr = lib.LogicalDevice_create(ld.inst.encode(), model)
        for ln in ld.logical_nodes:
            ln_ptr = lib.LogicalNode_create(ln.name.encode(), ld_ptr)
            for do in ln.data_objects:
                if not _create_do(ln_ptr, do):
                    lib.IedModel_destroy(model)
                    raise ValueError(f"could not create {ld.inst}/{ln.name}.{do.name}")
                key = f"{ld.inst}/{ln.name}.{do.name}"
                subs = [f"{key}.{p}" for p in do.phases] if do.cdc is Cdc.WYE else [key]
                for sub in subs:
                    handles = _point(model, ied_name + sub)
                    if handles is not None:
                        points[sub] = handles
    built = BuiltModel(int(model), ied_name, points, spec)
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
