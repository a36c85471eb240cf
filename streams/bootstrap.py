"""Bootstrap: build the engine and wire its agents and web views, in one place."""

from __future__ import annotations

import agents
from connectors import ingress, web, web_orders, web_sync
from streams.app import Engine, build
from streams.settings import Settings


def bootstrap(settings: Settings) -> Engine:
    engine = build(settings)
    wired = agents.register(engine)
    web.register(engine, wired.inventory)
    web_orders.register(engine, wired.orders)
    web_sync.register(engine)
    ingress.register(engine)
    return engine
