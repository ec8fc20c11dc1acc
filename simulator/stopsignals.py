"""Wait in the main thread for a stop signal, with nothing locked in the handler.

A Python signal handler runs in the main thread between two bytecodes, so it
may run while that same thread is inside ``threading.Event.wait()`` holding
the event's lock. A handler that calls ``Event.set()`` then waits for a lock
its own thread holds, for ever: the process ignores every later signal and
has to be killed. (Seen once in CI: the simulator hung after SIGINT.)

Here the handler takes no lock and does nothing at all; the signal number is
written by the interpreter's C-level handler to a pipe
(:func:`signal.set_wakeup_fd`), and :meth:`StopSignals.wait` selects on that
pipe. A signal delivered to another thread still wakes the main thread's
select, and the number read from the pipe is the answer, whether or not the
Python-level handler has run yet.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable
from types import FrameType

#: The byte :meth:`StopSignals.request` writes (no signal has the number 0).
_REQUEST = 0


class StopSignals:
    """Catch ``signals`` (SIGTERM and SIGINT by default) until :meth:`close`.

    Construct and use it in the main thread only (a rule of :mod:`signal`).
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = tuple(int(s) for s in signals)
        #: The stop signals received, in order.
        self.got: list[int] = []
        #: A stop asked for by :meth:`request`.
        self.requested = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, self._ignore) for s in self.signals}

    @staticmethod
    def _ignore(_signum: int, _frame: FrameType | None) -> None:
        """The Python-level handler: nothing (the number is already in the pipe)."""

    def request(self) -> None:
        """Ask for a stop from any thread (no lock: one byte into the pipe)."""
        try:
            os.write(self._w, bytes([_REQUEST]))
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._r, 256)
            except BlockingIOError:
                return
            if not data:
                return
            self.got.extend(b for b in data if b in self.signals)
            self.requested = self.requested or _REQUEST in data

    @property
    def stopping(self) -> bool:
        """A stop signal came or a stop was requested."""
        return self.requested or bool(self.got)

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` s (None: for ever) for a stop signal or request;
        True once one has come."""
        if not self.stopping:
            ready, _, _ = select.select([self._r], [], [],
                                        None if timeout is None else max(0.0, timeout))
            if ready:
                self._drain()
        return self.stopping

    def close(self) -> None:
        """Put back the handlers and the wakeup fd that were there before."""
        for s, old in self._old.items():
            signal.signal(s, old)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._r)
        os.close(self._w)

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
