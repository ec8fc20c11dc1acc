"""The operator event log: trips, cease to energize, reconnects, setting changes.

JSON lines on disk, bounded in size: when the current file passes
``max_bytes`` it is renamed to ``events.jsonl.1`` (older ones shift up) and at
most ``keep`` old files stay. Each line is flushed and fsynced, because the
entry that matters most (a trip) is often followed by a power loss.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any

from inverter_agent.core.files import append_line

log = logging.getLogger(__name__)


class EventLog:
    def __init__(self, folder: str | None, max_bytes: int = 1 << 20, keep: int = 3,
                 memory: int = 200) -> None:
        if max_bytes < 1024:
            raise ValueError("event log max_bytes must be at least 1024")
        self.path = os.path.join(folder, "events.jsonl") if folder else None
        self.max_bytes = max_bytes
        self.keep = max(0, keep)
        self.recent: deque[dict[str, Any]] = deque(maxlen=memory)
        self._lock = threading.Lock()

    def record(self, kind: str, detail: str = "", t: float | None = None, **fields: Any) -> None:
        entry = {"time": time.time() if t is None else t, "kind": kind, "detail": detail,
                 **fields}
        log.info("event %s: %s", kind, detail)
        with self._lock:
            self.recent.append(entry)
            if self.path is None:
                return
            try:
                self._append(json.dumps(entry, default=str) + "\n")
            except OSError as exc:
                log.warning("event log %s: %s", self.path, exc)

    def _append(self, line: str) -> None:
        assert self.path is not None
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            size = 0
        if size + len(line) > self.max_bytes and size:
            self._rotate()
        append_line(self.path, line)

    def _rotate(self) -> None:
        assert self.path is not None
        if self.keep == 0:
            os.remove(self.path)
            return
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i}")

    def read(self) -> list[dict[str, Any]]:
        """All entries on disk, oldest first (for the CLI and tests)."""
        if self.path is None:
            return list(self.recent)
        entries: list[dict[str, Any]] = []
        for i in range(self.keep, -1, -1):
            p = self.path if i == 0 else f"{self.path}.{i}"
            if os.path.exists(p):
                with open(p, encoding="utf-8") as fh:
                    entries.extend(json.loads(line) for line in fh if line.strip())
        return entries
