"""The MMS adapter's CLI subcommands: ``read`` (a served model with values),
``write`` (a setting), ``operate`` (a control), each plain or over TLS with a client
certificate (its role decides what the server allows), and ``model`` (the ICD of
the model ``run`` would serve)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from inverter_agent import config as config_mod

from .security import TLS_PORT


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    model = sub.add_parser("model", help="describe the served IEC 61850 model (SCL / ICD)",
                           epilog="example: inverter-agent model --icd gw.icd --config "
                                  "/etc/inverter-agent/agent.toml")
    model.add_argument("--icd", required=True, metavar="FILE", help="write an ICD file")
    model.add_argument("--config", metavar="FILE",
                       help="the TOML config whose model to describe (default "
                            f"{config_mod.DEFAULT_CONFIG_DIR}/agent.toml if present)")
    model.add_argument("--no-functions", action="store_true",
                       help="the monitoring-only model (as run --no-functions serves)")
    read = sub.add_parser("read", help="connect to an MMS server and print its model with values",
                          epilog="examples: inverter-agent read --port 10102 (after make run); "
                                 "inverter-agent read --host gw.example --tls-ca ca.pem "
                                 "--tls-cert me.crt --tls-key me.key")
    _server_args(read)
    write = _change_command(
        sub, "write", "write one setting (a data attribute) on an MMS server",
        "inverter-agent write GWINV1/DGEN1.OvPFRtg.setMag.f 0.95 --port 10102", "engineer",
        reference="the attribute, e.g. GWINV1/DGEN1.WMax.setMag.f",
        value="the value: a number, or true / false",
        kind="the attribute's type (default: from the reference, .f float, .i / setVal int, "
             "else from the value)")
    write.add_argument("--fc", default="SP", choices=("SP", "CF", "DC", "ST", "MX"),
                       help="its functional constraint (default SP, settings)")
    _change_command(
        sub, "operate", "operate one control on an MMS server",
        "inverter-agent operate GWINV1/DGEN1.RlsCmd true --port 10102", "operator or engineer",
        reference="the control object, e.g. GWINV1/DGEN1.RlsCmd",
        value="ctlVal: true / false (SPC), an integer (ENC) or a number with a point (APC)",
        kind="ctlVal's type (default: from the value)")
    return {"model": cmd_model, "read": cmd_read, "write": cmd_write, "operate": cmd_operate}


def _change_command(sub: argparse._SubParsersAction, name: str, help_text: str, example: str,
                    role: str, *, reference: str, value: str,
                    kind: str) -> argparse.ArgumentParser:
    """``write`` or ``operate``: a reference, a value, its type and the server to ask."""
    p = sub.add_parser(name, help=help_text,
                       epilog=f"example: {example}. Over TLS the client certificate's role "
                              f"must allow it ({role}).")
    p.add_argument("reference", help=reference)
    p.add_argument("value", help=value)
    p.add_argument("--type", choices=("float", "int", "bool"), help=kind)
    _server_args(p)
    return p


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="the MMS server's address (default 127.0.0.1)")
    p.add_argument("--port", type=int,
                   help="its MMS port (default 3782 with --tls-ca, else 102)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the connection and each answer (default 5)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="connect over TLS, checking the server's certificate against this CA "
                        "bundle (PEM)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="this client's certificate (PEM; its OU names the role)")
    p.add_argument("--tls-key", metavar="FILE", help="this client's private key (PEM)")


def _connect_args(args: argparse.Namespace) -> tuple[str, int, float, Any]:
    from .client import ClientTls, MmsClientError
    from .hardening import route_native_output

    route_native_output()  # the library's TLS debugging prints: to the log, not stdout

    if (args.tls_cert or args.tls_key) and not args.tls_ca:
        raise MmsClientError("--tls-cert / --tls-key need --tls-ca (the CA bundle that signs "
                             "the server's certificate)")
    tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    port = args.port or (TLS_PORT if tls else 102)
    return args.host, port, args.timeout, tls


def _typed(text: str, kind: str | None, reference: str = "") -> bool | int | float:
    """``text`` as ``kind``, or as the reference or the text itself suggests."""
    from .client import MmsClientError

    low = text.strip().lower()
    if kind is None:
        if low in ("true", "false", "on", "off"):
            kind = "bool"
        elif reference.endswith(".f"):
            kind = "float"
        elif reference.endswith((".i", ".setVal", ".stVal")):
            kind = "int"
        else:
            kind = "float" if any(c in low for c in ".e") else "int"
    try:
        if kind == "bool":
            if low not in ("true", "false", "on", "off", "1", "0"):
                raise ValueError
            return low in ("true", "on", "1")
        return int(low) if kind == "int" else float(low)
    except ValueError:
        raise MmsClientError(f"{text!r} is not a {kind}") from None


def cmd_model(args: argparse.Namespace) -> int:
    from .icd import write_icd
    from .plant_model import site_model_spec

    cfg = config_mod.load(args.config or config_mod.default_config_path(),
                          {"functions.enabled": False if args.no_functions else None})
    lds = [link.ld_inst for link in cfg.inverter_links()]
    spec = site_model_spec(lds, cfg["plant.ld_inst"] if len(lds) > 1 else None,
                           functions=cfg["functions.enabled"])
    write_icd(spec, args.icd, ied_name=cfg["mms.ied_name"], host=cfg["mms.host"],
              tls=bool(cfg["security.tls_cert"]))  # clients then authenticate by certificate
    print(f"wrote {args.icd}")
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    from . import client

    try:
        host, port, timeout, tls = _connect_args(args)
        values = client.read_all(host, port, timeout=timeout, tls=tls)
    except client.MmsClientError as exc:
        print(f"read: {exc}", file=sys.stderr)
        return 1
    print(client.format_model(values))
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    from . import client

    try:
        host, port, timeout, tls = _connect_args(args)
        value = _typed(args.value, args.type, args.reference)
        with client.connect(host, port, timeout, tls=tls) as con:
            write = {bool: con.write_bool, int: con.write_int, float: con.write_float}
            write[type(value)](args.reference, args.fc, value)  # type: ignore[operator]
            now = con.read_value(args.reference, args.fc)
    except client.MmsClientError as exc:
        print(f"write: {exc}", file=sys.stderr)
        return 1
    print(f"{args.reference} [{args.fc}] = {now!r}")
    return 0


def cmd_operate(args: argparse.Namespace) -> int:
    from . import client

    try:
        host, port, timeout, tls = _connect_args(args)
        value = _typed(args.value, args.type)
        with client.connect(host, port, timeout, tls=tls) as con:
            con.operate(args.reference, value)
    except client.MmsClientError as exc:
        print(f"operate: {exc}", file=sys.stderr)
        return 1
    print(f"operated {args.reference} = {value!r}")
    return 0
