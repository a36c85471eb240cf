"""Faust agents: thin wiring from topics to the pure functions of ``models``."""

from __future__ import annotations

from dataclasses import dataclass

from agents import inventory, orders, sync, video, webhooks
from streams.app import Engine


@dataclass(frozen=True)
class Agents:
    inventory: inventory.InventoryProcessor
    orders: orders.OrderProcessor
    webhooks: webhooks.WebhookRouter
    video: video.VideoProcessor
    sync: sync.SyncScheduler


def register(engine: Engine) -> Agents:
    """Wire every agent onto the engine's app (called once, by the bootstrap)."""
    return Agents(
        inventory=inventory.register(engine),
        orders=orders.register(engine),
        webhooks=webhooks.register(engine),
        video=video.register(engine),
        sync=sync.register(engine),
    )
