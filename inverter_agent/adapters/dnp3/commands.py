"""The DNP3 adapter's CLI subcommands: ``dnp3-points`` (the served point map),
``dnp3-profile`` (the DNP3 Device Profile XML of the outstation ``run`` would serve) and
``dnp3-map`` (the point map file built from a utility's own IEEE 1815.2 tables)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from typing import Any

from inverter_agent import config as config_mod


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    points = sub.add_parser("dnp3-points", help="list the DNP3 points the outstation serves")
    points.add_argument("--config", metavar="FILE",
                        help="TOML config whose [dnp3] point_map to list (default: the "
                             "built-in AN2018-001 map)")
    points.add_argument("--markdown", action="store_true",
                        help="print the list as the Markdown table of docs/dnp3.md")
    profile = sub.add_parser("dnp3-profile",
                             help="write the DNP3 Device Profile (XML) of the outstation")
    profile.add_argument("--config", metavar="FILE",
                         help="TOML config whose [dnp3] section and point map to describe")
    profile.add_argument("--xml", required=True, metavar="FILE",
                         help="where to write the DNP3 Device Profile (XML)")
    build = sub.add_parser("dnp3-map",
                           help="build the [dnp3] point_map file from a utility's own IEEE "
                                "1815.2 point tables (.xlsx, or .csv exported from them)")
    build.add_argument("--workbook", required=True, metavar="FILE",
                       help="the utility's copy of the point tables (.xlsx or .csv); it is "
                            "read, never copied")
    build.add_argument("--sheet", metavar="NAME",
                       help="the sheet to read (default: every sheet with point addresses)")
    build.add_argument("--out", required=True, metavar="FILE",
                       help="the JSON point map to write (set [dnp3] point_map to it)")
    return {"dnp3-points": cmd_points, "dnp3-profile": cmd_profile, "dnp3-map": cmd_map}


def _outstation(args: argparse.Namespace) -> Any:
    """The adapter ``run`` would build (not started: nothing listens, nothing is polled)."""
    from inverter_agent import app as app_mod

    path = args.config or config_mod.default_config_path()
    with tempfile.TemporaryDirectory() as state:
        overrides: dict[str, Any] = {"dnp3.enabled": True, "agent.state_dir": state}
        cfg = config_mod.load(path, overrides)
        if not (cfg["inverter.modbus_tcp"] or cfg["inverter.modbus_rtu"]):
            # the map does not depend on the inverter: a link that is never opened
            cfg = config_mod.load(path, overrides | {"inverter.modbus_tcp": "127.0.0.1:1"})
        app = app_mod.App(cfg, only=("dnp3",))
        try:
            return app.adapters[0]
        finally:
            app.stop(1.0)


def served_rows(adapter: Any) -> list[tuple[str, int, str, str, str]]:
    """(kind, index, name, scale, event class) of every point served, in index order."""
    from py1815.profile import Kind

    out = []
    for kind in (Kind.AI, Kind.BI, Kind.AO, Kind.BO, Kind.CTR):
        for p in adapter.outstation.served(kind):
            scale = "" if p.multiplier is None else f"x{p.multiplier:g}"
            cls = "" if kind.is_output else str(adapter.outstation.event_class(kind, p.index))
            out.append((kind.value, p.index, p.name, scale, cls))
    return out


def markdown(rows: list[tuple[str, int, str, str, str]]) -> str:
    """The served points as the table docs/dnp3.md carries (a test keeps them equal)."""
    out = ["| point | name | scale | event class |", "|---|---|---|---|"]
    out += [f"| {kind}{index} | {name} | {scale or '-'} | {cls or '-'} |"
            for kind, index, name, scale, cls in rows]
    return "\n".join(out) + "\n"


def cmd_points(args: argparse.Namespace) -> int:
    rows = served_rows(_outstation(args))
    if getattr(args, "markdown", False):
        print(markdown(rows), end="")
        return 0
    for kind, index, name, scale, cls in rows:
        print(f"{kind}{index:<5} {scale:<8} {cls:<2} {name}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    import json
    import os

    from . import points, workbook

    try:
        rows, report = workbook.build(workbook.read(args.workbook, args.sheet))
    except (OSError, ValueError) as exc:
        print(f"dnp3-map: {exc}")
        return 2
    tmp = f"{args.out}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(workbook.to_json(rows), f, indent=1)
        f.write("\n")
    points.load(tmp)  # what the adapter will load, checked before it replaces anything
    os.replace(tmp, args.out)
    for line in report.lines():
        print(line)
    print(f"wrote {args.out}: {len(rows)} points")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from py1815.profile import device_profile

    from .maps import REFUSALS

    adapter = _outstation(args)
    root = device_profile.build(adapter.outstation, adapter.session,
                                statuses=sorted(set(REFUSALS.values())))
    with open(args.xml, "w", encoding="utf-8") as f:
        f.write(device_profile.render(root))
    print(f"wrote {args.xml}")
    return 0
