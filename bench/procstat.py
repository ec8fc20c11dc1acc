"""A process's CPU time and memory from /proc, for the benches that run the agent."""

from __future__ import annotations

import os


def proc_cpu_s(pid: int) -> float:
    """User plus system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict (VmRSS, VmHWM, Threads, ...)."""
    with open(f"/proc/{pid}/status") as fh:
        return dict(ln.split(":", 1) for ln in fh if ":" in ln)


def mb(status: dict[str, str], key: str) -> float:
    """A VmXXX field of :func:`proc_status` in MB."""
    return int(status[key].split()[0]) / 1024


#: The start of a ``python -c`` probe of what importing modules costs: ``rss()`` (MB) and
#: the agent's own modules already imported, which a client's modules are added to.
AGENT_IMPORT_PROBE = (
    "import sys\n"
    "def rss():\n"
    "    return int(next(l for l in open('/proc/self/status')"
    " if l.startswith('VmRSS')).split()[1]) / 1024\n"
    "import inverter_agent.cli, inverter_agent.core.agent\n"
    "import inverter_agent.adapters.mms.server\n"
    "import inverter_agent.adapters.mms.binding, hal.inverter\n")
