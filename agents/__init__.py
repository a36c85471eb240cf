"""Faust agents: thin wiring from topics to the pure functions of ``models``."""

from __future__ import annotations

from agents import inventory
from streams.app import Engine


def register(engine: Engine) -> inventory.InventoryProcessor:
    """Wire every agent onto the engine's app (called once, by the bootstrap)."""
    return inventory.register(engine)
