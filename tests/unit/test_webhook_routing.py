"""Stored webhooks -> order events and alerts (models/webhook_routing.py), on payloads shaped like
Shopify's and Stripe's."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from models.events import AlertType
from models.fulfillment import OrderStatus, decide
from models.orders import OrderEventType
from models.webhook_routing import CatalogueVariant, newly_mapped, route

SHOP = "demo-shop.myshopify.com"
AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
CATALOGUE = {
    (SHOP, "4001"): CatalogueVariant(shop_domain=SHOP, shopify_variant_id="4001", store_id="store-1",
                                     product_id="p-1", variant_id="v-1", provider="ALIEXPRESS", source_id="1005001"),
    (SHOP, "4002"): CatalogueVariant(shop_domain=SHOP, shopify_variant_id="4002", store_id="store-1",
                                     product_id="p-2", provider="CJ_DROPSHIPPING", source_id="CJ-77",
                                     source_variant_id="CJ-77-RED"),
}


def catalogue(shop: str, variant: str) -> CatalogueVariant | None:
    return CATALOGUE.get((shop, variant))


def shopify_order(financial_status: str = "paid", variants: tuple[str, ...] = ("4001", "4002")) -> dict[str, Any]:
    return {
        "id": 5550001, "name": "#1042", "email": "ada@example.com", "currency": "USD",
        "financial_status": financial_status, "created_at": "2026-11-24T11:59:00-05:00",
        "subtotal_price": "59.98", "total_tax": "4.80", "total_price": "69.77",
        "total_shipping_price_set": {"shop_money": {"amount": "4.99", "currency_code": "USD"}},
        "customer": {"id": 77, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        "shipping_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Analytical Row",
                             "address2": "", "city": "London", "province_code": None, "zip": "N1 9GU",
                             "country_code": "GB", "phone": "+44 20 0000 0000", "name": "Ada Lovelace"},
        "line_items": [
            {"id": 9000 + i, "variant_id": int(v), "product_id": 700 + i, "title": f"Item {v}", "quantity": 1 + i,
             "price": "29.99"}
            for i, v in enumerate(variants)
        ],
    }


def stripe_event(kind: str, obj: dict[str, Any], evt: str = "evt_1") -> dict[str, Any]:
    return {"id": evt, "object": "event", "type": kind, "data": {"object": obj}}


def test_shopify_paid_order_becomes_created_and_paid_with_mapped_items() -> None:
    routed = route("SHOPIFY", "orders/create", SHOP, shopify_order(), AT, catalogue)
    assert routed.refused is None
    created, paid = routed.events
    assert created.type is OrderEventType.ORDER_CREATED and paid.type is OrderEventType.PAYMENT_CONFIRMED
    assert created.order_id == "shopify-5550001" and created.store_id == "store-1"
    assert [(i.provider, i.source_id, i.source_variant_id) for i in created.items] == [
        ("ALIEXPRESS", "1005001", None), ("CJ_DROPSHIPPING", "CJ-77", "CJ-77-RED"),
    ]
    assert created.shipping_address.country_code == "GB" and created.customer.name == "Ada Lovelace"
    assert str(created.total) == "69.77" and str(created.shipping_total) == "4.99"
    state = decide(decide(None, created).state, paid).state
    assert state.status is OrderStatus.PROCESSING and len(state.groups) == 2


def test_create_paid_and_updated_name_the_same_events() -> None:
    ids = {
        topic: [e.event_id for e in route("SHOPIFY", topic, SHOP, shopify_order(), AT, catalogue).events]
        for topic in ("orders/create", "orders/paid", "orders/updated")
    }
    assert ids["orders/create"] == ids["orders/paid"] == ids["orders/updated"]
    unpaid = route("SHOPIFY", "orders/create", SHOP, shopify_order("pending"), AT, catalogue).events
    assert [e.type for e in unpaid] == [OrderEventType.ORDER_CREATED]


def test_an_unmapped_item_makes_the_order_need_a_person() -> None:
    routed = route("SHOPIFY", "orders/paid", SHOP, shopify_order(variants=("4001", "9999")), AT, catalogue)
    state = None
    for event in routed.events:
        state = decide(state, event).state
    assert state is not None and state.status is OrderStatus.INTERVENTION_REQUIRED
    assert "no catalogue mapping" in state.reason and "shopify-variant-9999" in state.reason


def test_shopify_cancel_refund_and_fulfillment() -> None:
    cancel = route("SHOPIFY", "orders/cancelled", SHOP, {**shopify_order(), "cancel_reason": "customer"}, AT, catalogue)
    assert [(e.type, e.order_id) for e in cancel.events] == [(OrderEventType.CANCEL_REQUESTED, "shopify-5550001")]
    refund = route("SHOPIFY", "refunds/create", SHOP, {
        "id": 31, "order_id": 5550001, "note": "damaged",
        "transactions": [{"kind": "refund", "amount": "69.77"}]}, AT, catalogue)
    assert [(e.type, str(e.amount)) for e in refund.events] == [(OrderEventType.REFUND_REQUESTED, "69.77")]
    fulfilled = route("SHOPIFY", "fulfillments/create", SHOP, {
        "id": 41, "order_id": 5550001, "tracking_number": "1Z999AA10123456784", "tracking_company": "UPS",
        "line_items": [{"id": 9001, "variant_id": 4002}]}, AT, catalogue)
    (tracking,) = fulfilled.events
    assert tracking.type is OrderEventType.TRACKING_RECEIVED and tracking.group_id == "CJ_DROPSHIPPING"
    assert tracking.source == "STOREFRONT" and tracking.carrier == "UPS"
    assert route("SHOPIFY", "fulfillments/create", SHOP, {"id": 42, "order_id": 1, "line_items": []}, AT,
                 catalogue).ignored
    # An amount that is no number: refused with a reason (UNMAPPABLE), not a processing error.
    bad = route("SHOPIFY", "refunds/create", SHOP, {
        "id": 32, "order_id": 5550001, "transactions": [{"kind": "refund", "amount": "12,50 EUR"}]}, AT, catalogue)
    assert bad.refused == "an amount is not a number" and not bad.events


def test_stripe_payments_of_one_order_share_one_event_id() -> None:
    meta = {"order_id": "shopify-5550001", "store_id": "store-1"}
    intent = route("STRIPE", None, None, stripe_event("payment_intent.succeeded", {
        "id": "pi_1", "amount_received": 6977, "currency": "usd", "metadata": meta}), AT, catalogue)
    session = route("STRIPE", None, None, stripe_event("checkout.session.completed", {
        "id": "cs_1", "payment_status": "paid", "amount_total": 6977, "currency": "usd", "payment_intent": "pi_1",
        "metadata": meta}, "evt_2"), AT, catalogue)
    assert [e.event_id for e in intent.events] == [e.event_id for e in session.events] == ["stripe:paid:shopify-5550001"]
    assert str(intent.events[0].amount) == "69.77"
    unpaid = route("STRIPE", None, None, stripe_event("checkout.session.completed", {
        "id": "cs_2", "payment_status": "unpaid", "metadata": meta}), AT, catalogue)
    assert unpaid.ignored and not unpaid.events
    yen = route("STRIPE", None, None, stripe_event("payment_intent.succeeded", {
        "id": "pi_2", "amount_received": 6977, "currency": "jpy", "metadata": meta}), AT, catalogue)
    assert str(yen.events[0].amount) == "6977"


def test_stripe_failures_refunds_and_disputes() -> None:
    meta = {"order_id": "o-9", "store_id": "store-1"}
    failed = route("STRIPE", None, None, stripe_event("payment_intent.payment_failed", {
        "id": "pi_3", "metadata": meta, "last_payment_error": {"message": "card declined"}}), AT, catalogue)
    assert [a.type for a in failed.alerts] == [AlertType.PAYMENT_ISSUE] and "card declined" in failed.alerts[0].message
    full = route("STRIPE", None, None, stripe_event("charge.refunded", {
        "id": "ch_1", "amount": 5000, "amount_refunded": 5000, "currency": "usd", "metadata": meta}), AT, catalogue)
    assert [e.type for e in full.events] == [OrderEventType.REFUND_REQUESTED]
    partial = route("STRIPE", None, None, stripe_event("charge.refunded", {
        "id": "ch_2", "amount": 5000, "amount_refunded": 1000, "currency": "usd", "metadata": meta}), AT, catalogue)
    assert not partial.events and "10 of 50" in partial.alerts[0].message
    dispute = route("STRIPE", None, None, stripe_event("charge.dispute.created", {
        "id": "dp_1", "reason": "fraudulent", "metadata": meta}), AT, catalogue)
    assert [a.type for a in dispute.alerts] == [AlertType.PAYMENT_ISSUE]


def test_what_cannot_be_mapped_is_refused_with_a_reason() -> None:
    assert "metadata.order_id" in (route("STRIPE", None, None, stripe_event(
        "payment_intent.succeeded", {"id": "pi_4", "amount_received": 1}), AT, catalogue).refused or "")
    assert "shipping address" in (route("SHOPIFY", "orders/create", SHOP,
                                        {**shopify_order(), "shipping_address": None}, AT, catalogue).refused or "")
    assert route("SHOPIFY", "orders/create", SHOP, [1, 2], AT, catalogue).refused == "body is not a JSON object"
    assert "amount" in (route("SHOPIFY", "orders/create", SHOP, {**shopify_order(), "total_price": "-3"}, AT,
                              catalogue).refused or "")
    assert route("SHOPIFY", "products/update", SHOP, {"id": 1}, AT, catalogue).ignored
    assert route("STRIPE", None, None, stripe_event("customer.created", {"id": "cus_1"}), AT, catalogue).ignored


def test_supplier_tracking_webhooks_name_the_order_for_the_executor() -> None:
    cj = route("SUPPLIER", None, None, {"messageId": "m1", "type": "ORDER", "params": {
        "orderId": "CJ-555", "orderNumber": "ops-abc", "trackNumber": "CJPKL7123456789", "logisticName": "CJPacket",
        "orderStatus": "SHIPPED"}}, AT, catalogue, provider="CJ_DROPSHIPPING")
    (update,) = cj.tracking
    assert (update.provider, update.reference, update.supplier_order_id) == ("CJ_DROPSHIPPING", "ops-abc", "CJ-555")
    assert update.tracking_number == "CJPKL7123456789" and not update.delivered
    assert update.key == b"CJ_DROPSHIPPING:ops-abc"
    generic = route("SUPPLIER", None, None, {"event": "tracking", "supplier_order_id": "S-1",
                                              "tracking_number": "9400111899223344556677", "status": "Delivered"},
                    AT, catalogue, provider="SPOCKET")
    assert generic.tracking[0].delivered and generic.tracking[0].key == b"SPOCKET:S-1"
    assert route("SUPPLIER", None, None, {"type": "STOCK", "params": {"vid": "1"}}, AT, catalogue,
                 provider="CJ_DROPSHIPPING").ignored  # says no stock, price or status
    assert route("SUPPLIER", None, None, {"type": "ORDER", "params": {"orderStatus": "PAID"}}, AT, catalogue,
                 provider="CJ_DROPSHIPPING").ignored  # no tracking number yet
    assert "names no order" in (route("SUPPLIER", None, None, {"event": "tracking", "tracking_number": "X123"}, AT,
                                      catalogue, provider="SPOCKET").refused or "")


def test_customer_redaction_reaches_each_named_order() -> None:
    routed = route("SHOPIFY", "customers/redact", SHOP, {
        "shop_id": 1, "shop_domain": SHOP, "customer": {"id": 77, "email": "ada@example.com"},
        "orders_to_redact": [5550001, 5550002]}, AT, catalogue)
    assert [(e.type, e.order_id) for e in routed.events] == [
        (OrderEventType.REDACT_REQUESTED, "shopify-5550001"), (OrderEventType.REDACT_REQUESTED, "shopify-5550002"),
    ]
    created = route("SHOPIFY", "orders/create", SHOP, shopify_order(), AT, catalogue).events
    state = None
    for event in [*created, routed.events[0]]:
        state = decide(state, event).state
    assert state is not None and state.redacted and "ada@example.com" not in state.model_dump_json()
    assert route("SHOPIFY", "customers/redact", SHOP, {"orders_to_redact": []}, AT, catalogue).ignored


def test_shop_redaction_reaches_every_order_of_the_shop() -> None:
    routed = route("SHOPIFY", "shop/redact", SHOP, {"shop_id": 1, "shop_domain": SHOP}, AT, catalogue,
                   orders_of=lambda shop: ["shopify-1", "shopify-2"] if shop == SHOP else [])
    assert [(e.type, e.order_id, e.reason) for e in routed.events] == [
        (OrderEventType.REDACT_REQUESTED, "shopify-1", "shop/redact"),
        (OrderEventType.REDACT_REQUESTED, "shopify-2", "shop/redact"),
    ]
    assert route("SHOPIFY", "shop/redact", "other.myshopify.com", {}, AT, catalogue).ignored


def test_a_customer_data_request_reaches_each_named_order() -> None:
    routed = route("SHOPIFY", "customers/data_request", SHOP, {
        "shop_domain": SHOP, "customer": {"id": 77}, "orders_requested": [5550001],
        "data_request": {"id": 9999}}, AT, catalogue)
    (request,) = routed.events
    assert request.type is OrderEventType.DATA_REQUESTED and request.order_id == "shopify-5550001"
    assert request.event_id == f"shopify:{SHOP}:data-request:9999:5550001"


def test_supplier_stock_and_price_webhooks_become_product_updates() -> None:
    cj = route("SUPPLIER", None, None, {"type": "STOCK", "params": {"pid": "P-9", "vid": "V-1", "storageNum": 0}},
               AT, catalogue, provider="CJ_DROPSHIPPING")
    (update,) = cj.products
    assert (update.provider, update.source_id, update.source_variant_id, update.stock) == (
        "CJ_DROPSHIPPING", "P-9", "V-1", 0)
    assert update.cost_price is None and update.available is None and update.captured_at == AT
    assert update.key == b"CJ_DROPSHIPPING|P-9"
    variant_only = route("SUPPLIER", None, None, {"type": "VARIANT", "params": {"vid": "V-2", "sellPrice": 7.25}},
                         AT, catalogue, provider="CJ_DROPSHIPPING").products[0]
    assert variant_only.cost_price == Decimal("7.25") and variant_only.key == b"CJ_DROPSHIPPING|variant:V-2"
    generic = route("SUPPLIER", None, None, {"event": "price", "items": [
        {"source_id": "A", "price": "12.50", "currency": "eur"}, {"source_id": "B", "stock": 3}]},
        AT, catalogue, provider="spocket").products
    assert [(u.provider, u.source_id, u.cost_price, u.currency, u.stock) for u in generic] == [
        ("SPOCKET", "A", Decimal("12.50"), "EUR", None), ("SPOCKET", "B", None, None, 3)]
    gone = route("SUPPLIER", None, None, {"event": "product", "source_id": "A", "status": "Delisted"},
                 AT, catalogue, provider="SPOCKET").products[0]
    assert gone.available is False
    assert route("SUPPLIER", None, None, {"event": "product_removed", "source_id": "A"}, AT, catalogue,
                 provider="SPOCKET").products[0].available is False
    # A replay of the same webhook is the same news (same id, same time).
    assert route("SUPPLIER", None, None, {"type": "STOCK", "params": {"pid": "P-9", "vid": "V-1", "storageNum": 0}},
                 AT, catalogue, provider="CJ_DROPSHIPPING").products == [update]


def test_supplier_product_news_that_cannot_be_read_is_refused_with_a_reason() -> None:
    def refused(body: dict[str, Any]) -> str:
        return route("SUPPLIER", None, None, body, AT, catalogue, provider="SPOCKET").refused or ""

    assert "names no product" in refused({"event": "stock", "stock": 3})
    assert "stock" in refused({"event": "stock", "source_id": "A", "stock": -1})
    assert "cost_price" in refused({"event": "price", "source_id": "A", "price": "abc"})
    assert "currency" in refused({"event": "price", "source_id": "A", "price": "1", "currency": "XXZ"})
    assert "not a JSON object" in refused({"event": "stock", "items": [1]})


def test_inventory_levels_update_is_the_storefront_count_of_the_mapped_product() -> None:
    item_catalogue = {(SHOP, "item:808"): CATALOGUE[(SHOP, "4001")]}

    def lookup(shop: str, ref: str) -> CatalogueVariant | None:
        return item_catalogue.get((shop, ref))

    body = {"inventory_item_id": 808, "location_id": 6001, "available": -2, "updated_at": "2026-11-24T06:59:00-05:00"}
    (report,) = route("SHOPIFY", "inventory_levels/update", SHOP, body, AT, lookup).stock_reports
    assert (report.store_id, report.product_id, report.variant_id, report.available, report.location_id) == (
        "store-1", "p-1", "v-1", -2, "6001")
    assert report.reported_at == datetime(2026, 11, 24, 11, 59, tzinfo=timezone.utc)
    # The same report again is the same command.
    assert route("SHOPIFY", "inventory_levels/update", SHOP, body, AT, lookup).stock_reports == [report]
    assert route("SHOPIFY", "inventory_levels/update", SHOP, {**body, "inventory_item_id": 9}, AT, lookup).ignored
    assert route("SHOPIFY", "inventory_levels/update", SHOP, {**body, "available": None}, AT, lookup).ignored
    assert "available" in (route("SHOPIFY", "inventory_levels/update", SHOP, {**body, "available": "7"}, AT,
                                 lookup).refused or "")
    assert "inventory_item_id" in (route("SHOPIFY", "inventory_levels/update", SHOP, {"available": 1}, AT,
                                         lookup).refused or "")
    assert "updated_at" in (route("SHOPIFY", "inventory_levels/update", SHOP, {**body, "updated_at": "soon"}, AT,
                                  lookup).refused or "")


def test_app_uninstalled_alerts_every_store_of_the_shop() -> None:
    routed = route("SHOPIFY", "app/uninstalled", SHOP, {"id": 1, "domain": SHOP}, AT, catalogue,
                   stores_of=lambda shop: ["store-1", "store-2"] if shop == SHOP else [])
    assert [(a.type, a.store_id) for a in routed.alerts] == [
        (AlertType.APP_UNINSTALLED, "store-1"), (AlertType.APP_UNINSTALLED, "store-2")]
    assert routed.alerts[0].metadata == {"shop_domain": SHOP} and not routed.events
    # A shop the catalogue does not know is its own store.
    (alone,) = route("SHOPIFY", "app/uninstalled", "new.myshopify.com", {}, AT, catalogue).alerts
    assert alone.store_id == "new.myshopify.com"


def test_a_catalogue_record_that_maps_a_variant_to_a_product_for_the_first_time_shows_the_product() -> None:
    """PRODUCT_MAPPED (the inventory agent then publishes the product's values): for a variant
    not mapped before, or mapped to another product; not for the same mapping sent again
    (a replay, a title edit), nor for ids the inventory topics cannot key."""
    first = CATALOGUE[(SHOP, "4001")]
    command = newly_mapped(None, first, "catalogue:3:11", AT)
    assert command is not None
    assert (command.kind, command.store_id, command.product_id, command.variant_id, command.storefront_variant_id,
            command.command_id, command.mapped_at) == (
        "PRODUCT_MAPPED", "store-1", "p-1", "v-1", "4001", "catalogue:3:11", AT)
    assert newly_mapped(first, first.model_copy(update={"title": "Renamed"}), "catalogue:3:12", AT) is None
    other = first.model_copy(update={"product_id": "p-9", "variant_id": None})
    moved = newly_mapped(first, other, "catalogue:3:13", AT)
    assert moved is not None and (moved.product_id, moved.variant_id) == ("p-9", None)
    assert newly_mapped(None, first.model_copy(update={"store_id": "not a store id!"}), "catalogue:3:14", AT) is None
