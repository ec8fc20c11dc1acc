"""`make run` installs the gateway's dependencies only; the test tools come with
`make install` / `make test` (issue 23: a 409 MB .venv for a demo)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dry_run(target: str, venv: str) -> str:
    return subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=30).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_run_installs_no_test_extras(tmp_path):
    venv = str(tmp_path / "fresh-venv")  # never created: make -n only prints
    run = _dry_run("run", venv)
    assert "pip install -q -e .\n" in run and "[test]" not in run
    assert "inverter-agent run --simulate" in run
    test = _dry_run("test", venv)
    assert "pip install -q -e '.[test]'" in test and "pytest" in test
