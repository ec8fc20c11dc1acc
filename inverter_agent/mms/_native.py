"""ctypes access to the libiec61850 library bundled with pyiec61850-ng.

Everything the MMS layer calls in libiec61850 goes through this module, never
through the SWIG wrappers, because (LIBIEC61850.md, "Pitfalls"):

* the SWIG wrappers never release the GIL: a SWIG ``IedServer_lockDataModel``
  that blocks while a client request needs a Python callback deadlocks the
  process. ctypes releases the GIL around every foreign call.
* callbacks (connection indication, write access) must be ctypes CFUNCTYPEs
  whose Python objects are kept alive by the caller for as long as the server
  can call them.

Handles are plain ``int`` pointers (``c_void_p`` arguments). The library is
the one the SWIG extension already loaded: importing ``pyiec61850.pyiec61850``
maps it into the process and its path is read back from /proc/self/maps
(``pyiec61850._libload.LOADED_PATH`` is None in this package).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from ctypes import (
    CFUNCTYPE,
    c_bool,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

log = logging.getLogger(__name__)

# --- constants (iec61850_common.h / iec61850_model.h / mms_value.h) ---------------------------
FC_ST = 0
FC_MX = 1
FC_SP = 2
FC_SV = 3
FC_CF = 4
FC_DC = 5
FC_SE = 7

ACCESS_POLICY_ALLOW = 0
ACCESS_POLICY_DENY = 1

DATA_ACCESS_ERROR_SUCCESS = -1
DATA_ACCESS_ERROR_OBJECT_ACCESS_DENIED = 3
DATA_ACCESS_ERROR_OBJECT_VALUE_INVALID = 11

# ModelNodeType
DATA_ATTRIBUTE_MODEL_TYPE = 3

# DataAttributeType (subset the server knows how to update)
DA_BOOLEAN = 0
DA_INT8 = 1
DA_INT16 = 2
DA_INT32 = 3
DA_INT64 = 4
DA_INT8U = 6
DA_INT16U = 7
DA_INT24U = 8
DA_INT32U = 9
DA_FLOAT32 = 10
DA_FLOAT64 = 11
DA_ENUMERATED = 12
DA_VISIBLE_STRING_32 = 16
DA_VISIBLE_STRING_64 = 17
DA_VISIBLE_STRING_65 = 18
DA_VISIBLE_STRING_129 = 19
DA_VISIBLE_STRING_255 = 20
DA_UNICODE_STRING_255 = 21
DA_TIMESTAMP = 22
DA_QUALITY = 23

# MmsType
MMS_BOOLEAN = 2
MMS_INTEGER = 4
MMS_UNSIGNED = 5
MMS_FLOAT = 6

# void (*IedConnectionIndicationHandler)(IedServer, ClientConnection, bool connected, void* param)
CONNECTION_INDICATION = CFUNCTYPE(None, c_void_p, c_void_p, c_bool, c_void_p)
# MmsDataAccessError (*WriteAccessHandler)(DataAttribute*, MmsValue*, ClientConnection, void*)
WRITE_ACCESS_HANDLER = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_void_p)

_P = c_void_p
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    # dynamic model (dynamic_model.h, cdc.h)
    "IedModel_create": (_P, [c_char_p]),
    "IedModel_destroy": (None, [_P]),
    "LogicalDevice_create": (_P, [c_char_p, _P]),
    "LogicalNode_create": (_P, [c_char_p, _P]),
    "DataObject_create": (_P, [c_char_p, _P, c_int]),
    "DataAttribute_create": (_P, [c_char_p, _P, c_int, c_int, c_uint8, c_uint32, c_uint32]),
    "CDC_SPS_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_INS_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_ENS_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_MV_create": (_P, [c_char_p, _P, c_uint32, c_bool]),
    "CDC_CMV_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_WYE_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_ASG_create": (_P, [c_char_p, _P, c_uint32, c_bool]),
    "CDC_ING_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_LPL_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_DPL_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_ENC_create": (_P, [c_char_p, _P, c_uint32, c_uint32]),
    "IedModel_getModelNodeByObjectReference": (_P, [_P, c_char_p]),
    "ModelNode_getType": (c_int, [_P]),
    "ModelNode_getChildCount": (c_int, [_P]),
    "ModelNode_getChildWithIdx": (_P, [_P, c_int]),
    "ModelNode_getName": (c_char_p, [_P]),
    "DataAttribute_getType": (c_int, [_P]),
    "DataAttribute_getFC": (c_int, [_P]),
    # server (iec61850_server.h)
    "IedServerConfig_create": (_P, []),
    "IedServerConfig_destroy": (None, [_P]),
    "IedServerConfig_setMaxMmsConnections": (None, [_P, c_int]),
    "IedServer_createWithConfig": (_P, [_P, _P, _P]),
    "IedServer_destroy": (None, [_P]),
    "IedServer_setLocalIpAddress": (None, [_P, c_char_p]),
    "IedServer_start": (None, [_P, c_int]),
    "IedServer_stop": (None, [_P]),
    "IedServer_isRunning": (c_bool, [_P]),
    "IedServer_getNumberOfOpenConnections": (c_int, [_P]),
    "IedServer_lockDataModel": (None, [_P]),
    "IedServer_unlockDataModel": (None, [_P]),
    "IedServer_updateFloatAttributeValue": (None, [_P, _P, c_float]),
    "IedServer_updateInt32AttributeValue": (None, [_P, _P, c_int32]),
    "IedServer_updateInt64AttributeValue": (None, [_P, _P, c_int64]),
    "IedServer_updateUnsignedAttributeValue": (None, [_P, _P, c_uint32]),
    "IedServer_updateBooleanAttributeValue": (None, [_P, _P, c_bool]),
    "IedServer_updateVisibleStringAttributeValue": (None, [_P, _P, c_char_p]),
    "IedServer_updateUTCTimeAttributeValue": (None, [_P, _P, c_uint64]),
    "IedServer_updateQuality": (None, [_P, _P, c_uint16]),
    "IedServer_setConnectionIndicationHandler": (None, [_P, CONNECTION_INDICATION, _P]),
    "IedServer_setWriteAccessPolicy": (None, [_P, c_int, c_int]),
    "IedServer_handleWriteAccess": (None, [_P, _P, WRITE_ACCESS_HANDLER, _P]),
    "ClientConnection_getPeerAddress": (c_char_p, [_P]),
    # values handed to write-access handlers (mms_value.h)
    "MmsValue_getType": (c_int, [_P]),
    "MmsValue_toFloat": (c_float, [_P]),
    "MmsValue_toDouble": (c_double, [_P]),
    "MmsValue_toInt64": (c_int64, [_P]),
    "MmsValue_toUint32": (c_uint32, [_P]),
    "MmsValue_getBoolean": (c_bool, [_P]),
}


def library_path() -> str:
    """Path of the libiec61850 shared object mapped by the SWIG extension."""
    import pyiec61850.pyiec61850  # noqa: F401  (maps the bundled library into the process)

    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if "/libiec61850" in path and ".so" in path:
                return path
    raise OSError("libiec61850 is not mapped in this process after importing pyiec61850")


@functools.cache
def lib() -> ctypes.CDLL:
    """The bundled libiec61850 with argtypes/restypes declared for what we call."""
    path = library_path()
    dll = ctypes.CDLL(path)
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(dll, name)
        fn.restype = restype
        fn.argtypes = argtypes
    log.debug("libiec61850 loaded from %s", path)
    return dll


def mms_value_to_python(value: int) -> bool | int | float | None:
    """Scalar MmsValue (as handed to a write handler) to a Python value; None if not scalar."""
    dll = lib()
    kind = dll.MmsValue_getType(value)
    if kind == MMS_FLOAT:
        return float(dll.MmsValue_toDouble(value))
    if kind == MMS_INTEGER:
        return int(dll.MmsValue_toInt64(value))
    if kind == MMS_UNSIGNED:
        return int(dll.MmsValue_toUint32(value))
    if kind == MMS_BOOLEAN:
        return bool(dll.MmsValue_getBoolean(value))
    return None
