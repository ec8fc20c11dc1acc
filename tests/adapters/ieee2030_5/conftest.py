"""A real IEEE 2030.5 server we did not write: GridAPPS-D's gridappsd-2030-5 on loopback.

``../shared/tools/gridappsd_server.sh`` installs it (first start), makes a
test CA and dev1's certificate, and starts it; the fixture gives it a temp
work directory and a free port, and stops it at the end of the module. The
admin API (``/admin``) is used to post DERControls and DefaultDERControls as
a utility's head end would.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT.parent / "shared" / "tools" / "gridappsd_server.sh"
#: The server's own virtual environment, built once (about a minute) and shared by
#: every module and pytest worker that starts a server; each server keeps its own
#: work directory (certificates, database, port). Git-ignored.
SERVER_VENV = ROOT / ".cache" / "gridappsd-venv"
NS = "urn:ieee:std:2030.5:ns"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GridappsdServer:
    """The server process (through its script) and its admin API."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.env = {**os.environ, "GRIDAPPSD_WORK": str(work), "GRIDAPPSD_PORT": str(self.port),
                    "GRIDAPPSD_VENV": str(SERVER_VENV), "GRIDAPPSD_NO_EVENT": "1"}
        self.vars: dict[str, str] = {}
        self.start_s = 0.0

    def _script(self, *args: str, timeout: float = 240) -> str:
        r = subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"gridappsd_server.sh {' '.join(args)} failed:\n{r.stderr[-3000:]}")
        return r.stdout

    def start(self) -> GridappsdServer:
        t0 = time.monotonic()
        SERVER_VENV.parent.mkdir(parents=True, exist_ok=True)
        # The first start installs the shared venv: one installer at a time.
        with open(SERVER_VENV.parent / "gridappsd-venv.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._script("start")
        self.start_s = time.monotonic() - t0
        for line in (self.work / "env").read_text().splitlines():
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                self.vars[k] = v.split("#")[0].strip()
        return self

    def stop(self) -> None:
        self._script("stop", timeout=30)

    @property
    def url(self) -> str:
        return self.vars["IEEE2030_5_URL"]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.vars["IEEE2030_5_CA"])

    def admin_post(self, path: str, xml: str) -> int:
        req = urllib.request.Request(f"{self.url}/admin{path}", data=xml.encode(), method="POST",
                                     headers={"Content-Type": "application/sep+xml"})
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
            return resp.status

    def post_event(self, start: float, duration: int, base: str, mrid: str | None = None,
                   primacy_note: str = "", randomize_start: int | None = None,
                   created: int | None = None) -> str:
        """A DERControl on dev1's program (``base``: the DERControlBase's inner XML;
        ``created``: its creationTime, default now)."""
        mrid = mrid or os.urandom(16).hex().upper()
        now = int(time.time())
        xml = (f'<DERControl xmlns="{NS}" replyTo="/rsps" responseRequired="03">'
               f"<mRID>{mrid}</mRID><description>test {primacy_note}</description>"
               f"<creationTime>{now if created is None else created}</creationTime>"
               f"<EventStatus><currentStatus>0</currentStatus><dateTime>{now}</dateTime>"
               f"<potentiallySuperseded>false</potentiallySuperseded></EventStatus>"
               f"<interval><duration>{duration}</duration><start>{int(start)}</start>"
               f"</interval>"
               + (f"<randomizeStart>{randomize_start}</randomizeStart>"
                  if randomize_start is not None else "")
               + f"<DERControlBase>{base}</DERControlBase></DERControl>")
        assert self.admin_post("/derp/1/derc", xml) in (201, 204)
        return mrid.lower()

    def post_default(self, base: str) -> None:
        mrid = os.urandom(16).hex().upper()
        xml = (f'<DefaultDERControl xmlns="{NS}"><mRID>{mrid}</mRID>'
               f"<description>test default</description>"
               f"<DERControlBase>{base}</DERControlBase></DefaultDERControl>")
        assert self.admin_post("/derp/1/derc", xml) in (201, 204)


@pytest.fixture(scope="module")
def gridappsd(tmp_path_factory) -> Iterator[GridappsdServer]:
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} not found (shared/ beside the clone)")
    for tool in ("openssl", "curl", "flock", "setsid"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (gridappsd_server.sh needs it)")
    server = GridappsdServer(tmp_path_factory.mktemp("gridappsd"))
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


def config_toml(server: GridappsdServer, **extra: object) -> str:
    v = server.vars
    lines = ["[ieee2030_5]", f'server = "{v["IEEE2030_5_URL"]}"',
             f'cert = "{v["IEEE2030_5_CLIENT_CERT"]}"', f'key = "{v["IEEE2030_5_CLIENT_KEY"]}"',
             f'ca = "{v["IEEE2030_5_CA"]}"', "max_poll_interval = 10", "post_rate = 10"]
    lines += [f"{k} = {str(x).lower() if isinstance(x, bool) else x}" for k, x in extra.items()]
    return "\n".join(lines) + "\n"
