"""Which libiec61850 serves MMS: ``mms.libiec61850`` (or $INVERTER_AGENT_LIBIEC61850)
loads a library from any path, as on armhf where pyiec61850-ng has no wheel and a
build of the official release is used; its version is checked at start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from open61850.mms import MmsClient

from inverter_agent.adapters.mms import _native as nat
from tests.e2e.conftest import free_port

ROOT = str(Path(__file__).resolve().parents[3])



def _run(tmp_path, library: str, *extra: str, wait: bool = False):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[mms]\nlibiec61850 = "{library}"\n')
    port = free_port()
    args = [sys.executable, "-m", "inverter_agent.cli", "run", "--config", str(cfg),
            "--mms-port", str(port), "--state-dir", str(tmp_path / "state"), *extra]
    if not wait:
        return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    # The log goes to a file: a pipe nobody reads while the agent runs can fill and
    # block its logging (and so its stop) on a slow machine.
    log = open(tmp_path / "agent.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, text=True, cwd=ROOT)
    log.close()  # the child keeps its own descriptor
    return proc, port


def _fake_library(tmp_path, body: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in library")
    src = tmp_path / "fake.c"
    src.write_text(body)
    out = tmp_path / "libiec61850.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True,
                   capture_output=True, timeout=60)
    return str(out)


def test_a_copy_of_the_bundled_library_from_another_path_serves_mms(tmp_path):
    bundled = nat.library_path()
    other = tmp_path / "usr-local-lib"
    other.mkdir()
    copy = other / "libiec61850.so"
    shutil.copy(bundled, copy)
    proc, port = _run(tmp_path, str(copy), "--simulate", wait=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "agent.log").read_text()
            try:
                with MmsClient.connect("127.0.0.1", port, timeout=2) as client:
                    value = client.read("GWINV1/LLN0.Beh.stVal [ST]").value
                break
            except OSError:
                assert time.monotonic() < deadline, "MMS never answered"
                time.sleep(0.1)
        assert value is not None
        with open(f"/proc/{proc.pid}/maps") as fh:
            maps = fh.read()
        assert str(copy) in maps  # the copy serves...
        assert bundled not in maps  # ...and the bundled one was never loaded,
        assert "_pyiec61850" not in maps  # nor the SWIG module: armhf has neither
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the agent did not stop within 15 s of SIGTERM:\n"
                                 + (tmp_path / "agent.log").read_text()[-4000:]) from None


def test_the_environment_variable_names_the_library_too(tmp_path):
    copy = tmp_path / "libiec61850.so.1.6.1"
    shutil.copy(nat.library_path(), copy)
    out = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom inverter_agent.adapters.mms import _native as n\n"
         "n.lib(); print(n.version(), n.library_path(), 'pyiec61850' in sys.modules)"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, nat.ENV_LIBRARY: str(copy)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.6.1", str(copy), "False"]


def test_a_wrong_path_stops_the_start_with_a_clear_error(tmp_path):
    r = _run(tmp_path, str(tmp_path / "nowhere" / "libiec61850.so"),
             "--modbus-tcp", "127.0.0.1:9")
    assert r.returncode == 2
    assert "mms.libiec61850" in r.stderr and "cannot be loaded" in r.stderr, r.stderr


def test_an_old_version_stops_the_start_with_a_clear_error(tmp_path):
    path = _fake_library(tmp_path, 'const char* LibIEC61850_getVersionString(void)'
                                   ' { return "1.5.2"; }\n')
    r = _run(tmp_path, path, "--modbus-tcp", "127.0.0.1:9")
    assert r.returncode == 2
    assert "version 1.5.2" in r.stderr and "1.6.0 or later" in r.stderr, r.stderr
    assert "docs/install.md" in r.stderr


def test_a_library_that_is_not_libiec61850_is_refused(tmp_path):
    path = _fake_library(tmp_path, "int something_else(void) { return 0; }\n")
    r = _run(tmp_path, path, "--modbus-tcp", "127.0.0.1:9")
    assert r.returncode == 2 and "not a libiec61850" in r.stderr, r.stderr


def test_armhf_installs_without_pyiec61850():
    import tomllib

    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        deps = [Requirement(d) for d in tomllib.load(fh)["project"]["dependencies"]]
    (iec,) = [r for r in deps if r.name == "pyiec61850-ng"]
    assert iec.marker is not None
    assert not iec.marker.evaluate({"platform_machine": "armv7l"})  # BeagleBone Black
    assert iec.marker.evaluate({"platform_machine": "x86_64"})
    assert iec.marker.evaluate({"platform_machine": "aarch64"})
