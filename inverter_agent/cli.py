"""``inverter-agent``: run the gateway, simulate an inverter, scan a bus, read a server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from inverter_agent import config as config_mod
from inverter_agent.adapters import REGISTRY
from inverter_agent.app import make_agents, make_controller  # noqa: F401  (former home)
from inverter_agent.security.config import security_from_config  # noqa: F401

log = logging.getLogger("inverter_agent")


#: Subcommands the adapters add: name -> handler(args) -> exit status.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modbus-tcp", metavar="HOST:PORT", help="inverter over Modbus TCP")
    p.add_argument("--modbus-rtu", metavar="DEVICE", help="inverter over Modbus RTU (RS-485)")
    p.add_argument("--baud", type=int, help="RTU baud rate (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"),
                   help="RTU parity: N none (default), E even, O odd")
    p.add_argument("--timeout", type=float, help="seconds per Modbus transaction")


#: The state directory the reading commands (status, events, audit) look in, and
#: ``run`` writes to when neither --state-dir nor the config names one.
ENV_STATE_DIR = "INVERTER_AGENT_STATE_DIR"
#: Where ``make run`` keeps its state (Makefile ``STATE_DIR``), relative to the checkout.
BENCH_STATE_DIR = "state"


def _add_state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", metavar="DIR",
                   help=f"the agent's state directory (default ${ENV_STATE_DIR}, else [agent] "
                        f"state_dir of the system config, else {config_mod.DEFAULT_STATE_DIR}; "
                        f"if that has no status.json, ./{BENCH_STATE_DIR} where `make run` "
                        "keeps it)")


def _state_dir(given: str | None) -> str:
    """The state directory a reading command looks in.

    ``--state-dir``, else ``$INVERTER_AGENT_STATE_DIR``, else the one the installed
    service uses (``[agent] state_dir`` of the system config, default
    ``/var/lib/inverter-agent``): an installer finds the service's state without a
    flag. Only when that holds no status file and ``./state`` (``make run``'s, from
    a checkout) does, ``./state`` is used, and stderr says so.
    """
    if given:
        return given
    if os.environ.get(ENV_STATE_DIR):
        return os.environ[ENV_STATE_DIR]
    system = config_mod.DEFAULT_STATE_DIR
    try:
        system = config_mod.load(config_mod.default_config_path())["agent.state_dir"]
    except config_mod.ConfigError:
        pass  # a broken config is `run`'s and check-config's to report
    bench = os.path.abspath(BENCH_STATE_DIR)
    if not os.path.exists(os.path.join(system, "status.json")) and \
            os.path.exists(os.path.join(bench, "status.json")):
        print(f"(no agent state in {system}; using {bench}, where `make run` keeps it)",
              file=sys.stderr)
        return bench
    return system


def _add_config_args(p: argparse.ArgumentParser, config_note: str) -> None:
    p.add_argument("--config", metavar="FILE",
                   help=f"TOML config (default {config_mod.DEFAULT_CONFIG_DIR}/agent.toml if "
                        f"present); {config_note}")
    p.add_argument("--board", metavar="NAME",
                   help="board file (board-configs/NAME.toml or /etc/inverter-agent/boards, "
                        "or a path ending in .toml): serial and pin settings; the config file "
                        "and flags override it")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="inverter-agent", description=__doc__,
                                 epilog="Each command has its own --help, with an example.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                    help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway: poll the inverter, serve IEC 61850 MMS",
                         epilog="examples: inverter-agent run --simulate (the demo); "
                                "inverter-agent run --modbus-rtu /dev/ttyUSB0 --baud 9600 "
                                "--unit 1; inverter-agent run --config /etc/inverter-agent/"
                                "agent.toml --board raspberry-pi-rs485-hat")
    _add_config_args(run, "flags override it")
    _add_link_args(run)
    run.add_argument("--unit", type=int, help="Modbus unit id (default 1)")
    run.add_argument("--units", metavar="1,2,3",
                     help="several inverters on this link: their unit ids (one logical "
                          "device each, plus the plant view); with --simulate the simulator "
                          "answers on them too")
    run.add_argument("--mms-host", help="address to serve MMS on (default 127.0.0.1)")
    run.add_argument("--mms-port", type=int,
                     help="MMS port (default 3782 with TLS, 102 without)")
    run.add_argument("--tls-cert", help="device certificate (PEM): serve MMS over TLS")
    run.add_argument("--tls-key", help="device private key (PEM)")
    run.add_argument("--tls-ca", action="append", help="CA bundle for client certificates "
                                                       "(repeatable)")
    run.add_argument("--tls-crl", action="append", help="certificate revocation list "
                                                        "(repeatable)")
    run.add_argument("--tls-allow", action="append",
                     help="accept only this client certificate (repeatable: an allow-list)")
    run.add_argument("--allow-insecure-bind", action="store_true",
                     help="allow plain MMS on a non-loopback address (logged loudly)")
    run.add_argument("--state-dir", metavar="DIR",
                     help=f"state directory (default ${ENV_STATE_DIR}, else [agent] "
                          f"state_dir, else {config_mod.DEFAULT_STATE_DIR})")
    run.add_argument("--poll-period", type=_period,
                     help="seconds between polls, or auto (default): the fastest the link "
                          "sustains")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     help="log detail (default info)")
    run.add_argument("--profile", help="grid-function settings profile: rule21 (default), "
                                       "ieee1547-2018-cat-a, ieee1547-2018-cat-b")
    run.add_argument("--no-functions", action="store_true",
                     help="monitor only: do not run the autonomous functions")
    run.add_argument("--simulate", action="store_true",
                     help="start the simulated inverter and use it (the demo / bench default)")

    check = sub.add_parser(
        "check-config", help="check a config (and board file) without starting: every "
                             "error at once, with file, key and what is allowed",
        epilog="example: inverter-agent check-config --config /etc/inverter-agent/agent.toml "
               "--board raspberry-pi-rs485-hat. Exit 0 when clean, 1 with errors.")
    _add_config_args(check, "checked with the board file")

    sub.add_parser("conformance", add_help=False,
                   help="run IEEE 1547.1-style procedures against an inverter; writes a "
                        "report with plots (see inverter-agent conformance --help)")
    sim = sub.add_parser("sim", help="run the simulated SunSpec inverter", add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER,
                     help="the simulator's own options (see inverter-agent sim --help)")

    scan = sub.add_parser("scan", help="list SunSpec devices and models on a bus or address",
                          epilog="example: inverter-agent scan --modbus-rtu /dev/ttyUSB0 "
                                 "--baud 9600 --units 1-10")
    _add_link_args(scan)
    scan.add_argument("--units", default="1", metavar="A-B",
                      help="unit ids to try: 1, 1-10 or 1,3,5 (default 1)")
    scan.add_argument("--bases", default=None,
                      help="comma-separated SunSpec base addresses to try (default: the three "
                           "the SunSpec specification allows, in its order)")

    sub.add_parser("password-hash", help="read a password (twice) and print its salted "
                                         "hash for [security.users.NAME] hash")
    audit = sub.add_parser("audit", help="print the audit log and verify its hash chain")
    _add_state_dir(audit)
    audit.add_argument("--last", type=int, default=50, help="how many (default 50; 0 = all)")
    audit.add_argument("--ack", action="store_true",
                       help="after printing and verifying, record that the log was read: "
                            "rotation may then drop what was printed (otherwise entries "
                            "about authenticated actions are kept for audit_retain_days)")
    audit.add_argument("--refusals", action="store_true",
                       help="also print the aggregated refusals of unauthenticated peers")

    status = sub.add_parser("status", help="health view: link, poll timing, functions, last trip",
                            epilog="example: inverter-agent status (after make run: make "
                                   "status)")
    _add_state_dir(status)
    status.add_argument("--json", action="store_true", help="print the raw status")

    events = sub.add_parser("events", help="print the event log (trips, reconnects, settings)",
                            epilog="example: inverter-agent events --last 20 --inverter INV2")
    _add_state_dir(events)
    events.add_argument("--last", type=int, default=50, help="how many (default 50; 0 = all)")
    events.add_argument("--inverter", metavar="LD",
                        help="with several inverters: only this one's (default: all, merged)")

    certs = sub.add_parser("certs", help="device key, signing request, certificate install, "
                                         "expiry; a bench CA for tests",
                           epilog="example: inverter-agent certs request --dir /etc/inverter-"
                                  "agent/tls --cn gw-0042, then certs install --dir ... --cert "
                                  "signed.pem --ca utility-ca.pem")
    csub = certs.add_subparsers(dest="certs_command", required=True)
    key_dir = "folder of the device key and certificates (e.g. /etc/inverter-agent/tls)"
    c = csub.add_parser("request", help="create the device key (0600) if missing and a CSR")
    c.add_argument("--dir", required=True, help=key_dir)
    c.add_argument("--cn", required=True, help="device name for the certificate subject")
    c.add_argument("--org", help="organisation for the certificate subject (O)")
    c.add_argument("--san", action="append", default=[],
                   help="host name or IP address the gateway is reached by (repeatable; "
                        "default: the CN if a host name, this host's name, localhost, "
                        "127.0.0.1, ::1)")
    c = csub.add_parser("install", help="install a signed certificate and the CA bundle")
    c.add_argument("--dir", required=True, help=key_dir)
    c.add_argument("--cert", required=True, metavar="FILE",
                   help="the signed device certificate (PEM), for the key in --dir")
    c.add_argument("--ca", required=True, metavar="FILE",
                   help="the CA bundle (PEM) that signs the clients' certificates")
    c = csub.add_parser("show", help="subjects and expiry of the installed certificates")
    c.add_argument("--dir", required=True, help=key_dir)
    c = csub.add_parser("ca", help="create a bench CA (tests and benches only)")
    c.add_argument("--dir", required=True, help="folder for the bench CA's key and certificate")
    c = csub.add_parser("issue", help="issue a certificate from the bench CA")
    c.add_argument("--ca-dir", required=True, help="the bench CA's folder (certs ca --dir)")
    c.add_argument("--cn", required=True, help="subject common name")
    c.add_argument("--out", required=True, help="folder to write the key and certificate to")
    c.add_argument("--role", choices=("viewer", "operator", "engineer", "secadmin"),
                   help="role carried in the certificate's OU (a client certificate)")
    c.add_argument("--server", action="store_true", help="a server (device) certificate")
    c.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    c.add_argument("--san", action="append", default=[],
                   help="subjectAltName: host name or IP address (repeatable; a --server "
                        "certificate without any gets the CN if a host name, this host's "
                        "name, localhost, 127.0.0.1 and ::1)")

    for spec in REGISTRY:  # each adapter adds its own subcommands
        if spec.cli is not None:
            COMMANDS.update(spec.module("cli").add_commands(sub))
    return ap


def version() -> str:
    """The installed package's version (``pyproject.toml``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("inverter-agent")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _period(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, or auto") from None


def _units(spec: str) -> list[int]:
    units: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        if not 0 <= lo <= hi <= 247:
            raise SystemExit(f"--units: {part!r} is not within 0..247")
        units.extend(range(lo, hi + 1))
    return units


def cmd_scan(args: argparse.Namespace) -> int:
    from hal.sunspec.scan import DEFAULT_BASES, NotSunSpec, discover
    from hal.transport import RetryPolicy, TransportError
    from inverter_agent.core.agent import make_transport

    cfg = config_mod.load(None, {"inverter.modbus_tcp": args.modbus_tcp,
                                 "inverter.modbus_rtu": args.modbus_rtu,
                                 "inverter.baud": args.baud, "inverter.parity": args.parity,
                                 "inverter.timeout": args.timeout or 0.3,
                                 "inverter.retries": 0})
    transport = make_transport(cfg)
    transport.policy = RetryPolicy(timeout=cfg.transaction_timeout, retries=0)
    bases = tuple(int(b) for b in args.bases.split(",")) if args.bases else DEFAULT_BASES
    found = 0
    try:
        for unit in _units(args.units):
            try:
                dmap = discover(transport, unit, bases)
            except (NotSunSpec, TransportError) as exc:
                print(f"unit {unit}: {exc}")
                continue
            found += 1
            print(f"unit {unit}: SunSpec at base {dmap.base}")
            for m in dmap.models:
                print(f"  model {m.model_id:>5} {m.name:<14} at {m.address:>5} length {m.length}")
    finally:
        transport.close()
    print(f"{found} SunSpec device(s) found on {transport.description}")
    return 0 if found else 1


def cmd_password_hash(_args: argparse.Namespace) -> int:
    import getpass

    from inverter_agent.security.passwords import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            print("password-hash: the two differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 12:
        print("password-hash: use at least 12 characters", file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import time

    from inverter_agent.security.audit import AuditLog, verify

    log_ = AuditLog(args.state_dir)
    entries = [e for e in log_.entries() if args.refusals or e.get("protect", True)]
    for e in entries[-args.last:] if args.last else entries:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        change = f" {e['old']!r} -> {e['new']!r}" if e.get("new") is not None else ""
        summary = f" ({e['summary']})" if e.get("summary") else ""
        print(f"{e['seq']:>6} {stamp} {e['action']:<20} {e['outcome']:<8} {e['who']}"
              f"{' ' + e['object'] if e.get('object') else ''}{change}{summary}")
    v = verify(log_)
    print(f"chain: {'intact' if v.ok else 'BROKEN: ' + str(v.problem)} ({v.entries} entries)")
    if not v.ok:
        return 3
    if args.ack:  # never for a broken chain: that evidence is kept
        import getpass

        ack = log_.acknowledge(f"local user {getpass.getuser()}")
        print(f"acknowledged up to entry {ack['seq']}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config or config_mod.default_config_path()
    errors = config_mod.check(path, board=args.board)
    what = " with board " + args.board if args.board else ""
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check-config: {len(errors)} error(s) in {path or 'the defaults'}{what}",
              file=sys.stderr)
        return 1
    print(f"{path or 'no config file: the defaults'}{what}: OK")
    return 0


def _site_meter_text(m: dict) -> str:
    """One line for the site meter at the connection point (core/meter.py status)."""
    w = (m.get("readings") or {}).get("W") or {}
    ex = m.get("export_limit") or {}
    value = w.get("value")
    text = (f"site meter      {m.get('name')} unit {m.get('unit')} model {m.get('model')}, "
            f"{'link up' if m.get('link_up') else 'LINK DOWN'}: "
            + (f"{value:.0f} W ({'import' if value >= 0 else 'export'}, {w.get('quality')})"
               if value is not None else "no W")
            + "; " + (f"export limit {ex['limit_w']:g} W, {ex.get('mode')}"
                      if ex.get("limit_w") is not None else "no export limit"))
    return text + (f"\n  ALARM: {m['alarm']}" if m.get("alarm") else "")


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import time

    path = os.path.join(args.state_dir, "status.json")
    try:
        with open(path, encoding="utf-8") as fh:
            st = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"status: cannot read {path}: {exc}\n(has the agent run with this state "
              f"directory? give --state-dir DIR or set ${ENV_STATE_DIR})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    age = time.time() - st["time"]
    print(f"status written {age:.0f} s ago" + ("  (STALE: is the agent running?)"
                                              if age > 30 else ""))
    several = "inverters" in st
    if several:
        print(f"site            {len(st['inverters'])} inverters, "
              f"{'all links up' if st['link_up'] else 'SOME LINKS DOWN'}; cycle "
              f"{st['poll_period_s']} s, last {st['last_poll_s'] * 1e3:.1f} ms, mean "
              f"{st['mean_poll_s'] * 1e3:.1f} ms, max {st['max_poll_s'] * 1e3:.1f} ms, "
              f"{st['cycles']} cycles, {st['overruns']} overruns")
        auto = st.get("poll_period_auto")
        if auto:
            print(f"poll period     auto: {auto.get('reason')}")
        plant = st.get("plant") or {}
        tot, limit = plant.get("totals"), plant.get("limit") or {}
        if tot:
            print(f"plant {plant['ld']:<9} P {tot['w']:.0f} W, Q {tot['var']:.0f} var from "
                  f"{tot['reporting']}/{tot['configured']} inverters ({tot['quality']}); "
                  + (f"limit {limit['w_max']:.0f} W" + (" ACTING" if plant["limiting"] else "")
                     if limit.get("enabled") else "no plant limit"))
    for inv in (st["inverters"].values() if several else [st]):
        folder = os.path.join(args.state_dir, inv["ld"]) if several else args.state_dir
        _print_inverter_status(inv, folder, indent="  " if several else "")
    if st.get("site_meter"):
        print(_site_meter_text(st["site_meter"]))
    sec = st.get("security")
    if sec:
        _print_mms_security(sec)
    utility = st.get("ieee2030_5")
    if utility:
        since = utility.get("since_contact_s")
        state = utility.get("state", "?")
        print(f"2030.5          {utility.get('server')} "
              f"{'LOST' if state == 'lost' else state}, last contact "
              + (f"{since:.0f} s ago" if since is not None else "never")
              + f", LFDI {utility.get('lfdi')}")
        for e in utility.get("events") or []:
            window = "-".join(time.strftime("%H:%M:%S", time.localtime(e[k]))
                              for k in ("start", "end"))
            print(f"  event {e['mrid'][:8]}  {window}  {e['control']}")
        if utility.get("default_control"):
            print(f"  default control {utility['default_control']}")
        if utility.get("refused"):
            print(f"  refused         {len(utility['refused'])} control(s); last: "
                  f"{list(utility['refused'].values())[-1]}")
    wire = st.get("wire") or {}
    if wire.get("error"):
        print(f"wire            not counted: {wire['error']}")
    for level, t in (wire.get("levels") or {}).items():
        if t["connections"]:
            print(f"wire {level:<11}{t['connections']} connection(s), "
                  f"{t['wire_in'] + t['wire_out']:,} B on the wire"
                  + _per_day_text(t.get("bytes_per_day_per_client"), t.get("connected_s")))
    for c in wire.get("clients") or []:
        print(f"  client {c['peer']:<21} {c['level']:<10} {c['wire_in']:,} B in, "
              f"{c['wire_out']:,} B out over {c['connected_s']:.0f} s")
    return 0


def _print_mms_security(sec: dict) -> None:
    """The MMS server's lines of `status`: port, TLS, roles, idle-connection closing."""
    cert = sec.get("certificate")
    print(f"MMS             port {sec['port']}, {'TLS' if sec['tls'] else 'plain'}, "
          f"roles {'enforced' if sec['roles_enforced'] else 'off'}, "
          f"{sec['connected']} connected")
    timeout, off = sec.get("idle_timeout_s"), sec.get("idle_close_off")
    if off:
        print(f"idle close      OFF: {off}. security.idle_timeout ({timeout:g} s) is not "
              f"enforced: a silent client keeps its connection slot (of "
              f"{sec.get('max_connections')}) until it disconnects, and counts as present")
    elif timeout:
        print(f"idle close      after {timeout:g} s without a request")
    else:
        print("idle close      off (security.idle_timeout = 0)")
    if cert:
        print(f"certificate     {cert.get('days_left', 0):.0f} days left"
              + (f"  WARNING: {cert['warning']}" if cert.get("warning") else ""))


def _print_inverter_status(st: dict, state_dir: str, indent: str = "") -> None:
    import time

    from inverter_agent.core.events import EventLog

    def line(label: str, text: str) -> None:
        print(f"{indent}{label:<{16 - len(indent)}}{text}")

    if indent:
        print(f"inverter {st['ld']}")
    line("inverter link", f"{'up' if st['link_up'] else 'DOWN'}  unit {st['unit']}  "
         f"models {','.join(map(str, st['models'])) or '-'}")
    if st.get("last_error"):
        line("last error", st["last_error"])
    auto = st.get("poll_period_auto")
    if auto:
        line("poll period", "auto: " + (f"{auto['chosen_s']} s; " if auto.get("chosen_s")
                                        else "") + auto["reason"])
        if auto.get("worst_trip_latency_s"):
            line("backup trip", f"command leaves within {auto['worst_trip_latency_s']:.2f} s "
                 "of a step (worst case on this link)")
    line("poll", f"period {st['poll_period_s']} s, last {st['last_poll_s'] * 1e3:.1f} ms, "
         f"max {st['max_poll_s'] * 1e3:.1f} ms, {st['cycles']} cycles, "
         f"{st['failed_polls']} failed, {st['overruns']} overruns")
    fn = st.get("functions")
    if fn:
        active = [n for n, f in fn["functions"].items() if f["active"]]
        line("functions", f"{fn['state']}; active: {', '.join(active) or 'none'}"
             + (f"; plant cap {fn['plant_cap_pct']:.1f} %"
                if fn.get("plant_cap_pct") is not None else ""))
        if fn.get("not_followed"):
            line("NOT FOLLOWED", str(fn["not_followed"]))
        if fn.get("standing_aside"):
            line("STANDING ASIDE", f"controls released, the inverter runs on its own "
                 f"settings: {fn['standing_aside']}")
        for note in fn.get("notes") or ():
            line("note", note)
        for text in steering_lines(fn.get("steering") or {}):
            line("steering", text)
        if str(fn.get("own_recorded") or "").startswith("not saved"):
            line("device's own", f"volt-var / volt-watt as first seen, {fn['own_recorded']}")
        elif fn.get("own_recorded"):
            line("device's own", f"volt-var / volt-watt as first seen, recorded "
                 f"{fn['own_recorded']} (device_own.json)")
        for alarm in fn.get("alarms") or ():
            line("ALARM", alarm)
    else:
        line("functions", "off (monitoring only)")
    trips = [e for e in EventLog(state_dir).read() if e.get("kind") == "trip"]
    if trips:
        last = trips[-1]
        line("last trip", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last['time']))}"
             f"  {last['detail']}")
    else:
        line("last trip", "none recorded")


def steering_lines(steering: dict) -> list[str]:
    """One line per way the functions reach the inverter (issue 18): native (the
    inverter runs them from the gateway's program), gateway (immediate controls),
    device (left as the inverter has them), with the functions; why is in status
    JSON and the event log."""
    by: dict[str, list[str]] = {}
    for name, choice in sorted(steering.items()):
        by.setdefault(choice["by"], []).append(name)
    return [f"{way}: {', '.join(names)}" for way, names in sorted(by.items())]


#: Connection time below which a per-day figure is not extrapolated: a one-second
#: association that reads the whole model once says nothing about a day of polling.
PER_DAY_MIN_S = 600.0


def _per_day_text(per_day: float | None, connected_s: float | None) -> str:
    if not per_day:
        return ""
    if (connected_s or 0.0) < PER_DAY_MIN_S:
        return (f" (per day: not extrapolated from {connected_s or 0:.0f} s of connection; "
                f"needs {PER_DAY_MIN_S:.0f} s)")
    return f", {per_day / 1e6:.2f} MB/day per client"


def cmd_events(args: argparse.Namespace) -> int:
    import time

    from inverter_agent.core.events import EventLog

    # With several inverters each keeps its log in <state_dir>/<logical device>.
    folders = {"": args.state_dir}
    for name in sorted(os.listdir(args.state_dir)) if os.path.isdir(args.state_dir) else ():
        if name.isidentifier() and \
                os.path.exists(os.path.join(args.state_dir, name, "events.jsonl")):
            folders[name] = os.path.join(args.state_dir, name)
    if len(folders) > 1 and not os.path.exists(os.path.join(args.state_dir, "events.jsonl")):
        del folders[""]
    if args.inverter:
        if args.inverter not in folders:
            print(f"events: no inverter {args.inverter!r} in {args.state_dir}", file=sys.stderr)
            return 1
        folders = {args.inverter: folders[args.inverter]}
    logs = [os.path.join(f, "events.jsonl") for f in folders.values()]
    if not any(os.path.exists(p) for p in logs):
        print(f"events: no event log in {args.state_dir} (has the agent run there with the "
              f"functions on? give --state-dir DIR or set ${ENV_STATE_DIR})", file=sys.stderr)
        return 1
    entries = sorted(({**e, "ld": ld} for ld, folder in folders.items()
                      for e in EventLog(folder).read()), key=lambda e: e["time"])
    for e in entries[-args.last:] if args.last else entries:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        extra = f"  ({e['who']})" if e.get("who") else ""
        ld = f"{e['ld'] or '-':<6} " if len(folders) > 1 else ""
        print(f"{stamp}  {ld}{e['kind']:<24} {e.get('detail', '')}{extra}")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from inverter_agent.security import certs

    try:
        if args.certs_command == "request":
            print(certs.create_csr(args.dir, args.cn, args.org, args.san))
        elif args.certs_command == "install":
            cert = certs.install(args.dir, args.cert, args.ca)
            print(f"installed {cert.subject.rfc4514_string()}, valid to "
                  f"{cert.not_valid_after_utc:%Y-%m-%d}")
        elif args.certs_command == "show":
            for name in (certs.CERT_FILE, certs.CA_FILE):
                path = os.path.join(args.dir, name)
                if not os.path.exists(path):
                    print(f"{name}: not installed")
                    continue
                for e in certs.expiry(path):
                    print(f"{name}: {e.subject} (issuer {e.issuer}) valid to "
                          f"{e.not_after:%Y-%m-%d}, {e.days_left:.0f} days"
                          + (f"  WARNING: {e.warning}" if e.warning else ""))
        elif args.certs_command == "ca":
            print(certs.create_ca(args.dir))
        elif args.certs_command == "issue":
            key, cert = certs.issue(args.ca_dir, args.cn, args.out, role=args.role,
                                    server=args.server, days=args.days,
                                    sans=args.san or None)
            print(f"{key}\n{cert}")
    except (certs.CertError, OSError) as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from inverter_agent.app import App
    from inverter_agent.sdnotify import Notifier

    overrides = {
        "inverter.modbus_tcp": args.modbus_tcp, "inverter.modbus_rtu": args.modbus_rtu,
        "inverter.baud": args.baud, "inverter.parity": args.parity,
        "inverter.timeout": args.timeout, "inverter.unit": args.unit,
        "mms.host": args.mms_host, "mms.port": args.mms_port,
        "agent.state_dir": args.state_dir or os.environ.get(ENV_STATE_DIR) or None,
        "agent.poll_period": args.poll_period,
        "agent.log_level": args.log_level, "functions.profile": args.profile,
        "functions.enabled": False if args.no_functions else None,
        "security.tls_cert": args.tls_cert, "security.tls_key": args.tls_key,
        "security.tls_ca": args.tls_ca, "security.tls_crl": args.tls_crl,
        "security.tls_allow": args.tls_allow,
        "security.allow_insecure_bind": True if args.allow_insecure_bind else None,
    }
    units = _units(args.units) if args.units else None
    overrides["inverter.units"] = units
    sim = None
    if args.simulate:
        from simulator import SimProcess

        if args.modbus_tcp or args.modbus_rtu:
            raise config_mod.ConfigError("--simulate chooses its own link: drop --modbus-*")
        sim = SimProcess(*(["--units", ",".join(map(str, units))] if units else []))
        sim.start()
        overrides["inverter.modbus_tcp"] = f"127.0.0.1:{sim.tcp_port}"
    try:
        cfg = config_mod.load(args.config or config_mod.default_config_path(), overrides,
                              board=args.board)
        _setup_logging(cfg["agent.log_level"])
        if sim is not None:
            log.info("simulated inverter on 127.0.0.1:%d (control %s:%d)", sim.tcp_port,
                     *sim.control_address)
        app = App(cfg)  # the one composition root: inverters, core, enabled adapters
        notifier = Notifier()
        return app.run(on_ready=notifier.ready, on_cycle=notifier.watchdog,
                       on_stopping=notifier.stopping)
    finally:
        if sim is not None:
            sim.stop()


#: With this set to a file path, ``run`` traces Python allocations from the start
#: and writes the largest allocation sites there when it stops (for ``make bench``;
#: tracing costs memory and time of its own).
ENV_TRACEMALLOC = "INVERTER_AGENT_TRACEMALLOC"


def _write_allocation_sites(path: str, top: int = 25) -> None:
    import tracemalloc

    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced {current / 1e6:.2f} MB now, peak {peak / 1e6:.2f} MB"]
    for kind in ("filename", "lineno"):
        lines.append(f"-- by {kind}")
        for stat in snap.statistics(kind)[:top]:
            frame = stat.traceback[0]
            where = frame.filename if kind == "filename" else f"{frame.filename}:{frame.lineno}"
            lines.append(f"{stat.size / 1024:10.1f} KiB {stat.count:8d} blocks  {where}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trace_to = os.environ.get(ENV_TRACEMALLOC)
    if trace_to and argv[:1] == ["run"]:
        import tracemalloc

        tracemalloc.start()
        try:
            return _main(argv)
        finally:
            _write_allocation_sites(trace_to)
    return _main(argv)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["conformance"]:
        from inverter_agent.conformance.cli import main as conformance_main
        return conformance_main(argv[1:])
    if argv[:1] == ["sim"]:
        from simulator.cli import main as sim_main
        return sim_main(argv[1:], prog="inverter-agent sim") or 0
    args = _parser().parse_args(argv)
    if args.command in ("status", "events", "audit"):
        args.state_dir = _state_dir(args.state_dir)
    try:
        if args.command == "scan":
            _setup_logging("warning")
            return cmd_scan(args)
        if args.command in COMMANDS:  # an adapter's own subcommand
            return COMMANDS[args.command](args)
        if args.command == "certs":
            return cmd_certs(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "password-hash":
            return cmd_password_hash(args)
        if args.command == "audit":
            return cmd_audit(args)
        if args.command == "events":
            return cmd_events(args)
        if args.command == "run":
            return cmd_run(args)
    except config_mod.ConfigError as exc:
        print(f"inverter-agent: config error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Security refusals (an insecure bind, unusable TLS material) stop the
        # start with their own message; anything else is a bug and raises.
        if type(exc).__name__ in ("InsecureBindError", "SecurityConfigError", "LibraryError"):
            print(f"inverter-agent: {exc}", file=sys.stderr)
            return 2
        raise
    return 2


if __name__ == "__main__":
    sys.exit(main())
