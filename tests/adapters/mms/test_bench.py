"""bench/mms_load.py works against the demo server (small, bounded run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "bench/mms_load.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_load_generator_counts_reads(server_process):
    run = _bench("--host", "127.0.0.1", "--port", str(server_process.port),
                 "--ref", "GWINV1/MMXU1.TotW.mag.f", "--procs", "2", "--seconds", "0.5",
                 "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["errors"] == 0
    assert len(result["per_process"]) == 2 and min(result["per_process"]) > 0
    # counted: the total is the processes' reads over the window (how many a second the
    # server serves is `make bench`'s figure, sections "mms" and "clients")
    assert result["reads"] == sum(result["per_process"])
    assert result["reads_per_s"] > 0
    assert result["reads_per_s"] == pytest.approx(result["reads"] / result["seconds"], rel=0.01)


def test_load_generator_reports_a_missing_object(server_process):
    run = _bench("--port", str(server_process.port), "--ref", "GWINV1/MMXU1.Nope.mag.f",
                 "--procs", "1", "--seconds", "0.5", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["reads"] == 0 and result["errors"] > 0


def test_load_generator_stays_on_loopback():
    run = _bench("--host", "192.0.2.1", "--procs", "1", "--seconds", "0.5")
    assert run.returncode != 0 and "loopback" in run.stderr


def test_settings_bench_prints_its_figures():
    run = subprocess.run([sys.executable, "bench/mms_settings.py", "--seconds", "0.3", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    # Every phase ran and was counted; how fast is `make bench`'s figure (section
    # "settings").
    assert result["writes_per_s"] > 0 and result["write_errors"] == 0
    assert result["refused_writes_per_s"] > 0 and result["refused_errors"] == 0
    assert result["operates_per_s"] > 0 and result["operate_errors"] == 0
    assert result["reports"] > 0 and isinstance(result["report_latency_median_ms"], float)
