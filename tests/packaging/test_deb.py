"""`make deb`: the package built, installed, upgraded, removed and purged in a
throw-away Debian root (see `debian_root.py` and `test_system_install.py`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .debian_root import (
    AGENT,
    APP,
    CONF,
    KEY,
    PYTHON,
    REPO,
    RULE,
    UNIT,
    UPGRADE_VERSION,
    USER,
    VERSION,
    WANTS,
    fresh_root,
    in_root,
    mode_owner,
    put_installer_data,
    slow,
)

# --- make deb -------------------------------------------------------------------------


def test_deb_build_refuses_a_bad_compression_level_before_building(tmp_path: Path):
    r = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "deb",
                        "DEB_VERSION=1.0", f"DEB_OUT={tmp_path}", "DEB_XZ_LEVEL=12"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "DEB_XZ_LEVEL must be 0-9: 12" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing built


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
