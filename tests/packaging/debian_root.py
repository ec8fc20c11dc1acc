"""The throw-away Debian root the packaging tests install into (shared by
`test_system_install.py` and `test_deb.py`): see `test_system_install.py`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def base_root_tarball() -> Path:
    """The tarball of a minimal root of the host's Debian release (built once, cached)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: chroot, dpkg and user accounts in a throw-away Debian root")
    suite = _host_suite()
    tarball = CACHE / f"{suite}-minbase-{'-'.join(INCLUDE)}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    # Both packaging modules need it, perhaps in two pytest workers at once: one builds.
    with open(CACHE / "base-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_base_root(suite, tarball)


def _build_base_root(suite: str, tarball: Path) -> Path:
    if tarball.exists():  # only a finished root is ever given this name
        return tarball
    debootstrap = _debootstrap()
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
    r = subprocess.run(chroot_argv(root, argv, user), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, env={**ROOT_ENV, **(env or {})},
                       timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(argv)} in {root} exited {r.returncode}:\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def chroot_argv(root: Path, argv: tuple[str, ...] | list[str], user: str | None) -> list[str]:
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
