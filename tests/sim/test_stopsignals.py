"""StopSignals: the simulator's stop signal never deadlocks its main thread.

The simulator used to set a ``threading.Event`` from its SIGTERM / SIGINT
handler while its main thread waited on that event; once in CI a SIGINT landed
while the main thread held the event's lock and the simulator hung until
killed. The harness below (a thread signalling the process at random moments
while the main thread spins in ``wait(0)``) hung that old pattern in 5 of 5
runs of 1000 signals; it must finish with :class:`StopSignals`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from simulator.stopsignals import StopSignals

REPO = Path(__file__).resolve().parents[2]
SIGNALS = 1000


def test_a_signal_at_any_moment_wakes_the_waiting_main_thread():
    script = textwrap.dedent(f"""
        import os, random, signal, sys, threading, time
        sys.path.insert(0, {str(REPO)!r})
        from simulator.stopsignals import StopSignals

        def kick():
            time.sleep(random.uniform(0.0, 0.002))
            os.kill(os.getpid(), signal.SIGUSR1)

        for i in range({SIGNALS}):
            with StopSignals((signal.SIGUSR1,)) as stop:
                t = threading.Thread(target=kick, daemon=True)
                t.start()
                while not stop.wait(0):
                    pass
                assert stop.got == [signal.SIGUSR1], stop.got
                t.join()
        print("stopped", {SIGNALS}, "times", flush=True)
    """)
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the main thread hung on a stop signal") from None
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"stopped {SIGNALS} times"


def test_close_puts_back_the_handlers_and_wakeup_fd_it_found():
    before = signal.getsignal(signal.SIGUSR2)
    fd_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd_before)
    with StopSignals((signal.SIGUSR2,)) as stop:
        assert signal.getsignal(signal.SIGUSR2) is not before
        signal.raise_signal(signal.SIGUSR2)
        assert stop.wait(1.0) and stop.got == [signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR2) is before
    assert signal.set_wakeup_fd(fd_before) == fd_before


def test_wait_times_out_false_without_a_signal():
    with StopSignals((signal.SIGUSR2,)) as stop:
        assert stop.wait(0.01) is False
        assert stop.got == []


def test_a_request_from_another_thread_wakes_the_main_thread():
    with StopSignals((signal.SIGUSR2,)) as stop:
        threading.Thread(target=stop.request, daemon=True).start()
        assert stop.wait(10.0) is True
        assert stop.requested and stop.got == []
