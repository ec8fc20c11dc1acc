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
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from inverter_agent import config

from .debian_root import (
    AGENT,
    APP,
    CONF,
    PYTHON,
    REPO,
    ROOT_ENV,
    RULE,
    UNIT,
    USER,
    WANTS,
    chroot_argv,
    free_port,
    fresh_root,
    in_root,
    make,
    mode_owner,
    put_installer_data,
    slow,
)

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
        proc = subprocess.Popen(chroot_argv(root, argv, USER), stdout=log,
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
