"""The IEC 61850 MMS adapter: the served model, its settings and controls, behind
:class:`~inverter_agent.adapters.base.Adapter`.

Built from the ``[mms]`` section (on by default); serves one logical device per
inverter plus the plant view with several. Setting writes and controls go to
the core's command port (validated, persisted and audited there); the cycle's
:class:`~inverter_agent.core.view.CycleView` is published into the model.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from typing import Any

from inverter_agent.adapters.base import AdapterContext
from inverter_agent.core.api import Core
from inverter_agent.core.view import CycleView, StorageView

log = logging.getLogger(__name__)


class MmsAdapter:
    name = "mms"

    def __init__(self, ctx: AdapterContext) -> None:
        from . import _native
        from .binding import attach_functions
        from .hardening import route_native_output
        from .pcc_model import pcc_values, with_pcc
        from .plant_binding import attach_plant
        from .plant_model import site_model_spec
        from .security import TLS_PORT, check_bind
        from .server import MmsServer
        from .storage_model import storage_readings

        cfg = ctx.cfg
        # Which libiec61850, checked (loadable, version) before anything is served.
        _native.configure(cfg["mms.libiec61850"])
        _native.lib()
        # libiec61850's threads call our handlers through ctypes and must take the
        # GIL first; with the default 5 ms switch interval a request can wait that
        # long behind the control loop's Python work. Hand it over sooner.
        sys.setswitchinterval(0.0005)
        self.multi = len(ctx.inverters) > 1
        self.spec = site_model_spec(list(ctx.inverters),
                                    cfg["plant.ld_inst"] if self.multi else None,
                                    functions=ctx.functions)
        #: The site meter's logical device (pcc_model.py: DPCC1, MMXU1, MMTR1), if any.
        self.pcc_ld: str | None = cfg["meter.name"] if cfg["meter.enabled"] else None
        if self.pcc_ld is not None:
            self.spec = with_pcc(self.spec, self.pcc_ld)
        tls, access, audit = ctx.tls, ctx.access, ctx.audit
        self.tls = tls
        self.port = cfg["mms.port"] or (TLS_PORT if tls else 102)
        self.host = cfg["mms.host"]
        check_bind(self.host, tls is not None, cfg["security.allow_insecure_bind"])
        self.server = MmsServer(self.spec, host=self.host, port=self.port,
                                ied_name=cfg["mms.ied_name"],
                                max_connections=cfg["mms.max_connections"], tls=tls,
                                access=access, audit=audit,
                                idle_timeout_s=cfg["security.idle_timeout"] or None)
        self.ied_name = cfg["mms.ied_name"]
        self.publishers = {name: (self.server.publisher(name) if self.multi
                                  else self.server.publish) for name in ctx.inverters}
        self.bindings: dict[str, Any] = {}
        self._storage_readings = storage_readings
        self._pcc_values = pcc_values  # imported once here, not in each cycle's publish
        if ctx.functions:
            for name in ctx.inverters:
                # the core validates, persists and audits what the clients send
                self.bindings[name] = attach_functions(
                    self.server, ctx.core.commands(name), None, ld_inst=name,
                    storage=partial(_storage_of, ctx.core, name))
        if ctx.plant is not None:
            attach_plant(ctx.plant, self.server,
                         ctx.core.write_plant if ctx.functions else None)
        ctx.status_extra["security"] = self.server.security_status
        ctx.status_extra["wire"] = self.server.wire_status
        # The bundled library prints TLS/ISO debugging (certificate subjects among it)
        # on fds 1 and 2: into the log at DEBUG instead.
        route_native_output()

    def start(self) -> None:
        self.server.start()
        log.info("MMS%s server on %s:%d, logical device%s %s", " over TLS" if self.tls else "",
                 self.host, self.port, "s" if self.multi else "",
                 ", ".join(self.ied_name + ld.inst for ld in self.spec.logical_devices))

    def publish(self, view: CycleView) -> None:
        for inv in view.inverters:
            publish = self.publishers.get(inv.name)
            if publish is None:
                continue
            # the storage LNs (DSTO, DBAT, DWGC.ReqW) from the core's StorageView
            publish({**inv.readings, **self._storage_readings(inv.storage, view.t)}
                    if inv.storage is not None else inv.readings)
            binding = self.bindings.get(inv.name)
            if binding is not None:
                binding.publish_status(inv.functions.as_dict() if inv.functions else None)
        if self.pcc_ld is not None and view.site is not None:
            self.server.publish(view.site.readings, self.pcc_ld)
            v_nom = next((v for inv in view.inverters
                          if (v := inv.good("VNom")) is not None), None)
            self.server.update(self._pcc_values(self.pcc_ld, view.site, v_nom), view.t)

    def status(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tls": self.tls is not None,
                "logical_devices": [self.ied_name + ld.inst
                                    for ld in self.spec.logical_devices]}

    def stop(self, timeout_s: float) -> None:
        for binding in self.bindings.values():
            binding.close()
        self.server.stop()

    @property
    def ready_text(self) -> str:
        return f"serving MMS on {self.host}:{self.port}"


def _storage_of(core: Core, name: str) -> StorageView | None:
    """The inverter's battery in the core's last view (None: none, or no cycle yet)."""
    view = core.view()
    inv = next((i for i in view.inverters if i.name == name), None) if view else None
    return inv.storage if inv is not None else None


def load(ctx: AdapterContext) -> MmsAdapter | None:
    from .keys import enabled

    return MmsAdapter(ctx) if enabled(ctx.cfg) else None
