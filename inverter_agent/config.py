"""One configuration schema, fail fast.

The config file is TOML. Every key is declared here with its type and allowed
range; an unknown key (probably a typo) or a value out of range stops the start
with the file, the key and what is allowed. Command-line flags override the
file through the same checks, so a bad flag fails the same way.

Board files and the main config go through this one loader. Every error is
collected before the start stops, so one run (or ``inverter-agent check-config``)
shows them all; an unknown key names the closest known one.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hal.sunspec.scan import DEFAULT_BASES

DEFAULT_CONFIG_DIR = "/etc/inverter-agent"
DEFAULT_STATE_DIR = "/var/lib/inverter-agent"


#: Range of ``[functions] revert_timeout`` (SunSpec revert timers count whole seconds).
REVERT_MIN_S, REVERT_MAX_S = 2.0, 3600.0


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message says where.

    ``errors`` holds each error (one line each) when several were found at once."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors) if errors else [message]
        super().__init__(message)


def config_errors(errors: list[str]) -> ConfigError:
    """One :class:`ConfigError` for one or several errors (each on its own line)."""
    if len(errors) == 1:
        return ConfigError(errors[0])
    return ConfigError(f"{len(errors)} errors:\n  " + "\n  ".join(errors), errors)


def _did_you_mean(word: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


@dataclass(frozen=True, slots=True)
class Key:
    type: type
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text or None
    doc: str = ""
    #: Words allowed instead of a value of ``type`` (``poll_period = "auto"``).
    words: tuple[str, ...] = ()
    #: The value names files (a path, or a list of paths) that must exist when set.
    path: bool = False

    def allowed(self) -> str:
        if self.words:
            plain = Key(self.type, min=self.min, max=self.max, choices=self.choices)
            return " or ".join([*(repr(w) for w in self.words), plain.allowed()])
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min} <= "
            hi = "" if self.max is None else f" <= {self.max}"
            return f"{lo}value{hi}"
        return f"a {self.type.__name__}"


def _host_port(v: str) -> str | None:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return "HOST:PORT with a port 1..65535"
    return None


_ROLES = ("viewer", "operator", "engineer", "secadmin")


def _str_list(v: list) -> str | None:
    return None if all(isinstance(x, str) and x for x in v) else "a list of file paths"


def _fingerprints(v: dict) -> str | None:
    for fp, role in v.items():
        hexfp = fp.replace(":", "").lower()
        if len(hexfp) != 64 or any(c not in "0123456789abcdef" for c in hexfp) or \
                role not in _ROLES:
            return f"SHA-256 hex fingerprint = one of {', '.join(_ROLES)}"
    return None


def _users(v: dict) -> str | None:
    for name, entry in v.items():
        if not isinstance(entry, dict) or set(entry) != {"role", "hash"} or \
                entry["role"] not in _ROLES or not str(entry["hash"]).startswith("scrypt$"):
            return (f"user {name!r}: a table with role (one of {', '.join(_ROLES)}) and hash "
                    "(scrypt$..., from inverter-agent password-hash; never a plain password)")
    return None


def _units(v: list) -> str | None:
    if not v or not all(isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= 247
                        for u in v) or len(set(v)) != len(v):
        return "a non-empty list of distinct Modbus unit ids, each 1..247"
    return None


def _ident(v: str) -> str | None:
    return None if v.isidentifier() and len(v) <= 32 else \
        "an identifier of at most 32 characters"


def _bases(v: list) -> str | None:
    if not v or not all(isinstance(b, int) and 0 <= b <= 65535 for b in v):
        return "a non-empty list of SunSpec base addresses, each 0..65535"
    return None


SCHEMA: dict[str, dict[str, Key]] = {
    "inverter": {
        "modbus_tcp": Key(str, None, check=_host_port, doc="Modbus TCP address of the inverter"),
        "modbus_rtu": Key(str, None, doc="serial device of the RS-485 line"),
        "baud": Key(int, 9600, choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
        "parity": Key(str, "N", choices=("N", "E", "O")),
        "stopbits": Key(int, 1, choices=(1, 2)),
        "unit": Key(int, 1, min=1, max=247, doc="Modbus unit id"),
        "name": Key(str, None, check=_ident,
                    doc="the inverter's name (the first inverter's, with several): the "
                        "state-directory folder, the MMS logical device; default "
                        "[mms] ld_inst, else INV1"),
        "units": Key(list, None, check=_units,
                     doc="several inverters on this link (one RS-485 bus, or a Modbus TCP "
                         "gateway): their unit ids; default [unit]"),
        "timeout": Key(float, None, min=0.02, max=10.0,
                       doc="seconds per transaction; default 40 % of the poll period"),
        "retries": Key(int, 1, min=0, max=5),
        "inter_frame_delay": Key(float, 0.0, min=0.0, max=0.5,
                                 doc="extra idle seconds before each RTU request"),
        "rs485": Key(str, "none", choices=("none", "kernel"),
                     doc="RS-485 direction control: none (auto-direction transceiver) or "
                         "kernel (the UART driver switches RTS / the DE pin)"),
        "rts_level_for_tx": Key(bool, True, doc="RTS level while sending (kernel mode)"),
        "delay_before_tx": Key(float, 0.0, min=0.0, max=0.1,
                               doc="seconds between driver enable and the first bit"),
        "delay_before_rx": Key(float, 0.0, min=0.0, max=0.1,
                               doc="seconds between the last bit and driver disable"),
        "bases": Key(list, list(DEFAULT_BASES), check=_bases,
                     doc="SunSpec base addresses to try, in order"),
    },
    "agent": {
        "poll_period": Key(float, "auto", min=0.05, max=60.0, words=("auto",),
                           doc="seconds between polls, or \"auto\": the fastest the link "
                               "sustains (measured round trips, bytes per cycle and baud "
                               "rate, 25 % of the line left to other masters, at least "
                               "0.05 s)"),
        "state_dir": Key(str, DEFAULT_STATE_DIR),
        "log_level": Key(str, "info", choices=("debug", "info", "warning", "error")),
        "dead_retry": Key(float, 5.0, min=0.2, max=600.0,
                          doc="with several inverters: seconds between attempts to reach one "
                              "whose link is down, so it does not slow the others' cycle"),
    },
    "functions": {
        "enabled": Key(bool, True, doc="run the autonomous grid functions locally"),
        "profile": Key(str, "rule21",
                       choices=("rule21", "ieee1547-2018-cat-a", "ieee1547-2018-cat-b")),
        "nominal_voltage": Key(float, None, min=50.0, max=1000.0,
                               doc="line-to-neutral volts; default: the inverter's own VNom"),
        "follow_timeout": Key(float, 10.0, min=1.0, max=600.0,
                              doc="seconds the inverter has to follow a setpoint"),
        "event_log_bytes": Key(int, 1 << 20, min=4096, max=1 << 28),
        "steering": Key(str, "auto", choices=("auto", "native", "immediate"),
                        doc="auto: per function, program the inverter's own function where "
                            "it has the IEEE 1547-2018 model and takes the program (volt-var "
                            "705, volt-watt 706), the rest with immediate controls; native: "
                            "the same (older name); immediate: steer every function with "
                            "immediate controls, an explicit opt-out"),
        "verify_every": Key(float, 60.0, min=1.0, max=86400.0,
                            doc="seconds between read-backs of programmed native curves"),
        "revert_after": Key(float, 300.0, min=0.0, max=86400.0,
                            doc="seconds without any client after which temporary utility "
                                "commands revert to the persisted settings; 0 = never"),
        "revert_timeout": Key(float, "auto", min=REVERT_MIN_S, max=REVERT_MAX_S,
                              words=("auto",),
                              doc="seconds of the inverter's own revert timers set with every "
                                  "immediate control and refreshed while the gateway runs: "
                                  "a gateway that stops leaves the inverter commanded for at "
                                  "most this long. \"auto\": 10 poll periods, at least 30 s "
                                  "(a restarted gateway re-asserts before it), at most 300 s; "
                                  "never less than three poll periods"),
    },
    "security": {
        "tls_cert": Key(str, None, doc="device certificate (PEM)", path=True),
        "tls_key": Key(str, None, doc="device private key (PEM, mode 0600)", path=True),
        "tls_ca": Key(list, [], check=_str_list, doc="CA bundles that sign client certificates",
                      path=True),
        "tls_crl": Key(list, [], check=_str_list, doc="certificate revocation lists", path=True),
        "tls_allow": Key(list, [], check=_str_list, path=True,
                         doc="if given, only these client certificates are accepted"),
        "tls_min_version": Key(str, "1.2", choices=("1.2", "1.3")),
        "role_from_ou": Key(bool, True, doc="a client certificate's OU names its role"),
        "fingerprints": Key(dict, {}, check=_fingerprints,
                            doc="SHA-256 certificate fingerprint (hex) -> role"),
        "users": Key(dict, {}, check=_users,
                     doc="ACSE password users: name -> {role, hash} (inverter-agent "
                         "password-hash makes the hash; plain passwords are refused)"),
        "allow_insecure_bind": Key(bool, False,
                                   doc="allow plain MMS on a non-loopback address (loudly)"),
        "idle_timeout": Key(float, 300.0, min=0.0, max=86400.0,
                            doc="close MMS connections silent this long (0 = never)"),
        "audit_bytes": Key(int, 4 << 20, min=4096, max=1 << 30),
        "audit_retain_days": Key(float, 90.0, min=0.0, max=3650.0,
                                 doc="entries about authenticated actions are kept at least "
                                     "this long unless acknowledged (inverter-agent audit "
                                     "--ack); 0 = rotate by size only"),
    },
    "metrics": {
        "enabled": Key(bool, False, doc="serve metrics in the Prometheus text format at "
                                        "http://HOST:PORT/metrics (read-only)"),
        "host": Key(str, "127.0.0.1", doc="address the metrics endpoint binds; anything but "
                                          "loopback lets whoever reaches it read the state"),
        "port": Key(int, 9469, min=1, max=65535, doc="port of the metrics endpoint"),
        "timeout": Key(float, 5.0, min=0.5, max=60.0,
                       doc="seconds a scrape connection may take before it is dropped"),
    },
    "plant": {
        "ld_inst": Key(str, "PLANT", check=_ident,
                       doc="logical device of the plant view (served with several inverters)"),
        "w_max": Key(float, None, min=0.0, max=1e9,
                     doc="plant active-power limit in W, shared among the inverters by "
                         "rating, until a client sets one (persisted); none: no plant limit"),
    },
    "meter": {
        "enabled": Key(bool, False, doc="read a SunSpec meter (201-204, 211-214) at the "
                                        "site's connection point (docs/site-meter.md)"),
        "link": Key(str, "inverter", choices=("inverter", "own"),
                    doc="inverter: on the first inverter's link (another unit id on its "
                        "bus or Modbus TCP gateway); own: modbus_tcp or modbus_rtu below"),
        "modbus_tcp": Key(str, None, check=_host_port, doc="the meter's own Modbus TCP address"),
        "modbus_rtu": Key(str, None, doc="the meter's own serial device"),
        "baud": Key(int, 9600, choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
        "parity": Key(str, "N", choices=("N", "E", "O")),
        "unit": Key(int, None, min=1, max=247, doc="the meter's Modbus unit id (required)"),
        "model": Key(int, None, choices=(201, 202, 203, 204, 211, 212, 213, 214),
                     doc="the meter model expected; none: the first meter model listed"),
        "bases": Key(list, list(DEFAULT_BASES), check=_bases,
                     doc="SunSpec base addresses to try, in order"),
        "w_positive": Key(str, "import", choices=("import", "export"),
                          doc="which way the meter counts W positive: import (the metering "
                              "convention, default) or export (e.g. SolarEdge meters)"),
        "name": Key(str, "SITE", check=_ident,
                    doc="the connection point's name (its MMS logical device)"),
        "stale_after": Key(float, 5.0, min=0.5, max=600.0,
                           doc="seconds after which a meter reading not renewed is invalid"),
        "max_w": Key(float, 1e6, min=1.0, max=1e9,
                     doc="largest |W| the meter can plausibly show at this site; above it "
                         "the reading is invalid"),
    },
}



def _adapter_sections() -> dict[str, dict[str, Key]]:
    """Each registered adapter owns its section: its keys come from its ``keys`` module."""
    from inverter_agent.adapters import REGISTRY

    return {s.name: s.module("keys").KEYS for s in REGISTRY}


SCHEMA.update(_adapter_sections())

#: Keys an ``[[inverters]]`` entry may set: its logical device, and any
#: ``[inverter]`` key (what it does not set comes from ``[inverter]``).
INVERTER_ENTRY: dict[str, Key] = {
    "ld_inst": Key(str, None, check=_ident, doc="logical device (default INV<n>)"),
    **{k: v for k, v in SCHEMA["inverter"].items() if k not in ("units", "name")},
}

#: Keys that describe the wire; inverters sharing one link must agree on them.
LINK_KEYS = ("baud", "parity", "stopbits", "timeout", "retries", "inter_frame_delay", "rs485",
             "rts_level_for_tx", "delay_before_tx", "delay_before_rx")


#: Command-line flags whose names differ from their key's.
FLAGS = {"mms.host": "--mms-host", "mms.port": "--mms-port", "functions.enabled": "--no-functions",
         "security.tls_cert": "--tls-cert", "security.tls_key": "--tls-key",
         "security.tls_ca": "--tls-ca", "security.tls_crl": "--tls-crl",
         "security.tls_allow": "--tls-allow"}


@dataclass(frozen=True, slots=True)
class Config:
    """Validated configuration; ``sources`` says where each value came from."""

    values: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str] = field(default_factory=dict)
    links: tuple[InverterLink, ...] = ()

    def __getitem__(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    @property
    def transaction_timeout(self) -> float:
        return link_timeout(self.values["inverter"], self["agent.poll_period"])

    def inverter_links(self) -> list[InverterLink]:
        """Every inverter the gateway serves, in order, with its own link settings.

        ``[[inverters]]`` entries if given (each inherits what it leaves out from
        ``[inverter]``), else one per ``[inverter] units`` (default ``[unit]``).
        The first inverter's name is ``inverter.name`` (else ``mms.ld_inst``); the others are
        ``INV<n>`` unless an entry names its own.
        """
        return list(self.links)


def link_timeout(link: Mapping[str, Any], poll_period: float | str) -> float:
    """Seconds per transaction: the link's ``timeout``, or 40 % of the poll period
    (with ``"auto"``: enough for the longest read at the link's baud rate)."""
    t = link["timeout"]
    if t is not None:
        return t
    if poll_period == "auto":
        from inverter_agent.core.pollrate import auto_timeout

        return auto_timeout(link)
    return round(max(0.05, 0.4 * float(poll_period)), 3)


@dataclass(frozen=True, slots=True)
class InverterLink:
    """One inverter: its logical device, unit id and link settings (``[inverter]`` keys)."""

    ld_inst: str
    unit: int
    settings: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The inverter's name in the core (protocols may serve it under it: MMS uses it
        as the logical device instance)."""
        return self.ld_inst

    @property
    def link(self) -> tuple[str, str]:
        """What identifies the wire: inverters with the same one share a transport."""
        if self.settings["modbus_tcp"]:
            return ("tcp", self.settings["modbus_tcp"])
        return ("rtu", self.settings["modbus_rtu"] or "")


def _coerce(where: str, key: Key, value: Any) -> Any:
    if value is None:
        return None
    if key.words and isinstance(value, str):
        if value in key.words:
            return value
        raise ConfigError(f"{where}: expected {key.allowed()}, got {value!r}")
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, key.type) or isinstance(value, bool) and key.type is not bool:
        raise ConfigError(f"{where}: expected {key.allowed()}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {key.allowed()}")
    if key.min is not None and value < key.min or key.max is not None and value > key.max:
        raise ConfigError(f"{where}: {value!r} is out of range; allowed: {key.allowed()}")
    if key.check is not None and (msg := key.check(value)) is not None:
        raise ConfigError(f"{where}: {value!r} is not valid; allowed: {msg}")
    return value


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def board_dirs() -> list[str]:
    """Where ``--board NAME`` looks for ``NAME.toml``, in order."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = [os.environ.get("INVERTER_AGENT_BOARD_DIR", ""),
            os.path.join(os.environ.get("INVERTER_AGENT_CONFIG_DIR", DEFAULT_CONFIG_DIR),
                         "boards"),
            os.path.join(here, "board-configs")]
    return [d for d in dirs if d]


def board_path(name: str) -> str:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--board {name!r}: a board name is letters, digits, - and _")
    for d in board_dirs():
        p = os.path.join(d, f"{name}.toml")
        if os.path.exists(p):
            return p
    known = sorted({f[:-5] for d in board_dirs() if os.path.isdir(d)
                    for f in os.listdir(d) if f.endswith(".toml")})
    raise ConfigError(f"--board {name!r}: no such board; known: {', '.join(known) or 'none'}")


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None,
         board: str | None = None) -> Config:
    """Defaults, then the board file (``board``: a name or a path), then the config file
    ``path``, then ``overrides`` ({"section.key": value}); every layer validated."""
    values: dict[str, dict[str, Any]] = {s: {k: copy.deepcopy(key.default)
                                             for k, key in keys.items()}
                                         for s, keys in SCHEMA.items()}
    sources: dict[str, str] = {}
    errors: list[str] = []  # every error of every layer, reported together
    if board is not None:
        try:
            bpath = board if board.endswith(".toml") else board_path(board)
            _apply(bpath, _read_toml(bpath), values, sources, errors)
        except ConfigError as exc:
            errors.append(str(exc))
    origin = "defaults"
    if path is not None:
        origin = path
        try:
            _apply(path, _read_toml(path), values, sources, errors)
        except ConfigError as exc:
            errors.append(str(exc))
    _overrides(overrides, values, sources, errors)
    if not errors:  # the checks across keys need every key valid
        try:
            return _finish(origin, values, sources)
        except ConfigError as exc:
            errors.append(str(exc))
    raise config_errors(errors)


def _apply(origin: str, raw: Mapping[str, Any], values: dict[str, dict[str, Any]],
           sources: dict[str, str], errors: list[str]) -> None:
    for section, body in raw.items():
        if section == "inverters":
            try:
                values["inverters"] = _entries(origin, body, errors)
                sources["inverters"] = origin
            except ConfigError as exc:
                errors.append(str(exc))
            continue
        if section not in SCHEMA:
            errors.append(f"{origin}: unknown section [{section}] (probably a typo); "
                          f"{_did_you_mean(section, [*SCHEMA, 'inverters'])}"
                          f"known: {', '.join(SCHEMA)}, [[inverters]]")
            continue
        if not isinstance(body, dict):
            errors.append(f"{origin}: [{section}] must be a table")
            continue
        for k, v in body.items():
            if k not in SCHEMA[section]:
                errors.append(f"{origin}: [{section}] unknown key {k!r} (probably a typo); "
                              f"{_did_you_mean(k, list(SCHEMA[section]))}"
                              f"known: {', '.join(SCHEMA[section])}")
                continue
            try:
                values[section][k] = _coerce(f"{origin}: [{section}] {k}", SCHEMA[section][k],
                                             v)
                sources[f"{section}.{k}"] = origin
            except ConfigError as exc:
                errors.append(str(exc))
        if section == "inverter":
            _one_link(body.keys(), values)


_LINKS = ("modbus_tcp", "modbus_rtu")


def _entries(origin: str, body: Any, errors: list[str]) -> list[dict[str, Any]]:
    """Validate ``[[inverters]]``: a list of tables of :data:`INVERTER_ENTRY` keys."""
    if not isinstance(body, list) or not body or not all(isinstance(e, dict) for e in body):
        raise ConfigError(f"{origin}: inverters must be one or more [[inverters]] tables")
    out = []
    for i, entry in enumerate(body, 1):
        where = f"{origin}: [[inverters]] #{i}"
        checked = {}
        for k, v in entry.items():
            if k not in INVERTER_ENTRY:
                errors.append(f"{where} unknown key {k!r} (probably a typo); "
                              f"{_did_you_mean(k, list(INVERTER_ENTRY))}"
                              f"known: {', '.join(INVERTER_ENTRY)}")
                continue
            try:
                checked[k] = _coerce(f"{where} {k}", INVERTER_ENTRY[k], v)
            except ConfigError as exc:
                errors.append(str(exc))
        if all(k in checked for k in _LINKS):
            errors.append(f"{where}: give modbus_tcp or modbus_rtu, not both")
        out.append(checked)
    return out


def _one_link(set_here, values: dict[str, dict[str, Any]]) -> None:
    """A layer that names one inverter link replaces the other from a lower layer."""
    here = [k for k in _LINKS if k in set_here]
    if len(here) == 1:
        other = _LINKS[1 - _LINKS.index(here[0])]
        values["inverter"][other] = None


def _overrides(overrides: Mapping[str, Any] | None, values: dict[str, dict[str, Any]],
               sources: dict[str, str], errors: list[str]) -> None:
    for dotted, v in (overrides or {}).items():
        if v is None:
            continue
        section, k = dotted.split(".", 1)
        flag = FLAGS.get(dotted, "--" + k.replace("_", "-"))
        try:
            values[section][k] = _coerce(f"command line {flag}", SCHEMA[section][k], v)
            sources[dotted] = "command line"
        except ConfigError as exc:
            errors.append(str(exc))
    _one_link([d.split(".", 1)[1] for d, v in (overrides or {}).items()
               if v is not None and d.startswith("inverter.")], values)


def _finish(origin: str, values: dict[str, dict[str, Any]], sources: dict[str, str]) -> Config:
    inv = values["inverter"]
    if inv["modbus_tcp"] and inv["modbus_rtu"]:
        raise ConfigError(f"{origin}: [inverter] give modbus_tcp or modbus_rtu, not both")
    links = _resolve_links(origin, values, sources)
    period = values["agent"]["poll_period"]
    # "auto": the transaction timeout fits the link and the period fits the cycles
    # (pollrate); a failed poll ends within timeout x (retries + 1) either way.
    for link in links if period != "auto" else ():
        budget = link_timeout(link.settings, period) * (link.settings["retries"] + 1)
        if budget > period * 3:
            where = sources.get("inverter.timeout", sources.get("agent.poll_period", origin))
            raise ConfigError(
                f"{where}: [inverter] timeout x (retries + 1) = {budget:.2f} s is more than "
                f"three poll periods ({period} s): a dead link would go unseen for too long; "
                "lower timeout or retries, or raise agent.poll_period")
    revert = values["functions"]["revert_timeout"]
    if revert != "auto" and period != "auto" and revert < 3 * period:
        where = sources.get("functions.revert_timeout", origin)
        raise ConfigError(
            f"{where}: [functions] revert_timeout = {revert} s is less than three poll periods "
            f"({period} s): the gateway could not refresh the timers in time; allowed: "
            f"{max(REVERT_MIN_S, 3 * period)} <= value <= {REVERT_MAX_S} or 'auto'")
    _check_meter(origin, values, sources, links)
    return Config(values, sources, tuple(links))


def _check_meter(origin: str, values: Mapping[str, Any], sources: Mapping[str, str],
                 links: list[InverterLink]) -> None:
    """``[meter]``: a unit id, one link, and not an inverter's unit on the same wire."""
    m = values.get("meter") or {}
    if not m.get("enabled"):
        return

    def where(key: str) -> str:
        return sources.get(f"meter.{key}", sources.get("meter.enabled", origin))

    if m["unit"] is None:
        raise ConfigError(f"{where('unit')}: [meter] unit: required when the meter is "
                          "enabled; allowed: 1 <= value <= 247")
    taken = {values["plant"]["ld_inst"]: "the plant view",
             **{lk.ld_inst: f"inverter {lk.ld_inst}" for lk in links}}
    if m["name"] in taken:
        raise ConfigError(f"{where('name')}: [meter] name {m['name']!r} is already "
                          f"{taken[m['name']]}'s logical device; give the meter its own")
    own = [k for k in ("modbus_tcp", "modbus_rtu") if m[k]]
    if m["link"] == "own" and len(own) != 1:
        raise ConfigError(f"{where('link')}: [meter] link = 'own': give modbus_tcp or "
                          "modbus_rtu (one of them)")
    if m["link"] == "inverter":
        if own:
            raise ConfigError(f"{where(own[0])}: [meter] {own[0]} is set but link = "
                              "'inverter'; set link = 'own' to use it")
        if links and links[0].link[1]:
            clash = [lk for lk in links if lk.link == links[0].link and lk.unit == m["unit"]]
            if clash:
                raise ConfigError(f"{where('unit')}: [meter] unit {m['unit']} is inverter "
                                  f"{clash[0].ld_inst}'s unit on {clash[0].link[1]}; allowed: "
                                  "another unit id, 1 <= value <= 247")


def _resolve_links(origin: str, values: Mapping[str, Any],
                   sources: Mapping[str, str]) -> list[InverterLink]:
    base = {k: v for k, v in values["inverter"].items() if k not in ("units", "name")}
    entries = values.get("inverters")
    where = sources.get("inverters", origin)
    if entries:
        raw = []
        for e in entries:
            merged = {**base, **{k: v for k, v in e.items() if k != "ld_inst"}}
            _one_link(e.keys(), {"inverter": merged})
            raw.append((e.get("ld_inst"), merged))
    else:
        where = sources.get("inverter.units", origin)
        units = values["inverter"]["units"] or [values["inverter"]["unit"]]
        raw = [(None, {**base, "unit": u}) for u in units]
    first = values["inverter"]["name"] or values.get("mms", {}).get("ld_inst") or "INV1"
    links = [InverterLink(ld or (first if i == 0 else f"INV{i + 1}"),
                          settings["unit"], settings)
             for i, (ld, settings) in enumerate(raw)]
    seen_ld: dict[str, int] = {values["plant"]["ld_inst"]: 0}
    seen_unit: set[tuple[tuple[str, str], int]] = set()
    wires: dict[tuple[str, str], InverterLink] = {}
    for n, link in enumerate(links, 1):
        if link.ld_inst in seen_ld:
            other = "the plant view" if seen_ld[link.ld_inst] == 0 else \
                f"inverter #{seen_ld[link.ld_inst]}"
            raise ConfigError(f"{where}: inverter #{n}: logical device {link.ld_inst!r} is "
                              f"already used by {other}; give each its own ld_inst")
        seen_ld[link.ld_inst] = n
        if (link.link, link.unit) in seen_unit:
            raise ConfigError(f"{where}: inverter #{n}: unit {link.unit} on {link.link[1]} is "
                              "listed twice")
        seen_unit.add((link.link, link.unit))
        first = wires.setdefault(link.link, link)
        for k in LINK_KEYS:
            if link.link[1] and first.settings[k] != link.settings[k]:
                raise ConfigError(
                    f"{where}: inverter #{n} ({link.ld_inst}) shares {link.link[1]} with "
                    f"{first.ld_inst} but sets {k} = {link.settings[k]!r} against "
                    f"{first.settings[k]!r}: one wire has one {k}")
    if len(links) > 1 and any(not link.link[1] for link in links):
        raise ConfigError(f"{where}: every inverter needs a link: modbus_tcp or modbus_rtu "
                          "(in [inverter] or its [[inverters]] entry)")
    return links


def file_errors(cfg: Config, sections: tuple[str, ...] | None = None) -> list[str]:
    """Each set file key (``Key.path``) whose file is missing or unreadable: the file it
    was configured in, the key and the path (``sections``: only these)."""
    errors = []
    for section, keys in SCHEMA.items():
        if sections is not None and section not in sections:
            continue
        for k, key in keys.items():
            value = cfg.values[section][k] if key.path else None
            for p in [value] if isinstance(value, str) else value or ():
                where = cfg.sources.get(f"{section}.{k}", "defaults")
                if not os.path.isfile(p):
                    errors.append(f"{where}: [{section}] {k}: {p}: no such file")
                elif not os.access(p, os.R_OK):
                    errors.append(f"{where}: [{section}] {k}: {p}: not readable by this user")
    return errors


def check(path: str | None = None, overrides: Mapping[str, Any] | None = None,
          board: str | None = None) -> list[str]:
    """Every error of a config, as ``inverter-agent check-config`` reports them: the
    schema's (each key's range, unknown keys with the closest known one, the checks
    across keys), then missing or unreadable files; empty when clean."""
    try:
        cfg = load(path, overrides, board)
    except ConfigError as exc:
        return exc.errors
    return file_errors(cfg)


def default_config_path() -> str | None:
    """The system config file if present (``$INVERTER_AGENT_CONFIG_DIR`` overrides the dir)."""
    folder = os.environ.get("INVERTER_AGENT_CONFIG_DIR", DEFAULT_CONFIG_DIR)
    path = os.path.join(folder, "agent.toml")
    return path if os.path.exists(path) else None
