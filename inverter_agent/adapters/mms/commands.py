"""The MMS adapter's CLI subcommands: ``read`` (a served model with values) and
``model`` (the ICD of the model ``run`` would serve)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from inverter_agent import config as config_mod


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
                          epilog="example: inverter-agent read --port 10102 (after make run)")
    read.add_argument("--host", default="127.0.0.1",
                      help="the MMS server's address (default 127.0.0.1)")
    read.add_argument("--port", type=int, default=102, help="its MMS port (default 102)")
    read.add_argument("--timeout", type=float, default=5.0,
                      help="seconds to wait for the connection and each answer (default 5)")
    return {"model": cmd_model, "read": cmd_read}


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
        values = client.read_all(args.host, args.port, timeout=args.timeout)
    except client.MmsClientError as exc:
        print(f"read: {exc}", file=sys.stderr)
        return 1
    print(client.format_model(values))
    return 0
