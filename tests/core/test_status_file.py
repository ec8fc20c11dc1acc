"""status.json is rewritten every 5 s: atomically, but never fsynced onto the SD card;
durable state (settings, schedules, audit) still is."""

from __future__ import annotations

import json
import os

from inverter_agent.core import files
from inverter_agent.core.agent import write_status_file


def _count_fsyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    return calls


def test_the_status_file_is_replaced_whole_without_fsync(tmp_path, monkeypatch):
    calls = _count_fsyncs(monkeypatch)
    for n in range(3):
        write_status_file(str(tmp_path), {"time": n, "link_up": True},
                          {"extra": lambda: {"n": 1}})
    assert calls == []
    with open(tmp_path / "status.json") as fh:
        assert json.load(fh) == {"time": 2, "link_up": True, "extra": {"n": 1}}
    assert os.listdir(tmp_path) == ["status.json"]  # no temporary file left behind


def test_durable_files_are_still_fsynced(tmp_path, monkeypatch):
    calls = _count_fsyncs(monkeypatch)
    files.write_atomic(str(tmp_path / "settings.json"), b"{}")
    assert len(calls) == 2  # the file, then its directory
