"""A bare libiec61850 server serving the agent's own model, for ``make bench``.

    python bench/bare_server.py --port 10102 [--seconds S]

The same model as ``inverter-agent run`` serves for one inverter with the grid
functions on (``site_model_spec``, built by ``build_model``), served by
libiec61850 alone: no handler of any kind, no agent loop, no Python thread.
What the library can do on this machine, to compare the agent against in the
same run. Prints ``READY <port>`` once listening; stops on SIGTERM or after
``--seconds``. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inverter_agent.adapters.mms import _native as nat  # noqa: E402
from inverter_agent.adapters.mms.model import build_model  # noqa: E402
from inverter_agent.adapters.mms.plant_model import site_model_spec  # noqa: E402
from simulator.stopsignals import StopSignals  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    lib = nat.lib()
    model = build_model(site_model_spec(["INV1"], None, functions=True), "GW")
    config = lib.IedServerConfig_create()
    lib.IedServerConfig_setMaxMmsConnections(config, 5)
    server = lib.IedServer_createWithConfig(model.ptr, None, config)
    lib.IedServerConfig_destroy(config)
    lib.IedServer_setLocalIpAddress(server, b"127.0.0.1")
    lib.IedServer_start(server, args.port)
    if not lib.IedServer_isRunning(server):
        print(f"cannot listen on {args.port}", file=sys.stderr)
        return 1
    print(f"READY {args.port}", flush=True)
    # Not a threading.Event set from the handler: that can deadlock (stopsignals.py).
    stop = StopSignals((signal.SIGTERM,))
    end = time.monotonic() + min(args.seconds, 3600.0)
    while not stop.wait(min(1.0, end - time.monotonic())) and time.monotonic() < end:
        pass
    lib.IedServer_stop(server)
    lib.IedServer_destroy(server)
    model.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
