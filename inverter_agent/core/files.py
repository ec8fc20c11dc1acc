"""Durable file writes: whole-file replacement and fsynced appends.

A power cut at any moment leaves a replaced file old or new, never torn, and
an appended line either whole on disk or absent.
"""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int = 0o640, durable: bool = True) -> None:
    """Write a temporary file, fsync it, rename it over ``path``, fsync the directory.

    ``durable=False`` skips both fsyncs: readers still never see a torn file, but a
    power cut may lose the last version. For what is rewritten every few seconds and
    worth nothing after a restart (``status.json``): no flash wear for it.
    """
    folder = os.path.dirname(path) or "."
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing temp file keeps its mode otherwise
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if not durable:
        return
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def append_line(path: str, line: str, mode: int = 0o640) -> None:
    """Append one line and fsync before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
