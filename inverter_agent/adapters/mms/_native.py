"""ctypes access to libiec61850: the one bundled with pyiec61850-ng, or a system build.

Everything the MMS layer calls in libiec61850 goes through this module, never
through the SWIG wrappers, because (LIBIEC61850.md, "Pitfalls"):

* the SWIG wrappers never release the GIL: a SWIG ``IedServer_lockDataModel``
  that blocks while a client request needs a Python callback deadlocks the
  process. ctypes releases the GIL around every foreign call.
* callbacks (connection indication, write access) must be ctypes CFUNCTYPEs
  whose Python objects are kept alive by the caller for as long as the server
  can call them.

Handles are plain ``int`` pointers (``c_void_p`` arguments). Which library:
the ``mms.libiec61850`` config key (:func:`configure`) or the
``INVERTER_AGENT_LIBIEC61850`` environment variable if set (a build of the
official release, e.g. on armhf where pyiec61850-ng has no wheel); else the
one the SWIG extension loads (importing ``pyiec61850.pyiec61850`` maps it and
its path is read back from /proc/self/maps); else the system's. Its version is
checked when it is loaded, with a clear error (:class:`LibraryError`). Nothing
on the server side needs the SWIG module: only the MMS *client*
(``inverter-agent read``, the tests' reader) does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import itertools
import logging
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
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
from typing import Any

log = logging.getLogger(__name__)

# --- constants (iec61850_common.h / iec61850_model.h / mms_value.h) ---------------------------
FC_ST = 0
FC_MX = 1
FC_SP = 2
FC_SV = 3
FC_CF = 4
FC_DC = 5
FC_SE = 7
FC_CO = 12

#: FC codes -> the names SCL and MMS use.
FC_NAMES = {0: "ST", 1: "MX", 2: "SP", 3: "SV", 4: "CF", 5: "DC", 6: "SG", 7: "SE", 8: "SR",
            9: "OR", 10: "BL", 11: "EX", 12: "CO"}

ACCESS_POLICY_ALLOW = 0
ACCESS_POLICY_DENY = 1

DATA_ACCESS_ERROR_SUCCESS = -1
DATA_ACCESS_ERROR_OBJECT_ACCESS_DENIED = 3
DATA_ACCESS_ERROR_OBJECT_VALUE_INVALID = 11

# CheckHandlerResult / ControlHandlerResult (iec61850_server.h)
CONTROL_ACCEPTED = -1
CONTROL_HARDWARE_FAULT = 1
CONTROL_TEMPORARILY_UNAVAILABLE = 2
CONTROL_OBJECT_ACCESS_DENIED = 3
CONTROL_VALUE_INVALID = 11
CONTROL_RESULT_FAILED = 0
CONTROL_RESULT_OK = 1

# CDC_CTL_MODEL_* (iec61850_cdc.h) = ControlModel values
CTL_MODEL_STATUS_ONLY = 0
CTL_MODEL_DIRECT_NORMAL = 1
CTL_MODEL_SBO_NORMAL = 2

# Trigger options and report options (iec61850_common.h)
TRG_OPT_DATA_CHANGED = 1
TRG_OPT_QUALITY_CHANGED = 2
TRG_OPT_DATA_UPDATE = 4
TRG_OPT_INTEGRITY = 8
TRG_OPT_GI = 16
RPT_OPT_SEQ_NUM = 1
RPT_OPT_TIME_STAMP = 2
RPT_OPT_REASON_FOR_INCLUSION = 4
RPT_OPT_DATA_SET = 8
RPT_OPT_DATA_REFERENCE = 16
RPT_OPT_BUFFER_OVERFLOW = 32
RPT_OPT_ENTRY_ID = 64
RPT_OPT_CONF_REV = 128

# ModelNodeType
LOGICAL_DEVICE_MODEL_TYPE = 0
LOGICAL_NODE_MODEL_TYPE = 1
DATA_OBJECT_MODEL_TYPE = 2
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
DA_CHECK = 24
DA_CODEDENUM = 25
DA_CONSTRUCTED = 27
DA_OCTET_STRING_64 = 13

# MmsType
MMS_ARRAY = 0
MMS_STRUCTURE = 1
MMS_BOOLEAN = 2
MMS_INTEGER = 4
MMS_UNSIGNED = 5
MMS_FLOAT = 6
MMS_VISIBLE_STRING = 8

# void (*IedConnectionIndicationHandler)(IedServer, ClientConnection, bool connected, void* param)
CONNECTION_INDICATION = CFUNCTYPE(None, c_void_p, c_void_p, c_bool, c_void_p)
# MmsDataAccessError (*WriteAccessHandler)(DataAttribute*, MmsValue*, ClientConnection, void*)
WRITE_ACCESS_HANDLER = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_void_p)
# CheckHandlerResult (*ControlPerformCheckHandler)(ControlAction, void*, MmsValue* ctlVal,
#                                                  bool test, bool interlockCheck)
PERFORM_CHECK_HANDLER = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_bool, c_bool)
# ControlHandlerResult (*ControlHandler)(ControlAction, void*, MmsValue* ctlVal, bool test)
CONTROL_HANDLER = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_bool)
# MmsDataAccessError (*ReadAccessHandler)(LogicalDevice*, LogicalNode*, DataObject*, FC,
#                                         ClientConnection, void*)
READ_ACCESS_HANDLER = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_int, c_void_p, c_void_p)

# bool (*AcseAuthenticator)(void* parameter, AcseAuthenticationParameter authParameter,
#                           void** securityToken, IsoApplicationReference* appReference)
# (1.6.1; later versions add local/remote addresses and the socket).
AUTHENTICATOR = CFUNCTYPE(c_bool, c_void_p, c_void_p, POINTER(c_void_p), c_void_p)
# void (*TLSConfiguration_EventHandler)(void* parameter, TLSEventLevel eventLevel, int eventCode,
#                                       const char* message, TLSConnection con)
TLS_EVENT_HANDLER = CFUNCTYPE(None, c_void_p, c_int, c_int, c_char_p, c_void_p)
# void (*IedServer_RCBEventHandler)(void* parameter, ReportControlBlock* rcb,
#       ClientConnection connection, IedServer_RCBEventType event, const char* parameterName,
#       MmsDataAccessError serviceError)
RCB_EVENT_HANDLER = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_int, c_char_p, c_int)
# bool (*IedServer_DirectoryAccessHandler)(void* parameter, ClientConnection connection,
#                                          IedServer_DirectoryCategory category, LogicalDevice* ld)
DIRECTORY_ACCESS_HANDLER = CFUNCTYPE(c_bool, c_void_p, c_void_p, c_int, c_void_p)

# AcseAuthenticationMechanism (iso_connection_parameters.h)
ACSE_AUTH_NONE = 0
ACSE_AUTH_PASSWORD = 1
ACSE_AUTH_CERTIFICATE = 2
ACSE_AUTH_TLS = 3

# TLSConfigVersion (tls_config.h)
TLS_VERSION_NOT_SELECTED = 0
TLS_VERSION_TLS_1_0 = 4
TLS_VERSION_TLS_1_1 = 5
TLS_VERSION_TLS_1_2 = 6
TLS_VERSION_TLS_1_3 = 7

# TLSEventLevel / event codes (tls_config.h) that the server reports
TLS_SEC_EVT_INFO = 0
TLS_SEC_EVT_WARNING = 1
TLS_SEC_EVT_INCIDENT = 2
TLS_EVENT_CODE_INF_SESSION_ESTABLISHED = 16

# IedServer_RCBEventType
RCB_EVENT_ENABLE = 4
RCB_EVENT_DISABLE = 5


class AcseAuthParameter(Structure):
    """``struct sAcseAuthenticationParameter``: the mechanism, then a union whose
    first two members are (bytes pointer, int length) for both a password and a
    certificate (DER)."""

    _fields_ = [("mechanism", c_int), ("buf", c_void_p), ("length", c_int)]


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
    "CDC_SPG_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_VSS_create": (_P, [c_char_p, _P, c_uint32]),
    "CDC_SPC_create": (_P, [c_char_p, _P, c_uint32, c_uint32]),
    "CDC_DPC_create": (_P, [c_char_p, _P, c_uint32, c_uint32]),
    "CDC_APC_create": (_P, [c_char_p, _P, c_uint32, c_uint32, c_bool]),
    "DataSet_create": (_P, [c_char_p, _P]),
    "DataSetEntry_create": (_P, [_P, c_char_p, c_int, c_char_p]),
    "ReportControlBlock_create": (_P, [c_char_p, _P, c_char_p, c_bool, c_char_p, c_uint32,
                                       c_uint8, c_uint8, c_uint32, c_uint32]),
    "IedModel_getModelNodeByObjectReference": (_P, [_P, c_char_p]),
    "ModelNode_getType": (c_int, [_P]),
    "ModelNode_getChildCount": (c_int, [_P]),
    "ModelNode_getChildWithIdx": (_P, [_P, c_int]),
    "ModelNode_getName": (c_char_p, [_P]),
    "DataAttribute_getType": (c_int, [_P]),
    "DataAttribute_getFC": (c_int, [_P]),
    "DataAttribute_getTrgOps": (c_uint8, [_P]),
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
    "IedServer_handleWriteAccessForComplexAttribute": (None, [_P, _P, WRITE_ACCESS_HANDLER, _P]),
    "IedServer_setReadAccessHandler": (None, [_P, READ_ACCESS_HANDLER, _P]),
    "IedServer_setPerformCheckHandler": (None, [_P, _P, PERFORM_CHECK_HANDLER, _P]),
    "IedServer_setControlHandler": (None, [_P, _P, CONTROL_HANDLER, _P]),
    "IedServer_updateCtlModel": (None, [_P, _P, c_int]),
    "IedServer_updateDbposValue": (None, [_P, _P, c_int]),
    "ControlAction_setAddCause": (None, [_P, c_int]),
    "ControlAction_isSelect": (c_bool, [_P]),
    "ControlAction_getClientConnection": (_P, [_P]),
    "ClientConnection_getPeerAddress": (c_char_p, [_P]),
    "ClientConnection_getSecurityToken": (_P, [_P]),
    "ClientConnection_abort": (c_bool, [_P]),
    "ClientConnection_claimOwnership": (_P, [_P]),
    "ClientConnection_release": (None, [_P]),
    "IedServer_setAuthenticator": (None, [_P, AUTHENTICATOR, _P]),
    "IedServer_setRCBEventHandler": (None, [_P, RCB_EVENT_HANDLER, _P]),
    "IedServer_setDirectoryAccessHandler": (None, [_P, DIRECTORY_ACCESS_HANDLER, _P]),
    # TLS (tls_config.h, mbedTLS 3.6 inside the bundled library)
    "TLSConfiguration_create": (_P, []),
    "TLSConfiguration_destroy": (None, [_P]),
    "TLSConfiguration_setOwnCertificateFromFile": (c_bool, [_P, c_char_p]),
    "TLSConfiguration_setOwnKeyFromFile": (c_bool, [_P, c_char_p, c_char_p]),
    "TLSConfiguration_addCACertificateFromFile": (c_bool, [_P, c_char_p]),
    "TLSConfiguration_addCRLFromFile": (c_bool, [_P, c_char_p]),
    "TLSConfiguration_addAllowedCertificateFromFile": (c_bool, [_P, c_char_p]),
    "TLSConfiguration_setAllowOnlyKnownCertificates": (None, [_P, c_bool]),
    "TLSConfiguration_setChainValidation": (None, [_P, c_bool]),
    "TLSConfiguration_setTimeValidation": (None, [_P, c_bool]),
    "TLSConfiguration_setMinTlsVersion": (None, [_P, c_int]),
    "TLSConfiguration_setMaxTlsVersion": (None, [_P, c_int]),
    "TLSConfiguration_clearCipherSuiteList": (None, [_P]),
    "TLSConfiguration_addCipherSuite": (None, [_P, c_int]),
    "TLSConfiguration_setEventHandler": (None, [_P, TLS_EVENT_HANDLER, _P]),
    "TLSConnection_getPeerAddress": (c_char_p, [_P, c_char_p]),
    # values handed to write-access handlers (mms_value.h)
    "MmsValue_getType": (c_int, [_P]),
    "MmsValue_toFloat": (c_float, [_P]),
    "MmsValue_toDouble": (c_double, [_P]),
    "MmsValue_toInt64": (c_int64, [_P]),
    "MmsValue_toUint32": (c_uint32, [_P]),
    "MmsValue_getBoolean": (c_bool, [_P]),
    "MmsValue_getArraySize": (c_uint32, [_P]),
    "MmsValue_getElement": (_P, [_P, c_int]),
    "MmsValue_toString": (c_char_p, [_P]),
}


#: Environment variable naming the libiec61850 shared object to load (as the
#: ``mms.libiec61850`` config key does; the config key wins).
ENV_LIBRARY = "INVERTER_AGENT_LIBIEC61850"
#: libiec61850 releases whose ABI this module declares (the callback signatures
#: above are 1.6's; 1.6.1 is the one tested).
SUPPORTED = ((1, 6, 0), (1, 7, 0))  # from, up to (excluded)
#: Symbols only a build with TLS (mbedTLS in third_party) has.
_TLS_SYMBOLS = frozenset(n for n in _SIGNATURES if n.startswith(("TLSConfiguration_",
                                                                 "TLSConnection_")))


class LibraryError(OSError):
    """The libiec61850 to use cannot be loaded, is not libiec61850, or is too old."""


_configured: dict[str, str | None] = {"path": None, "source": None}
_missing: set[str] = set()


def configure(path: str | None, source: str = "mms.libiec61850") -> None:
    """Load the library from ``path`` (None: the environment variable, else the one
    bundled with pyiec61850-ng, else the system's). Call before the first :func:`lib`."""
    if lib.cache_info().currsize and path and path != _configured["path"]:
        raise LibraryError(f"{source} = {path!r}: libiec61850 is already loaded from "
                           f"{library_path()}")
    _configured["path"], _configured["source"] = path, source if path else None


def _chosen() -> tuple[str | None, str]:
    if _configured["path"]:
        return _configured["path"], str(_configured["source"])
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return env, f"${ENV_LIBRARY}"
    return None, "pyiec61850-ng"


def _bundled_path() -> str | None:
    """Path of the libiec61850 that pyiec61850-ng ships, if it is installed.

    Found beside the package (``pyiec61850_ng.libs``, where the wheel keeps it)
    without importing the SWIG extension (~5 MB the server never uses); failing
    that, the extension is imported and the path read back from /proc/self/maps
    (``pyiec61850._libload.LOADED_PATH`` is None in this package).
    """
    try:
        spec = importlib.util.find_spec("pyiec61850")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        libs = os.path.join(os.path.dirname(folder), "pyiec61850_ng.libs")
        found = sorted(glob.glob(os.path.join(libs, "libiec61850*.so*")))
        if found:
            return found[0]
    try:
        import pyiec61850.pyiec61850  # noqa: F401  (maps the bundled library)
    except ImportError:
        return None
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if "/libiec61850" in path and ".so" in path:
                return path
    return None


def library_path() -> str:
    """Path of the libiec61850 shared object to load (or loaded)."""
    path, _ = _chosen()
    if path:
        return path
    bundled = _bundled_path()
    if bundled:
        return bundled
    system = ctypes.util.find_library("iec61850")
    if system:
        return system
    raise LibraryError(
        "no libiec61850 to load: pyiec61850-ng is not installed (as on armhf) and none "
        "is on the system's library path; build it from the official release and set "
        f"mms.libiec61850 (or ${ENV_LIBRARY}) to its .so, see docs/install.md")


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@functools.cache
def lib() -> ctypes.CDLL:
    """libiec61850 with argtypes/restypes declared for what we call; its version
    checked. Raises :class:`LibraryError` with what to do."""
    path = library_path()
    _, source = _chosen()
    where = f"{source} = {path!r}" if source != "pyiec61850-ng" else f"libiec61850 {path}"
    try:
        dll = ctypes.CDLL(path)
    except OSError as exc:
        raise LibraryError(f"{where}: cannot be loaded ({exc})") from None
    try:
        get_version = dll.LibIEC61850_getVersionString
    except AttributeError:
        raise LibraryError(f"{where}: not a libiec61850 (no LibIEC61850_getVersionString)"
                           ) from None
    get_version.restype = c_char_p
    get_version.argtypes = []
    raw = get_version() or b""
    text = raw.decode("ascii", "replace")
    version = parse_version(text)
    lo, hi = SUPPORTED
    if not lo <= version < hi:
        raise LibraryError(
            f"{where}: libiec61850 version {text or '?'}; this agent needs "
            f"{'.'.join(map(str, lo))} or later, before {'.'.join(map(str, hi))} "
            "(1.6.1 is tested): build that release, see docs/install.md")
    _missing.clear()
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(dll, name)
        except AttributeError:
            if name in _TLS_SYMBOLS:
                _missing.add(name)
                continue
            raise LibraryError(f"{where} (version {text}): lacks {name}; was it built "
                               "from the official release?") from None
        fn.restype = restype
        fn.argtypes = argtypes
    log.info("libiec61850 %s loaded from %s%s", text, path,
             "" if not _missing else " (built without TLS)")
    return dll


def version() -> str:
    """Version string of the loaded library."""
    return (lib().LibIEC61850_getVersionString() or b"").decode("ascii", "replace")


def require_tls() -> None:
    """Raise :class:`LibraryError` if the loaded library was built without TLS."""
    lib()
    if _missing:
        raise LibraryError(f"libiec61850 {library_path()} was built without TLS support "
                           "(mbedTLS): rebuild it with mbedTLS in third_party/mbedtls, or "
                           "serve plain MMS on loopback only")


def mms_value_to_python(value: int) -> Any:
    """MmsValue (as handed to a handler) to Python: scalars as bool/int/float/str,
    structures and arrays as lists; None for anything else."""
    dll = lib()
    if not value:
        return None
    kind = dll.MmsValue_getType(value)
    if kind in (MMS_ARRAY, MMS_STRUCTURE):
        return [mms_value_to_python(dll.MmsValue_getElement(value, i))
                for i in range(dll.MmsValue_getArraySize(value))]
    if kind == MMS_VISIBLE_STRING:
        raw = dll.MmsValue_toString(value)
        return raw.decode("ascii", "replace") if raw is not None else ""
    if kind == MMS_FLOAT:
        return float(dll.MmsValue_toDouble(value))
    if kind == MMS_INTEGER:
        return int(dll.MmsValue_toInt64(value))
    if kind == MMS_UNSIGNED:
        return int(dll.MmsValue_toUint32(value))
    if kind == MMS_BOOLEAN:
        return bool(dll.MmsValue_getBoolean(value))
    return None
