"""Bootstrap: build the engine and wire its agents and web views, in one place."""

from __future__ import annotations

import agents
from connectors import web
from streams.app import Engine, build
from streams.settings import Settings


def bootstrap(settings: Settings) -> Engine:
    engine = build(settings)
    processor = agents.register(engine)
    web.register(engine, processor)
    return engine
