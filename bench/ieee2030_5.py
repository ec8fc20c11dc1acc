"""``make bench`` part: IEEE 2030.5 bytes per day, event-start-to-setpoint latency, and
the agent's memory and CPU with the client registered at a live server, beside the same
agent without it (:func:`side_by_side`), and where the client's memory goes by layer.

Against GridAPPS-D's server (``../shared/tools/gridappsd_server.sh``) on loopback.

Bytes: the client runs through a loopback relay that counts, for every TCP
connection the client opens, the kernel's own counters of the relay's end
(``getsockopt(TCP_INFO)`` just before it closes: payload plus IP/TCP headers,
as the MMS figures; Ethernet framing not counted). Each request the client
sends is logged (py20305's traffic-recorder seam) and each connection is
attributed to the request that opened it, so the bytes of every kind of
exchange are known. The run is time-compressed (poll ceiling and post rate
10 s); the figures per day are the measured bytes per exchange times the
number of exchanges a day at the default rates: every resource polled at
IEEE 2030.5's default 900 s (what this server asks), readings, DERStatus and
DERAvailability at CSIP's 300 s, DERSettings and DERCapability hourly (the
registrar's refresh; on a change too).

Latency: the gateway (``inverter-agent run``, default poll period) against
the simulator; events posted ahead of their start; the time from the start
to the limit at the simulated inverter.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from procstat import AGENT_IMPORT_PROBE, mb, proc_cpu_s, proc_status  # bench/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT.parent / "shared" / "tools" / "gridappsd_server.sh"
DAY = 86400.0
#: Exchanges a day at the default rates (see the module docstring).
POLL_S, POST_S, SETTINGS_S, CAPABILITY_S = 900.0, 300.0, 3600.0, 3600.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """Loopback TCP relay; per client connection: open time and the kernel's counters."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = _free_port()
        self.connections: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._srv.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, time.time()), daemon=True).start()

    def _serve(self, c: socket.socket, t_open: float) -> None:
        from inverter_agent.adapters._shared.wirestats import counters_from_tcp_info

        try:
            u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:
            c.close()
            return
        done = threading.Event()

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while not done.is_set():
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            done.set()
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        for s in (c, u):
            s.settimeout(120)
        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join(5)
        time.sleep(0.05)  # the last ACKs
        info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
        self.connections.append((t_open, counters_from_tcp_info(info)))
        c.close()
        u.close()

    def close(self) -> None:
        self._stop.set()
        self._srv.close()


class Log:
    """py20305's traffic-recorder seam: (time, method, path, root element) of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, str, str]] = []

    def record_request(self, *, method: str, url: str, body: object = None) -> None:
        tag = ""
        if body:
            raw = body if isinstance(body, bytes) else str(body).encode()
            head = raw[:400].decode(errors="replace").lstrip()
            if head.startswith("<?"):
                head = head[head.find("?>") + 2:].lstrip()
            tag = head[1:].split()[0].split(">")[0] if head.startswith("<") else ""
        self.requests.append((time.time(), method.upper(), url, tag))

    def record_response(self, *, method: str, url: str, status: int | None = None,
                        body: object = None, error: str | None = None) -> None:
        if method.upper() == "GET":
            self.requests.append((time.time(), "GET", url, ""))

    def __getattr__(self, _name: str):
        return lambda *a, **k: None


def _server(work: Path) -> tuple[dict[str, str], dict[str, str]]:
    env = {**os.environ, "GRIDAPPSD_WORK": str(work), "GRIDAPPSD_PORT": str(_free_port()),
           "GRIDAPPSD_NO_EVENT": "1"}
    subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, capture_output=True,
                   timeout=300)
    v = {}
    for line in (work / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, val = line[7:].partition("=")
            v[k] = val.split("#")[0].strip()
    return env, v


def _kind(method: str, path: str, tag: str) -> str:
    if method == "GET":
        return "GET (poll)"
    return f"{method} {tag or path}"


def bytes_per_day(v: dict[str, str], tmp: str, seconds: float, report) -> None:
    from hal.inverter import Inverter
    from hal.reading import GOOD, Reading
    from hal.transport import RetryPolicy, TcpTransport
    from inverter_agent.adapters.ieee2030_5.client import ClientSettings, Ieee2030Client
    from inverter_agent.adapters.ieee2030_5.site_view import SiteView
    from inverter_agent.core.arbitration import UtilitySchedule
    from inverter_agent.core.view import CycleView, inverter_view
    from simulator import SimProcess

    upstream = int(v["IEEE2030_5_URL"].rsplit(":", 1)[1])
    relay = Relay(upstream)
    with SimProcess() as sim:
        inv = Inverter(TcpTransport("127.0.0.1", sim.tcp_port, RetryPolicy(timeout=1.0)), unit=1)
        snap = dict(inv.poll(time.time()))
        inv.close()
    snap["link"] = Reading(True, GOOD, time.time())

    view = CycleView(time.time(), (inverter_view("INV1", snap, True),))

    settings = ClientSettings(server=f"https://127.0.0.1:{relay.port}",
                              cert=v["IEEE2030_5_CLIENT_CERT"], key=v["IEEE2030_5_CLIENT_KEY"],
                              ca=v["IEEE2030_5_CA"], max_poll_interval=10, post_rate=10)
    client = Ieee2030Client(settings, UtilitySchedule("ieee2030_5"), SiteView(lambda: view))
    client.traffic_recorder = log = Log()
    client.start()
    deadline = time.time() + 30
    while time.time() < deadline and not client.status().get("programs"):
        time.sleep(0.2)
    time.sleep(3)  # discovery and the first posts done: steady state from here
    t0 = time.time()
    time.sleep(seconds)
    t1 = time.time()
    client.stop()
    time.sleep(0.5)
    relay.close()
    conns = sorted((t, c) for t, c in relay.connections if t0 <= t < t1 and c is not None)
    reqs = sorted(r for r in log.requests if t0 - 0.5 <= r[0] < t1)
    per_kind: dict[str, list[int]] = defaultdict(list)
    # Attribute each connection to the latest request logged before it opened.
    j = 0
    for t, c in conns:
        while j + 1 < len(reqs) and reqs[j + 1][0] <= t + 0.02:
            j += 1
        _t, method, path, tag = reqs[j] if reqs else (0, "?", "?", "")
        per_kind[_kind(method, path, tag)].append(c.wire_in + c.wire_out)
    total = sum(c.wire_in + c.wire_out for _t, c in conns)
    span = t1 - t0
    report("2030.5: TCP connections (TLS handshakes) per request",
           f"{len(conns) / max(1, len(reqs)):.2f}",
           f"{len(conns)} connections, {len(reqs)} requests in {span:.0f} s (the server closes "
           "each connection after its answer)")
    mean = {k: statistics.mean(b) for k, b in per_kind.items()}
    for k in sorted(mean):
        report(f"2030.5: bytes on the wire per {k}", f"{mean[k]:,.0f} B",
               f"{len(per_kind[k])} seen")
    polls_per_round = len(per_kind.get("GET (poll)", [])) / (span / 10.0)
    day = polls_per_round * DAY / POLL_S * mean.get("GET (poll)", 0.0)
    for k, m in mean.items():
        if "DERSettings" in k:
            day += m * DAY / SETTINGS_S
        elif "DERCapability" in k:
            day += m * DAY / CAPABILITY_S
        elif k.startswith(("POST", "PUT")) and "Response" not in k:
            n_per_round = len(per_kind[k]) / (span / 10.0)
            day += m * n_per_round * DAY / POST_S
    report("2030.5: bytes per day at the default poll (900 s) and post (300 s) rates",
           f"{day / 1e6:,.2f} MB", f"{day * 30 / 1e6:,.0f} MB/month; measured {total:,} B in "
           f"{span:.0f} s at 10 s rates; Responses (per event) not included")


def _toml(v: dict[str, str], tmp: str, name: str, rates: str) -> Path:
    toml = Path(tmp) / f"agent-2030-{name}.toml"
    toml.write_text(
        "[ieee2030_5]\n" + "".join(f'{k} = "{v[e]}"\n' for k, e in (
            ("server", "IEEE2030_5_URL"), ("cert", "IEEE2030_5_CLIENT_CERT"),
            ("key", "IEEE2030_5_CLIENT_KEY"), ("ca", "IEEE2030_5_CA"))) + rates)
    return toml


def _agent(sim, tmp: str, name: str, toml: Path | None) -> tuple[subprocess.Popen, Path]:
    """``inverter-agent run`` against ``sim`` (default poll, grid functions on, MMS served),
    with the 2030.5 client when ``toml`` configures it."""
    state = Path(tmp) / f"state-2030-{name}"
    args = [sys.executable, "-m", "inverter_agent.cli", "run", "--modbus-tcp",
            f"127.0.0.1:{sim.tcp_port}", "--mms-port", str(_free_port()), "--state-dir",
            str(state), "--log-level", "warning"]
    if toml is not None:
        args[4:4] = ["--config", str(toml)]
    agent = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    return agent, state


def _status(state: Path) -> dict:
    try:
        return json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _registered(st: dict) -> bool:
    """The client's four DER resources PUT and accepted, and its programs read."""
    c = st.get("ieee2030_5") or {}
    res = c.get("resources") or {}
    return bool(c.get("programs")) and len(res) >= 4 and all(
        str((r or {}).get("result", "")).startswith("ok") for r in res.values())


def side_by_side(v: dict[str, str], tmp: str, seconds: float, report) -> None:
    """The agent's resident memory and CPU with the client registered, beside the same agent
    without it: same simulator, default poll, grid functions on, MMS served; the client at
    the rates a gateway runs (the server's poll rate, readings every 300 s). Measured once
    the agent chose its poll period (and the client has its programs and its four DER
    resources accepted), over ``seconds``."""
    from simulator import SimProcess

    figures = {}
    for name, toml in (("MMS only", None),
                       ("MMS + 2030.5 client registered", _toml(v, tmp, "default", ""))):
        with SimProcess() as sim:
            agent, state = _agent(sim, tmp, "side" if toml else "mms", toml)
            try:
                deadline = time.time() + 60
                while time.time() < deadline:
                    st = _status(state)
                    if (st.get("poll_period_auto") or {}).get("chosen_s") and (
                            toml is None or _registered(st)):
                        break
                    time.sleep(0.2)
                else:
                    report(f"{name}: agent resident memory", "not measured",
                           "not ready in 60 s" + (" (client not registered)" if toml else ""))
                    continue
                time.sleep(2.0)
                c0, m0 = proc_cpu_s(agent.pid), time.monotonic()
                time.sleep(seconds)
                c1, m1 = proc_cpu_s(agent.pid), time.monotonic()
                status = proc_status(agent.pid)
            finally:
                agent.terminate()
                agent.wait(10)
        figures[name] = (mb(status, "VmRSS"), mb(status, "VmHWM"), (c1 - c0) / (m1 - m0) * 100,
                         status["Threads"].strip())
    for name, (rss, hwm, _cpu, threads) in figures.items():
        report(f"{name}: agent resident memory", f"{rss:.1f} MB",
               f"peak {hwm:.1f} MB, {threads} threads"
               + ("; target < 60 MB with the client" if "client" in name else ""))
    for name, (_rss, _hwm, cpu, _t) in figures.items():
        report(f"{name}: agent CPU", f"{cpu:.2f} %", f"of one core over {seconds:.0f} s")
    if len(figures) == 2:
        (a, *_), (b, *_) = figures.values()
        report("2030.5 client registered: memory it adds", f"{b - a:.1f} MB",
               "resident, same agent and conditions")


def latency(v: dict[str, str], env: dict[str, str], tmp: str, samples: int, report) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from simulator import SimProcess

    toml = _toml(v, tmp, "latency", "max_poll_interval = 10\npost_rate = 60\n")
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=v["IEEE2030_5_CA"])

    def post(start: float, dur: int, lim: int) -> None:
        mrid = os.urandom(16).hex().upper()
        now = int(time.time())
        xml = ('<DERControl xmlns="urn:ieee:std:2030.5:ns" replyTo="/rsps" responseRequired="03">'
               f"<mRID>{mrid}</mRID><description>bench</description><creationTime>{now}"
               f"</creationTime><EventStatus><currentStatus>0</currentStatus><dateTime>{now}"
               "</dateTime><potentiallySuperseded>false</potentiallySuperseded></EventStatus>"
               f"<interval><duration>{dur}</duration><start>{int(start)}</start></interval>"
               f"<DERControlBase><opModMaxLimW>{lim}</opModMaxLimW></DERControlBase>"
               "</DERControl>")
        req = urllib.request.Request(f"{v['IEEE2030_5_URL']}/admin/derp/1/derc",
                                     data=xml.encode(), method="POST",
                                     headers={"Content-Type": "application/sep+xml"})
        urllib.request.urlopen(req, context=ctx, timeout=10).close()

    with SimProcess() as sim:
        agent, state = _agent(sim, tmp, "latency", toml)
        try:
            deadline = time.time() + 40
            while time.time() < deadline:
                try:
                    if json.loads((state / "status.json").read_text()).get(
                            "ieee2030_5", {}).get("programs"):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.2)
            period = json.loads((state / "status.json").read_text()).get("poll_period_s")
            t0 = time.time()
            c0, m0 = proc_cpu_s(agent.pid), time.monotonic()
            starts = [int(t0 + 13 + 6 * i) for i in range(samples)]  # whole seconds
            for i, s in enumerate(starts):
                post(s, 4, 2000 + 1000 * i)
            got = []
            for i, s in enumerate(starts):
                want = (2000 + 1000 * i) / 100.0
                end = s + 4
                while time.time() < end:
                    c = sim.control.unit_state(1)["controls"]["123"]
                    if c["WMaxLim_Ena"] and abs(float(c["WMaxLimPct"]) - want) < 0.01:
                        got.append(time.time() - s)
                        break
                    time.sleep(0.005)
            c1, m1 = proc_cpu_s(agent.pid), time.monotonic()
            status = proc_status(agent.pid)
        finally:
            agent.terminate()
            agent.wait(10)
    # The sampling loop above polls the simulator, not the agent: the agent's figures
    # are its own, with the client registered, polling at 10 s and posting at 60 s.
    report("2030.5 client on, live server: agent resident memory", f"{mb(status, 'VmRSS'):.1f} MB",
           f"peak {mb(status, 'VmHWM'):.1f} MB, {status['Threads'].strip()} threads; "
           "compare 'resident memory' (no 2030.5)")
    report("2030.5 client on, live server: agent CPU", f"{(c1 - c0) / (m1 - m0) * 100:.2f} %",
           f"of one core over {m1 - m0:.0f} s with {samples} events; poll 10 s, post 60 s")
    if got:
        report("2030.5: event start -> limit at the inverter (p50 / max)",
               f"{statistics.median(got) * 1e3:.0f} / {max(got) * 1e3:.0f} ms",
               f"{len(got)}/{samples} events; poll period {period} s; received ahead (an event "
               "is seen within one server poll, max_poll_interval or the server's rate)")
    else:
        report("2030.5: event start -> limit at the inverter", "not measured",
               "no event reached the inverter")


#: What the registered client loads, layer by layer (each on top of the ones before it and
#: of the agent's own modules): the import cost of each, to show where its memory goes.
#: py20305's schema classes load on use (adapters/ieee2030_5/lazy_imports.py): the engine's
#: layer holds those its modules name at import; the client defines more as it runs.
LAYERS = (
    ("asyncio", "asyncio"),
    ("cryptography (py20305's TLS checks)", "cryptography.x509"),
    ("aiohttp (py20305's HTTP client)", "aiohttp"),
    ("pydantic", "pydantic"),
    ("xsdata and lxml (XML bindings for pydantic)", "xsdata_pydantic.bindings, lxml.etree"),
    ("py20305 engine (client, events, telemetry, connectors) and the schema classes it names",
     "py20305.client.csip_client, py20305.telemetry, py20305.connectors.dispatcher"),
    ("the adapter (inverter_agent.adapters.ieee2030_5)",
     "inverter_agent.adapters.ieee2030_5.client, inverter_agent.adapters.ieee2030_5.site_view"),
)


def memory_breakdown(report) -> None:
    """Import cost of each layer the client loads, in one fresh process holding the agent's
    modules first (as the resources bench): where the client's memory goes."""
    probe = (AGENT_IMPORT_PROBE
             + "from inverter_agent.adapters.ieee2030_5 import lazy_imports\n"
             "lazy_imports.install()  # as the adapter does before py20305\n"
             "last = rss()\n"
             "for mods in sys.argv[1:]:\n"
             "    for m in mods.split(', '):\n"
             "        __import__(m)\n"
             "    now = rss()\n"
             "    print(round(now - last, 1))\n"
             "    last = now\n"
             "sep = sys.modules['py20305.models.sep.sep']\n"
             "n = sum(1 for v in vars(sep).values() if isinstance(v, type)\n"
             "        and v.__module__ == sep.__name__)\n"
             "print(n, 'of', len(sep._plan.classes) if hasattr(sep, '_plan') else n)\n")
    out = subprocess.run([sys.executable, "-c", probe, *(m for _n, m in LAYERS)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != len(LAYERS) + 1:
        report("2030.5 client: import cost by layer", "not measured",
               (out.stderr.strip().splitlines() or ["?"])[-1][:80])
        return
    sizes = [float(x) for x in lines[:-1]]
    for (name, _m), size in zip(LAYERS, sizes, strict=True):
        report(f"2030.5 client memory: {name}", f"{size:.1f} MB", "import, RSS added")
    report("2030.5 client memory: all its modules", f"{sum(sizes):.1f} MB",
           "the rest of a registered client is its run-time state (below)")
    report("2030.5 schema classes defined by the engine's imports", lines[-1],
           "py20305.models.sep.sep; the others are defined on first use")


def run(tmp: str, seconds: float, samples: int, report) -> None:
    if not SCRIPT.exists():
        print(f"IEEE 2030.5: skipped ({SCRIPT} not found)")
        return
    print("IEEE 2030.5 / CSIP against GridAPPS-D's server on loopback (TLS, one EndDevice)")
    memory_breakdown(report)
    work = Path(tmp) / "gridappsd"
    env, v = _server(work)
    try:
        side_by_side(v, tmp, seconds / 3, report)
        bytes_per_day(v, tmp, seconds, report)
        latency(v, env, tmp, samples, report)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=30)
