"""The storefront push's pure decisions (models/storefront.py) and the Shopify cost bucket."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any
from decimal import Decimal

from connectors.shopify.throttle import CostBucket
from models.events import ChangedField, ChangeReason, InventoryChange, ProductStatus, ProductView
from models.storefront import (
    OpenLine,
    QuantityWrite,
    after_stale,
    idempotency_key,
    quantity_key,
    lines_to_fulfill,
    newest_per_variant,
    price_write,
    pushed_quantity,
    quantity_write,
    shopify_order_number,
)

AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def view(stock: int, price: str = "10.00", status: ProductStatus = ProductStatus.ACTIVE, available: bool = True) -> ProductView:
    return ProductView(status=status, available=available, stock=stock, cost_price=Decimal("5"), shipping_cost=Decimal("0"),
                       currency="USD", selling_price=Decimal(price))


def change(before: ProductView | None, after: ProductView, *changed: ChangedField, cid: str = "c1",
           product: str = "p1") -> InventoryChange:
    return InventoryChange(change_id=cid, store_id="s1", product_id=product, provider="ALIEXPRESS", source_id="AE-1",
                           reason=ChangeReason.NEW if before is None else ChangeReason.SNAPSHOT, changed=changed,
                           before=before, after=after, captured_at=AT)


def test_the_shown_quantity_is_zero_unless_active_and_available() -> None:
    assert pushed_quantity(view(7)) == 7
    assert pushed_quantity(view(7, status=ProductStatus.OUT_OF_STOCK)) == 0
    assert pushed_quantity(view(7, available=False)) == 0


def test_a_quantity_write_compares_with_what_the_engine_pushed_before() -> None:
    assert quantity_write(change(view(10), view(8), ChangedField.STOCK)) == QuantityWrite("c1", 8, 10)
    removed = change(view(10), view(10, status=ProductStatus.OUT_OF_STOCK, available=False), ChangedField.AVAILABILITY,
                     ChangedField.STATUS)
    assert quantity_write(removed) == QuantityWrite("c1", 0, 10)
    assert quantity_write(change(None, view(4))) == QuantityWrite("c1", 4, None)  # NEW: no comparison
    # a price change alone, or a stock move the shop does not show, writes no quantity
    assert quantity_write(change(view(10), view(10, "12.00"), ChangedField.SELLING_PRICE)) is None
    oos = ProductStatus.OUT_OF_STOCK
    assert quantity_write(change(view(3, status=oos), view(5, status=oos), ChangedField.STOCK)) is None


def test_price_writes() -> None:
    assert price_write(change(view(10), view(8), ChangedField.STOCK)) is None
    write = price_write(change(view(10), view(10, "12.50"), ChangedField.SELLING_PRICE))
    assert write is not None and write.price == Decimal("12.50")
    assert price_write(change(None, view(1, "3.00"))) is not None


def test_after_a_stale_comparison_the_supplier_count_wins_unless_already_shown() -> None:
    write = QuantityWrite("c1", 8, 10)
    assert after_stale(write, 7) == QuantityWrite("c1", 8, 7, reread=True)  # the shop sold 3: set 8 compared with 7
    assert after_stale(write, 8) is None  # an earlier delivery wrote it


def test_keys_are_deterministic_per_change_write_and_attempt() -> None:
    assert idempotency_key("c1", "qty") == idempotency_key("c1", "qty", 0)
    keys = {idempotency_key("c1", "qty", 0), idempotency_key("c1", "qty", 1), idempotency_key("c2", "qty", 0),
            idempotency_key("c1", "price", 0)}
    assert len(keys) == 4
    assert all(len(k) <= 64 for k in keys)


def test_a_quantity_write_is_keyed_by_its_change_and_the_quantity_it_compares_with() -> None:
    """The same write again meets its key; a write compared with another quantity (the shop
    sold meanwhile) gets its own, however often the change is tried."""
    assert quantity_key(QuantityWrite("c1", 8, 10)) == quantity_key(QuantityWrite("c1", 8, 10))
    keys = {quantity_key(w) for w in (QuantityWrite("c1", 8, 10), QuantityWrite("c1", 8, 7),
                                      QuantityWrite("c1", 8, None), QuantityWrite("c2", 8, 10))}
    assert len(keys) == 4 and all(len(k) <= 64 for k in keys)


def test_a_write_compared_with_a_reread_quantity_never_meets_a_stale_first_write_s_key() -> None:
    """Product 1 changes 10 -> 21 (c-a) then 21 -> 30 (c-b) in one batch, and the shop shows 9:
    both first writes go stale. Once c-a is written, c-b's re-read finds 21, the very quantity
    its first, stale write compared with; the same key would have the shop replay STALE."""
    first = QuantityWrite("c-b", 30, 21)
    again = after_stale(first, 21)
    assert again is not None and again.compare == first.compare
    assert quantity_key(again) != quantity_key(first)
    assert quantity_key(again) == quantity_key(after_stale(first, 21) or first)  # a redelivery meets it again


def test_newest_per_variant_keeps_arrival_order() -> None:
    a, b, a2 = (change(view(1), view(2), ChangedField.STOCK, cid="a"),
                change(view(1), view(2), ChangedField.STOCK, cid="b", product="p2"),
                change(view(2), view(3), ChangedField.STOCK, cid="a2"))
    assert [c.change_id for c in newest_per_variant([a, b, a2])] == ["b", "a2"]


def test_lines_to_fulfill() -> None:
    lines = [OpenLine("fo1", "11", "fol1", 2), OpenLine("fo1", "12", "fol2", 1), OpenLine("fo2", "13", "fol3", 0)]
    assert lines_to_fulfill(lines, ["11"]) == {"fo1": [("fol1", 2)]}
    assert lines_to_fulfill(lines, ["gid://shopify/LineItem/12", "13"]) == {"fo1": [("fol2", 1)]}
    assert lines_to_fulfill(lines, []) == {"fo1": [("fol1", 2), ("fol2", 1)]}
    assert shopify_order_number("shopify-123") == "123"
    assert shopify_order_number("woo-123") is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cost_bucket_leaks_refills_and_takes_the_shops_figures() -> None:
    clock = Clock()
    bucket = CostBucket(100, 10, clock=clock)
    assert bucket.delay(50) == 0
    bucket.take(80)
    assert bucket.available == 20
    assert bucket.delay(50) == 3.0  # 30 points missing at 10/s
    clock.now = 2.0
    assert bucket.available == 40
    bucket.update({"maximumAvailable": 50, "currentlyAvailable": 5, "restoreRate": 5})
    assert (bucket.maximum, bucket.restore_rate, bucket.available) == (50, 5, 5)
    assert bucket.delay(500) == 9.0  # more than the maximum: waits for a full bucket
    clock.now = 100.0
    assert bucket.available == 50  # never above the maximum
    bucket.update({"bogus": 1})  # an answer without figures changes nothing
    assert bucket.maximum == 50


def test_acquire_waits_for_the_points() -> None:
    async def main() -> float:
        bucket = CostBucket(10, 1000)
        bucket.take(10)
        return await bucket.acquire(5)

    assert asyncio.run(main()) > 0


def test_the_registered_topics_are_the_ones_the_router_acts_on() -> None:
    from connectors.shopify.webhooks import COMPLIANCE_TOPICS, TOPICS, enum_of
    from models.webhook_routing import route_shopify

    body = {"id": 1, "order_id": 1, "line_items": [], "orders_requested": [], "orders_to_redact": []}
    for topic in TOPICS + COMPLIANCE_TOPICS:
        try:
            routed = route_shopify(topic, "x.myshopify.com", body, AT, lambda shop, variant: None)
        except Exception:
            continue  # refused for this empty body: still a topic the router knows
        assert not (routed.ignored or "").startswith("no action for Shopify topic"), topic
    assert route_shopify("carts/update", "x.myshopify.com", body, AT, lambda s, v: None).ignored
    assert enum_of("inventory_levels/update") == "INVENTORY_LEVELS_UPDATE"


def test_a_pulled_order_routes_like_its_webhook() -> None:
    import orjson

    from models.shopify_orders import webhooks_of
    from models.webhook_routing import route_shopify

    money = {"shopMoney": {"amount": "20.00"}}
    node = {
        "id": "gid://shopify/Order/7001", "name": "#7001", "email": "a@example.com", "updatedAt": "2026-11-24T12:00:00Z",
        "cancelledAt": "2026-11-24T12:05:00Z", "cancelReason": "CUSTOMER", "displayFinancialStatus": "PAID",
        "currencyCode": "USD", "subtotalPriceSet": money, "totalPriceSet": money, "totalTaxSet": {"shopMoney": {"amount": "0"}},
        "totalShippingPriceSet": {"shopMoney": {"amount": "0"}}, "customer": {"firstName": "Ada", "lastName": "B"},
        "shippingAddress": {"name": "Ada B", "address1": "1 Main", "city": "Austin", "countryCodeV2": "US"},
        "lineItems": {"nodes": [{"id": "gid://shopify/LineItem/801", "title": "Mug", "quantity": 2,
                                 "variant": {"id": "gid://shopify/ProductVariant/41"},
                                 "product": {"id": "gid://shopify/Product/4"},
                                 "originalUnitPriceSet": {"shopMoney": {"amount": "10.00"}}}]},
        "fulfillments": [{"id": "gid://shopify/Fulfillment/55", "trackingInfo": [{"number": "LP1CN", "company": "Cainiao"}],
                          "fulfillmentLineItems": {"nodes": [{"lineItem": {"id": "gid://shopify/LineItem/801",
                                                                           "variant": {"id": "gid://shopify/ProductVariant/41"}}}]}},
                         {"id": "gid://shopify/Fulfillment/56", "trackingInfo": []}],
    }
    hooks = webhooks_of("x.myshopify.com", node, AT)
    assert [h.topic for h in hooks] == ["orders/updated", "orders/cancelled", "fulfillments/create"]
    assert hooks[0].dedup_key == "shopify:x.myshopify.com:reconcile:order:7001:2026-11-24T12:00:00Z"
    assert webhooks_of("x.myshopify.com", node, AT)[0].dedup_key == hooks[0].dedup_key  # a second pull: same delivery
    events = [e for h in hooks
              for e in route_shopify(h.topic or "", "x.myshopify.com", orjson.loads(h.body), AT,
                                     lambda shop, variant: None).events]
    ids = [e.event_id for e in events]
    # the ids the ingress path gives the same order: the order machine drops the copies
    assert ids[:2] == ["shopify:x.myshopify.com:order:7001", "shopify:x.myshopify.com:order:7001:paid"]
    assert ids[2] == "shopify:x.myshopify.com:order:7001:cancelled"
    assert ids[3].startswith("shopify:x.myshopify.com:fulfillment:55:") and ids[3].endswith(":LP1CN")
    created = events[0]
    assert [(i.quantity, str(i.unit_price)) for i in created.items] == [(2, "10.00")]  # type: ignore[attr-defined]


def test_storefront_accounts_are_checked_and_secrets_stay_hidden(tmp_path: Any) -> None:
    import json

    import pytest

    from connectors.storefront.settings import ShopifyAccount, StorefrontSettings
    from streams.settings import SettingsError

    path = tmp_path / "storefront.json"
    path.write_text(json.dumps({"storefront_accounts": {"s1": {
        "platform": "SHOPIFY", "shop_domain": "S1.myshopify.com", "access_token": "shpat_secret", "location_id": "7"}}}))
    path.chmod(0o600)
    settings = StorefrontSettings.load(storefront_secrets_file=str(path))
    account = settings.storefront_accounts["s1"]
    assert isinstance(account, ShopifyAccount)
    assert (account.shop_domain, account.notify_customer, account.api_version) == ("s1.myshopify.com", True, "2025-07")
    assert "shpat_secret" not in repr(settings)
    path.write_text(json.dumps({"storefront_accounts": {"s1": {
        "platform": "MAGENTO", "shop_domain": "s1.example.com", "access_token": "shpat_secret"}}}))
    with pytest.raises(SettingsError) as refused:
        StorefrontSettings.load(storefront_secrets_file=str(path))
    assert "OPS_STOREFRONT_ACCOUNTS" in str(refused.value) and "shpat_secret" not in str(refused.value)


def test_a_refused_account_alert_is_the_same_all_day_and_another_the_next() -> None:
    from datetime import datetime, timezone

    from models.events import AlertType
    from models.storefront import storefront_alert

    def refused_alert(*args: Any) -> Any:
        return storefront_alert(AlertType.STOREFRONT_REFUSED, *args)

    morning = refused_alert("s1", "SHOPIFY", "a.myshopify.com", "HTTP 401", datetime(2026, 11, 24, 8, tzinfo=timezone.utc))
    evening = refused_alert("s1", "SHOPIFY", "a.myshopify.com", "HTTP 401", datetime(2026, 11, 24, 23, tzinfo=timezone.utc))
    tomorrow = refused_alert("s1", "SHOPIFY", "a.myshopify.com", "HTTP 401", datetime(2026, 11, 25, 1, tzinfo=timezone.utc))
    other = refused_alert("s2", "SHOPIFY", "b.myshopify.com", "HTTP 401", datetime(2026, 11, 24, 8, tzinfo=timezone.utc))
    assert morning == evening  # sent again (each batch, a restart): the same record, an acknowledgement stands
    assert len({morning.alert_id, tomorrow.alert_id, other.alert_id}) == 3
    assert morning.created_at == datetime(2026, 11, 24, tzinfo=timezone.utc)
