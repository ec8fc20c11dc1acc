"""The IEEE 2030.5 adapter's CLI subcommand: ``lfdi`` (what the utility registers)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    lfdi = sub.add_parser("lfdi", help="the IEEE 2030.5 LFDI and SFDI of a device certificate "
                                       "(what the utility registers)")
    lfdi.add_argument("--cert", required=True, metavar="FILE", help="certificate, PEM or DER")
    return {"lfdi": cmd_lfdi}


def cmd_lfdi(args: argparse.Namespace) -> int:
    from .identity import lfdi_sfdi

    try:
        with open(args.cert, "rb") as fh:
            lfdi, sfdi = lfdi_sfdi(fh.read())
    except (OSError, ValueError) as exc:
        print(f"lfdi: {args.cert}: {exc}", file=sys.stderr)
        return 1
    print(f"LFDI {lfdi}\nSFDI {sfdi}")
    return 0
