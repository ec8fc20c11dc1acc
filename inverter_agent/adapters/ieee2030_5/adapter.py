"""The IEEE 2030.5 / CSIP adapter: a client of the utility's server, behind
:class:`~inverter_agent.adapters.base.Adapter`.

Loaded when ``[ieee2030_5] server`` is set (nothing of py20305 is imported
otherwise). The utility's events and default control go into the core's
``ieee2030_5`` schedule, arbitrated by every inverter's settings; what the
server reads is the site as of the last :class:`~inverter_agent.core.view.CycleView`.
"""

from __future__ import annotations

import logging
from typing import Any

from inverter_agent.adapters.base import AdapterContext
from inverter_agent.config import ConfigError
from inverter_agent.core.view import CycleView

log = logging.getLogger(__name__)

SOURCE = "ieee2030_5"


class Ieee2030Adapter:
    name = SOURCE

    def __init__(self, ctx: AdapterContext) -> None:
        from .client import ClientSettings, Ieee2030Client
        from .site_view import SiteView

        if not ctx.functions:
            raise ConfigError("[ieee2030_5] needs the grid functions (utility controls "
                              "are applied through them): drop --no-functions")
        self.settings = ClientSettings.from_config(ctx.cfg)
        core = ctx.core
        schedule = core.schedule(SOURCE)
        self._view: CycleView | None = None

        def record(kind: str, detail: str) -> None:
            core.record(kind, detail, SOURCE)

        self.client = Ieee2030Client(self.settings, schedule, SiteView(lambda: self._view),
                                     record, core.check_utility)
        # A site meter ([meter]): opModExpLimW held at the connection point, and the
        # meter's readings posted as the site's MirrorUsagePoint (roleFlags 0x03).
        self.client.connector.site_meter = bool(ctx.cfg["meter.enabled"])
        self.client.site_meter = self.client.connector.site_meter
        ctx.status_extra[SOURCE] = self.client.status

    def start(self) -> None:
        self.client.start()
        log.info("IEEE 2030.5 client for %s, LFDI %s, SFDI %d", self.settings.server,
                 self.client.lfdi, self.client.sfdi)

    def publish(self, view: CycleView) -> None:
        self._view = view  # read by the client's thread; a view never changes

    def status(self) -> dict[str, Any]:
        return dict(self.client.status())

    def stop(self, timeout_s: float) -> None:
        self.client.stop(timeout_s)


def load(ctx: AdapterContext) -> Ieee2030Adapter | None:
    from .keys import enabled

    return Ieee2030Adapter(ctx) if enabled(ctx.cfg) else None
