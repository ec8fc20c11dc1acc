"""`make install-system` and `make deb`, installed into a throw-away Debian root.

The root is a minimal debootstrap of this machine's own Debian release plus
python3 (what the package runs on), python3-venv and make (what `make
install-system` needs on a gateway) and systemd (for `systemd-analyze verify`
with the target's own systemd). It is built once and cached as a tarball in
.cache/packaging/ (git-ignored); every test that changes a root unpacks a fresh
one. Commands run in the root through `unshare --mount --mount-proc`: /proc is
mounted in a private mount namespace that goes away with the process, so no
mount is ever left behind on the host. The chroot shares the host's network, so
the host connects to the agent inside it over loopback.

Needs root (chroot, dpkg, mounts) and debootstrap (installed with apt-get when
missing); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from inverter_agent import config

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "packaging"
INCLUDE = ("python3", "python3-venv", "make", "systemd")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
UPGRADE_VERSION = VERSION + "+upgrade1"
# The interpreter the venv links to and the package depends on: the host's own,
# python3.11 on bookworm (the tests build for the host's Debian release).
PYTHON = os.path.basename(os.path.realpath("/usr/bin/python3"))

APP = "opt/inverter-agent"
AGENT = "/opt/inverter-agent/venv/bin/inverter-agent"
UNIT = "lib/systemd/system/inverter-agent.service"
RULE = "lib/udev/rules.d/99-inverter-agent-rs485.rules"
CONF = "etc/inverter-agent/agent.toml"
KEY = "etc/inverter-agent/tls/device.key"
SETTINGS = "var/lib/inverter-agent/settings.json"
WANTS = "etc/systemd/system/multi-user.target.wants/inverter-agent.service"
USER = "inverter-agent"
# A clean environment inside the root: nothing of the host's venv or pyenv.
ROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
            "DEBIAN_FRONTEND": "noninteractive"}

slow = pytest.mark.timeout(600)


# --- the Debian root ------------------------------------------------------------------


def _host_suite() -> str:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value.strip('"')
    suite = fields.get("VERSION_CODENAME", "")
    if fields.get("ID") != "debian" or not suite:
        pytest.skip(f"the package is built for the host's Debian release; host is "
                    f"{fields.get('PRETTY_NAME', 'unknown')}")
    return suite


def _mirror(suite: str) -> str:
    """The Debian mirror this machine's apt uses for ``suite``."""
    if os.environ.get("INVERTER_AGENT_DEBIAN_MIRROR"):
        return os.environ["INVERTER_AGENT_DEBIAN_MIRROR"]
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in lists:
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in text.split("\n\n"):
                kv = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith(("#", " ", "\t")):
                        kv[key.strip().lower()] = value.split()
                if ("deb" in kv.get("types", []) and suite in kv.get("suites", [])
                        and kv.get("enabled", ["yes"]) != ["no"] and kv.get("uris")):
                    return kv["uris"][0]
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    return "http://deb.debian.org/debian"


def _debootstrap() -> str:
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("debootstrap is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "debootstrap"]
    r = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=300)
        r = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    found = shutil.which("debootstrap", path="/usr/sbin:/sbin:/usr/bin")
    if r.returncode or not found:
        pytest.skip(f"debootstrap cannot be installed: {r.stderr.strip()[-300:]}")
    return found


def _remove_tree(path: Path) -> None:
    """Remove a root tree; first unmount anything a failed tool left mounted in it."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


@pytest.fixture(scope="module")
def base_root() -> Path:
    """The tarball of a minimal root of the host's Debian release (built once, cached)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: chroot, dpkg and user accounts in a throw-away Debian root")
    suite = _host_suite()
    tarball = CACHE / f"{suite}-minbase-{'-'.join(INCLUDE)}.tar"
    if tarball.exists():  # only a finished root is ever given this name
        return tarball
    debootstrap = _debootstrap()
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE))
    try:
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(INCLUDE)}", suite,
                str(work / "root"), _mirror(suite)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=540)
        if r.returncode:
            pytest.skip(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout[-400:]}"
                        f"{r.stderr[-400:]}")
        part = work / "root.tar"
        subprocess.run(["tar", "-C", str(work / "root"), "--numeric-owner", "-cf", str(part),
                        "."], check=True)
        part.rename(tarball)
    finally:
        _remove_tree(work)
    return tarball


@contextlib.contextmanager
def fresh_root(tarball: Path) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="inverter-agent-root-"))
    try:
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(tarball)],
                       check=True)
        yield root
    finally:
        _remove_tree(root)


def in_root(root: Path, *argv: str, user: str | None = None, check: bool = True,
            timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted into ``root`` (as ``user``), with /proc mounted privately."""
    r = subprocess.run(_chroot_argv(root, argv, user), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, env={**ROOT_ENV, **(env or {})},
                       timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(argv)} in {root} exited {r.returncode}:\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def _chroot_argv(root: Path, argv: tuple[str, ...] | list[str], user: str | None) -> list[str]:
    userspec = [f"--userspec={user}:{user}"] if user else []
    return ["unshare", "--mount", f"--mount-proc={root}/proc", "chroot", *userspec, str(root),
            *argv]


def make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mode_owner(root: Path, rel: str) -> tuple[str, str, str]:
    """(octal mode, user, group) of ``rel``, names as the root itself knows them."""
    out = in_root(root, "stat", "-c", "%a %U %G", "/" + rel).stdout.split()
    return out[0], out[1], out[2]


def put_installer_data(root: Path) -> dict[str, bytes]:
    """What an installer adds after installing: a settings file in the state dir, a
    device key (made by the installed agent itself) and an edit of agent.toml."""
    in_root(root, AGENT, "certs", "request", "--dir", "/etc/inverter-agent/tls",
            "--cn", "GW-TEST")
    (root / SETTINGS).parent.mkdir(parents=True, exist_ok=True)
    (root / SETTINGS).write_text('{"profile": "rule21", "settings": {}}\n')
    conf = (root / CONF).read_text()
    assert "baud = 9600\n" in conf
    (root / CONF).write_text(conf.replace("baud = 9600\n", "baud = 19200\n"))
    return {rel: (root / rel).read_bytes() for rel in (SETTINGS, KEY, CONF)}


# --- the default config ---------------------------------------------------------------


def test_default_config_passes_the_agents_validation():
    cfg = config.load(str(REPO / "packaging" / "agent.toml"))
    assert cfg["inverter.modbus_rtu"] == "/dev/rs485-inverter"  # the udev rule's name
    assert cfg["inverter.modbus_tcp"] is None
    assert cfg["mms.host"] == "127.0.0.1"  # plain MMS stays on loopback
    assert cfg["security.tls_cert"] is None


# --- make install-system --------------------------------------------------------------


class Staged(NamedTuple):
    root: Path
    created_user: bool  # as found right after the install, before any test ran
    created_state_dir: bool


def test_deb_build_refuses_a_bad_compression_level_before_building(tmp_path: Path):
    r = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "deb",
                        "DEB_VERSION=1.0", f"DEB_OUT={tmp_path}", "DEB_XZ_LEVEL=12"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "DEB_XZ_LEVEL must be 0-9: 12" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing built


@pytest.fixture(scope="module")
def system_root(base_root: Path) -> Iterator[Staged]:
    """A fresh root with `make install-system DESTDIR=<root>` done."""
    with fresh_root(base_root) as root:
        make("install-system", f"DESTDIR={root}")
        yield Staged(root, f"\n{USER}:" in "\n" + (root / "etc/passwd").read_text(),
                     (root / "var/lib/inverter-agent").exists())


@slow
def test_install_system_lays_out_program_unit_rule_boards_and_config(system_root: Staged):
    root = system_root.root
    assert os.access(root / AGENT.lstrip("/"), os.X_OK)
    assert (root / UNIT).read_bytes() == (REPO / "systemd/inverter-agent.service").read_bytes()
    assert (root / RULE).read_bytes() == \
        (REPO / "systemd/99-inverter-agent-rs485.rules").read_bytes()
    assert (root / CONF).read_bytes() == (REPO / "packaging/agent.toml").read_bytes()
    boards = sorted(p.name for p in (root / "etc/inverter-agent/boards").iterdir())
    assert boards == sorted(p.name for p in (REPO / "board-configs").glob("*.toml"))
    assert (root / APP / "README.md").is_file()
    # On PATH, with the docs and the device profiles (issue 23)
    assert os.readlink(root / "usr/bin/inverter-agent") == AGENT
    assert sorted(p.name for p in (root / APP / "docs").iterdir()) == \
        sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert sorted(p.name for p in (root / APP / "share/profiles").iterdir()) == \
        sorted(p.name for p in (REPO / "simulator/profiles").glob("*.json"))
    # The venv is valid at its final path: no trace of where it was built.
    venv = root / APP / "venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert str(root) not in cfg and "/opt/inverter-agent/venv" in cfg
    assert (venv / "bin/inverter-agent").read_text().startswith(
        "#!/opt/inverter-agent/venv/bin/python")
    assert os.readlink(venv / "bin" / PYTHON) == f"/usr/bin/{PYTHON}"
    # DESTDIR only stages files: no user, no state directory.
    assert not system_root.created_user and not system_root.created_state_dir


@slow
def test_installed_agent_runs_from_its_final_path_in_the_chroot(system_root: Staged):
    root = system_root.root
    r = in_root(root, AGENT, "--help")
    assert "run the gateway" in r.stdout
    # Third-party extension modules load with the root's own python3.11 and libc.
    in_root(root, "/opt/inverter-agent/venv/bin/python", "-c",
            "import pyiec61850, cryptography.hazmat.bindings._rust, serial, pymodbus")


@slow
def test_installed_agent_serves_the_simulator_as_the_service_user_and_stops_on_sigterm(
        system_root: Staged):
    root = system_root.root
    # What install-system does on a live system (and the package's postinst).
    in_root(root, "sh", "/opt/inverter-agent/share/setup-system.sh")
    assert mode_owner(root, "var/lib/inverter-agent") == ("750", USER, USER)
    port = free_port()
    argv = [AGENT, "run", "--config", "/etc/inverter-agent/agent.toml", "--state-dir",
            "/var/lib/inverter-agent", "--simulate", "--mms-port", str(port)]
    status = root / "var/lib/inverter-agent/status.json"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(_chroot_argv(root, argv, USER), stdout=log,
                                stderr=subprocess.STDOUT, env=ROOT_ENV)
        try:
            deadline = time.monotonic() + 60
            served = linked = False
            while time.monotonic() < deadline and proc.poll() is None and not (
                    served and linked):
                with contextlib.suppress(OSError), \
                        socket.create_connection(("127.0.0.1", port), timeout=1):
                    served = True
                with contextlib.suppress(OSError, ValueError):
                    linked = json.loads(status.read_text())["link_up"] is True
                time.sleep(0.2)
            # unshare and chroot exec the agent: this pid is the agent itself.
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read()
    assert served, f"MMS never listened on 127.0.0.1:{port}:\n{output}"
    assert linked, f"status.json never showed the simulated inverter's link up:\n{output}"
    assert rc == 0, output
    assert "stopped" in output
    assert mode_owner(root, "var/lib/inverter-agent/status.json")[1] == USER


@slow
def test_unit_passes_systemd_analyze_verify_in_the_target_root(system_root: Staged):
    """The target's own systemd checks the installed unit: its syntax, the units it
    names (network-online.target, multi-user.target) and that ExecStart exists and is
    executable, all as paths inside the root."""
    root = system_root.root
    r = in_root(root, "systemd-analyze", "verify", "/" + UNIT, check=False)
    output = (r.stdout + r.stderr).strip()
    ours = [line for line in output.splitlines() if "inverter-agent" in line]
    assert r.returncode == 0 and not ours, output
    # The check is real: the same unit with an ExecStart that is not there fails.
    control = root / "tmp/inverter-agent-control.service"
    control.write_text((root / UNIT).read_text().replace(
        "/opt/inverter-agent/venv/bin/inverter-agent", "/opt/inverter-agent/missing"))
    try:
        r = in_root(root, "systemd-analyze", "verify",
                    "/tmp/inverter-agent-control.service", check=False)
    finally:
        control.unlink()
    assert r.returncode != 0 and "/opt/inverter-agent/missing" in r.stdout + r.stderr


def network_env(root: Path) -> dict[str, str]:
    """Let pip inside the root reach PyPI the way the host does: the host's resolver,
    CA bundle (a TLS-inspecting proxy signs with its own CA) and proxy settings."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    env = {k: v for k, v in os.environ.items()
           if k.lower() in ("http_proxy", "https_proxy", "no_proxy")
           or (k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL") and "file:" not in v)}
    bundle = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
                  or "/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copyfile(bundle, root / "etc/host-ca-certificates.crt")
        env["PIP_CERT"] = "/etc/host-ca-certificates.crt"
    return env


@slow
def test_make_install_system_on_the_target_sets_it_up_and_again_keeps_its_data(
        base_root: Path):
    """`make install-system` as root inside the target, as an installer runs it on a
    gateway: no systemd or udev running there, which it must take in its stride."""
    with fresh_root(base_root) as root:
        src = root / "usr/src/inverter-agent"
        src.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md", "LICENSE", "Makefile", "hal",
                     "inverter_agent", "simulator", "packaging", "systemd", "board-configs",
                     "docs"):
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, src / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / name, src / name)
        env = network_env(root)
        install = ("make", "-C", "/usr/src/inverter-agent", "install-system")
        r = in_root(root, *install, env=env, timeout=400)
        assert "installed; edit /etc/inverter-agent/agent.toml" in r.stdout
        groups = in_root(root, "id", "-nG", USER).stdout.split()
        assert groups[0] == USER and "dialout" in groups
        assert mode_owner(root, "var/lib/inverter-agent") == ("750", USER, USER)
        assert mode_owner(root, "etc/inverter-agent/tls") == ("750", "root", USER)
        assert mode_owner(root, CONF) == ("640", "root", USER)
        assert not (root / WANTS).exists()  # enabling is the installer's step here

        kept = put_installer_data(root)
        marker = root / APP / "venv/marker-of-the-old-venv"
        marker.write_text("")
        r = in_root(root, *install, env=env, timeout=400)
        assert "kept /etc/inverter-agent/agent.toml" in r.stdout
        assert not marker.exists()  # the program was replaced
        assert {rel: (root / rel).read_bytes() for rel in kept} == kept
        assert mode_owner(root, CONF) == ("640", "root", USER)
        assert not list((root / APP).glob("venv.*"))  # no .new / .old left
        in_root(root, AGENT, "--help", user=USER)


# --- make deb -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debs(base_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The package built twice, as VERSION and UPGRADE_VERSION (the builds run side by
    side: they share nothing). Built deep enough that the staging venv's path is longer
    than a shebang may be, as under a CI runner's or pytest worker's deep temp dir: pip
    then writes its scripts with an exec line, and no build path may survive in them."""
    out = tmp_path_factory.mktemp("debs") / ("deep-build-dir-" * 6)
    builds = {v: subprocess.Popen(["make", "-C", str(REPO), "--no-print-directory", "deb",
                                   f"DEB_VERSION={v}", f"DEB_OUT={out / v}",
                                   "DEB_XZ_LEVEL=1"],  # throw-away packages: build fast
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for v in (VERSION, UPGRADE_VERSION)}
    failed = {}
    for version, proc in builds.items():
        output, _ = proc.communicate(timeout=400)
        if proc.returncode:
            # pip's "Location ... ignored" warnings would hide the cause: keep the rest.
            kept = [ln for ln in output.splitlines() if not ln.startswith("WARNING: Location")]
            failed[version] = "\n".join(kept[-40:])
    assert not failed, "\n\n".join(f"{v}:\n{o}" for v, o in failed.items())
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    found = {v: out / v / f"inverter-agent_{v}_{arch}.deb" for v in builds}
    assert all(p.is_file() for p in found.values()), found
    return found


def dpkg_install(root: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    inside = root / "tmp" / deb.name
    shutil.copyfile(deb, inside)
    try:
        return in_root(root, "dpkg", "-i", f"/tmp/{deb.name}")
    finally:
        inside.unlink()


def package_status(root: Path) -> str:
    r = in_root(root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}",
                "inverter-agent", check=False)
    return r.stdout.strip() if r.returncode == 0 else "not known"


@slow
def test_deb_control_declares_dependencies_and_conffiles(debs: dict[str, Path]):
    deb = debs[VERSION]
    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Version", "Depends"],
                           capture_output=True, text=True, check=True).stdout
    assert f"Version: {VERSION}" in field
    depends = [d.strip() for d in field.split("Depends:", 1)[1].split(",")]
    assert PYTHON in depends  # the interpreter the venv links to
    assert any(d.startswith("libc6 (>= 2.") for d in depends), depends
    assert "passwd" in depends  # useradd / groupadd / userdel
    with tempfile.TemporaryDirectory() as ctl:
        subprocess.run(["dpkg-deb", "-e", str(deb), ctl], check=True)
        conffiles = Path(ctl, "conffiles").read_text().split()
        assert "/etc/inverter-agent/agent.toml" in conffiles
        assert all(c.startswith("/etc/") for c in conffiles)
        assert {"postinst", "prerm", "postrm", "md5sums"} <= set(os.listdir(ctl))
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert "root/root" in listing and " ./lib/systemd/system/inverter-agent.service" in listing


@slow
def test_deb_install_creates_user_state_dir_and_enables_unit(
        base_root: Path, debs: dict[str, Path]):
    with fresh_root(base_root) as root:
        dpkg_install(root, debs[VERSION])
        assert package_status(root) == f"ii {VERSION}"
        for rel in (AGENT.lstrip("/"), UNIT, RULE, CONF, "usr/share/doc/inverter-agent/copyright"):
            assert (root / rel).exists(), rel
        groups = in_root(root, "id", "-nG", USER).stdout.split()
        assert groups[0] == USER and "dialout" in groups
        assert in_root(root, "getent", "passwd", USER).stdout.split(":")[6].strip() == \
            "/usr/sbin/nologin"
        assert mode_owner(root, "var/lib/inverter-agent") == ("750", USER, USER)
        assert mode_owner(root, "etc/inverter-agent/tls") == ("750", "root", USER)
        assert mode_owner(root, CONF) == ("640", "root", USER)
        # Enabled for the next boot although systemd is not running in a chroot.
        assert os.readlink(root / WANTS) == "/" + UNIT
        conffiles = in_root(root, "dpkg-query", "-W", "-f", "${Conffiles}",
                            "inverter-agent").stdout
        assert "/etc/inverter-agent/agent.toml" in conffiles
        # Every shipped file is as shipped (nothing rewritten at install, e.g. byte code).
        assert in_root(root, "dpkg", "--verify", "inverter-agent").stdout == ""
        # The service user can load the whole stack.
        in_root(root, "/opt/inverter-agent/venv/bin/python", "-c",
                "import inverter_agent.cli, pyiec61850", user=USER)
        # inverter-agent is on PATH; docs and device profiles are shipped (issue 23)
        assert in_root(root, "inverter-agent", "--version").stdout.startswith("inverter-agent ")
        for rel in ("opt/inverter-agent/docs/install.md", "opt/inverter-agent/docs/embedding.md",
                    "opt/inverter-agent/share/profiles/101-unused-phases-zero.json"):
            assert (root / rel).is_file(), rel


@slow
def test_deb_upgrade_keeps_settings_key_and_edited_config(
        base_root: Path, debs: dict[str, Path]):
    with fresh_root(base_root) as root:
        dpkg_install(root, debs[VERSION])
        kept = put_installer_data(root)
        dpkg_install(root, debs[UPGRADE_VERSION])  # stdin is /dev/null: a prompt fails it
        assert package_status(root) == f"ii {UPGRADE_VERSION}"
        assert {rel: (root / rel).read_bytes() for rel in kept} == kept
        assert mode_owner(root, CONF) == ("640", "root", USER)
        assert mode_owner(root, "var/lib/inverter-agent") == ("750", USER, USER)
        assert mode_owner(root, KEY)[0] == "600"
        assert os.readlink(root / WANTS) == "/" + UNIT
        in_root(root, AGENT, "--help")


@slow
def test_deb_remove_keeps_config_keys_state_and_user(base_root: Path, debs: dict[str, Path]):
    with fresh_root(base_root) as root:
        dpkg_install(root, debs[VERSION])
        kept = put_installer_data(root)
        in_root(root, "dpkg", "-r", "inverter-agent")
        assert package_status(root) == f"rc {VERSION}"  # removed, config files remain
        for rel in (APP, UNIT, RULE, "usr/share/doc/inverter-agent"):
            assert not (root / rel).exists(), rel
        assert {rel: (root / rel).read_bytes() for rel in kept} == kept
        assert in_root(root, "getent", "passwd", USER, check=False).returncode == 0


@slow
def test_deb_purge_leaves_the_root_as_it_was(base_root: Path, debs: dict[str, Path]):
    with fresh_root(base_root) as root:
        def tree() -> set[str]:
            return {os.path.relpath(os.path.join(d, n), root)
                    for d, dirs, files in os.walk(root) for n in dirs + files}

        accounts = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
        before = tree()
        before_accounts = {rel: (root / rel).read_text() for rel in accounts}
        opt_was_empty = not any((root / "opt").iterdir())
        dpkg_install(root, debs[VERSION])
        put_installer_data(root)
        in_root(root, "dpkg", "--purge", "inverter-agent")
        r = in_root(root, "dpkg", "-l", "inverter-agent", check=False)
        assert r.returncode != 0 or not re.search(r"^[a-z]i ", r.stdout, re.M), r.stdout
        assert package_status(root) == "not known"
        assert {rel: (root / rel).read_text() for rel in accounts} == before_accounts
        after = tree()
        assert after - before == set(), "left behind"
        # dpkg removes a directory that no installed package lists once it is
        # empty: /opt, which no Debian package ships, goes with ours when it was empty.
        assert before - after <= ({"opt"} if opt_was_empty else set()), before - after
