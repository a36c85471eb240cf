"""JSON Schema of every record of the contract (``ops-engine schema``)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from models.events import (
    CONTRACT,
    MESSAGE_KEY,
    AlertCommand,
    AlertRecord,
    ProductMapped,
    ProductResend,
    StoreAlertsResolve,
    StorefrontStock,
    SupplierSnapshot,
    SupplierUpdate,
)
from models.orders import ORDER_EVENT, Notification, StorefrontCommand, SupplierOrderCommand
from models.webhook_routing import CatalogueSource, CatalogueVariant, SupplierProductUpdate, SupplierTracking
from models.video import VIDEO_EVENT, RenderCommand, VideoRequest, VideoStatusRecord
from models.sync import SyncDeadline, SyncJob, SyncProgress, SyncRequest, SyncRun
from models.webhooks import InboundWebhook

#: The order topics (models/orders.py): topic -> (schema source, message key field).
ORDER_CONTRACT: dict[str, tuple[Any, str]] = {
    "orders.events": (ORDER_EVENT, "order_id"),
    "orders.commands": (SupplierOrderCommand, "order_id"),
    "notifications": (Notification, "store_id"),
    "storefront.commands": (StorefrontCommand, "store_id"),
    "catalog.variants": (CatalogueVariant, "shop_domain"),
    "catalog.sources": (CatalogueSource, "index"),
    "supplier.updates": (SupplierProductUpdate, "{PROVIDER}|{source_id}, else {PROVIDER}|variant:{source_variant_id}"),
    "supplier.tracking": (SupplierTracking, "{provider}:{reference or supplier_order_id}"),
    "webhooks.inbound": (InboundWebhook, "shop_domain (Shopify), else dedup_key"),
}
#: The video topics (models/video.py).
VIDEO_CONTRACT: dict[str, tuple[Any, str]] = {
    "video.requests": (VideoRequest, "video_id"),
    "video.status": (VideoStatusRecord, "video_id"),
    "video.renders": (RenderCommand, "video_id"),
    "video.events": (VIDEO_EVENT, "video_id"),
}

#: The sync topics (models/sync.py): topic -> (schema source, title or None).
SYNC_CONTRACT: dict[str, tuple[Any, str | None]] = {
    "sync.requests": (SyncRequest, None),
    "sync.progress": (TypeAdapter(SyncProgress | SyncDeadline), "SyncProgress (kind PROGRESS) or SyncDeadline (kind DEADLINE)"),
    "sync.jobs": (SyncJob, None),
    "sync.runs": (SyncRun, None),
}


def contract_schemas() -> dict[str, dict[str, Any]]:
    """topic -> JSON Schema of its message value (serialisation form)."""
    out: dict[str, dict[str, Any]] = {}
    for topic, model in CONTRACT.items():
        if topic == "supplier.snapshots":
            adapter: TypeAdapter[Any] = TypeAdapter(SupplierSnapshot | list[SupplierSnapshot])
            body = adapter.json_schema(mode="validation")
            body["title"] = "SupplierSnapshot or a page (array) of one store's snapshots"
        elif topic == "inventory.commands":
            commands: TypeAdapter[Any] = TypeAdapter(
                AlertCommand | AlertRecord | SupplierUpdate | StorefrontStock | ProductMapped | ProductResend
                | StoreAlertsResolve)
            body = commands.json_schema(mode="validation")
            body["title"] = ("AlertCommand, AlertRecord, SupplierUpdate (kind SUPPLIER_UPDATE), "
                             "StorefrontStock (kind STOREFRONT_STOCK), ProductMapped (kind PRODUCT_MAPPED), "
                             "ProductResend (kind PRODUCT_RESEND) or StoreAlertsResolve (kind STORE_ALERTS_RESOLVE)")
        else:
            body = model.model_json_schema(mode="validation")
        body["x-topic"] = topic
        body["x-message-key"] = MESSAGE_KEY[topic]
        out[topic] = body
    for topic, (source, key) in {**ORDER_CONTRACT, **VIDEO_CONTRACT}.items():
        if isinstance(source, TypeAdapter):
            body = source.json_schema(mode="validation")
            name = "VideoEvent" if topic == "video.events" else "OrderEvent"
            body["title"] = f"{name} (one of the types, by its type field)"
        else:
            body = source.model_json_schema(mode="validation")
        body["x-topic"] = topic
        body["x-message-key"] = key
        out[topic] = body
    for topic, (source, title) in SYNC_CONTRACT.items():
        if isinstance(source, TypeAdapter):
            body = source.json_schema(mode="validation")
            body["title"] = title
        else:
            body = source.model_json_schema(mode="validation")
        body["x-topic"] = topic
        body["x-message-key"] = "store_id"
        out[topic] = body
    return out
