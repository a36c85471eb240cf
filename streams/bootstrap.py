"""Bootstrap: build the engine and wire its agents and web views, in one place."""

from __future__ import annotations

import agents
from connectors import gauges, ingress, web, web_orders, web_sync, web_video
from streams.app import Engine, build
from streams.settings import Settings


def bootstrap(settings: Settings) -> Engine:
    engine = build(settings)
    wired = agents.register(engine)
    web.register(engine, wired.inventory)
    web_orders.register(engine, wired.orders)
    web_video.register(engine, wired.video)
    web_sync.register(engine)
    ingress.register(engine)
    gauges.register(engine)
    return engine
