"""Drive the simulator from tests and benches: :class:`SimControl` and :class:`SimProcess`.

Standard library only, so importing this costs nothing::

    with SimProcess("--units", "1,2", pty=True) as sim:
        client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port)
        sim.control.set_grid(v_pu=1.05)
        sim.control.state(unit=1)["units"]["1"]["plant"]["w"]
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_REPO_ROOT = Path(__file__).resolve().parent.parent


class SimControlError(RuntimeError):
    """The simulator refused a control command (the message is its error)."""


class SimStartError(RuntimeError):
    """The simulator process did not come up; the message carries its stderr tail."""


class SimControl:
    """Client of the JSON control channel. Thread-safe; reconnects once on a broken link."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._rfile = self._sock.makefile("rb")

    def close(self) -> None:
        with self._lock:
            if self._rfile is not None:
                self._rfile.close()
            if self._sock is not None:
                self._sock.close()
            self._sock = self._rfile = None

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, cmd: str, check: bool = True, **kw: Any) -> dict[str, Any]:
        """Send one command; its answer. ``check``: raise :class:`SimControlError` if refused."""
        line = json.dumps({"cmd": cmd, **{k: v for k, v in kw.items() if v is not None}})
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._sock is None:
                        self._connect()
                    assert self._sock is not None
                    self._sock.sendall(line.encode() + b"\n")
                    answer = self._rfile.readline()
                    if not answer:
                        raise ConnectionError("control channel closed")
                    break
                except OSError:
                    if self._sock is not None:
                        self._sock.close()
                    self._sock = self._rfile = None
                    if attempt:
                        raise
        reply: dict[str, Any] = json.loads(answer)
        if check and not reply.get("ok"):
            raise SimControlError(f"{cmd}: {reply.get('error')}")
        return reply

    # --- commands ---------------------------------------------------------------

    def ping(self) -> bool:
        return bool(self.request("ping")["ok"])

    def reset(self) -> dict[str, Any]:
        """Everything as started: controls, scale factors, grid, faults, output."""
        return self.request("reset")

    def state(self, unit: int | None = None) -> dict[str, Any]:
        """Grid, faults, and per unit ``plant`` / ``effective`` / ``controls`` (see control.py)."""
        return self.request("state", unit=unit)

    def unit_state(self, unit: int = 1) -> dict[str, Any]:
        return self.state(unit)["units"][str(unit)]

    def set_grid(self, v_pu: float | None = None, f_hz: float | None = None,
                 v: float | None = None, phases_v: Sequence[float] | None = None,
                 phases_pu: Sequence[float] | None = None) -> dict[str, Any]:
        return self.request("set_grid", v_pu=v_pu, f_hz=f_hz, v=v,
                            phases_v=None if phases_v is None else list(phases_v),
                            phases_pu=None if phases_pu is None else list(phases_pu))

    def script(self, rows: Iterable[Sequence[float]], loop: bool = False) -> dict[str, Any]:
        return self.request("script", rows=[list(r) for r in rows], loop=loop)

    def script_file(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        return self.request("script", file=str(path))

    def set_dc(self, w: float, unit: int | None = None) -> dict[str, Any]:
        return self.request("set_dc", w=w, unit=unit)

    def fault(self, mode: str, unit: int | None = None) -> dict[str, Any]:
        return self.request("fault", mode=mode, unit=unit)

    def pty_cycle(self, down_s: float = 1.0) -> str:
        """Make the pty vanish for ``down_s`` and come back; the new device path."""
        return str(self.request("pty_cycle", down_s=down_s)["pty"])

    def set_sf(self, point: str, value: int, unit: int | None = None,
               model: int | None = None) -> dict[str, Any]:
        return self.request("set_sf", point=point, value=value, unit=unit, model=model)

    def set_point(self, model: int, point: str, value: Any,
                  unit: int | None = None) -> dict[str, Any]:
        return self.request("set_point", model=model, point=point, value=value, unit=unit)

    def get_point(self, model: int, point: str, unit: int = 1) -> Any:
        return self.request("get_point", model=model, point=point, unit=unit)["values"][str(unit)]

    def inverter_fault(self, on: bool = True, unit: int | None = None) -> dict[str, Any]:
        return self.request("inverter_fault", on=on, unit=unit)

    def native_trip(self, on: bool = True) -> dict[str, Any]:
        return self.request("native_trip", on=on)

    def set_load(self, w: float, var: float | None = None) -> dict[str, Any]:
        """The site load behind the simulated meter (``--meter``)."""
        return self.request("set_load", w=w, **({} if var is None else {"var": var}))

    def local_mode(self, on: bool = True, unit: int | None = None) -> dict[str, Any]:
        """The inverter ignores remote setpoints (a panel switched to local control)."""
        return self.request("local_mode", on=on, **({} if unit is None else {"unit": unit}))


def wait_until(fn: Callable[[], T], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Poll ``fn`` until it returns something truthy; that value, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


def _kill(proc: subprocess.Popen[str]) -> None:
    # last resort (garbage collection / interpreter exit): never leave a simulator behind
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class SimProcess:
    """``python -m simulator ...`` as a child process, for tests and benches.

    ``args`` are extra command-line options. A loopback TCP port (``tcp``), a
    pty under a private temporary folder (``pty``, or ``pty_link`` to choose
    the path) and the control channel are added unless ``args`` name them.
    Use it as a context manager; :meth:`stop` sends SIGTERM, waits
    ``stop_timeout`` and kills if it must. Output is drained all the time (a
    full pipe would freeze the simulator); the last lines are kept for errors.
    """

    def __init__(self, *args: str, tcp: bool = True, pty: bool = False,
                 pty_link: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 15.0, stop_timeout: float = 5.0,
                 python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self.args = [str(a) for a in args]
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self.env = env
        self._tmpdir: str | None = None
        self._want_tcp = tcp and "--tcp" not in self.args
        self._pty_link = None if pty_link is None else str(pty_link)
        self._want_pty = (pty or pty_link is not None) and "--pty-link" not in self.args
        self.proc: subprocess.Popen[str] | None = None
        self.tcp_host: str | None = None
        self.tcp_port: int | None = None
        self.pty_device: str | None = None  # the /dev/pts/N behind the link, latest
        self.pty_path: str | None = None  # the symlink: what a client opens
        self.control_address: tuple[str, int] | None = None
        #: The meter's own Modbus TCP port (``--meter-tcp``), once announced.
        self.meter_tcp: tuple[str, int] | None = None
        self._control: SimControl | None = None
        self._ready = threading.Event()
        self.stdout_lines: collections.deque[str] = collections.deque(maxlen=500)
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=500)
        self._readers: list[threading.Thread] = []
        self._finalizer: weakref.finalize | None = None

    # --- lifecycle ------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "simulator", *self.args, "--watch-parent"]
        if self._want_tcp:
            cmd += ["--tcp", "127.0.0.1:0"]
        if self._want_pty:
            if self._pty_link is None:
                self._tmpdir = tempfile.mkdtemp(prefix="simpty-")
                self._pty_link = os.path.join(self._tmpdir, "inv0")
            cmd += ["--pty-link", self._pty_link]
        if "--control" not in self.args:
            cmd += ["--control", "127.0.0.1:0"]
        return cmd

    def start(self) -> SimProcess:
        if self.proc is not None:
            raise RuntimeError("already started")
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=str(_REPO_ROOT),
            start_new_session=True)  # a ^C in the terminal is ours to relay, not its
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        for stream, handler in ((self.proc.stdout, self._on_stdout),
                                (self.proc.stderr, self.stderr_lines.append)):
            t = threading.Thread(target=self._drain, args=(stream, handler), daemon=True,
                                 name=f"sim-{self.proc.pid}-drain")
            t.start()
            self._readers.append(t)
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = (f"exited with {self.proc.returncode}" if self.proc.poll() is not None
                       else f"not ready within {self.startup_timeout} s")
                self.stop()
                raise SimStartError(f"simulator {why}: {' '.join(self.command())}\n"
                                    + "\n".join(list(self.stderr_lines)[-30:]))
        return self

    @staticmethod
    def _drain(stream: Any, handler: Callable[[str], None]) -> None:
        try:
            for line in stream:
                handler(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

    def _on_stdout(self, line: str) -> None:
        self.stdout_lines.append(line)
        word, _, rest = line.partition(" ")
        if word == "TCP":
            host, _, port = rest.rpartition(":")
            self.tcp_host, self.tcp_port = host, int(port)
        elif word == "PTY":
            device, _, link = rest.partition(" -> ")
            self.pty_device, self.pty_path = device, link
        elif word == "SERIAL":
            self.pty_device = rest.split(" ")[0]
        elif word == "CONTROL":
            host, _, port = rest.rpartition(":")
            self.control_address = (host, int(port))
        elif word == "METER-TCP":
            host, _, port = rest.rpartition(":")
            self.meter_tcp = (host, int(port))
        elif word == "READY":
            self._ready.set()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; the exit status (None if never started)."""
        if self._control is not None:
            self._control.close()
            self._control = None
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for t in self._readers:
            t.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        return proc.returncode

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- access ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def control(self) -> SimControl:
        """The control channel client (connected on first use)."""
        if self.control_address is None:
            raise RuntimeError("simulator not started, or started without --control")
        if self._control is None:
            self._control = SimControl(*self.control_address)
        return self._control

    def output(self) -> str:
        """The last stdout and stderr lines, for assertion messages."""
        return "\n".join(["--- stdout", *self.stdout_lines, "--- stderr", *self.stderr_lines])
