"""Append-only, tamper-evident audit log of connections, refusals, settings, controls.

Each entry is one JSON line carrying the SHA-256 of the previous entry, so an
edited, inserted or deleted entry breaks the chain at that point
(:func:`verify`). The log is bounded: when ``audit.jsonl`` passes ``max_bytes``
it becomes ``audit.jsonl.1`` (older files shift up, at most ``keep`` stay) and
the new file's first entry carries the hash of the last entry before the
rotation, so the chain runs across files as long as they are kept. Dropping
the oldest file on rotation is recorded: the first remaining entry says so.

What goes in: who (client address, certificate subject or user, role), what
(action and object), old and new value, when, and the outcome. Never keys,
passwords or certificates: values under names that look like secrets are
replaced by ``"<redacted>"`` before they are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from inverter_agent.files import append_line

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_SECRET_WORDS = ("password", "passwd", "secret", "key", "token", "pem", "private")


def _redact(value: Any, name: str = "") -> Any:
    if any(w in name.lower() for w in _SECRET_WORDS):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and "-----BEGIN" in value:
        return "<redacted>"
    return value


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    def __init__(self, folder: str, max_bytes: int = 4 << 20, keep: int = 5) -> None:
        if max_bytes < 4096:
            raise ValueError("audit log max_bytes must be at least 4096")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "audit.jsonl")
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self._lock = threading.Lock()
        self._seq, self._last = self._tail()

    def _files(self) -> list[str]:
        """Oldest first."""
        out = [f"{self.path}.{i}" for i in range(self.keep, 0, -1)
               if os.path.exists(f"{self.path}.{i}")]
        return out + ([self.path] if os.path.exists(self.path) else [])

    def _tail(self) -> tuple[int, str]:
        for path in reversed(self._files()):
            last = None
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        last = line
            if last is not None:
                entry = json.loads(last)
                return int(entry["seq"]), entry["hash"]
        return 0, GENESIS

    def record(self, action: str, who: str, outcome: str = "ok", obj: str | None = None,
               old: Any = None, new: Any = None, **extra: Any) -> dict[str, Any]:
        """Append one entry; returns it. Never raises for a full disk (logs instead)."""
        with self._lock:
            body = {"seq": self._seq + 1, "time": time.time(), "action": action, "who": who,
                    "outcome": outcome, "object": obj, "old": _redact(old, obj or ""),
                    "new": _redact(new, obj or ""), **_redact(extra), "prev": self._last}
            entry = {**body, "hash": _digest(body)}
            line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
            try:
                self._rotate_if_needed(len(line))
                append_line(self.path, line)
            except OSError as exc:
                log.error("audit log %s: %s (entry %s kept in memory only)", self.path, exc,
                          body["seq"])
            self._seq, self._last = body["seq"], entry["hash"]
            return entry

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return
        if size + incoming <= self.max_bytes:
            return
        oldest = f"{self.path}.{self.keep}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for i in range(self.keep - 1, 0, -1):
            if os.path.exists(f"{self.path}.{i}"):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in self._files():
            with open(path, encoding="utf-8") as fh:
                out.extend(json.loads(line) for line in fh if line.strip())
        return out


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    problem: str | None = None
    at_seq: int | None = None


def verify(log_: AuditLog) -> Verification:
    """Walk the chain: every hash must match its entry and link to the one before.

    The first kept entry may link to an entry in a file already rotated away;
    everything after it must be continuous.
    """
    prev_hash: str | None = None
    prev_seq: int | None = None
    n = 0
    for path in log_._files():
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    return Verification(False, n, f"{path}:{lineno}: not JSON")
                body = {k: v for k, v in entry.items() if k != "hash"}
                if _digest(body) != entry.get("hash"):
                    return Verification(False, n, f"{path}:{lineno}: entry altered",
                                        entry.get("seq"))
                if prev_hash is not None and entry.get("prev") != prev_hash:
                    return Verification(False, n, f"{path}:{lineno}: chain broken (an entry "
                                        "before it was deleted or altered)", entry.get("seq"))
                if prev_seq is not None and entry.get("seq") != prev_seq + 1:
                    return Verification(False, n, f"{path}:{lineno}: sequence jumps from "
                                        f"{prev_seq} to {entry.get('seq')}", entry.get("seq"))
                prev_hash, prev_seq = entry["hash"], entry["seq"]
                n += 1
    return Verification(True, n)
