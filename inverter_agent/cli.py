"""``inverter-agent``: run the gateway, simulate an inverter, scan a bus, read a server."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from inverter_agent import config as config_mod

log = logging.getLogger("inverter_agent")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modbus-tcp", metavar="HOST:PORT", help="inverter over Modbus TCP")
    p.add_argument("--modbus-rtu", metavar="DEVICE", help="inverter over Modbus RTU (RS-485)")
    p.add_argument("--baud", type=int, help="RTU baud rate (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"))
    p.add_argument("--timeout", type=float, help="seconds per Modbus transaction")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="inverter-agent", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway: poll the inverter, serve IEC 61850 MMS")
    run.add_argument("--config", metavar="FILE",
                     help=f"TOML config (default {config_mod.DEFAULT_CONFIG_DIR}/agent.toml "
                          "if present); flags override it")
    run.add_argument("--board", metavar="NAME",
                     help="board file (board-configs/NAME.toml or /etc/inverter-agent/boards): "
                          "serial and pin settings; the config file and flags override it")
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
                     help=f"state directory (default {config_mod.DEFAULT_STATE_DIR})")
    run.add_argument("--poll-period", type=_period,
                     help="seconds between polls, or auto (default): the fastest the link "
                          "sustains")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.add_argument("--profile", help="grid-function settings profile: rule21 (default), "
                                       "ieee1547-2018-cat-a, ieee1547-2018-cat-b")
    run.add_argument("--no-functions", action="store_true",
                     help="monitor only: do not run the autonomous functions")
    run.add_argument("--simulate", action="store_true",
                     help="start the simulated inverter and use it (the demo / bench default)")

    sub.add_parser("conformance", add_help=False,
                   help="run IEEE 1547.1-style procedures against an inverter; writes a "
                        "report with plots (see inverter-agent conformance --help)")
    sim = sub.add_parser("sim", help="run the simulated SunSpec inverter", add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)

    scan = sub.add_parser("scan", help="list SunSpec devices and models on a bus or address")
    _add_link_args(scan)
    scan.add_argument("--units", default="1", metavar="A-B",
                      help="unit ids to try: 1, 1-10 or 1,3,5 (default 1)")
    scan.add_argument("--bases", default=None,
                      help="comma-separated SunSpec base addresses to try (default: the three "
                           "the SunSpec specification allows, in its order)")

    model = sub.add_parser("model", help="describe the served IEC 61850 model (SCL / ICD)")
    model.add_argument("--icd", required=True, metavar="FILE", help="write an ICD file")
    model.add_argument("--config", metavar="FILE")
    model.add_argument("--no-functions", action="store_true",
                       help="the monitoring-only model (as run --no-functions serves)")

    sub.add_parser("password-hash", help="read a password (twice) and print its salted "
                                         "hash for [security.users.NAME] hash")
    audit = sub.add_parser("audit", help="print the audit log and verify its hash chain")
    audit.add_argument("--state-dir", default=config_mod.DEFAULT_STATE_DIR)
    audit.add_argument("--last", type=int, default=50, help="how many (default 50; 0 = all)")
    audit.add_argument("--ack", action="store_true",
                       help="after printing and verifying, record that the log was read: "
                            "rotation may then drop what was printed (otherwise entries "
                            "about authenticated actions are kept for audit_retain_days)")
    audit.add_argument("--refusals", action="store_true",
                       help="also print the aggregated refusals of unauthenticated peers")

    status = sub.add_parser("status", help="health view: link, poll timing, functions, last trip")
    status.add_argument("--state-dir", default=config_mod.DEFAULT_STATE_DIR)
    status.add_argument("--json", action="store_true", help="print the raw status")

    events = sub.add_parser("events", help="print the event log (trips, reconnects, settings)")
    events.add_argument("--state-dir", default=config_mod.DEFAULT_STATE_DIR)
    events.add_argument("--last", type=int, default=50, help="how many (default 50; 0 = all)")
    events.add_argument("--inverter", metavar="LD",
                        help="with several inverters: only this one's (default: all, merged)")

    certs = sub.add_parser("certs", help="device key, signing request, certificate install, "
                                         "expiry; a bench CA for tests")
    csub = certs.add_subparsers(dest="certs_command", required=True)
    c = csub.add_parser("request", help="create the device key (0600) if missing and a CSR")
    c.add_argument("--dir", required=True)
    c.add_argument("--cn", required=True, help="device name for the certificate subject")
    c.add_argument("--org")
    c.add_argument("--san", action="append", default=[],
                   help="host name or IP address the gateway is reached by (repeatable; "
                        "default: the CN if a host name, this host's name, localhost, "
                        "127.0.0.1, ::1)")
    c = csub.add_parser("install", help="install a signed certificate and the CA bundle")
    c.add_argument("--dir", required=True)
    c.add_argument("--cert", required=True)
    c.add_argument("--ca", required=True)
    c = csub.add_parser("show", help="subjects and expiry of the installed certificates")
    c.add_argument("--dir", required=True)
    c = csub.add_parser("ca", help="create a bench CA (tests and benches only)")
    c.add_argument("--dir", required=True)
    c = csub.add_parser("issue", help="issue a certificate from the bench CA")
    c.add_argument("--ca-dir", required=True)
    c.add_argument("--cn", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--role", choices=("viewer", "operator", "engineer", "secadmin"))
    c.add_argument("--server", action="store_true", help="a server (device) certificate")
    c.add_argument("--days", type=int, default=365)
    c.add_argument("--san", action="append", default=[],
                   help="subjectAltName: host name or IP address (repeatable; a --server "
                        "certificate without any gets the CN if a host name, this host's "
                        "name, localhost, 127.0.0.1 and ::1)")

    lfdi = sub.add_parser("lfdi", help="the IEEE 2030.5 LFDI and SFDI of a device certificate "
                                       "(what the utility registers)")
    lfdi.add_argument("--cert", required=True, metavar="FILE", help="certificate, PEM or DER")

    read = sub.add_parser("read", help="connect to an MMS server and print its model with values")
    read.add_argument("--host", default="127.0.0.1")
    read.add_argument("--port", type=int, default=102)
    read.add_argument("--timeout", type=float, default=5.0)
    return ap


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


def cmd_model(args: argparse.Namespace) -> int:
    from inverter_agent.adapters.mms.icd import write_icd
    from inverter_agent.adapters.mms.plant_model import site_model_spec

    cfg = config_mod.load(args.config or config_mod.default_config_path(),
                          {"functions.enabled": False if args.no_functions else None})
    lds = [link.ld_inst for link in cfg.inverter_links()]
    spec = site_model_spec(lds, cfg["plant.ld_inst"] if len(lds) > 1 else None,
                           functions=cfg["functions.enabled"])
    write_icd(spec, args.icd, ied_name=cfg["mms.ied_name"], host=cfg["mms.host"],
              tls=bool(cfg["security.tls_cert"]))  # clients then authenticate by certificate
    print(f"wrote {args.icd}")
    return 0


def cmd_password_hash(_args: argparse.Namespace) -> int:
    import getpass

    from inverter_agent.adapters.mms.security import hash_password

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


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import time

    path = os.path.join(args.state_dir, "status.json")
    try:
        with open(path, encoding="utf-8") as fh:
            st = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"status: cannot read {path}: {exc}", file=sys.stderr)
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
    sec = st.get("security")
    if sec:
        cert = sec.get("certificate")
        print(f"MMS             port {sec['port']}, {'TLS' if sec['tls'] else 'plain'}, "
              f"roles {'enforced' if sec['roles_enforced'] else 'off'}, "
              f"{sec['connected']} connected")
        if cert:
            print(f"certificate     {cert.get('days_left', 0):.0f} days left"
                  + (f"  WARNING: {cert['warning']}" if cert.get("warning") else ""))
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
            per_day = t.get("bytes_per_day_per_client")
            print(f"wire {level:<11}{t['connections']} connection(s), "
                  f"{t['wire_in'] + t['wire_out']:,} B on the wire"
                  + (f", {per_day / 1e6:.2f} MB/day per client" if per_day else ""))
    for c in wire.get("clients") or []:
        print(f"  client {c['peer']:<21} {c['level']:<10} {c['wire_in']:,} B in, "
              f"{c['wire_out']:,} B out over {c['connected_s']:.0f} s")
    return 0


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
    else:
        line("functions", "off (monitoring only)")
    trips = [e for e in EventLog(state_dir).read() if e.get("kind") == "trip"]
    if trips:
        last = trips[-1]
        line("last trip", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last['time']))}"
             f"  {last['detail']}")
    else:
        line("last trip", "none recorded")


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


def cmd_lfdi(args: argparse.Namespace) -> int:
    from inverter_agent.adapters.ieee2030_5.identity import lfdi_sfdi

    try:
        with open(args.cert, "rb") as fh:
            lfdi, sfdi = lfdi_sfdi(fh.read())
    except (OSError, ValueError) as exc:
        print(f"lfdi: {args.cert}: {exc}", file=sys.stderr)
        return 1
    print(f"LFDI {lfdi}\nSFDI {sfdi}")
    return 0


def start_ieee2030_5(cfg: config_mod.Config, agents: list, runner) -> object | None:
    """The IEEE 2030.5 client when ``[ieee2030_5] server`` is set (else nothing is imported):
    one utility schedule, arbitrated by every inverter's settings service."""
    if not cfg["ieee2030_5.server"]:
        return None
    from inverter_agent.adapters.ieee2030_5.client import ClientSettings, Ieee2030Client
    from inverter_agent.adapters.ieee2030_5.site_view import SiteView
    from inverter_agent.core.arbitration import UtilitySchedule

    settings = ClientSettings.from_config(cfg)
    services = [a.settings_service for a in agents if a.settings_service is not None]
    if len(services) != len(agents):
        raise config_mod.ConfigError("[ieee2030_5] needs the grid functions (utility controls "
                                     "are applied through them): drop --no-functions")
    # Kept in the state directory: a gateway restarted during an outage runs what it had.
    schedule = UtilitySchedule(source="ieee2030_5", path=os.path.join(
        cfg["agent.state_dir"], "utility_schedule.json"))
    for service in services:
        service.attach_utility(schedule)
    first = services[0].events

    def record(kind: str, detail: str) -> None:
        first.record(kind, detail, who="ieee2030_5")

    def validate(control) -> str | None:  # refused if any inverter's settings refuse it
        return next((why for s in services if (why := s.check_utility(control))), None)

    client = Ieee2030Client(settings, schedule, SiteView(agents), record, validate)
    runner.status_extra["ieee2030_5"] = client.status
    client.start()
    log.info("IEEE 2030.5 client for %s, LFDI %s, SFDI %d", settings.server, client.lfdi,
             client.sfdi)
    return client


def cmd_read(args: argparse.Namespace) -> int:
    from inverter_agent.adapters.mms import client

    try:
        values = client.read_all(args.host, args.port, timeout=args.timeout)
    except client.MmsClientError as exc:
        print(f"read: {exc}", file=sys.stderr)
        return 1
    print(client.format_model(values))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from inverter_agent.adapters.mms.binding import attach_functions
    from inverter_agent.adapters.mms.hardening import route_native_output
    from inverter_agent.adapters.mms.plant_binding import attach_plant
    from inverter_agent.adapters.mms.plant_model import site_model_spec
    from inverter_agent.adapters.mms.security import TLS_PORT, check_bind
    from inverter_agent.adapters.mms.server import MmsServer
    from inverter_agent.core.agent import Agent
    from inverter_agent.core.site import PlantService, Site
    from inverter_agent.sdnotify import Notifier

    overrides = {
        "inverter.modbus_tcp": args.modbus_tcp, "inverter.modbus_rtu": args.modbus_rtu,
        "inverter.baud": args.baud, "inverter.parity": args.parity,
        "inverter.timeout": args.timeout, "inverter.unit": args.unit,
        "mms.host": args.mms_host, "mms.port": args.mms_port,
        "agent.state_dir": args.state_dir, "agent.poll_period": args.poll_period,
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
        os.makedirs(cfg["agent.state_dir"], exist_ok=True)
        from inverter_agent.adapters.mms import _native

        # Which libiec61850, checked (loadable, version) before anything else starts.
        _native.configure(cfg["mms.libiec61850"])
        _native.lib()
        # libiec61850's threads call our handlers through ctypes and must take
        # the GIL first; with the default 5 ms switch interval a request can
        # wait that long behind the control loop's Python work. Hand it over
        # sooner: the loop's own work is a few milliseconds a cycle.
        sys.setswitchinterval(0.0005)
        links = cfg.inverter_links()
        multi = len(links) > 1
        # Controllers and settings first: the MMS write and control handlers
        # are bound to them before the server accepts its first client.
        agents = make_agents(cfg, links)
        spec = site_model_spec([a.name for a in agents],
                               cfg["plant.ld_inst"] if multi else None,
                               functions=cfg["functions.enabled"])
        tls, access, audit = security_from_config(cfg)
        port = cfg["mms.port"] or (TLS_PORT if tls else 102)
        check_bind(cfg["mms.host"], tls is not None, cfg["security.allow_insecure_bind"])
        server = MmsServer(spec, host=cfg["mms.host"], port=port,
                           ied_name=cfg["mms.ied_name"],
                           max_connections=cfg["mms.max_connections"], tls=tls, access=access,
                           audit=audit, idle_timeout_s=cfg["security.idle_timeout"] or None)
        bindings = []
        for agent in agents:
            agent.publishers.append(server.publisher(agent.name) if multi else server.publish)
            if agent.controller is not None and agent.settings_service is not None:
                def view(c=agent.controller, s=agent.settings_service) -> dict:
                    # the utility client's link rides with the controller's view (MMS DGEN1)
                    return {**c.status_view(), "utility": s.utility_comms()}

                binding = attach_functions(server, agent.settings_service, view,
                                           ld_inst=agent.name)
                agent.publishers.append(binding.publish)
                bindings.append(binding)
        runner: Agent | Site
        if multi:
            plant = PlantService(cfg["agent.state_dir"], cfg["plant.ld_inst"],
                                 cfg["plant.w_max"])
            attach_plant(plant, server, writable=cfg["functions.enabled"])
            runner = Site(cfg, agents, plant)
        else:
            runner = agents[0]
        runner.status_extra["security"] = server.security_status
        runner.status_extra["wire"] = server.wire_status
        # The bundled library prints TLS/ISO debugging (certificate subjects among
        # it) on fds 1 and 2: into the log at DEBUG instead.
        route_native_output()
        utility_client = start_ieee2030_5(cfg, agents, runner)
        server.start()
        log.info("MMS%s server on %s:%d, logical device%s %s", " over TLS" if tls else "",
                 cfg["mms.host"], port, "s" if multi else "",
                 ", ".join(cfg["mms.ied_name"] + ld.inst for ld in spec.logical_devices))

        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            runner.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        notifier = Notifier()
        runner.on_cycle = notifier.watchdog  # pinged by the loop itself: a stuck loop stops it
        loop = threading.Thread(target=runner.run, name="agent-loop", daemon=True)
        loop.start()
        notifier.ready(f"serving MMS on {cfg['mms.host']}:{port}")
        while loop.is_alive() and not runner.stop_event.is_set():
            loop.join(0.5)
        # Stop within 5 s even if a transaction is stuck on the wire: its
        # timeout is bounded, but never wait on it past this.
        notifier.stopping()
        loop.join(3.0)
        if loop.is_alive():
            log.warning("control loop still inside a transaction; stopping without it")
        if utility_client is not None:
            utility_client.stop()
        for binding in bindings:
            binding.close()
        server.stop()
        runner.close()
        log.info("stopped")
        return 0
    finally:
        if sim is not None:
            sim.stop()


def security_from_config(cfg: config_mod.Config):
    """(TlsSettings or None, AccessPolicy or None, AuditLog) from the [security] section."""
    from inverter_agent.adapters.mms.security import AccessPolicy, TlsSettings
    from inverter_agent.security.audit import AuditLog

    tls = None
    if cfg["security.tls_cert"] or cfg["security.tls_key"]:
        if not (cfg["security.tls_cert"] and cfg["security.tls_key"] and cfg["security.tls_ca"]):
            raise config_mod.ConfigError("[security] TLS needs tls_cert, tls_key and tls_ca "
                                         "(--tls-cert, --tls-key, --tls-ca) together")
        tls = TlsSettings(cert=cfg["security.tls_cert"], key=cfg["security.tls_key"],
                          ca=tuple(cfg["security.tls_ca"]), crl=tuple(cfg["security.tls_crl"]),
                          allow=tuple(cfg["security.tls_allow"]) or None,
                          min_version=cfg["security.tls_min_version"])
    access = None
    if tls is not None or cfg["security.users"] or cfg["security.fingerprints"]:
        access = AccessPolicy.from_config({"fingerprints": cfg["security.fingerprints"] or None,
                                           "use_ou": cfg["security.role_from_ou"],
                                           "users": cfg["security.users"] or None})
    audit = AuditLog(cfg["agent.state_dir"], max_bytes=cfg["security.audit_bytes"],
                     retain_s=cfg["security.audit_retain_days"] * 86400.0)
    return tls, access, audit


def make_agents(cfg: config_mod.Config, links: list[config_mod.InverterLink]) -> list:
    """One agent per inverter; inverters on one wire share its transport. With several,
    each keeps its settings and events in ``<state_dir>/<logical device>``."""
    from hal.inverter import Inverter
    from inverter_agent.core.agent import Agent, make_transport

    transports: dict[tuple[str, str], object] = {}
    agents = []
    for link in links:
        if link.link not in transports:
            transports[link.link] = make_transport(cfg, link.settings)
        inverter = Inverter(transports[link.link], unit=link.unit,
                            bases=tuple(link.settings["bases"]))
        agent = Agent(cfg, inverter=inverter, name=link.ld_inst)
        if cfg["functions.enabled"]:
            state_dir = cfg["agent.state_dir"]
            if len(links) > 1:
                state_dir = os.path.join(state_dir, link.ld_inst)
                os.makedirs(state_dir, exist_ok=True)
            agent.controller, agent.settings_service = make_controller(cfg, inverter, state_dir)
        agents.append(agent)
    return agents


def make_controller(cfg: config_mod.Config, inverter, state_dir: str | None = None):
    """The local controller and its settings service (persisted or profile defaults)."""
    from inverter_agent.core.controller import Controller
    from inverter_agent.core.events import EventLog
    from inverter_agent.core.settings_service import SettingsService
    from inverter_agent.core.settings_store import SettingsStore

    state_dir = state_dir or cfg["agent.state_dir"]
    events = EventLog(state_dir, max_bytes=cfg["functions.event_log_bytes"])
    store = SettingsStore(state_dir, cfg["functions.profile"])
    service = SettingsService(store, events, revert_after_s=cfg["functions.revert_after"] or None)
    settings = service.effective()
    log.info("grid functions running from %s", service.origin)
    period = cfg["agent.poll_period"]
    if period == "auto":  # the agent states its choice, and what it means, once made
        from inverter_agent.core.pollrate import PROVISIONAL_PERIOD
        period = PROVISIONAL_PERIOD
    elif 2 * period > 0.16:
        log.warning("poll period %.2f s: clearing times shorter than two poll periods (e.g. "
                    "0.16 s) can only be met by the inverter's own protection; the gateway's "
                    "backup trip fires on the first poll that sees the condition", period)
    controller = Controller(inverter, settings, events,
                            nominal_voltage=cfg["functions.nominal_voltage"],
                            follow_timeout_s=cfg["functions.follow_timeout"],
                            steering=cfg["functions.steering"],
                            verify_every_s=cfg["functions.verify_every"],
                            control_period_s=period,
                            revert_timeout=cfg["functions.revert_timeout"])
    service.bind(controller.apply_settings)
    return controller, service


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
    try:
        if args.command == "scan":
            _setup_logging("warning")
            return cmd_scan(args)
        if args.command == "read":
            return cmd_read(args)
        if args.command == "lfdi":
            return cmd_lfdi(args)
        if args.command == "model":
            return cmd_model(args)
        if args.command == "certs":
            return cmd_certs(args)
        if args.command == "status":
            return cmd_status(args)
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
