"""Thin MMS client (libiec61850 through SWIG) for ``inverter-agent read`` and tests.

Never use it in the process that runs an :class:`~inverter_agent.adapters.mms.server.MmsServer`:
the SWIG wrappers hold the GIL for the whole blocking request, so the server's
Python callbacks cannot run and the request stalls until it times out
(LIBIEC61850.md, "Pitfalls").

Values are read one logical node and functional constraint at a time (a whole
LN's MX part is one MMS variable), with the variable's type description giving
the component names, so reading a full server costs a few requests per LN.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hal.reading import Detail, Quality, Validity

log = logging.getLogger(__name__)

#: A data point as read: value, quality (None where the CDC has none), time in seconds.
PointValue = tuple[Any, Quality | None, float | None]

# Longest first: "PhV.phsA.cVal.mag.f" must not match "mag.f".
_VALUE_ATTRIBUTES = ("cVal.mag.f", "setMag.f", "setMag.i", "mag.f", "mag.i", "mxVal.f", "stVal",
                     "setVal", "actVal", "general", "setSrcRef")
_FCS = ("ST", "MX", "SP", "CF", "DC")


class MmsClientError(Exception):
    """Connection or service failure talking to an MMS server."""


#: IEC 61850-7-2 AddCause values a refused control comes back with (the ones this
#: gateway's server gives, and the common others).
ADD_CAUSES = {0: "unknown", 1: "not-supported", 3: "select-failed",
              6: "parameter-change-in-execution", 8: "blocked-by-mode",
              9: "blocked-by-process", 12: "command-already-in-execution",
              13: "blocked-by-health", 16: "time-limit-over", 18: "object-not-selected",
              20: "no-access-authority: this client's role may not operate it",
              26: "inconsistent-parameters: a value out of range or not allowed now"}

#: What an installer checks for a libiec61850 IedClientError.
_HINTS = {
    1: "nothing answers there: is the gateway running, and the host and port right "
       "(plain MMS 102 or the configured port, TLS 3782)?",
    3: "the connection was lost",
    5: "the server rejected the association: a TLS server needs --tls-ca and a client "
       "certificate (--tls-cert, --tls-key) its CA signed; a plain server refuses TLS; "
       "or every connection slot is taken",
    20: "no answer in time: wrong address, a firewall, or TLS against a plain port (or "
        "the reverse)",
    21: "access denied: this client's role (its certificate's OU, or its password) may "
        "not do this",
    22: "no such object: check the reference (inverter-agent read lists them)",
    24: "the object cannot be accessed that way (wrong functional constraint?)",
    25: "the value's type does not match the attribute (--type)",
    32: "the server refused the value (out of range?)",
}


def error_text(error: int) -> str:
    """``IedClientError N (NAME): what to check``, for a person."""
    try:
        names = {getattr(_iec(), k): k[len("IED_ERROR_"):] for k in dir(_iec())
                 if k.startswith("IED_ERROR_")}
    except MmsClientError:
        names = {}
    hint = _HINTS.get(error)
    return f"IedClientError {error} ({names.get(error, 'unknown')})" + (f": {hint}" if hint
                                                                         else "")


class MmsControlError(MmsClientError):
    """The server refused a control; ``add_cause`` is its IEC 61850-7-2 AddCause."""

    def __init__(self, reference: str, add_cause: int) -> None:
        self.add_cause = add_cause
        super().__init__(f"operate {reference} refused, AddCause {add_cause} "
                         f"({ADD_CAUSES.get(add_cause, 'see IEC 61850-7-2')})")


@dataclass(frozen=True, slots=True)
class ClientTls:
    """MMS over TLS (IEC 62351-3): the CA bundle that signs the server's certificate and,
    for a server that checks clients (its roles come from the certificate), this
    client's certificate and key."""

    ca: str
    cert: str | None = None
    key: str | None = None

    def configuration(self) -> Any:
        """A libiec61850 client TLSConfiguration; MmsClientError naming a file that fails."""
        iec = _iec()
        config = iec.TLSConfiguration_create()
        iec.TLSConfiguration_setClientMode(config)
        loads = [("CA bundle", self.ca, iec.TLSConfiguration_addCACertificateFromFile)]
        if self.cert or self.key:
            if not (self.cert and self.key):
                iec.TLSConfiguration_destroy(config)
                raise MmsClientError("a client certificate needs its key: give --tls-cert "
                                     "and --tls-key together")
            loads += [("client certificate", self.cert,
                       iec.TLSConfiguration_setOwnCertificateFromFile),
                      ("client key", self.key,
                       lambda c, p: iec.TLSConfiguration_setOwnKeyFromFile(c, p, None))]
        for what, path, load in loads:
            if not load(config, path):
                iec.TLSConfiguration_destroy(config)
                raise MmsClientError(f"{what} {path} could not be loaded (missing, unreadable "
                                     "or not PEM)")
        return config


def _iec() -> Any:
    try:
        import pyiec61850.pyiec61850 as iec
    except ImportError:
        raise MmsClientError("the MMS client needs pyiec61850-ng, which has no wheel for "
                             "this platform (the server does not need it); read from "
                             "another machine, or with open61850") from None
    return iec


def _unpack(result: Any) -> tuple[Any, int]:
    if isinstance(result, (tuple, list)):
        return result[0], int(result[1])
    return result, 0


def _strings(linked_list: Any) -> list[str]:
    iec = _iec()
    out: list[str] = []
    if not linked_list:
        return out
    element = iec.LinkedList_getNext(linked_list)
    while element:
        data = iec.LinkedList_getData(element)
        if data:
            out.append(iec.toCharP(data))
        element = iec.LinkedList_getNext(element)
    iec.LinkedList_destroy(linked_list)
    return out


def quality_from_bits(bits: list[bool]) -> Quality:
    """HAL Quality from the 13 bits of a 7-3 quality bit string (bit 0 first)."""
    validity = Validity((int(bits[0]) << 1) | int(bits[1]))
    detail = Detail.NONE
    for i in range(2, 10):
        if i < len(bits) and bits[i]:
            detail |= Detail(1 << i)
    return Quality(validity, detail)


def _leaf(iec: Any, value: Any) -> Any:
    kind = iec.MmsValue_getType(value)
    if kind == iec.MMS_FLOAT:
        return iec.MmsValue_toDouble(value)
    if kind == iec.MMS_INTEGER:
        return iec.MmsValue_toInt64(value)
    if kind == iec.MMS_UNSIGNED:
        return iec.MmsValue_toUint32(value)
    if kind == iec.MMS_BOOLEAN:
        return bool(iec.MmsValue_getBoolean(value))
    if kind in (iec.MMS_VISIBLE_STRING, iec.MMS_STRING):
        return iec.MmsValue_toString(value)
    if kind == iec.MMS_UTC_TIME:
        return iec.MmsValue_getUtcTimeInMs(value) / 1000.0
    if kind == iec.MMS_BIT_STRING:
        size = iec.MmsValue_getBitStringSize(value)
        return [bool(iec.MmsValue_getBitStringBit(value, i)) for i in range(size)]
    return None


def _flatten(iec: Any, spec: Any, value: Any, prefix: str, out: dict[str, Any]) -> None:
    if iec.MmsVariableSpecification_getType(spec) == iec.MMS_ARRAY:  # curves: crvPts.0.xVal
        element_spec = iec.MmsVariableSpecification_getArrayElementSpecification(spec)
        for i in range(iec.MmsValue_getArraySize(value)):
            element = iec.MmsValue_getElement(value, i)
            if element is not None:
                _flatten(iec, element_spec, element, f"{prefix}.{i}" if prefix else str(i), out)
    elif iec.MmsVariableSpecification_getType(spec) == iec.MMS_STRUCTURE:
        for i in range(iec.MmsVariableSpecification_getSize(spec)):
            child = iec.MmsVariableSpecification_getChildSpecificationByIndex(spec, i)
            name = iec.MmsVariableSpecification_getName(child)
            element = iec.MmsValue_getElement(value, i)
            if element is not None:
                _flatten(iec, child, element, f"{prefix}.{name}" if prefix else name, out)
    else:
        out[prefix] = _leaf(iec, value)


@dataclass
class MmsConnection:
    """An open association. Use :func:`connect`; close with ``close()`` or ``with``."""

    _con: Any
    host: str
    port: int
    #: The TLSConfiguration of a TLS association (freed with it).
    _tls_config: Any = None

    @property
    def handle(self) -> Any:
        """The SWIG IedConnection, for callers that issue raw requests (benchmarks)."""
        return self._con

    def close(self) -> None:
        if self._con is not None:
            iec = _iec()
            iec.IedConnection_close(self._con)
            iec.IedConnection_destroy(self._con)
            self._con = None
        if self._tls_config is not None:
            _iec().TLSConfiguration_destroy(self._tls_config)
            self._tls_config = None

    def __enter__(self) -> MmsConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: str, *args: Any) -> Any:
        if self._con is None:
            raise MmsClientError("connection closed")
        value, error = _unpack(getattr(_iec(), fn)(self._con, *args))
        if error != 0:
            raise MmsClientError(f"{fn}{args}: {error_text(error)}")
        return value

    def logical_devices(self) -> list[str]:
        return _strings(self._call("IedConnection_getLogicalDeviceList"))

    def logical_nodes(self, ld: str) -> list[str]:
        return _strings(self._call("IedConnection_getLogicalDeviceDirectory", ld))

    def data_objects(self, ld: str, ln: str) -> list[str]:
        iec = _iec()
        return _strings(self._call("IedConnection_getLogicalNodeDirectory", f"{ld}/{ln}",
                                   iec.ACSI_CLASS_DATA_OBJECT))

    def browse(self) -> Iterator[tuple[str, str, str]]:
        """(LD, LN, DO) for every data object the server lists."""
        for ld in self.logical_devices():
            for ln in self.logical_nodes(ld):
                for do in self.data_objects(ld, ln):
                    yield ld, ln, do

    def read(self, reference: str, fc: str) -> dict[str, Any]:
        """Every leaf below ``reference`` under ``fc`` as {relative path: value}.

        Quality leaves come back as a list of bits, time leaves as seconds.
        """
        iec = _iec()
        fc_code = getattr(iec, f"IEC61850_FC_{fc}")
        spec = self._call("IedConnection_getVariableSpecification", reference, fc_code)
        try:
            value = self._call("IedConnection_readObject", reference, fc_code)
            try:
                if iec.MmsValue_getType(value) == iec.MMS_DATA_ACCESS_ERROR:
                    raise MmsClientError(f"read {reference} [{fc}]: data access error "
                                         f"{iec.MmsValue_getDataAccessError(value)}")
                out: dict[str, Any] = {}
                _flatten(iec, spec, value, "", out)
                return out
            finally:
                iec.MmsValue_delete(value)
        finally:
            iec.MmsVariableSpecification_destroy(spec)

    def read_value(self, reference: str, fc: str) -> Any:
        """One leaf attribute, e.g. ``read_value("GWINV1/MMXU1.TotW.mag.f", "MX")``."""
        return self.read(reference, fc)[""]

    def write_float(self, reference: str, fc: str, value: float) -> None:
        """Write a FLOAT32 attribute; raises MmsClientError if the server refuses."""
        self._write("IedConnection_writeFloatValue", reference, fc, value)

    def write_bool(self, reference: str, fc: str, value: bool) -> None:
        """Write a BOOLEAN attribute; raises MmsClientError if the server refuses."""
        self._write("IedConnection_writeBooleanValue", reference, fc, value)

    def write_int(self, reference: str, fc: str, value: int) -> None:
        """Write an INT32 attribute (an ING's setVal); raises MmsClientError if refused."""
        self._write("IedConnection_writeInt32Value", reference, fc, value)

    def _write(self, function: str, reference: str, fc: str, value: Any) -> None:
        iec = _iec()
        result = getattr(iec, function)(self._con, reference,
                                        getattr(iec, f"IEC61850_FC_{fc}"), value)
        error = result[1] if isinstance(result, (tuple, list)) else result
        if error:
            raise MmsClientError(f"write {reference} [{fc}] = {value}: {error_text(error)}")

    def operate(self, reference: str, value: bool | int | float) -> None:
        """Operate a controllable data object (SPC/DPC with a bool, ENC with an int,
        APC with a float).

        Selects first when the server says sbo-with-normal-security. Raises
        :class:`MmsControlError` (with the server's AddCause) when refused.
        """
        iec = _iec()
        if self._con is None:
            raise MmsClientError("connection closed")
        control = iec.ControlObjectClient_create(reference, self._con)
        if control is None:
            raise MmsClientError(f"{reference} is not a control object")
        try:
            if isinstance(value, bool):
                ctl_val = iec.MmsValue_newBoolean(value)
            elif isinstance(value, int):  # ENC: ctlVal is the enumeration's INT32
                ctl_val = iec.MmsValue_newIntegerFromInt32(value)
            else:  # APC: ctlVal is an AnalogueValue {f}
                ctl_val = iec.MmsValue_createEmptyStructure(1)
                iec.MmsValue_setElement(ctl_val, 0, iec.MmsValue_newFloat(float(value)))
            try:
                if iec.ControlObjectClient_getControlModel(control) == iec.CONTROL_MODEL_SBO_NORMAL:
                    if not iec.ControlObjectClient_select(control):
                        raise MmsClientError(f"select {reference} refused")
                if not iec.ControlObjectClient_operate(control, ctl_val, 0):
                    error = iec.ControlObjectClient_getLastApplError(control)
                    raise MmsControlError(reference, int(error.addCause))
            finally:
                iec.MmsValue_delete(ctl_val)
        finally:
            iec.ControlObjectClient_destroy(control)

    def read_logical_node(self, ld: str, ln: str) -> dict[str, PointValue]:
        """Data points of one LN, keyed by object reference."""
        leaves: dict[str, Any] = {}
        for fc in _FCS:
            try:
                leaves.update(self.read(f"{ld}/{ln}", fc))
            except MmsClientError:
                continue  # the LN has no data under this FC
        return group_points(f"{ld}/{ln}", leaves)


def group_points(prefix: str, leaves: Mapping[str, Any]) -> dict[str, PointValue]:
    """Group flat leaves (``TotW.mag.f``, ``TotW.q`` ...) into data points.

    A data point is a path with a value attribute; its sibling ``q``/``t`` go
    with it. Any other leaf (name plate strings, units) is its own entry.
    """
    points: dict[str, PointValue] = {}
    used: set[str] = set()
    for path in leaves:
        for attr in _VALUE_ATTRIBUTES:
            if path.endswith("." + attr):
                base = path[: -len(attr) - 1]
                q_bits, t = leaves.get(f"{base}.q"), leaves.get(f"{base}.t")
                quality = quality_from_bits(q_bits) if isinstance(q_bits, list) else None
                points[f"{prefix}.{base}"] = (leaves[path], quality, t)
                used.update((path, f"{base}.q", f"{base}.t"))
                break
    for path, value in leaves.items():
        if path not in used:
            points[f"{prefix}.{path}"] = (value, None, None)
    return points


_IED_ERROR_NOT_CONNECTED, _IED_ERROR_CONNECTION_LOST, _IED_ERROR_CONNECTION_REJECTED = 1, 3, 5


def _listening(host: str, port: int, timeout: float) -> bool:
    """Whether anything accepts TCP on host:port (libiec61850 reports a refused TCP
    connect and a refused association alike)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=min(timeout, 2.0)).close()
    except OSError:
        return False
    return True


def connect(host: str, port: int = 102, timeout: float = 5.0, attempts: int = 3,
            tls: ClientTls | None = None) -> MmsConnection:
    """Open an MMS association (over TLS with ``tls``) and check it answers; raises
    MmsClientError, with what to check, if it fails.

    Under CPU load the libiec61850 1.6.1 client sometimes reports a successful
    connect and then fails every request with CONNECTION_LOST, while the
    server keeps answering other clients (open61850 never saw it). So the
    association is probed with one request and opened again if it is dead.
    """
    iec = _iec()
    how = " over TLS" if tls else ""
    for attempt in range(1, attempts + 1):
        config = tls.configuration() if tls else None
        con = iec.IedConnection_createWithTlsSupport(config) if config else \
            iec.IedConnection_create()

        def drop(con: Any = con, config: Any = config) -> None:
            iec.IedConnection_destroy(con)
            if config is not None:
                iec.TLSConfiguration_destroy(config)

        iec.IedConnection_setConnectTimeout(con, int(timeout * 1000))
        iec.IedConnection_setRequestTimeout(con, int(timeout * 1000))
        _, error = _unpack(iec.IedConnection_connect(con, host, port))
        if error != 0:
            drop()
            if error == _IED_ERROR_CONNECTION_REJECTED and not _listening(host, port, timeout):
                error = _IED_ERROR_NOT_CONNECTED  # refused by TCP, not by the server
            raise MmsClientError(f"cannot connect to {host}:{port}{how}: {error_text(error)}")
        devices, error = _unpack(iec.IedConnection_getLogicalDeviceList(con))
        if error == 0:
            _strings(devices)  # frees the list
            return MmsConnection(con, host, port, config)
        iec.IedConnection_close(con)
        drop()
        if error != _IED_ERROR_CONNECTION_LOST:
            raise MmsClientError(f"{host}:{port}{how} does not answer: {error_text(error)}")
        log.warning("association to %s:%d lost right after connect (attempt %d/%d)",
                    host, port, attempt, attempts)
    raise MmsClientError(f"association to {host}:{port} lost right after connect, "
                         f"{attempts} times")


def read_all(host: str, port: int = 102, timeout: float = 5.0,
             tls: ClientTls | None = None) -> dict[str, PointValue]:
    """Every data point of every LD/LN the server lists: {reference: (value, q, t)}."""
    with connect(host, port, timeout, tls=tls) as con:
        out: dict[str, PointValue] = {}
        for ld in con.logical_devices():
            for ln in con.logical_nodes(ld):
                out.update(con.read_logical_node(ld, ln))
        return out


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)


def format_model(points: Mapping[str, PointValue]) -> str:
    """Readable tree (LD / LN / data point: value [q] time) of :func:`read_all` output."""
    lines: list[str] = []
    last_ld = last_ln = None
    for ref in sorted(points):
        ld, _, rest = ref.partition("/")
        ln, _, name = rest.partition(".")
        if ld != last_ld:
            lines.append(ld)
            last_ld, last_ln = ld, None
        if ln != last_ln:
            lines.append(f"  {ln}")
            last_ln = ln
        value, quality, t = points[ref]
        text = f"    {name} = {_format_value(value)}"
        if quality is not None:
            text += f"  [{quality}]"
        if t is not None:
            stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
            text += f"  {stamp}"
        lines.append(text)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m inverter_agent.adapters.mms.client --host H --port P``: print the model."""
    import argparse

    parser = argparse.ArgumentParser(description="Read and print an MMS server's model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=102)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        print(format_model(read_all(args.host, args.port, args.timeout)))
    except MmsClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
