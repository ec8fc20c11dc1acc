"""Append-only, tamper-evident audit log of connections, refusals, settings, controls.

Each entry is one JSON line carrying the SHA-256 of the previous entry, so an
edited, inserted or deleted entry breaks the chain at that point
(:func:`verify`). When ``audit.jsonl`` passes ``max_bytes`` it becomes
``audit.jsonl.1`` (older files shift up) and the new file's first entry
carries the hash of the last entry before the rotation, so the chain runs
across files as long as they are kept.

Retention (what a flood of unauthenticated attempts cannot erase)
    Refusals of unauthenticated peers (failed TLS handshakes, refused
    associations, connections dropped before associating or for reconnecting
    too fast) are never written one by one: :class:`RefusalAggregator` writes
    the first of a kind per peer and window at once and then one entry "N
    refusals from X in T s" per window, so a flood adds a bounded number of
    entries (at most two per peer, kind and ``window_s``, and at most
    ``max_keys`` peers and kinds per window, the rest pooled). Those entries
    carry ``"protect": false``; every other entry (authenticated actions:
    associations, setting writes, controls, refused requests of an
    authenticated client, acknowledgements) is *protected*. On rotation the
    oldest file is deleted only when ``keep`` files exist and it holds no
    protected entry that is younger than ``retain_s`` (90 days by default)
    and not yet acknowledged (:meth:`AuditLog.acknowledge`, ``inverter-agent
    audit --ack``). A file it may not delete is kept beyond ``keep``, up to
    ``hard_keep`` files (4 x ``keep``); only past that is the oldest deleted
    anyway, which is logged as an error and recorded in the log itself
    (``audit.dropped``, with how many protected entries went).

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
from dataclasses import dataclass, field
from typing import Any

from inverter_agent.core.files import append_line, write_atomic

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: The chain of unprotected entries (aggregated refusals of unauthenticated peers).
NOISE_FILE = "audit-refusals.jsonl"
#: Protected entries are kept at least this long unless acknowledged (90 days).
RETAIN_S = 90 * 86400.0
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
    """The hash-chained audit log in ``folder`` (see the module docstring for retention)."""

    def __init__(self, folder: str, max_bytes: int = 4 << 20, keep: int = 5, *,
                 retain_s: float = RETAIN_S, hard_keep: int | None = None,
                 name: str = "audit.jsonl") -> None:
        if max_bytes < 4096:
            raise ValueError("audit log max_bytes must be at least 4096")
        if retain_s < 0:
            raise ValueError("audit log retain_s must be >= 0")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, name)
        self.ack_path = os.path.join(folder, name.removesuffix(".jsonl") + ".ack")
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.hard_keep = max(self.keep, hard_keep if hard_keep is not None else 4 * self.keep)
        self.retain_s = retain_s
        self._lock = threading.Lock()
        self._seq, self._last = self._tail()
        #: Unprotected entries live in a chain of their own (audit-refusals.jsonl, same
        #: size and number of files, rotated freely): a flood of them never rotates a
        #: file of the main chain.
        self.noise: AuditLog | None = None
        if name == "audit.jsonl":
            self.noise = AuditLog(folder, max_bytes, keep, retain_s=0.0, hard_keep=keep,
                                  name=NOISE_FILE)

    def _rotated(self) -> list[int]:
        """Numbers of the rotated files that exist, oldest (highest) first."""
        folder, base = os.path.split(self.path)
        numbers = []
        for name in os.listdir(folder):
            suffix = name.removeprefix(base + ".")
            if suffix != name and suffix.isdigit():
                numbers.append(int(suffix))
        return sorted(numbers, reverse=True)

    def _files(self) -> list[str]:
        """Oldest first."""
        out = [f"{self.path}.{i}" for i in self._rotated()]
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
               old: Any = None, new: Any = None, *, protect: bool = True,
               **extra: Any) -> dict[str, Any]:
        """Append one entry; returns it. Never raises for a full disk (logs instead).

        ``protect=False`` marks an entry that rotation may drop at any time (the
        aggregated refusals of unauthenticated peers); everything else is kept as
        the module docstring says.
        """
        if not protect and self.noise is not None:
            return self.noise.record(action, who, outcome, obj, old, new, protect=False,
                                     **extra)
        with self._lock:
            return self._append(action, who, outcome, obj, old, new, protect, extra)

    def _append(self, action: str, who: str, outcome: str, obj: str | None, old: Any,
                new: Any, protect: bool, extra: dict[str, Any]) -> dict[str, Any]:
        body = {"seq": self._seq + 1, "time": time.time(), "action": action, "who": who,
                "outcome": outcome, "object": obj, "old": _redact(old, obj or ""),
                "new": _redact(new, obj or ""), **_redact(extra), "prev": self._last}
        if not protect:
            body["protect"] = False
        entry = {**body, "hash": _digest(body)}
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        try:
            dropped = self._rotate_if_needed(len(line))
            append_line(self.path, line)
        except OSError as exc:
            log.error("audit log %s: %s (entry %s kept in memory only)", self.path, exc,
                      body["seq"])
            dropped = None
        self._seq, self._last = body["seq"], entry["hash"]
        if dropped:
            self._append("audit.dropped", "audit", "forced", None, None, None, True,
                         {"file_entries": dropped[0], "protected_entries": dropped[1],
                          "reason": f"more than {self.hard_keep} files of protected entries"})
        return entry

    # --- rotation and retention ----------------------------------------------------------
    def acknowledged(self) -> int:
        """Sequence number up to which the log was read and acknowledged (0: never)."""
        try:
            with open(self.ack_path, encoding="utf-8") as fh:
                return int(json.load(fh)["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def acknowledge(self, who: str, upto: int | None = None) -> dict[str, Any]:
        """Mark every entry up to ``upto`` (default: the last) as read; returns the
        ``audit.ack`` entry recorded for it. Rotation may then drop those entries."""
        with self._lock:
            seq = self._seq if upto is None else min(int(upto), self._seq)
            entry = self._append("audit.ack", who, "ok", None, None, None, True,
                                 {"upto": seq})
            if upto is None:
                seq = entry["seq"]  # the acknowledgement itself was read too
            data = json.dumps({"seq": seq, "hash_of_ack": entry["hash"], "by": who,
                               "time": entry["time"]})
            write_atomic(self.ack_path, data.encode(), mode=0o640)
            return entry

    def _protected_in(self, path: str, now: float, acked: int) -> tuple[int, int]:
        """(entries, protected entries that must still be kept) in one file."""
        total = kept = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                total += 1
                try:
                    entry = json.loads(line)
                except ValueError:
                    kept += 1  # unreadable: not ours to throw away
                    continue
                if entry.get("protect", True) and int(entry.get("seq", 0)) > acked and \
                        now - float(entry.get("time", now)) < self.retain_s:
                    kept += 1
        return total, kept

    def _rotate_if_needed(self, incoming: int) -> tuple[int, int] | None:
        """Rotate when the next line would pass max_bytes; returns (entries, protected
        entries) of a file that had to be deleted beyond hard_keep, else None."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return None
        if size + incoming <= self.max_bytes:
            return None
        rotated = self._rotated()  # oldest first
        now, acked = time.time(), self.acknowledged()
        forced = None
        # Delete old files from the oldest while there are too many, unless they hold
        # protected entries (then only past hard_keep).
        while len(rotated) >= self.keep:
            oldest = f"{self.path}.{rotated[0]}"
            total, kept = self._protected_in(oldest, now, acked)
            if kept and len(rotated) < self.hard_keep:
                break
            if kept:
                log.error("audit log: %d files of protected entries; deleting %s with %d "
                          "protected entries (acknowledge with 'inverter-agent audit --ack')",
                          len(rotated) + 1, oldest, kept)
                forced = (total, kept)
            os.remove(oldest)
            rotated.pop(0)
        for i in rotated:  # highest first: nothing is overwritten
            os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        return forced

    def entries(self) -> list[dict[str, Any]]:
        """Every kept entry, both chains, in time order."""
        out = self._own_entries()
        if self.noise is not None:
            out = sorted(out + self.noise._own_entries(), key=lambda e: e.get("time", 0.0))
        return out

    def _own_entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in self._files():
            with open(path, encoding="utf-8") as fh:
                out.extend(json.loads(line) for line in fh if line.strip())
        return out


def peer_host(peer: str) -> str:
    """The address part of ``"10.0.0.9:50230"`` / ``"[2001:db8::1]:50230"``."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    if peer.count(":") == 1:
        return peer.rsplit(":", 1)[0]
    return peer


@dataclass
class _Window:
    start: float                       # monotonic
    wall: float                        # time.time() of the first refusal
    count: int = 0                     # refusals after the first (the first is written)
    last: float = 0.0
    peers: set[str] = field(default_factory=set)  # for the pooled key only


class RefusalAggregator:
    """Audit refusals of unauthenticated peers per (peer address, action, reason) and window.

    The first refusal of a key in a window is written at once (``count`` 1); the
    rest are counted and written as one entry ("N refusals from X in T s") when
    the window (``window_s``) ends: :meth:`tick` (called about once a second)
    and :meth:`flush` (at stop) do that. At most ``max_keys`` keys are tracked
    per window; refusals beyond them are pooled under ``who="*"`` with the
    number of distinct peers. Every entry written is ``protect=False``.
    """

    def __init__(self, audit: AuditLog | None, window_s: float = 60.0,
                 max_keys: int = 32) -> None:
        self.audit = audit
        self.window_s = window_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, str], _Window] = {}
        #: Refusals seen and entries written since start (for tests and the bench).
        self.seen = 0
        self.written = 0

    def refused(self, peer: str, action: str, reason: str, **extra: Any) -> bool:
        """Count one refusal; True if it was the first of its key in this window
        (written at once: the caller may log it, and leave the rest unlogged)."""
        host = peer_host(peer)
        now = time.monotonic()
        first = False
        with self._lock:
            self.seen += 1
            key = (host, action, reason)
            window = self._windows.get(key)
            if window is None and len(self._windows) >= self.max_keys:
                key = ("*", action, "pooled")
                window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now, time.time())
                first = key[0] != "*"
            else:
                window.count += 1
            window.last = now
            window.peers.add(host)
        if first:
            self._write(action, host, 1, 0.0, reason, extra)
        self.tick()
        return first

    def tick(self) -> None:
        """Write the summaries of windows that ended."""
        self._flush(time.monotonic(), everything=False)

    def flush(self) -> None:
        """Write every open window's summary now (at stop)."""
        self._flush(time.monotonic(), everything=True)

    def _flush(self, now: float, everything: bool) -> None:
        due: list[tuple[tuple[str, str, str], _Window]] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if everything or now - window.start >= self.window_s:
                    due.append((key, self._windows.pop(key)))
        for (host, action, reason), window in due:
            if window.count or host == "*":
                n = window.count + (1 if host == "*" else 0)
                extra = {"peers": len(window.peers)} if host == "*" else {}
                self._write(action, host, n, window.last - window.start, reason, extra)

    def _write(self, action: str, host: str, count: int, span: float, reason: str,
               extra: dict[str, Any]) -> None:
        if self.audit is None:
            return
        text = (f"{count} refusal{'s' if count != 1 else ''} from {host}"
                + (f" in {span:.0f} s" if count > 1 else "") + f": {reason}")
        try:
            self.audit.record(action, host, "refused", reason=reason, count=count,
                              span_s=round(span, 1), summary=text, protect=False, **extra)
            self.written += 1
        except Exception:  # auditing must never break the protocol thread
            log.exception("audit record failed")


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
    own = _verify_chain(log_)
    if not own.ok or log_.noise is None:
        return own
    noise = _verify_chain(log_.noise)
    return Verification(noise.ok, own.entries + noise.entries, noise.problem, noise.at_seq)


def _verify_chain(log_: AuditLog) -> Verification:
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
